//! The in-memory model of one compiled fuzzy function: what a `.paw` file holds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::contract::OutputContract;
use crate::error::{FormatError, Result, TensorError, TensorName, TensorRole};
use crate::layout::{MAX_MAP_ENTRIES, MAX_STOP_STRINGS, MAX_STRING_LEN, MAX_TENSORS, MAX_TEXT_LEN};
use crate::quant;

/// The literal that marks where the user's input goes in [`Program::prompt_template`].
pub const INPUT_PLACEHOLDER: &str = "{INPUT_PLACEHOLDER}";

/// One compiled fuzzy function.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The spec text the user wrote.
    pub spec: String,
    /// The pseudo-program (task restatement + examples) the interpreter sees.
    pub pseudo_program: String,
    /// The fully rendered prompt (chat template applied, generation prompt added) with exactly
    /// one [`INPUT_PLACEHOLDER`].
    pub prompt_template: String,
    /// Which base model this program was compiled for.
    pub interpreter: InterpreterId,
    /// The LoRA adapter; `None` for a prompt-only program.
    pub adapter: Option<Adapter>,
    pub generation: GenerationConfig,
    pub provenance: Provenance,
    /// The shape every answer must have; `None` for free text bounded only by
    /// [`GenerationConfig::max_tokens`] (every program written before format 1.1).
    pub contract: Option<OutputContract>,
}

/// Identity of the frozen base model a program runs on.
///
/// Serialised (field names and order as declared) by `paw inspect --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterpreterId {
    /// Architecture name as in GGUF `general.architecture`: `qwen2`, `qwen3`, `llama`.
    pub architecture: String,
    /// Human-readable model id (manifest id or file name); informational only.
    pub name: String,
    /// `b3:<hex>` BLAKE3 of the weights file bytes (GGUF file, or safetensors files concatenated
    /// in sorted file-name order).
    pub weights_hash: String,
    /// `b3:<hex>` BLAKE3 of the canonical tokenizer description (see spec/interpreter-identity.md).
    pub tokenizer_hash: String,
}

/// Projection a LoRA pair attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetModule {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// Storage type of an adapter tensor. Q8_0 and Q4_0 use ggml's block layout (32 values per
/// block, an f16 scale first) so that a runtime can hand the bytes to a ggml-compatible kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorDtype {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

impl TargetModule {
    pub const ALL: [TargetModule; 7] = [
        Self::Q,
        Self::K,
        Self::V,
        Self::O,
        Self::Gate,
        Self::Up,
        Self::Down,
    ];

    /// Position in [`TargetModule::ALL`]: the slot of a per-layer table of projections.
    pub const fn index(self) -> usize {
        match self {
            Self::Q => 0,
            Self::K => 1,
            Self::V => 2,
            Self::O => 3,
            Self::Gate => 4,
            Self::Up => 5,
            Self::Down => 6,
        }
    }

    /// Short lowercase name: `q`, `k`, `v`, `o`, `gate`, `up`, `down`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Q => "q",
            Self::K => "k",
            Self::V => "v",
            Self::O => "o",
            Self::Gate => "gate",
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    /// llama.cpp tensor-name stem (`attn_q`, ..., `ffn_down`).
    pub const fn gguf_stem(self) -> &'static str {
        match self {
            Self::Q => "attn_q",
            Self::K => "attn_k",
            Self::V => "attn_v",
            Self::O => "attn_output",
            Self::Gate => "ffn_gate",
            Self::Up => "ffn_up",
            Self::Down => "ffn_down",
        }
    }

    /// Code stored in the tensor index (the position in [`Self::ALL`]).
    pub(crate) const fn code(self) -> u8 {
        self.index() as u8
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

impl std::fmt::Display for TargetModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TensorDtype {
    /// The ggml type id, which is also the dtype code in the tensor index.
    pub const fn ggml_type(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q8_0 => 8,
        }
    }

    pub const fn from_ggml_type(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            2 => Some(Self::Q4_0),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
        }
    }

    /// Values per block along a row: 1 for float types, 32 for the ggml block types.
    pub const fn block_values(self) -> u64 {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q8_0 | Self::Q4_0 => quant::QK as u64,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q8_0 => quant::Q8_0_BLOCK_BYTES as u64,
            Self::Q4_0 => quant::Q4_0_BLOCK_BYTES as u64,
        }
    }

    /// Exact byte size of a row-major `[rows, cols]` tensor of this dtype.
    pub fn byte_len(self, shape: [u64; 2]) -> Result<u64, TensorError> {
        let [rows, cols] = shape;
        if cols % self.block_values() != 0 {
            return Err(TensorError::NotBlockAligned { dtype: self, cols });
        }
        (cols / self.block_values())
            .checked_mul(self.block_bytes())
            .and_then(|row| row.checked_mul(rows))
            .ok_or(TensorError::TooLarge { shape })
    }
}

impl std::fmt::Display for TensorDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 2-D tensor as stored: row-major `[rows, cols]`; quantized rows are blocked along `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub dtype: TensorDtype,
    pub shape: [u64; 2],
    pub bytes: Vec<u8>,
}

impl TensorData {
    /// Encodes row-major f32 values as `dtype` (ggml reference quantization for Q8_0/Q4_0).
    pub fn from_f32(
        dtype: TensorDtype,
        shape: [u64; 2],
        values: &[f32],
    ) -> Result<Self, TensorError> {
        let expected = value_count(shape)?;
        let found = values.len() as u64;
        if found != expected {
            return Err(TensorError::ValueCountMismatch {
                shape,
                expected,
                found,
            });
        }
        // Checks block alignment of the rows, not just of the flat value count.
        dtype.byte_len(shape)?;
        Ok(Self {
            dtype,
            shape,
            bytes: quant::quantize(dtype, values)?,
        })
    }

    /// Decodes the stored bytes to row-major f32 values.
    pub fn to_f32(&self) -> Result<Vec<f32>, TensorError> {
        let count = usize::try_from(value_count(self.shape)?)
            .map_err(|_| TensorError::TooLarge { shape: self.shape })?;
        let expected = self.dtype.byte_len(self.shape)?;
        if expected != self.bytes.len() as u64 {
            return Err(TensorError::ByteLenMismatch {
                dtype: self.dtype,
                values: count as u64,
                expected,
                found: self.bytes.len() as u64,
            });
        }
        let mut out = vec![0.0; count];
        quant::dequantize(self.dtype, &self.bytes, &mut out)?;
        Ok(out)
    }
}

fn value_count(shape: [u64; 2]) -> Result<u64, TensorError> {
    shape[0]
        .checked_mul(shape[1])
        .ok_or(TensorError::TooLarge { shape })
}

/// The A/B pair for one (layer, module). `a` is `[rank, in_features]`, `b` is
/// `[out_features, rank]`; the update is `(alpha / rank) * B · A`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub layer: u32,
    pub module: TargetModule,
    pub a: TensorData,
    pub b: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub rank: u32,
    pub alpha: f32,
    /// Sorted by (layer, module); at most one pair per (layer, module).
    pub pairs: Vec<LoraPair>,
}

/// Serialised (field names and order as declared) by `paw inspect --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationConfig {
    pub max_tokens: u32,
    /// Extra stop strings besides the model's end-of-generation tokens.
    pub stop: Vec<String>,
    /// `0.0` means greedy.
    pub temperature: f32,
}

/// Serialised (field names and order as declared) by `paw inspect --json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    pub compiler: String,
    pub compiler_version: String,
    /// `b3:<hex>` of the teacher weights file, or `None` when compiled from examples only.
    pub teacher_hash: Option<String>,
    pub seed: u64,
    /// Hyperparameters as text (learning rate, steps, ...), sorted by key.
    pub hyperparameters: BTreeMap<String, String>,
    /// Compile report (validation accuracy, data counts, ...), sorted by key.
    pub report: BTreeMap<String, String>,
}

impl Program {
    /// A program with no adapter, an empty pseudo-program and [`Provenance::unrecorded`]: the
    /// prompt template alone defines the function. For tests, examples and tools that run a
    /// prompt through the runtime; a compiler records its real provenance instead. Set other
    /// fields with struct-update syntax, e.g. `Program { adapter, ..Program::prompt_only(..) }`.
    pub fn prompt_only(
        spec: impl Into<String>,
        prompt_template: impl Into<String>,
        interpreter: InterpreterId,
        generation: GenerationConfig,
    ) -> Self {
        Self {
            spec: spec.into(),
            pseudo_program: String::new(),
            prompt_template: prompt_template.into(),
            interpreter,
            adapter: None,
            generation,
            provenance: Provenance::unrecorded(),
            contract: None,
        }
    }

    /// Checks every rule a `.paw` file enforces on its content; the writer refuses, and the reader
    /// reports, a program that breaks one.
    pub fn validate(&self) -> Result<()> {
        validate_texts(&self.spec, &self.pseudo_program, &self.prompt_template)?;
        self.interpreter.validate()?;
        self.generation.validate()?;
        self.provenance.validate()?;
        if let Some(adapter) = &self.adapter {
            adapter.validate()?;
        }
        if let Some(contract) = &self.contract {
            contract.validate()?;
        }
        Ok(())
    }
}

pub(crate) fn validate_texts(
    spec: &str,
    pseudo_program: &str,
    prompt_template: &str,
) -> Result<()> {
    check_len("spec", spec, MAX_TEXT_LEN)?;
    check_len("pseudo-program", pseudo_program, MAX_TEXT_LEN)?;
    check_len("prompt template", prompt_template, MAX_TEXT_LEN)?;
    let found = prompt_template.matches(INPUT_PLACEHOLDER).count();
    if found != 1 {
        return Err(FormatError::PlaceholderCount {
            placeholder: INPUT_PLACEHOLDER,
            found,
        });
    }
    Ok(())
}

impl InterpreterId {
    pub(crate) fn validate(&self) -> Result<()> {
        check_len(
            "interpreter architecture",
            &self.architecture,
            MAX_STRING_LEN,
        )?;
        check_len("interpreter name", &self.name, MAX_STRING_LEN)?;
        check_len(
            "interpreter weights hash",
            &self.weights_hash,
            MAX_STRING_LEN,
        )?;
        check_len(
            "interpreter tokenizer hash",
            &self.tokenizer_hash,
            MAX_STRING_LEN,
        )
    }
}

impl GenerationConfig {
    pub(crate) fn validate(&self) -> Result<()> {
        check_count("stop strings", self.stop.len(), MAX_STOP_STRINGS)?;
        for (index, stop) in self.stop.iter().enumerate() {
            if stop.is_empty() {
                return Err(FormatError::EmptyStopString { index });
            }
            check_len("stop string", stop, MAX_STRING_LEN)?;
        }
        // A minus sign (even on zero) would give the same behaviour two different encodings.
        let t = self.temperature;
        if !t.is_finite() || t.is_sign_negative() {
            return Err(FormatError::InvalidTemperature { found: t });
        }
        Ok(())
    }
}

impl Provenance {
    /// No compiler, version, teacher, hyperparameters or report; seed 0. For programs that no
    /// compiler produced (see [`Program::prompt_only`]).
    pub fn unrecorded() -> Self {
        Self {
            compiler: String::new(),
            compiler_version: String::new(),
            teacher_hash: None,
            seed: 0,
            hyperparameters: BTreeMap::new(),
            report: BTreeMap::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<()> {
        check_len("compiler", &self.compiler, MAX_STRING_LEN)?;
        check_len("compiler version", &self.compiler_version, MAX_STRING_LEN)?;
        if let Some(teacher) = &self.teacher_hash {
            check_len("teacher hash", teacher, MAX_STRING_LEN)?;
        }
        for (field, map) in [
            ("hyperparameters", &self.hyperparameters),
            ("report", &self.report),
        ] {
            check_count(field, map.len(), MAX_MAP_ENTRIES)?;
            for (k, v) in map {
                check_len(field, k, MAX_STRING_LEN)?;
                check_len(field, v, MAX_STRING_LEN)?;
            }
        }
        Ok(())
    }
}

impl Adapter {
    /// The rules a `.paw` enforces on an adapter (rank, alpha, pair order, tensor shapes and
    /// sizes).
    pub fn validate(&self) -> Result<()> {
        validate_adapter_header(self.rank, self.alpha, self.pairs.len())?;
        let mut previous = None;
        for pair in &self.pairs {
            check_pair_order(previous, pair.layer, pair.module)?;
            previous = Some((pair.layer, pair.module));
            for (role, t) in [(TensorRole::A, &pair.a), (TensorRole::B, &pair.b)] {
                let name = TensorName {
                    layer: pair.layer,
                    module: pair.module,
                    role,
                };
                validate_tensor(name, t.dtype, t.shape, t.bytes.len() as u64, self.rank)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn validate_adapter_header(rank: u32, alpha: f32, pairs: usize) -> Result<()> {
    if rank == 0 {
        return Err(FormatError::InvalidRank { found: rank });
    }
    if !(alpha.is_finite() && alpha > 0.0) {
        return Err(FormatError::InvalidAlpha { found: alpha });
    }
    let tensors = (pairs as u64).saturating_mul(2);
    if tensors > MAX_TENSORS as u64 {
        return Err(FormatError::TooManyTensors {
            found: tensors,
            max: MAX_TENSORS as u64,
        });
    }
    Ok(())
}

/// Pairs must be strictly increasing by (layer, module).
pub(crate) fn check_pair_order(
    previous: Option<(u32, TargetModule)>,
    layer: u32,
    module: TargetModule,
) -> Result<()> {
    match previous {
        Some(prev) if prev == (layer, module) => {
            Err(FormatError::DuplicateLoraPair { layer, module })
        }
        Some(prev) if prev > (layer, module) => {
            Err(FormatError::LoraPairsOutOfOrder { layer, module })
        }
        _ => Ok(()),
    }
}

pub(crate) fn validate_tensor(
    tensor: TensorName,
    dtype: TensorDtype,
    shape: [u64; 2],
    found: u64,
    rank: u32,
) -> Result<()> {
    let expected = dtype
        .byte_len(shape)
        .map_err(|source| FormatError::TensorShape { tensor, source })?;
    if found != expected {
        return Err(FormatError::TensorByteSizeMismatch {
            tensor,
            dtype,
            shape,
            expected,
            found,
        });
    }
    // A is [rank, in] and B is [out, rank]; the other dimension must be non-empty.
    let (rank_dim, other_dim) = match tensor.role {
        TensorRole::A => (shape[0], shape[1]),
        TensorRole::B => (shape[1], shape[0]),
    };
    if rank_dim != u64::from(rank) || other_dim == 0 {
        return Err(FormatError::RankMismatch {
            tensor,
            shape,
            rank,
        });
    }
    Ok(())
}

pub(crate) fn check_len(field: &'static str, text: &str, max: usize) -> Result<()> {
    if text.len() > max {
        return Err(FormatError::TextTooLong {
            field,
            len: text.len() as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn check_count(field: &'static str, found: usize, max: usize) -> Result<()> {
    if found > max {
        return Err(FormatError::TooManyEntries {
            field,
            found: found as u64,
            max: max as u64,
        });
    }
    Ok(())
}
