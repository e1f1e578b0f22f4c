//! The `.paw` container (specified in `spec/paw-format.md`): the program model, its canonical
//! encoding, reading and verifying, content ids, inspection and export. Only the container: the
//! local store of programs and base models, and the base-model manifest, are in `paw-store`.

pub mod contract;
pub mod error;
pub mod export;
pub mod id;
pub mod inspect;
pub mod layout;
mod metadata;
pub mod program;
pub mod quant;
pub mod reader;
mod writer;

pub use contract::OutputContract;
pub use error::{FormatError, TensorError, TensorName, TensorRole};
pub use id::{hash_file, ParseIdError, ProgramId, B3_PREFIX};
pub use inspect::{inspect, Inspection};
pub use program::*;
pub use reader::{verify_bytes, verify_file, AdapterView, ProgramView, TensorView};
