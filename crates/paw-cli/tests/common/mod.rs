//! Helpers shared by the CLI's integration tests.

use paw_format::{InterpreterId, ProgramId};
use paw_store::LockedFunction;

/// The lock entry `paw build` would write for `program` (made by hand, not compiled) on the
/// interpreter `identity` whose model has SHA-256 `sha256`.
pub fn hand_locked(program: ProgramId, identity: &InterpreterId, sha256: &str) -> LockedFunction {
    LockedFunction {
        program,
        compile_key: format!("b3:{}", "0".repeat(64)),
        interpreter_name: identity.name.clone(),
        interpreter: identity.weights_hash.clone(),
        interpreter_sha256: sha256.to_owned(),
        teacher: "none".into(),
        compiler: "test".into(),
    }
}
