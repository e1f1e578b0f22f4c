//! Hugging Face model directories: `config.json`, the weights in `*.safetensors` (one file, or
//! shards listed by `model.safetensors.index.json`), `tokenizer.json`, and optionally
//! `tokenizer_config.json` and `generation_config.json`.
//!
//! Weights are read with `std::fs::read` (no memory map, so no `unsafe`), one file at a time,
//! and every tensor the model uses is converted to f32 (exact for bf16 and f16). They reach the
//! same loader as GGUF tensors through [`WeightSource`], under their GGUF names
//! ([`LAYER_TENSOR_NAMES`], [`MODEL_TENSOR_NAMES`]).
//!
//! Rotary layout: llama.cpp's converter permutes the rows of llama q/k projections so that GGUF
//! llama uses interleaved-pair rotation; Hugging Face checkpoints keep the half-split layout
//! for every architecture, so a configuration read here always has `rope_interleaved = false`.
//!
//! Identity (`spec/interpreter-identity.md`): `weights_hash` covers the `.safetensors` files and
//! `config.json`; `tokenizer_hash` covers `tokenizer.json`, `tokenizer_config.json` and
//! `generation_config.json`: every file that changes the forward pass or the tokens.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, SliceSafetensors};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::gguf::{Architecture, ModelConfig};
use crate::model::{RawWeight, WeightSource};
use crate::tokenizer::{HfSpecialTokens, Tokenizer};

pub const CONFIG_JSON: &str = "config.json";
pub const TOKENIZER_JSON: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_JSON: &str = "generation_config.json";
pub const SAFETENSORS_INDEX_JSON: &str = "model.safetensors.index.json";

/// Per-layer tensors, GGUF stem and Hugging Face stem:
/// `blk.{i}.{gguf}.{weight|bias}` is `model.layers.{i}.{hf}.{weight|bias}`.
pub(crate) const LAYER_TENSOR_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// Whole-model tensors: `{gguf}.weight` is `{hf}.weight`.
pub(crate) const MODEL_TENSOR_NAMES: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];

/// The Hugging Face path of an adapter target module inside a decoder layer
/// (`self_attn.q_proj`, `mlp.down_proj`, ...): what PEFT names its LoRA weights after.
pub fn hf_module_path(module: paw_format::TargetModule) -> &'static str {
    LAYER_TENSOR_NAMES
        .iter()
        .find(|(gguf, _)| *gguf == module.gguf_stem())
        .map_or("", |(_, hf)| hf)
}

/// The Hugging Face name of a runtime (GGUF) tensor name; `None` outside the tables.
pub(crate) fn hf_tensor_name(gguf: &str) -> Option<String> {
    let (stem, suffix) = gguf.rsplit_once('.')?;
    if !matches!(suffix, "weight" | "bias") {
        return None;
    }
    if let Some(rest) = stem.strip_prefix("blk.") {
        let (layer, module) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (_, hf) = LAYER_TENSOR_NAMES.iter().find(|(g, _)| *g == module)?;
        return Some(format!("model.layers.{layer}.{hf}.{suffix}"));
    }
    let (_, hf) = MODEL_TENSOR_NAMES.iter().find(|(g, _)| *g == stem)?;
    Some(format!("{hf}.{suffix}"))
}

/// `config.json`, checked: the model's hyperparameters and the special-token ids it declares.
#[derive(Debug, Clone)]
pub(crate) struct HfConfig {
    pub(crate) model: ModelConfig,
    pub(crate) tie_word_embeddings: bool,
    pub(crate) eos_token_ids: Vec<u32>,
    pub(crate) bos_token_id: Option<u32>,
}

/// Reads `path` as JSON ([`Error::Io`], [`Error::ConfigJson`]).
fn read_json(path: &Path) -> Result<Value> {
    parse_json(path, &read_bytes(path)?)
}

/// Largest configuration file read (`config.json`, `tokenizer_config.json`,
/// `generation_config.json`, the shard index): real ones are a few KiB (a tokenizer config with
/// its chat template tens of KiB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Largest `tokenizer.json` read: real ones are up to ~10 MiB (Qwen's is 7 MiB).
const MAX_TOKENIZER_JSON_BYTES: u64 = 64 << 20;

/// The whole file at `path`, refused when it holds more than `max` bytes (checked while
/// reading, so a file that grows meanwhile is caught too).
fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            max,
        });
    }
    Ok(bytes)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    read_capped(path, MAX_CONFIG_BYTES)
}

/// Parses `bytes` (read from `path`, which names it in errors) as JSON.
fn parse_json(path: &Path, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|error| Error::ConfigJson {
        path: path.to_path_buf(),
        error,
    })
}

/// The bytes of an optional file of a model directory: `None` when it is absent.
fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match read_bytes(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(other) => Err(other),
    }
}

/// Typed access to the keys of one JSON object, with errors naming the file.
struct Keys<'a> {
    path: &'a Path,
    obj: &'a serde_json::Map<String, Value>,
}

impl<'a> Keys<'a> {
    fn new(path: &'a Path, v: &'a Value) -> Result<Self> {
        let obj = v.as_object().ok_or_else(|| Error::BadConfigKey {
            path: path.to_path_buf(),
            key: "(top level)",
            expected: "a JSON object",
        })?;
        Ok(Self { path, obj })
    }

    /// The value of `key`; a JSON `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &'static str, expected: &'static str) -> Error {
        Error::BadConfigKey {
            path: self.path.to_path_buf(),
            key,
            expected,
        }
    }

    fn usize_opt(&self, key: &'static str) -> Result<Option<usize>> {
        self.get(key)
            .map(|v| {
                v.as_u64()
                    .and_then(|x| usize::try_from(x).ok())
                    .ok_or_else(|| self.bad(key, "a non-negative integer"))
            })
            .transpose()
    }

    fn usize(&self, key: &'static str) -> Result<usize> {
        self.usize_opt(key)?.ok_or_else(|| Error::MissingConfigKey {
            path: self.path.to_path_buf(),
            key,
        })
    }

    fn f64_opt(&self, key: &'static str) -> Result<Option<f64>> {
        self.get(key)
            .map(|v| v.as_f64().ok_or_else(|| self.bad(key, "a number")))
            .transpose()
    }

    fn bool_opt(&self, key: &'static str) -> Result<Option<bool>> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.bad(key, "true or false")))
            .transpose()
    }

    fn str_opt(&self, key: &'static str) -> Result<Option<&'a str>> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.bad(key, "a string")))
            .transpose()
    }

    /// A token id or a list of token ids (as `eos_token_id` may be).
    fn ids(&self, key: &'static str) -> Result<Vec<u32>> {
        let id = |v: &Value| {
            v.as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| self.bad(key, "a token id or a list of token ids"))
        };
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items.iter().map(id).collect(),
            Some(v) => Ok(vec![id(v)?]),
        }
    }

    fn unsupported(&self, key: &'static str, value: String, supported: &'static str) -> Error {
        Error::UnsupportedConfig {
            path: self.path.to_path_buf(),
            key,
            value,
            supported,
        }
    }
}

/// The architecture `config.json` names: `model_type`, or else the `architectures` class.
fn architecture(keys: &Keys<'_>) -> Result<Architecture> {
    let name = match keys.str_opt("model_type")? {
        Some(t) => t.to_string(),
        None => {
            let class = keys
                .get("architectures")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(Value::as_str)
                .ok_or_else(|| Error::MissingConfigKey {
                    path: keys.path.to_path_buf(),
                    key: "model_type",
                })?;
            match class {
                "LlamaForCausalLM" => "llama".to_string(),
                "Qwen2ForCausalLM" => "qwen2".to_string(),
                "Qwen3ForCausalLM" => "qwen3".to_string(),
                other => other.to_string(),
            }
        }
    };
    match name.as_str() {
        "llama" => Ok(Architecture::Llama),
        "qwen2" => Ok(Architecture::Qwen2),
        "qwen3" => Ok(Architecture::Qwen3),
        _ => Err(Error::UnsupportedArchitecture(name)),
    }
}

impl HfConfig {
    /// Checks a parsed `config.json` (`path` only names it in errors).
    pub(crate) fn from_json(path: &Path, v: &Value) -> Result<Self> {
        let k = Keys::new(path, v)?;
        let architecture = architecture(&k)?;
        if let Some(scaling) = k.get("rope_scaling") {
            return Err(Error::RopeScaling {
                path: path.to_path_buf(),
                value: scaling.to_string(),
            });
        }
        if let Some(act) = k.str_opt("hidden_act")? {
            if act != "silu" {
                return Err(k.unsupported("hidden_act", act.to_string(), "silu"));
            }
        }
        // Qwen2 always has q/k/v biases (its config's `attention_bias` is not read by
        // transformers); the others must not have any.
        if architecture != Architecture::Qwen2 && k.bool_opt("attention_bias")? == Some(true) {
            return Err(k.unsupported("attention_bias", "true".into(), "false"));
        }
        if k.bool_opt("mlp_bias")? == Some(true) {
            return Err(k.unsupported("mlp_bias", "true".into(), "false"));
        }
        if k.bool_opt("use_sliding_window")? == Some(true) {
            return Err(k.unsupported("use_sliding_window", "true".into(), "false"));
        }
        let hidden = k.usize("hidden_size")?;
        let n_heads = k.usize("num_attention_heads")?;
        let head_dim = match k.usize_opt("head_dim")? {
            Some(d) => d,
            // No heads: the check below names `num_attention_heads`.
            None if n_heads == 0 => 0,
            None if hidden % n_heads == 0 => hidden / n_heads,
            None => return Err(k.bad("head_dim", "present when hidden_size / heads is not whole")),
        };
        let model = ModelConfig {
            architecture,
            n_layers: k.usize("num_hidden_layers")?,
            hidden,
            n_heads,
            n_kv_heads: k.usize_opt("num_key_value_heads")?.unwrap_or(n_heads),
            head_dim,
            rope_theta: k.f64_opt("rope_theta")?.unwrap_or(10_000.0) as f32,
            rms_eps: k.f64_opt("rms_norm_eps")?.unwrap_or(1e-6),
            context_length: k.usize("max_position_embeddings")?,
            // Hugging Face checkpoints use the half-split rotation for every architecture.
            rope_interleaved: false,
            qkv_bias: architecture == Architecture::Qwen2,
            qk_norm: architecture == Architecture::Qwen3,
        };
        model
            .check()
            .map_err(|(field, expected)| k.bad(field, expected))?;
        Ok(Self {
            model,
            tie_word_embeddings: k.bool_opt("tie_word_embeddings")?.unwrap_or(false),
            eos_token_ids: k.ids("eos_token_id")?,
            bos_token_id: k.ids("bos_token_id")?.first().copied(),
        })
    }
}

/// A Hugging Face model directory whose `config.json` was read and checked.
#[derive(Debug)]
pub(crate) struct HfDir {
    pub(crate) dir: PathBuf,
    pub(crate) config: HfConfig,
    /// Every file that shapes the forward pass or the tokens, as read once: the hashes cover
    /// exactly the bytes that were parsed.
    config_json: Vec<u8>,
    tokenizer_json: Vec<u8>,
    tokenizer_config_json: Option<Vec<u8>>,
    generation_config_json: Option<Vec<u8>>,
}

/// The special tokens `config.json` (already checked as `config`) and the optional
/// `tokenizer_config.json` and `generation_config.json` of the directory `dir` declare.
fn special_tokens(
    dir: &Path,
    config: &HfConfig,
    tokenizer_config_json: Option<&[u8]>,
    generation_config_json: Option<&[u8]>,
) -> Result<HfSpecialTokens> {
    let mut specials = HfSpecialTokens {
        eos_token_ids: config.eos_token_ids.clone(),
        bos_token_id: config.bos_token_id,
        ..HfSpecialTokens::default()
    };
    if let Some(bytes) = generation_config_json {
        let generation = dir.join(GENERATION_CONFIG_JSON);
        let v = parse_json(&generation, bytes)?;
        let k = Keys::new(&generation, &v)?;
        specials.eos_token_ids.extend(k.ids("eos_token_id")?);
        if let Some(&bos) = k.ids("bos_token_id")?.first() {
            specials.bos_token_id = Some(bos);
        }
    }
    if let Some(bytes) = tokenizer_config_json {
        let tokenizer_config = dir.join(TOKENIZER_CONFIG_JSON);
        let v = parse_json(&tokenizer_config, bytes)?;
        let k = Keys::new(&tokenizer_config, &v)?;
        specials.add_bos_token = k.bool_opt("add_bos_token")?;
        // `bos_token` is a string or an AddedToken object with `content`.
        specials.bos_token = match k.get("bos_token") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => Some(
                v.get("content")
                    .and_then(Value::as_str)
                    .ok_or_else(|| k.bad("bos_token", "a token text or {\"content\": text}"))?
                    .to_string(),
            ),
        };
    }
    specials.eos_token_ids.sort_unstable();
    specials.eos_token_ids.dedup();
    Ok(specials)
}

/// Checks the configuration files of a Hugging Face model directory, given as bytes, the way
/// loading the directory does: `config.json` and the optional `tokenizer_config.json` and
/// `generation_config.json`. Returns the model's configuration and its special tokens; errors
/// name the files as if they were in the current directory. (The fuzz target
/// `fuzz/fuzz_targets/hf_config.rs` drives this.)
pub fn check_hf_configs(
    config_json: &[u8],
    tokenizer_config_json: Option<&[u8]>,
    generation_config_json: Option<&[u8]>,
) -> Result<(ModelConfig, HfSpecialTokens)> {
    let dir = Path::new("");
    let config_path = dir.join(CONFIG_JSON);
    let config = HfConfig::from_json(&config_path, &parse_json(&config_path, config_json)?)?;
    let specials = special_tokens(dir, &config, tokenizer_config_json, generation_config_json)?;
    Ok((config.model, specials))
}

fn require(dir: &Path, file: &'static str) -> Result<PathBuf> {
    let path = dir.join(file);
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::MissingModelFile {
            dir: dir.to_path_buf(),
            file,
        })
    }
}

impl HfDir {
    /// Reads `config.json`, `tokenizer.json` and the optional tokenizer and generation configs,
    /// and checks that weights are present; reads no weights yet.
    pub(crate) fn open(dir: &Path) -> Result<Self> {
        let config_path = require(dir, CONFIG_JSON)?;
        let config_json = read_bytes(&config_path)?;
        let config = HfConfig::from_json(&config_path, &parse_json(&config_path, &config_json)?)?;
        let tokenizer_json = read_capped(&require(dir, TOKENIZER_JSON)?, MAX_TOKENIZER_JSON_BYTES)?;
        if safetensors_files(dir)?.is_empty() {
            return Err(Error::MissingModelFile {
                dir: dir.to_path_buf(),
                file: "*.safetensors",
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            config_json,
            tokenizer_json,
            tokenizer_config_json: read_optional(&dir.join(TOKENIZER_CONFIG_JSON))?,
            generation_config_json: read_optional(&dir.join(GENERATION_CONFIG_JSON))?,
        })
    }

    /// The tokenizer of `tokenizer.json` with the special tokens the other files declare.
    pub(crate) fn tokenizer(&self) -> Result<Tokenizer> {
        let specials = special_tokens(
            &self.dir,
            &self.config,
            self.tokenizer_config_json.as_deref(),
            self.generation_config_json.as_deref(),
        )?;
        Tokenizer::from_tokenizer_json(&self.tokenizer_json, &specials)
    }

    /// `spec/interpreter-identity.md`: `tokenizer.json` and the two optional files that say
    /// which ids start and end text.
    pub(crate) fn tokenizer_hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        h.update(TOKENIZER_HASH_DOMAIN);
        put_file(&mut h, Some(&self.tokenizer_json));
        put_file(&mut h, self.tokenizer_config_json.as_deref());
        put_file(&mut h, self.generation_config_json.as_deref());
        format!("b3:{}", h.finalize().to_hex())
    }

    /// `spec/interpreter-identity.md`: the weight files' hash and `config.json`, whose values
    /// (rope_theta, rms_norm_eps, tied embeddings, ...) change the forward pass.
    pub(crate) fn weights_hash(&self) -> Result<String> {
        let files = safetensors_hash(&self.dir)?;
        let mut h = blake3::Hasher::new();
        h.update(WEIGHTS_HASH_DOMAIN);
        h.update(files.as_bytes());
        put_file(&mut h, Some(&self.config_json));
        Ok(format!("b3:{}", h.finalize().to_hex()))
    }

    /// Reads every weight the model uses into memory as f32.
    pub(crate) fn weights(&self, device: &Device) -> Result<SafetensorsSource> {
        let cfg = &self.config;
        let mut wanted = BTreeSet::new();
        for i in 0..cfg.model.n_layers {
            for suffix in ["weight", "bias"] {
                for (stem, _) in LAYER_TENSOR_NAMES {
                    wanted.extend(hf_tensor_name(&format!("blk.{i}.{stem}.{suffix}")));
                }
            }
        }
        for (stem, _) in MODEL_TENSOR_NAMES {
            if !(*stem == "output" && cfg.tie_word_embeddings) {
                wanted.extend(hf_tensor_name(&format!("{stem}.weight")));
            }
        }
        let files = self.weight_files()?;
        let mut tensors = HashMap::new();
        let mut converted = 0usize;
        for path in &files {
            let bytes = std::fs::read(path).map_err(|error| Error::Io {
                path: path.clone(),
                error,
            })?;
            let bad = |error| Error::Safetensors {
                path: path.clone(),
                error,
            };
            let file = SliceSafetensors::new(&bytes).map_err(bad)?;
            for (name, view) in file.tensors() {
                if !wanted.contains(&name) {
                    tracing::debug!(tensor = %name, file = %path.display(), "tensor not used, skipped");
                    continue;
                }
                let t = view.load(device).map_err(bad)?;
                let t = match t.dtype() {
                    DType::F32 => t,
                    DType::F16 | DType::BF16 => {
                        converted += 1;
                        t.to_dtype(DType::F32)?
                    }
                    other => {
                        return Err(Error::UnsupportedTensorDtype {
                            name,
                            dtype: format!("{other:?}").to_lowercase(),
                        })
                    }
                };
                if tensors.insert(name.clone(), t).is_some() {
                    return Err(Error::DuplicateTensor {
                        name,
                        path: path.clone(),
                    });
                }
            }
        }
        tracing::info!(
            dir = %self.dir.display(),
            files = files.len(),
            tensors = tensors.len(),
            converted_to_f32 = converted,
            "safetensors weights read"
        );
        Ok(SafetensorsSource {
            tensors,
            tied: cfg.tie_word_embeddings,
        })
    }

    /// The files to read: those the index names, or else every `.safetensors` file.
    fn weight_files(&self) -> Result<Vec<PathBuf>> {
        let index = self.dir.join(SAFETENSORS_INDEX_JSON);
        if !index.is_file() {
            return safetensors_files(&self.dir);
        }
        let v = read_json(&index)?;
        let bad = |reason: String| Error::SafetensorsIndex {
            path: index.clone(),
            reason,
        };
        let map = v
            .get("weight_map")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no `weight_map` object".to_string()))?;
        let mut names = BTreeSet::new();
        for (tensor, file) in map {
            let file = file
                .as_str()
                .ok_or_else(|| bad(format!("`{tensor}` maps to a non-string")))?;
            // Only plain file names in this directory: the index is untrusted input.
            let plain = Path::new(file).file_name().and_then(|n| n.to_str()) == Some(file);
            if !plain || !file.ends_with(".safetensors") {
                return Err(bad(format!(
                    "`{file}` is not the name of a .safetensors file in this directory"
                )));
            }
            names.insert(file.to_string());
        }
        names
            .into_iter()
            .map(|name| {
                let path = self.dir.join(&name);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(bad(format!("names `{name}`, which does not exist")))
                }
            })
            .collect()
    }
}

/// Tensors read from safetensors files, keyed by Hugging Face name, handed over once each.
#[derive(Debug)]
pub(crate) struct SafetensorsSource {
    tensors: HashMap<String, Tensor>,
    tied: bool,
}

impl WeightSource for SafetensorsSource {
    fn has(&self, name: &str) -> bool {
        // An untied model must have `lm_head.weight`: claiming it makes its absence an error.
        if name == "output.weight" {
            return !self.tied;
        }
        hf_tensor_name(name).is_some_and(|n| self.tensors.contains_key(&n))
    }

    fn source_name(&self, name: &str) -> String {
        hf_tensor_name(name).unwrap_or_else(|| name.to_string())
    }

    fn get(&mut self, name: &str, _device: &Device) -> Result<RawWeight> {
        let hf = hf_tensor_name(name).unwrap_or_else(|| name.to_string());
        match self.tensors.remove(&hf) {
            Some(t) => Ok(RawWeight::Dense(t)),
            None => Err(Error::MissingTensor { name: hf }),
        }
    }
}

/// The `.safetensors` files directly in `dir`, in byte-wise file-name order.
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |error| Error::Io {
        path: dir.to_path_buf(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "safetensors") && path.is_file() {
            files.push(path);
        }
    }
    files.sort_by(|a, b| {
        let name = |p: &PathBuf| p.file_name().map(|n| n.as_encoded_bytes().to_vec());
        name(a).cmp(&name(b))
    });
    Ok(files)
}

/// The weights hash of the model directory `dir` (`spec/interpreter-identity.md`: its
/// `.safetensors` files and `config.json`); the files' part is computed once per process while
/// they stay the same on disk.
pub fn weights_hash(dir: &Path) -> Result<String> {
    HfDir::open(dir)?.weights_hash()
}

/// BLAKE3 (64 hex digits) of every `*.safetensors` file directly in `dir`, concatenated in
/// byte-wise sorted name order; memoized per process while the files stay the same.
fn safetensors_hash(dir: &Path) -> Result<String> {
    let files = safetensors_files(dir)?;
    if files.is_empty() {
        return Err(Error::MissingModelFile {
            dir: dir.to_path_buf(),
            file: "*.safetensors",
        });
    }
    crate::hash_cache::cached(&files, || {
        let mut h = blake3::Hasher::new();
        for path in &files {
            let file = std::fs::File::open(path).map_err(|error| Error::Io {
                path: path.clone(),
                error,
            })?;
            h.update_reader(file).map_err(|error| Error::Io {
                path: path.clone(),
                error,
            })?;
        }
        Ok(h.finalize().to_hex().to_string())
    })
}

/// Largest safetensors header read (the `safetensors` crate's own limit).
const MAX_SAFETENSORS_HEADER: u64 = 100 << 20;

/// Checks the header of the safetensors file at `path` without reading its data: a JSON object
/// whose every tensor has a known type, a shape, and offsets inside the file that hold exactly
/// the shape's bytes.
fn check_safetensors_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let bad = |why: String| Error::SafetensorsHeader {
        path: path.to_path_buf(),
        why,
    };
    let io = |error| Error::Io {
        path: path.to_path_buf(),
        error,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let len = u64::from_le_bytes(len);
    if len > MAX_SAFETENSORS_HEADER || len > size - 8 {
        return Err(bad(format!(
            "header length {len} exceeds the file ({size} bytes) or the 100 MiB cap"
        )));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let data_size = size - 8 - len;
    let v: Value =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header is not a JSON object".into()))?;
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let element = match t.get("dtype").and_then(Value::as_str) {
            Some("F64" | "I64" | "U64") => 8u64,
            Some("F32" | "I32" | "U32") => 4,
            Some("F16" | "BF16" | "I16" | "U16") => 2,
            Some("F8_E4M3" | "F8_E5M2" | "I8" | "U8" | "BOOL") => 1,
            _ => return Err(bad(format!("tensor {name}: missing or unknown dtype"))),
        };
        let shape: Option<Vec<u64>> = t
            .get("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(Value::as_u64).collect());
        let bytes = shape
            .and_then(|dims| dims.iter().try_fold(element, |n, &d| n.checked_mul(d)))
            .ok_or_else(|| bad(format!("tensor {name}: missing or overflowing shape")))?;
        let offsets: Option<Vec<u64>> = t
            .get("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().map(Value::as_u64).collect());
        match offsets.as_deref() {
            Some(&[begin, end]) if begin <= end && end <= data_size && end - begin == bytes => {}
            _ => {
                return Err(bad(format!(
                    "tensor {name}: data offsets are not [begin, end] inside the file's \
                     {data_size} data bytes holding its shape's {bytes} bytes"
                )))
            }
        }
    }
    Ok(())
}

/// Domain separators of a directory's two hashes.
const WEIGHTS_HASH_DOMAIN: &[u8] = b"paw-hf-weights-v2\0";
const TOKENIZER_HASH_DOMAIN: &[u8] = b"paw-tokenizer-json-v2\0";

/// One file in a hash: byte 0 if absent; else byte 1, its length (u64 little-endian), its bytes.
fn put_file(h: &mut blake3::Hasher, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            h.update(&[0]);
        }
        Some(b) => {
            h.update(&[1]);
            h.update(&(b.len() as u64).to_le_bytes());
            h.update(b);
        }
    }
}

/// The identity of the model directory `dir` without loading its weights: architecture
/// (`model_type`), `name` (the directory name when `None`), weights hash and tokenizer hash.
pub fn identity(dir: &Path, name: Option<&str>) -> Result<paw_format::InterpreterId> {
    let d = HfDir::open(dir)?;
    // An identity is only worth having for a directory that can load (as for GGUF files): its
    // tokenizer must build and every weight file's header must describe data inside the file.
    d.tokenizer()?;
    for path in safetensors_files(dir)? {
        check_safetensors_header(&path)?;
    }
    Ok(paw_format::InterpreterId {
        architecture: d.config.model.architecture.name().to_string(),
        name: name.map(str::to_string).unwrap_or_else(|| path_name(dir)),
        weights_hash: d.weights_hash()?,
        tokenizer_hash: d.tokenizer_hash(),
    })
}

/// The last component of `path` (also for `.`-style paths, via the canonical path).
pub(crate) fn path_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .or_else(|| {
            std::fs::canonicalize(path)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_module_has_a_hugging_face_path() {
        for m in paw_format::TargetModule::ALL {
            assert!(hf_module_path(m).ends_with("_proj"), "{m:?}");
        }
        assert_eq!(
            hf_module_path(paw_format::TargetModule::Down),
            "mlp.down_proj"
        );
    }

    #[test]
    fn tensor_names_map_both_ways_of_the_table() {
        assert_eq!(
            hf_tensor_name("blk.3.attn_q.bias").as_deref(),
            Some("model.layers.3.self_attn.q_proj.bias")
        );
        assert_eq!(
            hf_tensor_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_tensor_name("output.weight").as_deref(),
            Some("lm_head.weight")
        );
        assert_eq!(hf_tensor_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_tensor_name("blk.0.attn_qkv.weight"), None);
        assert_eq!(hf_tensor_name("token_embd.scale"), None);
    }

    fn config(extra: Value) -> Value {
        let mut v = serde_json::json!({
            "model_type": "llama",
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 256,
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": null,
            "eos_token_id": [7, 9],
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    }

    #[test]
    fn config_json_maps_to_model_config() -> Result<()> {
        let p = Path::new("config.json");
        let c = HfConfig::from_json(p, &config(Value::Null))?;
        assert_eq!(c.model.architecture, Architecture::Llama);
        assert_eq!(c.model.head_dim, 16);
        assert_eq!(c.model.rope_theta, 500000.0);
        assert!(!c.model.rope_interleaved && !c.model.qkv_bias && !c.model.qk_norm);
        assert_eq!(c.eos_token_ids, vec![7, 9]);
        assert!(!c.tie_word_embeddings);
        let q3 = HfConfig::from_json(
            p,
            &config(serde_json::json!({"model_type": "qwen3", "head_dim": 32})),
        )?;
        assert_eq!(q3.model.head_dim, 32);
        assert!(q3.model.qk_norm && !q3.model.rope_interleaved);
        let by_class = HfConfig::from_json(
            p,
            &config(serde_json::json!({"model_type": null, "architectures": ["Qwen2ForCausalLM"]})),
        )?;
        assert!(by_class.model.qkv_bias);
        Ok(())
    }

    /// Abridged from the published `config.json` of Qwen/Qwen3-0.6B and
    /// Qwen/Qwen2.5-0.5B-Instruct (every key this module reads, and some it ignores).
    #[test]
    fn published_qwen_configs_are_read() -> Result<()> {
        let qwen3 = serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "attention_bias": false,
            "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
            "head_dim": 128, "hidden_act": "silu", "hidden_size": 1024,
            "intermediate_size": 3072, "max_position_embeddings": 40960,
            "max_window_layers": 28, "model_type": "qwen3", "num_attention_heads": 16,
            "num_hidden_layers": 28, "num_key_value_heads": 8, "rms_norm_eps": 1e-06,
            "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
            "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": true,
            "use_sliding_window": false, "vocab_size": 151936
        });
        let c = HfConfig::from_json(Path::new("qwen3/config.json"), &qwen3)?;
        assert_eq!(
            c.model,
            ModelConfig {
                architecture: Architecture::Qwen3,
                n_layers: 28,
                hidden: 1024,
                n_heads: 16,
                n_kv_heads: 8,
                head_dim: 128,
                rope_theta: 1e6,
                rms_eps: 1e-6,
                context_length: 40960,
                rope_interleaved: false,
                qkv_bias: false,
                qk_norm: true,
            }
        );
        assert!(c.tie_word_embeddings);
        assert_eq!(
            (c.eos_token_ids, c.bos_token_id),
            (vec![151645], Some(151643))
        );
        let qwen25 = serde_json::json!({
            "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
            "hidden_size": 896, "intermediate_size": 4864, "max_position_embeddings": 32768,
            "max_window_layers": 21, "model_type": "qwen2", "num_attention_heads": 14,
            "num_hidden_layers": 24, "num_key_value_heads": 2, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": true,
            "torch_dtype": "bfloat16", "use_cache": true, "use_sliding_window": false,
            "vocab_size": 151936
        });
        let c = HfConfig::from_json(Path::new("qwen2.5/config.json"), &qwen25)?;
        assert_eq!((c.model.head_dim, c.model.n_kv_heads), (64, 2));
        assert!(c.model.qkv_bias && !c.model.qk_norm && !c.model.rope_interleaved);
        Ok(())
    }

    #[test]
    fn unsupported_configs_are_typed_errors() {
        let p = Path::new("config.json");
        let err = |extra| HfConfig::from_json(p, &config(extra)).err();
        assert!(matches!(
            err(serde_json::json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}})),
            Some(Error::RopeScaling { .. })
        ));
        assert!(matches!(
            err(serde_json::json!({"model_type": "gemma"})),
            Some(Error::UnsupportedArchitecture(t)) if t == "gemma"
        ));
        assert!(matches!(
            err(serde_json::json!({"hidden_act": "gelu"})),
            Some(Error::UnsupportedConfig {
                key: "hidden_act",
                ..
            })
        ));
        assert!(matches!(
            err(serde_json::json!({"num_key_value_heads": 3})),
            Some(Error::BadConfigKey {
                key: "num_key_value_heads",
                ..
            })
        ));
        assert!(matches!(
            err(serde_json::json!({"hidden_size": "64"})),
            Some(Error::BadConfigKey {
                key: "hidden_size",
                ..
            })
        ));
        assert!(matches!(
            err(serde_json::json!({"max_position_embeddings": null})),
            Some(Error::MissingConfigKey {
                key: "max_position_embeddings",
                ..
            })
        ));
    }
}
