//! The base-model manifest (`models.toml`).
//! The checks are `checks::models_manifest` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::models_manifest(data);
});
