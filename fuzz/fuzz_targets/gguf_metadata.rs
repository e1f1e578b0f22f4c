//! GGUF headers and metadata: the checked header read, the model configuration and the tokenizer.
//! The checks are `checks::gguf_metadata` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::gguf_metadata(data);
});
