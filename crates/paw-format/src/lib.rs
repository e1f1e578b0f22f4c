//! The `.paw` container (specified in `spec/paw-format.md`), the local content-addressed store,
//! and the base-model manifest.

pub mod manifest;
pub mod program;
pub mod store;

pub use program::*;
