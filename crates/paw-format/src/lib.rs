//! The `.paw` container (specified in `spec/paw-format.md`), the local content-addressed store,
//! and the base-model manifest.

pub mod error;
pub mod export;
pub mod id;
pub mod inspect;
pub mod layout;
pub mod manifest;
mod metadata;
pub mod program;
pub mod quant;
pub mod reader;
pub mod store;
mod writer;

pub use error::{FormatError, TensorError, TensorName, TensorRole};
pub use id::{hash_file, ParseIdError, ProgramId};
pub use inspect::{inspect, Inspection};
pub use program::*;
pub use reader::{verify_bytes, verify_file, AdapterView, ProgramView, TensorView};
