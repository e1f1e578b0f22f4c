//! A Hugging Face directory's `config.json`, `tokenizer_config.json` and `generation_config.json`.
//! The checks are `checks::hf_config` (`fuzz/checks.rs`), shared with the corpus replay.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    checks::hf_config(data);
});
