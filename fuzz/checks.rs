//! What each fuzz target beyond the `.paw` reader checks of one input. Shared, by `#[path]`, by
//! the targets in `fuzz_targets/` and by the replay of their committed corpora in
//! `crates/paw-cli/tests/fuzz_corpus.rs`, so a corpus is replayed through exactly what was
//! fuzzed. Each returns whether the input was accepted; a panic or an abort is a finding.

#![allow(dead_code)] // each fuzz target uses one check

use std::io::Cursor;

/// GGUF header and metadata: the checked header read, the model configuration built from it,
/// and the tokenizer identity.
pub fn gguf_metadata(data: &[u8]) -> bool {
    let Ok(content) = paw_rt::read_content(&mut Cursor::new(data)) else {
        return false;
    };
    let _ = paw_rt::tokenizer_hash(&content);
    paw_rt::ModelConfig::from_gguf(&content).is_ok()
}

/// A GGUF file's tokenizer: built from its metadata (the `tokenizers` library behind it), then
/// encoding and decoding text. Separate from [`gguf_metadata`] because building a tokenizer
/// costs milliseconds, which would hold that target to a few hundred inputs a second.
pub fn gguf_tokenizer(data: &[u8]) -> bool {
    let Ok(content) = paw_rt::read_content(&mut Cursor::new(data)) else {
        return false;
    };
    let Ok(tokenizer) = paw_rt::Tokenizer::from_gguf(&content) else {
        return false;
    };
    for text in ["hello, wörld", "<|im_end|>\n{}"] {
        if let Ok(ids) = tokenizer.encode_with_specials(text) {
            let _ = tokenizer.decode_with_specials(&ids);
        }
        let _ = tokenizer.encode_plain(text);
    }
    let _ = tokenizer.max_input_bytes(256);
    true
}

/// A Hugging Face directory's configuration files: the input is split at the first two NUL
/// bytes into `config.json`, `tokenizer_config.json` and `generation_config.json` (the last two
/// absent when the input has fewer parts).
pub fn hf_config(data: &[u8]) -> bool {
    let mut parts = data.splitn(3, |&b| b == 0);
    let config = parts.next().unwrap_or_default();
    let tokenizer_config = parts.next();
    let generation_config = parts.next();
    paw_rt::check_hf_configs(config, tokenizer_config, generation_config).is_ok()
}

/// JSONL test cases (`paw test`, `paw eval`, the examples of a compile), read line by line
/// under the line cap.
pub fn jsonl_cases(data: &[u8]) -> bool {
    match paw_eval::read_cases(data) {
        Ok(cases) => {
            // Every accepted case came from a non-blank line of the input.
            let lines = data.split(|&b| b == b'\n').count();
            assert!(cases.len() <= lines);
            true
        }
        Err(error) => {
            let _ = error.to_string();
            false
        }
    }
}

/// The base-model manifest (`models.toml`): parsed and, when accepted, every model resolved by
/// its id.
pub fn models_manifest(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let Ok(manifest) = paw_store::Manifest::parse(text) else {
        return false;
    };
    for model in manifest.models() {
        assert!(manifest.get(&model.id).is_some(), "a listed model resolves");
    }
    let _ = (manifest.default_interpreter(), manifest.default_teacher());
    true
}

/// The store's own records: the first byte picks the reader (compile record, model metadata,
/// stage entry), the rest is the record. A stage entry that decodes must hold exactly the
/// payload its checksum covers.
pub fn store_records(data: &[u8]) -> bool {
    let Some((&which, record)) = data.split_first() else {
        return false;
    };
    match which % 3 {
        0 => paw_store::parse_compile_record(record).is_some(),
        1 => paw_store::parse_model_meta(record).is_ok(),
        _ => {
            let key = "b3:0000000000000000000000000000000000000000000000000000000000000000";
            match paw_store::decode_stage_entry("data", key, record) {
                Ok(payload) => {
                    assert!(payload.len() < record.len());
                    assert!(record.ends_with(payload));
                    true
                }
                Err(_) => false,
            }
        }
    }
}
