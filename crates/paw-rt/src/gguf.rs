//! GGUF reading: metadata helpers, the architecture description, and the interpreter identity
//! (weights hash and canonical tokenizer hash, specified in `spec/interpreter-identity.md`).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use paw_format::TargetModule;

use crate::error::{Error, Result};

/// Which transformer variant the weights implement; the forward pass is shared and these
/// flags select the differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Qwen3,
}

impl Architecture {
    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "llama",
            Self::Qwen2 => "qwen2",
            Self::Qwen3 => "qwen3",
        }
    }
}

/// Hyperparameters of a decoder-only model, read from `{arch}.*` GGUF keys or a Hugging Face
/// `config.json` (`crate::hf`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub n_layers: usize,
    pub hidden: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rms_eps: f64,
    pub context_length: usize,
    /// llama.cpp stores llama q/k weights permuted for interleaved-pair rotation; Qwen uses
    /// the NeoX half-split rotation.
    pub rope_interleaved: bool,
    /// Qwen2 has biases on q, k and v.
    pub qkv_bias: bool,
    /// Qwen3 applies an RMSNorm per head to q and k before rotation.
    pub qk_norm: bool,
}

impl ModelConfig {
    /// `[in_features, out_features]` of a projection, given the feed-forward width (which the
    /// configuration does not hold: it is the first gate weight's).
    pub fn projection_dims(&self, ffn: usize, m: TargetModule) -> [usize; 2] {
        let q = self.n_heads * self.head_dim;
        let kv = self.n_kv_heads * self.head_dim;
        match m {
            TargetModule::Q => [self.hidden, q],
            TargetModule::K | TargetModule::V => [self.hidden, kv],
            TargetModule::O => [q, self.hidden],
            TargetModule::Gate | TargetModule::Up => [self.hidden, ffn],
            TargetModule::Down => [ffn, self.hidden],
        }
    }

    /// Rotary embedding tables `(cos, sin)`, each `[positions, head_dim / 2]`, in f32: the one
    /// table the model uses, running and training alike.
    pub(crate) fn rope_tables(
        &self,
        positions: usize,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        let (head_dim, half) = (self.head_dim, self.head_dim / 2);
        // f32 arithmetic as in candle-transformers' llama/qwen2 and llama.cpp: quantized models
        // amplify last-bit differences (8-bit activation rounding), so bit-compatible tables
        // matter.
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, half), device)?;
        let pos = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok((freqs.cos()?, freqs.sin()?))
    }

    pub fn from_gguf(ct: &Content) -> Result<Self> {
        let arch_name = md_str(ct, "general.architecture")?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            other => return Err(Error::UnsupportedArchitecture(other.to_string())),
        };
        let a = arch_name;
        let hidden = md_usize(ct, &format!("{a}.embedding_length"))?;
        let n_heads = md_usize(ct, &format!("{a}.attention.head_count"))?;
        let n_kv_heads = md_u32_opt(ct, &format!("{a}.attention.head_count_kv"))?
            .map_or(n_heads, |v| v as usize);
        let head_dim = match md_u32_opt(ct, &format!("{a}.attention.key_length"))? {
            Some(v) => v as usize,
            None => hidden / n_heads.max(1),
        };
        let rope_theta = match ct.metadata.get(&format!("{a}.rope.freq_base")) {
            Some(v) => v.to_f32().map_err(|_| Error::BadMetadata {
                key: format!("{a}.rope.freq_base"),
                expected: "f32",
            })?,
            None => 10_000.0,
        };
        let eps_key = format!("{a}.attention.layer_norm_rms_epsilon");
        let rms_eps = md(ct, &eps_key)?.to_f32().map_err(|_| Error::BadMetadata {
            key: eps_key.clone(),
            expected: "f32",
        })? as f64;
        let config = Self {
            architecture,
            n_layers: md_usize(ct, &format!("{a}.block_count"))?,
            hidden,
            n_heads,
            n_kv_heads,
            head_dim,
            rope_theta,
            rms_eps,
            context_length: md_usize(ct, &format!("{a}.context_length"))?,
            rope_interleaved: architecture == Architecture::Llama,
            qkv_bias: architecture == Architecture::Qwen2,
            qk_norm: architecture == Architecture::Qwen3,
        };
        config
            .check()
            .map_err(|(field, expected)| Error::BadMetadata {
                key: format!("{a}.{}", gguf_key(field)),
                expected,
            })?;
        Ok(config)
    }
}

/// The GGUF key (after `{arch}.`) of a configuration field named as in `config.json`.
fn gguf_key(field: &str) -> &str {
    match field {
        "num_hidden_layers" => "block_count",
        "hidden_size" => "embedding_length",
        "num_attention_heads" => "attention.head_count",
        "num_key_value_heads" => "attention.head_count_kv",
        "head_dim" => "attention.key_length",
        "rope_theta" => "rope.freq_base",
        "rms_norm_eps" => "attention.layer_norm_rms_epsilon",
        "max_position_embeddings" => "context_length",
        other => other,
    }
}

/// Largest sane values of a model's shape: far above any model paw can run on a CPU, far below
/// what would make a loader allocate without bound.
const MAX_LAYERS: usize = 1024;
const MAX_WIDTH: usize = 1 << 17;
const MAX_HEADS: usize = 1 << 12;
const MAX_CONTEXT: usize = 1 << 24;
/// Largest `general.alignment` accepted (llama.cpp requires a power of two).
const MAX_ALIGNMENT: u64 = 1 << 16;
/// Nesting depth of GGUF array values accepted (tokenizer arrays are depth 1).
const MAX_VALUE_DEPTH: usize = 4;

impl ModelConfig {
    /// The checks every source of a configuration (GGUF metadata, `config.json`) passes
    /// through: counts positive and capped, heads dividing evenly, floats finite. On failure,
    /// the offending field (named as in `config.json`) and what it must be.
    pub(crate) fn check(&self) -> std::result::Result<(), (&'static str, &'static str)> {
        let capped = |v: usize, max: usize| v >= 1 && v <= max;
        if !capped(self.n_layers, MAX_LAYERS) {
            return Err(("num_hidden_layers", "between 1 and 1024"));
        }
        if !capped(self.hidden, MAX_WIDTH) {
            return Err(("hidden_size", "between 1 and 131072"));
        }
        if !capped(self.n_heads, MAX_HEADS) {
            return Err(("num_attention_heads", "between 1 and 4096"));
        }
        if !capped(self.n_kv_heads, self.n_heads) || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return Err((
                "num_key_value_heads",
                "a positive divisor of num_attention_heads",
            ));
        }
        if !capped(self.head_dim, MAX_WIDTH) || !self.head_dim.is_multiple_of(2) {
            return Err(("head_dim", "a positive even number up to 131072"));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(("rope_theta", "a finite positive number"));
        }
        if !(self.rms_eps.is_finite() && self.rms_eps >= 0.0) {
            return Err(("rms_norm_eps", "a finite non-negative number"));
        }
        if !capped(self.context_length, MAX_CONTEXT) {
            return Err(("max_position_embeddings", "between 1 and 16777216"));
        }
        Ok(())
    }
}

/// Reads a GGUF header with the checks candle's reader lacks: `general.alignment` must be a
/// power of two (0 divides by zero inside candle), and every tensor's data must lie inside the
/// file with a size its shape and type agree on (so reading a tensor never allocates more
/// than the file holds).
pub fn read_content<R: Read + Seek>(reader: &mut R) -> Result<Content> {
    let io = candle_core::Error::from;
    let start = reader.stream_position().map_err(io)?;
    let file_size = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    // The walk checks what candle's reader does not. Where it cannot walk the metadata (an
    // unknown type, a length past the end, deep nesting), candle's reader reports the damage;
    // a file candle then accepts anyway is refused, so nothing unchecked gets through.
    let walked = walk_metadata(reader, file_size).ok().flatten();
    if let Some(walked) = &walked {
        if let Some(key) = &walked.duplicate_key {
            return Err(Error::BadMetadata {
                key: key.clone(),
                expected: "one entry per key (this key appears twice)",
            });
        }
        if let Some(alignment) = walked.alignment {
            if !(alignment.is_power_of_two() && alignment <= MAX_ALIGNMENT) {
                return Err(Error::BadMetadata {
                    key: "general.alignment".into(),
                    expected: "a power of two up to 65536",
                });
            }
        }
    }
    reader.seek(SeekFrom::Start(start)).map_err(io)?;
    let ct = Content::read(reader)?;
    if walked.is_none() {
        return Err(Error::BadMetadata {
            key: "(metadata)".into(),
            expected: "values of known types nested at most 4 deep",
        });
    }
    for (name, info) in &ct.tensor_infos {
        let bad = |why: &'static str| Error::BadTensor {
            name: name.clone(),
            why,
        };
        let dims = info.shape.dims();
        let elements = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad("its element count overflows"))?;
        let block = info.ggml_dtype.block_size();
        if dims.last().is_some_and(|&d| d % block != 0) {
            return Err(bad("its rows are not whole blocks of its type"));
        }
        let bytes = (elements / block)
            .checked_mul(info.ggml_dtype.type_size())
            .ok_or_else(|| bad("its size overflows"))? as u64;
        let end = ct
            .tensor_data_offset
            .checked_add(info.offset)
            .and_then(|o| o.checked_add(bytes))
            .ok_or_else(|| bad("its offset overflows"))?;
        if end > file_size {
            return Err(bad("its data lies beyond the end of the file"));
        }
    }
    Ok(ct)
}

fn read_u32<R: Read>(r: &mut R) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// A GGUF length: 32 bits in version 1, 64 after.
fn read_len<R: Read>(r: &mut R, v1: bool) -> std::io::Result<u64> {
    if v1 {
        return read_u32(r).map(u64::from);
    }
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// What walking a GGUF header's metadata finds.
struct WalkedMetadata {
    /// The value of `general.alignment` where it has a type candle reads it as.
    alignment: Option<u64>,
    /// A key that appears more than once (candle keeps the last, llama.cpp refuses the file).
    duplicate_key: Option<String>,
}

/// Walks the metadata without storing values (they are skipped, lengths checked against the
/// file). `None` when the walk cannot go on (not a GGUF file, an unknown type, a length past
/// the end, nesting deeper than [`MAX_VALUE_DEPTH`]); I/O errors likewise end it.
fn walk_metadata<R: Read + Seek>(
    r: &mut R,
    file_size: u64,
) -> std::io::Result<Option<WalkedMetadata>> {
    if read_u32(r)? != 0x4655_4747 {
        return Ok(None);
    }
    let v1 = read_u32(r)? == 1;
    let _tensors = read_len(r, v1)?;
    let kvs = read_len(r, v1)?;
    let mut walked = WalkedMetadata {
        alignment: None,
        duplicate_key: None,
    };
    let mut keys = std::collections::HashSet::new();
    for _ in 0..kvs {
        let key_len = read_len(r, v1)?;
        if key_len > remaining(r, file_size)? {
            return Ok(None);
        }
        let mut key = vec![0u8; key_len as usize];
        r.read_exact(&mut key)?;
        let ty = read_u32(r)?;
        if key == b"general.alignment" && fixed_size(ty).is_some_and(|n| n <= 4) {
            walked.alignment = read_uint(r, ty)?;
        } else if !skip_value(r, ty, v1, file_size, 0)? {
            return Ok(None);
        }
        // candle keys its map by the lossy UTF-8 text of the key (NULs trimmed at the end).
        let text = String::from_utf8_lossy(&key)
            .trim_end_matches('\0')
            .to_string();
        if !keys.insert(text.clone()) && walked.duplicate_key.is_none() {
            walked.duplicate_key = Some(text);
        }
    }
    Ok(Some(walked))
}

fn remaining<R: Seek>(r: &mut R, file_size: u64) -> std::io::Result<u64> {
    Ok(file_size.saturating_sub(r.stream_position()?))
}

/// An unsigned (or non-negative signed) integer value of GGUF type `ty` (1, 2 or 4 bytes), as
/// candle reads `general.alignment`; `None` for a negative one or a float or bool (candle then
/// uses its default).
fn read_uint<R: Read>(r: &mut R, ty: u32) -> std::io::Result<Option<u64>> {
    let mut b = [0u8; 8];
    let size = fixed_size(ty).unwrap_or(0) as usize;
    r.read_exact(&mut b[..size])?;
    if !matches!(ty, 0..=5) {
        return Ok(None);
    }
    let raw = u64::from_le_bytes(b);
    let negative = matches!(ty, 1 | 3 | 5) && (raw >> (size * 8 - 1)) & 1 == 1;
    Ok((!negative).then_some(raw))
}

/// Bytes of a GGUF value of fixed-size type `ty` (integers, floats, bool).
fn fixed_size(ty: u32) -> Option<u64> {
    match ty {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        _ => None,
    }
}

/// Skips one value of GGUF type `ty`; false if it cannot be skipped (unknown type, too deep,
/// longer than the file).
fn skip_value<R: Read + Seek>(
    r: &mut R,
    ty: u32,
    v1: bool,
    file_size: u64,
    depth: usize,
) -> std::io::Result<bool> {
    let fixed = fixed_size(ty);
    let skip = |r: &mut R, n: u64| -> std::io::Result<bool> {
        if n > remaining(r, file_size)? {
            return Ok(false);
        }
        r.seek(SeekFrom::Current(n as i64))?;
        Ok(true)
    };
    match (ty, fixed) {
        (_, Some(size)) => skip(r, size),
        (8, None) => {
            let n = read_len(r, v1)?;
            skip(r, n)
        }
        (9, None) if depth < MAX_VALUE_DEPTH => {
            let inner = read_u32(r)?;
            let n = read_len(r, v1)?;
            if n > remaining(r, file_size)? {
                return Ok(false);
            }
            if let Some(size) = fixed_size(inner) {
                return skip(r, n.saturating_mul(size));
            }
            for _ in 0..n {
                if !skip_value(r, inner, v1, file_size, depth + 1)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}

pub(crate) fn md<'a>(ct: &'a Content, key: &str) -> Result<&'a Value> {
    ct.metadata.get(key).ok_or_else(|| Error::MissingMetadata {
        key: key.to_string(),
    })
}

pub(crate) fn md_str<'a>(ct: &'a Content, key: &str) -> Result<&'a str> {
    md(ct, key)?
        .to_string()
        .map(String::as_str)
        .map_err(|_| Error::BadMetadata {
            key: key.to_string(),
            expected: "string",
        })
}

pub(crate) fn md_str_array(ct: &Content, key: &str) -> Result<Vec<String>> {
    let bad = || Error::BadMetadata {
        key: key.to_string(),
        expected: "array of strings",
    };
    md(ct, key)?
        .to_vec()
        .map_err(|_| bad())?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| bad()))
        .collect()
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::U8(x) => Some(u64::from(*x)),
        Value::U16(x) => Some(u64::from(*x)),
        Value::U32(x) => Some(u64::from(*x)),
        Value::U64(x) => Some(*x),
        Value::I8(x) => u64::try_from(*x).ok(),
        Value::I16(x) => u64::try_from(*x).ok(),
        Value::I32(x) => u64::try_from(*x).ok(),
        Value::I64(x) => u64::try_from(*x).ok(),
        _ => None,
    }
}

pub(crate) fn md_u32_opt(ct: &Content, key: &str) -> Result<Option<u32>> {
    match ct.metadata.get(key) {
        None => Ok(None),
        Some(v) => as_u64(v)
            .and_then(|x| u32::try_from(x).ok())
            .map(Some)
            .ok_or_else(|| Error::BadMetadata {
                key: key.to_string(),
                expected: "non-negative integer",
            }),
    }
}

fn md_usize(ct: &Content, key: &str) -> Result<usize> {
    md_u32_opt(ct, key)?
        .map(|v| v as usize)
        .ok_or_else(|| Error::MissingMetadata {
            key: key.to_string(),
        })
}

/// The identity of the GGUF model at `path` without loading its weights: architecture, `name`
/// (the file name when `None`), weights hash and tokenizer hash.
pub fn identity(path: &Path, name: Option<&str>) -> Result<paw_format::InterpreterId> {
    let file = File::open(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let ct = read_content(&mut BufReader::new(file))?;
    // An identity is only worth having for a file that can load: its configuration and
    // tokenizer must pass the checks loading applies.
    ModelConfig::from_gguf(&ct)?;
    crate::Tokenizer::from_gguf(&ct)?;
    Ok(paw_format::InterpreterId {
        architecture: md_str(&ct, "general.architecture")?.to_string(),
        name: name.map(str::to_string).unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }),
        weights_hash: weights_hash(path)?,
        tokenizer_hash: tokenizer_hash(&ct),
    })
}

/// `b3:<hex>` BLAKE3 of a file's bytes (paw-format's streaming hash), computed once per process
/// while the file stays the same on disk (same path, length and modification time).
pub fn weights_hash(path: &Path) -> Result<String> {
    crate::hash_cache::cached(&[path.to_path_buf()], || Ok(paw_format::hash_file(path)?))
}

/// [`weights_hash`] of the file `file` (opened from `path`), read through that handle: the
/// weights then loaded from the same handle are the ones hashed, whatever happens to the path.
pub(crate) fn weights_hash_of_open(path: &Path, file: &File) -> Result<String> {
    crate::hash_cache::cached_open(path, file, || {
        let io = |error| Error::Io {
            path: path.to_path_buf(),
            error,
        };
        let mut reader = file;
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut h = blake3::Hasher::new();
        h.update_reader(&mut reader).map_err(io)?;
        reader.seek(SeekFrom::Start(0)).map_err(io)?;
        Ok(format!("b3:{}", h.finalize().to_hex()))
    })
}

/// Domain separator that starts the canonical tokenizer encoding.
const TOKENIZER_HASH_DOMAIN: &[u8] = b"paw-tokenizer-v1\0";

/// `b3:<hex>` BLAKE3 of the canonical encoding of every `tokenizer.*` metadata key except
/// `tokenizer.chat_template*` (see `spec/interpreter-identity.md`).
pub fn tokenizer_hash(ct: &Content) -> String {
    let mut keys: Vec<&String> = ct
        .metadata
        .keys()
        .filter(|k| k.starts_with("tokenizer.") && !k.starts_with("tokenizer.chat_template"))
        .collect();
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let mut h = blake3::Hasher::new();
    h.update(TOKENIZER_HASH_DOMAIN);
    h.update(&(keys.len() as u64).to_le_bytes());
    for key in keys {
        put_bytes(&mut h, key.as_bytes());
        if let Some(v) = ct.metadata.get(key) {
            put_value(&mut h, v);
        }
    }
    format!("b3:{}", h.finalize().to_hex())
}

fn put_bytes(h: &mut blake3::Hasher, b: &[u8]) {
    h.update(&(b.len() as u64).to_le_bytes());
    h.update(b);
}

// Integers are widened to i128 so that a converter's choice of u32 vs i32 does not change
// the identity; floats are hashed as f64 bits.
fn put_value(h: &mut blake3::Hasher, v: &Value) {
    match v {
        Value::Bool(b) => {
            h.update(&[b'b', u8::from(*b)]);
        }
        Value::F32(x) => {
            h.update(b"f");
            h.update(&f64::from(*x).to_bits().to_le_bytes());
        }
        Value::F64(x) => {
            h.update(b"f");
            h.update(&x.to_bits().to_le_bytes());
        }
        Value::String(s) => {
            h.update(b"s");
            put_bytes(h, s.as_bytes());
        }
        Value::Array(items) => {
            h.update(b"a");
            h.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                put_value(h, item);
            }
        }
        Value::U8(x) => put_int(h, (*x).into()),
        Value::I8(x) => put_int(h, (*x).into()),
        Value::U16(x) => put_int(h, (*x).into()),
        Value::I16(x) => put_int(h, (*x).into()),
        Value::U32(x) => put_int(h, (*x).into()),
        Value::I32(x) => put_int(h, (*x).into()),
        Value::U64(x) => put_int(h, (*x).into()),
        Value::I64(x) => put_int(h, (*x).into()),
    }
}

fn put_int(h: &mut blake3::Hasher, x: i128) {
    h.update(b"i");
    h.update(&x.to_le_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod open_tests {
    use super::*;

    /// The hash describes the file held open, not whatever the path names later: a model
    /// swapped in after the open is neither hashed nor loaded.
    #[test]
    fn the_hash_of_an_open_file_ignores_a_later_swap_of_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.gguf");
        std::fs::write(&path, b"first model bytes").unwrap();
        let file = File::open(&path).unwrap();
        let other = dir.path().join("other.gguf");
        std::fs::write(&other, b"a different model").unwrap();
        std::fs::rename(&other, &path).unwrap();
        let held = weights_hash_of_open(&path, &file).unwrap();
        assert_eq!(
            held,
            format!("b3:{}", blake3::hash(b"first model bytes").to_hex())
        );
        assert_eq!(
            weights_hash(&path).unwrap(),
            format!("b3:{}", blake3::hash(b"a different model").to_hex())
        );
    }
}
