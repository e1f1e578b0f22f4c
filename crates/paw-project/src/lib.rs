//! A paw project: `paw.toml` declares fuzzy functions (spec, examples, tests, compile
//! settings); `paw build` compiles them and pins the results in `paw.lock`
//! ([`paw_store::Lockfile`]). The format is specified in `spec/paw-toml.md`.

mod manifest;

pub use manifest::{
    ContractDecl, FunctionDecl, Metric, ModelRef, ProjectError, ProjectManifest, SpecSource,
    TestDefaults, MANIFEST_FILE, MAX_MANIFEST_BYTES,
};
