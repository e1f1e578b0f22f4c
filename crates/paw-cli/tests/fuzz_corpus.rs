//! Replays the committed corpora of the fuzz targets beyond the `.paw` reader
//! (`fixtures/fuzz-corpus/<target>/`) through the very checks the targets run (`fuzz/checks.rs`),
//! so every input the fuzzer kept, and any crash once fixed, stays fixed under a plain
//! `cargo test`. (The `.paw` reader's corpora are replayed by `crates/paw-format`.)
#![allow(clippy::unwrap_used)]

#[path = "../../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Replays every input of `target`'s corpus; returns (inputs, accepted).
fn replay(target: &str, check: fn(&[u8]) -> bool) -> (usize, usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/fuzz-corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut accepted = 0;
    for path in &files {
        if check(&std::fs::read(path).unwrap()) {
            accepted += 1;
        }
    }
    (files.len(), accepted)
}

#[test]
fn gguf_metadata_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("gguf_metadata", checks::gguf_metadata);
    assert!(
        inputs >= 20 && accepted >= 1,
        "{inputs} inputs, {accepted} accepted"
    );
}

#[test]
fn gguf_tokenizer_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("gguf_tokenizer", checks::gguf_tokenizer);
    assert!(
        inputs >= 20 && accepted >= 1,
        "{inputs} inputs, {accepted} accepted"
    );
}

#[test]
fn hf_config_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("hf_config", checks::hf_config);
    assert!(
        inputs >= 10 && accepted >= 3,
        "{inputs} inputs, {accepted} accepted"
    );
}

#[test]
fn jsonl_cases_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("jsonl_cases", checks::jsonl_cases);
    assert!(
        inputs >= 5 && accepted >= 4,
        "{inputs} inputs, {accepted} accepted"
    );
}

#[test]
fn models_manifest_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("models_manifest", checks::models_manifest);
    assert!(
        inputs >= 1 && accepted >= 1,
        "{inputs} inputs, {accepted} accepted"
    );
}

#[test]
fn store_records_corpus_replays_without_a_crash() {
    let (inputs, accepted) = replay("store_records", checks::store_records);
    assert!(
        inputs >= 4 && accepted >= 4,
        "{inputs} inputs, {accepted} accepted"
    );
}
