//! JSONL case files (`paw test`, `paw eval`, a compile's examples).
//! The checks are `checks::jsonl_cases` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::jsonl_cases(data);
});
