//! The hostile-input suite: files a crafted or damaged download could hold, each broken in one
//! way, with the words its error must contain. Every paw command that reads one must end in a
//! typed error, never a panic, an abort or unbounded memory
//! (`crates/paw-cli/tests/hostile.rs` runs them all through the binary).
//!
//! [`write_suite`] generates the small cases; they are committed in `fixtures/hostile/`
//! (`cargo xtask hostile` rewrites them, and a test checks that the committed files are exactly
//! what the generator writes). Cases that need a whole model's weights or many megabytes are
//! generated at test time instead ([`write_weighted_cases`], and the size-cap cases in the
//! test), to keep the repository small.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use paw_format::{Adapter, LoraPair, TargetModule, TensorDtype};

use crate::tiny_model::{
    hf_config, random_weights, tokenizer_json, vocab_size, write_gguf_edited, write_tiny_gguf,
    Arch, GgufOptions, HIDDEN,
};

/// What a hostile case is, which decides the commands it is fed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A model file or directory, given to `paw run --model` and `paw verify --interpreter`.
    Model,
    /// A `.paw` program for the tiny qwen2 model, given to `paw run` and `paw verify`.
    Program,
    /// A project directory (`paw.toml`, `t.tests.jsonl`), given to `paw test`.
    Project,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Model => "model",
            Self::Program => "program",
            Self::Project => "project",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Model, Self::Program, Self::Project]
            .into_iter()
            .find(|k| k.name() == name)
    }
}

/// One hostile input and what its error must say.
#[derive(Debug, Clone, PartialEq)]
pub struct HostileCase {
    pub name: String,
    pub kind: Kind,
    pub path: PathBuf,
    /// Text the error message must contain (the key or check that catches it).
    pub expect: String,
}

/// The index of a suite directory: one line per case, `kind name path expect` (tab-separated,
/// the path relative to the directory).
pub const INDEX_FILE: &str = "cases.tsv";

/// Writes the committed part of the suite into `dir` (and its index, [`INDEX_FILE`]).
/// Deterministic: the same bytes on every run.
pub fn write_suite(dir: &Path) -> Vec<HostileCase> {
    let mut cases = Vec::new();
    gguf_cases(&dir.join("gguf"), &mut cases);
    hf_cases(&dir.join("hf"), &mut cases);
    program_cases(&dir.join("programs"), &mut cases);
    project_cases(&dir.join("projects"), &mut cases);
    let index: String = cases
        .iter()
        .map(|c| {
            let rel = c.path.strip_prefix(dir).unwrap().to_str().unwrap();
            format!("{}\t{}\t{rel}\t{}\n", c.kind.name(), c.name, c.expect)
        })
        .collect();
    std::fs::write(dir.join(INDEX_FILE), index).unwrap();
    cases
}

/// The cases of a suite directory written by [`write_suite`] (`fixtures/hostile/`).
pub fn read_suite(dir: &Path) -> Vec<HostileCase> {
    let index = std::fs::read_to_string(dir.join(INDEX_FILE)).unwrap();
    index
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            assert_eq!(f.len(), 4, "index line {line:?}");
            HostileCase {
                kind: Kind::from_name(f[0]).unwrap(),
                name: f[1].to_string(),
                path: dir.join(f[2]),
                expect: f[3].to_string(),
            }
        })
        .collect()
}

fn push(cases: &mut Vec<HostileCase>, kind: Kind, name: &str, path: PathBuf, expect: &str) {
    cases.push(HostileCase {
        name: name.to_string(),
        kind,
        path,
        expect: expect.to_string(),
    });
}

/// GGUF files with broken metadata or bytes. They hold no tensors: every check that catches
/// them runs before any weight is read, and the tensors would make each file ~0.4 MB.
fn gguf_cases(dir: &Path, cases: &mut Vec<HostileCase>) {
    std::fs::create_dir_all(dir).unwrap();
    let arch = Arch::Qwen2;
    let weights = BTreeMap::new();
    let opts = GgufOptions::default();
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
        push(cases, Kind::Model, name, path, expect);
    }
    let path = dir.join("tokens-missing.gguf");
    write_gguf_edited(
        arch,
        &weights,
        &opts,
        vec![("tokenizer.ggml.tokens".into(), None)],
        &path,
    );
    push(
        cases,
        Kind::Model,
        "tokens-missing",
        path,
        "tokenizer.ggml.tokens",
    );

    // Byte-level damage of a valid header.
    let valid = dir.join("valid.gguf");
    write_gguf_edited(arch, &weights, &opts, Vec::new(), &valid);
    let bytes = std::fs::read(&valid).unwrap();
    std::fs::remove_file(&valid).unwrap();
    let patched = |offset: usize, with: &[u8]| {
        let mut b = bytes.clone();
        b[offset..offset + with.len()].copy_from_slice(with);
        b
    };
    let raw: Vec<(&'static str, Vec<u8>, &'static str)> = vec![
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
        push(cases, Kind::Model, name, path, expect);
    }
}

/// Hugging Face directories with a broken configuration, tokenizer or safetensors header. The
/// weights file is a stub where the check that catches the case runs before weights are read.
fn hf_cases(dir: &Path, cases: &mut Vec<HostileCase>) {
    let scratch = tempfile_dir(dir);
    let gguf = scratch.join("tiny.gguf");
    write_tiny_gguf(Arch::Qwen2, &gguf);
    let tokenizer = tokenizer_json(&gguf);
    std::fs::remove_dir_all(&scratch).unwrap();
    let config = hf_config(Arch::Qwen2);
    let stub = safetensors(
        r#"{"model.norm.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        4,
    );
    let write = |name: &str, config: &[u8], tokenizer: &[u8], weights: &[u8]| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("config.json"), config).unwrap();
        std::fs::write(d.join("tokenizer.json"), tokenizer).unwrap();
        std::fs::write(d.join("model.safetensors"), weights).unwrap();
        d
    };
    let edited = |key: &str, value: serde_json::Value| {
        let mut c = config.clone();
        c[key] = value;
        serde_json::to_vec_pretty(&c).unwrap()
    };
    let good = serde_json::to_vec_pretty(&config).unwrap();
    let configs: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "config-not-json",
            b"{\"hidden_size\": ".to_vec(),
            "config.json",
        ),
        ("config-array", b"[]".to_vec(), "JSON object"),
        (
            "config-heads-zero",
            edited("num_attention_heads", 0.into()),
            "num_attention_heads",
        ),
        (
            "config-layers-huge",
            edited("num_hidden_layers", u64::from(u32::MAX).into()),
            "num_hidden_layers",
        ),
        (
            "config-kv-heads-not-dividing",
            edited("num_key_value_heads", 3.into()),
            "num_key_value_heads",
        ),
        (
            "config-rope-negative",
            edited("rope_theta", (-1.0).into()),
            "rope_theta",
        ),
        (
            "config-width-string",
            edited("hidden_size", "64".into()),
            "hidden_size",
        ),
        (
            "config-eos-negative",
            edited("eos_token_id", (-1).into()),
            "eos_token_id",
        ),
    ];
    for (name, bytes, expect) in configs {
        let d = write(name, &bytes, &tokenizer, &stub);
        push(cases, Kind::Model, name, d, expect);
    }
    let d = write("tokenizer-not-json", &good, b"not json", &stub);
    push(cases, Kind::Model, "tokenizer-not-json", d, "tokenizer");
    // Safetensors headers: a length far beyond the file, JSON that is not, data past the end.
    let mut lie = u64::MAX.to_le_bytes().to_vec();
    lie.extend_from_slice(b"{}");
    let weights: Vec<(&str, Vec<u8>, &str)> = vec![
        ("safetensors-header-length-lie", lie, "safetensors"),
        (
            "safetensors-header-not-json",
            safetensors("{\"x", 0),
            "safetensors",
        ),
        (
            "safetensors-data-past-end",
            safetensors(
                r#"{"model.norm.weight":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}"#,
                16,
            ),
            "safetensors",
        ),
        (
            "safetensors-shape-lie",
            safetensors(
                r#"{"model.norm.weight":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}}"#,
                16,
            ),
            "safetensors",
        ),
        ("safetensors-empty", Vec::new(), "safetensors"),
    ];
    for (name, bytes, expect) in weights {
        let d = write(name, &good, &tokenizer, &bytes);
        push(cases, Kind::Model, name, d, expect);
    }
}

/// A safetensors file: its header (`json`) and `data` zero bytes.
fn safetensors(json: &str, data: usize) -> Vec<u8> {
    let mut b = (json.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(json.as_bytes());
    b.resize(b.len() + data, 0);
    b
}

/// A scratch directory beside `dir` (removed by the caller), for files the suite derives
/// from but does not hold.
fn tempfile_dir(dir: &Path) -> PathBuf {
    let scratch = dir.with_extension("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    scratch
}

/// Programs for the tiny qwen2 model ([`write_tiny_gguf`]): damaged containers, and adapters
/// the container accepts but the runtime must refuse.
fn program_cases(dir: &Path, cases: &mut Vec<HostileCase>) {
    std::fs::create_dir_all(dir).unwrap();
    let scratch = tempfile_dir(dir);
    let gguf = scratch.join("tiny.gguf");
    write_tiny_gguf(Arch::Qwen2, &gguf);
    let identity = paw_rt::identity(&gguf, Some("tiny-qwen2")).unwrap();
    std::fs::remove_dir_all(&scratch).unwrap();
    let program = |adapter| crate::program(&identity, crate::CHATML_TEMPLATE, adapter);
    let one_pair = |rank: u32, fill: f32| {
        let [fan_in, fan_out] = crate::tiny_model::dims(TargetModule::Q);
        let a = vec![fill; (u64::from(rank) * fan_in) as usize];
        let b = vec![0.01; (fan_out * u64::from(rank)) as usize];
        Adapter {
            rank,
            alpha: rank as f32,
            pairs: vec![LoraPair {
                layer: 0,
                module: TargetModule::Q,
                a: crate::encode_tensor(TensorDtype::F16, [u64::from(rank), fan_in], &a),
                b: crate::encode_tensor(TensorDtype::F16, [fan_out, u64::from(rank)], &b),
            }],
        }
    };
    let valid = program(None).to_bytes().unwrap();
    let mut wrong_magic = valid.clone();
    wrong_magic[..4].copy_from_slice(b"PAX\0");
    let programs: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", valid[..valid.len() / 2].to_vec(), "program"),
        ("wrong-magic", wrong_magic, "magic"),
        ("empty", Vec::new(), "program"),
        (
            "adapter-nan",
            program(Some(one_pair(4, f32::NAN))).to_bytes().unwrap(),
            "non-finite",
        ),
        (
            "adapter-rank-above-width",
            program(Some(one_pair(HIDDEN as u32 + 1, 0.01)))
                .to_bytes()
                .unwrap(),
            "rank",
        ),
    ];
    for (name, bytes, expect) in programs {
        let path = dir.join(format!("{name}.paw"));
        std::fs::write(&path, bytes).unwrap();
        push(cases, Kind::Program, name, path, expect);
    }
}

/// Project directories for `paw test` with a broken `paw.toml` or tests file.
fn project_cases(dir: &Path, cases: &mut Vec<HostileCase>) {
    let ok_toml = b"[[program]]\nname = \"t\"\n".as_slice();
    let projects: Vec<(&str, &[u8], &[u8], &str)> = vec![
        (
            "toml-unknown-key",
            b"[[program]]\nname = \"t\"\nsurprise = 1\n",
            b"",
            "unknown field",
        ),
        ("toml-not-utf8", b"name = \"\xff\"\n", b"", "UTF-8"),
        (
            "toml-name-missing",
            b"[[program]]\ntests = \"t.tests.jsonl\"\n",
            b"",
            "missing field",
        ),
        (
            "toml-threshold-out-of-range",
            b"[test]\nthreshold = 7.5\n[[program]]\nname = \"t\"\n",
            b"",
            "threshold",
        ),
        ("toml-not-toml", b"[[program]\nname = ", b"", "paw.toml"),
        ("jsonl-not-json", ok_toml, b"{\"input\": \n", "line 1"),
        (
            "jsonl-not-an-object",
            ok_toml,
            b"{\"input\": \"a\", \"output\": \"b\"}\n[1, 2]\n",
            "line 2",
        ),
        (
            "jsonl-output-missing",
            ok_toml,
            b"{\"input\": \"a\"}\n",
            "line 1",
        ),
        (
            "jsonl-not-utf8",
            ok_toml,
            b"{\"input\": \"\xc3\x28\", \"output\": \"b\"}\n",
            "line 1",
        ),
    ];
    for (name, toml, tests, expect) in projects {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("paw.toml"), toml).unwrap();
        std::fs::write(p.join("t.tests.jsonl"), tests).unwrap();
        push(cases, Kind::Project, name, p, expect);
    }
}

/// The cases that need the tiny model's whole weights (~0.4 MB each), written into `dir` at
/// test time: weights that make every logit NaN, and a file cut inside its tensor data.
pub fn write_weighted_cases(dir: &Path) -> Vec<HostileCase> {
    std::fs::create_dir_all(dir).unwrap();
    let arch = Arch::Qwen2;
    let weights = random_weights(arch, vocab_size());
    let opts = GgufOptions::default();
    let mut cases = Vec::new();
    let mut nan = weights.clone();
    for (name, (values, _)) in nan.iter_mut() {
        if name == "output_norm.weight" {
            values.iter_mut().for_each(|v| *v = f32::NAN);
        }
    }
    let path = dir.join("weights-nan.gguf");
    write_gguf_edited(arch, &nan, &opts, Vec::new(), &path);
    push(
        &mut cases,
        Kind::Model,
        "weights-nan",
        path,
        "non-finite logit",
    );
    let valid = dir.join("valid.gguf");
    write_gguf_edited(arch, &weights, &opts, Vec::new(), &valid);
    let bytes = std::fs::read(&valid).unwrap();
    let path = dir.join("truncated-in-data.gguf");
    std::fs::write(&path, &bytes[..bytes.len() * 3 / 5]).unwrap();
    push(
        &mut cases,
        Kind::Model,
        "truncated-in-data",
        path,
        "beyond the end",
    );
    cases
}
