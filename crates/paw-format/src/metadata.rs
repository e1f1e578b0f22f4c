//! Wire forms of the metadata and texts sections (bincode 2.0.1) and of the tensor index.
//!
//! These mirror `spec/paw-format.md` field by field; the in-memory types in `program.rs` may grow
//! without silently changing the file format.

use bincode::config::{Configuration, Fixint, Limit, LittleEndian};
use bincode::error::DecodeError;

use crate::contract::OutputContract;
use crate::error::{FormatError, Result, TensorRole};
use crate::layout::{
    FieldReader, SectionKind, MAX_CONTRACT_LEN, MAX_METADATA_LEN, MAX_TEXTS_LEN, TENSOR_ENTRY_LEN,
};
use crate::program::{
    GenerationConfig, InterpreterId, Program, Provenance, TargetModule, TensorDtype,
};

/// Fixed-width little-endian integers (a reader in another language needs no varint decoder) and
/// a byte limit so a hostile length prefix fails before any allocation.
type Config<const N: usize> = Configuration<LittleEndian, Fixint, Limit<N>>;

const fn config<const N: usize>() -> Config<N> {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
        .with_limit::<N>()
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) struct MetadataV1 {
    pub interpreter: InterpreterV1,
    pub generation: GenerationV1,
    pub provenance: ProvenanceV1,
    pub adapter: Option<AdapterV1>,
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) struct InterpreterV1 {
    pub architecture: String,
    pub name: String,
    pub weights_hash: String,
    pub tokenizer_hash: String,
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) struct GenerationV1 {
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub temperature: f32,
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) struct ProvenanceV1 {
    pub compiler: String,
    pub compiler_version: String,
    pub teacher_hash: Option<String>,
    pub seed: u64,
    /// Sorted by key, keys unique (checked on read).
    pub hyperparameters: Vec<(String, String)>,
    pub report: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, bincode::Encode, bincode::Decode)]
pub(crate) struct AdapterV1 {
    pub rank: u32,
    pub alpha: f32,
}

#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) struct TextsV1 {
    pub spec: String,
    pub pseudo_program: String,
    pub prompt_template: String,
}

/// The contract section (kind 5): a `u32` tag, then the variant's one field.
#[derive(Debug, bincode::Encode, bincode::Decode)]
pub(crate) enum ContractV1 {
    Labels(Vec<String>),
    JsonSchema(String),
    Pattern(String),
    Grammar(String),
    Free(u32),
}

impl ContractV1 {
    pub(crate) fn from_contract(c: &OutputContract) -> Self {
        match c {
            OutputContract::Labels { labels } => Self::Labels(labels.clone()),
            OutputContract::JsonSchema { schema } => Self::JsonSchema(schema.clone()),
            OutputContract::Pattern { regex } => Self::Pattern(regex.clone()),
            OutputContract::Grammar { lark } => Self::Grammar(lark.clone()),
            OutputContract::Free { max_chars } => Self::Free(*max_chars),
        }
    }

    pub(crate) fn into_contract(self) -> OutputContract {
        match self {
            Self::Labels(labels) => OutputContract::Labels { labels },
            Self::JsonSchema(schema) => OutputContract::JsonSchema { schema },
            Self::Pattern(regex) => OutputContract::Pattern { regex },
            Self::Grammar(lark) => OutputContract::Grammar { lark },
            Self::Free(max_chars) => OutputContract::Free { max_chars },
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        bincode::encode_to_vec(self, config::<MAX_CONTRACT_LEN>()).map_err(|e| {
            FormatError::Encode {
                reason: e.to_string(),
            }
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        decode_exact(SectionKind::CONTRACT, bytes, config::<MAX_CONTRACT_LEN>())
    }
}

impl MetadataV1 {
    pub(crate) fn from_program(p: &Program) -> Self {
        let i = &p.interpreter;
        let g = &p.generation;
        let pr = &p.provenance;
        let pairs = |m: &std::collections::BTreeMap<String, String>| {
            m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        Self {
            interpreter: InterpreterV1 {
                architecture: i.architecture.clone(),
                name: i.name.clone(),
                weights_hash: i.weights_hash.clone(),
                tokenizer_hash: i.tokenizer_hash.clone(),
            },
            generation: GenerationV1 {
                max_tokens: g.max_tokens,
                stop: g.stop.clone(),
                temperature: g.temperature,
            },
            provenance: ProvenanceV1 {
                compiler: pr.compiler.clone(),
                compiler_version: pr.compiler_version.clone(),
                teacher_hash: pr.teacher_hash.clone(),
                seed: pr.seed,
                hyperparameters: pairs(&pr.hyperparameters),
                report: pairs(&pr.report),
            },
            adapter: p.adapter.as_ref().map(|a| AdapterV1 {
                rank: a.rank,
                alpha: a.alpha,
            }),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        bincode::encode_to_vec(self, config::<MAX_METADATA_LEN>()).map_err(|e| {
            FormatError::Encode {
                reason: e.to_string(),
            }
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        decode_exact(SectionKind::METADATA, bytes, config::<MAX_METADATA_LEN>())
    }

    /// Splits into in-memory parts; map keys must be strictly increasing so that one program has
    /// one encoding.
    pub(crate) fn into_parts(
        self,
    ) -> Result<(
        InterpreterId,
        GenerationConfig,
        Provenance,
        Option<AdapterV1>,
    )> {
        let i = self.interpreter;
        let g = self.generation;
        let p = self.provenance;
        Ok((
            InterpreterId {
                architecture: i.architecture,
                name: i.name,
                weights_hash: i.weights_hash,
                tokenizer_hash: i.tokenizer_hash,
            },
            GenerationConfig {
                max_tokens: g.max_tokens,
                stop: g.stop,
                temperature: g.temperature,
            },
            Provenance {
                compiler: p.compiler,
                compiler_version: p.compiler_version,
                teacher_hash: p.teacher_hash,
                seed: p.seed,
                hyperparameters: sorted_map("hyperparameters", p.hyperparameters)?,
                report: sorted_map("report", p.report)?,
            },
            self.adapter,
        ))
    }
}

impl TextsV1 {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        bincode::encode_to_vec(self, config::<MAX_TEXTS_LEN>()).map_err(|e| FormatError::Encode {
            reason: e.to_string(),
        })
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        decode_exact(SectionKind::TEXTS, bytes, config::<MAX_TEXTS_LEN>())
    }
}

fn sorted_map(
    field: &'static str,
    entries: Vec<(String, String)>,
) -> Result<std::collections::BTreeMap<String, String>> {
    let mut map = std::collections::BTreeMap::new();
    for (k, v) in entries {
        if map.last_key_value().is_some_and(|(last, _)| *last >= k) {
            return Err(FormatError::UnsortedMap { field, key: k });
        }
        map.insert(k, v);
    }
    Ok(map)
}

/// Decodes one value that must use every byte of the section.
fn decode_exact<T: bincode::Decode<()>, const N: usize>(
    kind: SectionKind,
    bytes: &[u8],
    config: Config<N>,
) -> Result<T> {
    let (value, used) = bincode::decode_from_slice(bytes, config).map_err(|e| match e {
        DecodeError::Utf8 { inner } => FormatError::BadUtf8 {
            kind,
            reason: inner.to_string(),
        },
        other => FormatError::Decode {
            kind,
            reason: other.to_string(),
        },
    })?;
    if used != bytes.len() {
        return Err(FormatError::TrailingBytes {
            what: match kind {
                SectionKind::METADATA => "the metadata",
                SectionKind::CONTRACT => "the contract",
                _ => "the texts",
            },
            found: (bytes.len() - used) as u64,
        });
    }
    Ok(value)
}

/// One 40-byte row of the tensor index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TensorEntry {
    pub layer: u32,
    pub module_code: u8,
    pub role_code: u8,
    pub dtype_code: u8,
    pub reserved: u8,
    pub shape: [u64; 2],
    /// Relative to the start of the tensor-data section.
    pub offset: u64,
    pub len: u64,
}

impl TensorEntry {
    pub(crate) fn new(
        layer: u32,
        module: TargetModule,
        role: TensorRole,
        dtype: TensorDtype,
        shape: [u64; 2],
        offset: u64,
        len: u64,
    ) -> Self {
        Self {
            layer,
            module_code: module.code(),
            role_code: role.code(),
            dtype_code: dtype.ggml_type(),
            reserved: 0,
            shape,
            offset,
            len,
        }
    }

    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.layer.to_le_bytes());
        out.extend_from_slice(&[
            self.module_code,
            self.role_code,
            self.dtype_code,
            self.reserved,
        ]);
        out.extend_from_slice(&self.shape[0].to_le_bytes());
        out.extend_from_slice(&self.shape[1].to_le_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
    }

    /// Splits an index section into rows (the length must be a multiple of the row size).
    pub(crate) fn decode_all(bytes: &[u8]) -> Result<Vec<Self>> {
        if !(bytes.len() as u64).is_multiple_of(TENSOR_ENTRY_LEN) {
            return Err(FormatError::BadTensorIndexLen {
                len: bytes.len() as u64,
                entry: TENSOR_ENTRY_LEN,
            });
        }
        Ok(bytes
            .chunks_exact(TENSOR_ENTRY_LEN as usize)
            .map(|row| {
                let mut r = FieldReader { bytes: row, pos: 0 };
                Self {
                    layer: r.u32(),
                    module_code: r.u8(),
                    role_code: r.u8(),
                    dtype_code: r.u8(),
                    reserved: r.u8(),
                    shape: [r.u64(), r.u64()],
                    offset: r.u64(),
                    len: r.u64(),
                }
            })
            .collect())
    }
}
