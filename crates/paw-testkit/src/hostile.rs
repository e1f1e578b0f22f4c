//! Hostile input files, generated: each is a tiny model file broken in one way a crafted or
//! damaged download could be, with the words its error must contain. Every paw command that
//! reads one must end in a typed error (exit 1), never a panic, an abort or unbounded memory.

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;

use crate::tiny_model::{random_weights, vocab_size, write_gguf_edited, Arch, GgufOptions};

/// One hostile file and what its error must say.
#[derive(Debug, Clone)]
pub struct HostileCase {
    pub name: &'static str,
    pub path: PathBuf,
    /// Text the error message must contain (the key or check that catches it).
    pub expect: &'static str,
}

/// Writes the hostile GGUF files into `dir` (all derived from the tiny qwen2 model).
pub fn hostile_ggufs(dir: &Path) -> Vec<HostileCase> {
    let arch = Arch::Qwen2;
    let weights = random_weights(arch, vocab_size());
    let opts = GgufOptions::default();
    let mut cases = Vec::new();
    let metadata: Vec<(&'static str, &'static str, Value, &'static str)> = vec![
        (
            "alignment-zero",
            "general.alignment",
            Value::U32(0),
            "general.alignment",
        ),
        (
            "alignment-48",
            "general.alignment",
            Value::U32(48),
            "general.alignment",
        ),
        (
            "kv-heads-zero",
            "qwen2.attention.head_count_kv",
            Value::U32(0),
            "head_count_kv",
        ),
        (
            "heads-zero",
            "qwen2.attention.head_count",
            Value::U32(0),
            "head_count",
        ),
        (
            "kv-heads-not-dividing",
            "qwen2.attention.head_count_kv",
            Value::U32(3),
            "head_count_kv",
        ),
        (
            "block-count-max",
            "qwen2.block_count",
            Value::U32(u32::MAX),
            "block_count",
        ),
        (
            "block-count-zero",
            "qwen2.block_count",
            Value::U32(0),
            "block_count",
        ),
        (
            "width-huge",
            "qwen2.embedding_length",
            Value::U32(1 << 30),
            "embedding_length",
        ),
        (
            "head-dim-odd",
            "qwen2.attention.key_length",
            Value::U32(15),
            "key_length",
        ),
        (
            "context-zero",
            "qwen2.context_length",
            Value::U32(0),
            "context_length",
        ),
        (
            "freq-base-nan",
            "qwen2.rope.freq_base",
            Value::F32(f32::NAN),
            "freq_base",
        ),
        (
            "freq-base-negative",
            "qwen2.rope.freq_base",
            Value::F32(-1.0),
            "freq_base",
        ),
        (
            "rms-eps-nan",
            "qwen2.attention.layer_norm_rms_epsilon",
            Value::F32(f32::NAN),
            "rms_epsilon",
        ),
        (
            "rms-eps-infinite",
            "qwen2.attention.layer_norm_rms_epsilon",
            Value::F32(f32::INFINITY),
            "rms_epsilon",
        ),
        (
            "architecture-unknown",
            "general.architecture",
            Value::String("mamba".into()),
            "mamba",
        ),
        (
            "tokenizer-model-unknown",
            "tokenizer.ggml.model",
            Value::String("llama".into()),
            "tokenizer",
        ),
        (
            "eos-not-an-integer",
            "tokenizer.ggml.eos_token_id",
            Value::String("x".into()),
            "eos_token_id",
        ),
    ];
    for (name, key, value, expect) in metadata {
        let path = dir.join(format!("{name}.gguf"));
        write_gguf_edited(
            arch,
            &weights,
            &opts,
            vec![(key.into(), Some(value))],
            &path,
        );
        cases.push(HostileCase { name, path, expect });
    }
    let path = dir.join("tokens-missing.gguf");
    write_gguf_edited(
        arch,
        &weights,
        &opts,
        vec![("tokenizer.ggml.tokens".into(), None)],
        &path,
    );
    cases.push(HostileCase {
        name: "tokens-missing",
        path,
        expect: "tokenizer.ggml.tokens",
    });

    // NaN weights: loads, then every logit is NaN.
    let mut nan = weights.clone();
    for (name, (values, _)) in nan.iter_mut() {
        if name == "output_norm.weight" {
            values.iter_mut().for_each(|v| *v = f32::NAN);
        }
    }
    let path = dir.join("weights-nan.gguf");
    write_gguf_edited(arch, &nan, &opts, Vec::new(), &path);
    cases.push(HostileCase {
        name: "weights-nan",
        path,
        expect: "non-finite logit",
    });

    // Byte-level damage of a valid file.
    let valid = dir.join("valid.gguf");
    write_gguf_edited(arch, &weights, &opts, Vec::new(), &valid);
    let bytes = std::fs::read(&valid).unwrap();
    let patched = |offset: usize, with: &[u8]| {
        let mut b = bytes.clone();
        b[offset..offset + with.len()].copy_from_slice(with);
        b
    };
    let raw: Vec<(&'static str, Vec<u8>, &'static str)> = vec![
        (
            "truncated-in-data",
            bytes[..bytes.len() * 3 / 5].to_vec(),
            "beyond the end",
        ),
        ("truncated-in-header", bytes[..40].to_vec(), "gguf"),
        (
            "tensor-count-lie",
            patched(8, &(1u64 << 40).to_le_bytes()),
            "tensor_count",
        ),
        (
            "kv-count-lie",
            patched(16, &(1u64 << 28).to_le_bytes()),
            "metadata",
        ),
        (
            "key-length-lie",
            patched(24, &u64::MAX.to_le_bytes()),
            "string length",
        ),
        ("bad-magic", patched(0, b"GGUG"), "magic"),
        ("empty", Vec::new(), "not a GGUF"),
    ];
    for (name, data, expect) in raw {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, data).unwrap();
        cases.push(HostileCase { name, path, expect });
    }
    cases
}
