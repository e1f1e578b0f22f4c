//! The store's records: compile records, model metadata, stage-cache entries.
//! The checks are `checks::store_records` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::store_records(data);
});
