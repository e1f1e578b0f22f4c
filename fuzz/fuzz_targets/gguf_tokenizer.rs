//! A GGUF file's tokenizer, built from its metadata, encoding and decoding text.
//! The checks are `checks::gguf_tokenizer` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::gguf_tokenizer(data);
});
