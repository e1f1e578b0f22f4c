//! Shared test support; each test binary uses part of it.
#![allow(dead_code)]

pub mod fixtures;
pub mod raw;

use std::path::PathBuf;

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The named fixture program and its canonical bytes.
pub fn fixture(name: &str) -> (paw_format::Program, Vec<u8>) {
    let program = fixtures::all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("known fixture")
        .1;
    let bytes = program.to_bytes().expect("fixtures are valid");
    (program, bytes)
}
