//! Every way a `.paw` file or an in-memory [`crate::Program`] can be rejected, one variant per rule.

use std::path::PathBuf;

use crate::layout::SectionKind;
use crate::program::{TargetModule, TensorDtype};

/// Names one adapter tensor the way llama.cpp does (`blk.3.attn_q.lora_a`), for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorName {
    pub layer: u32,
    pub module: TargetModule,
    pub role: TensorRole,
}

/// Which half of a LoRA pair a tensor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TensorRole {
    A,
    B,
}

impl TensorRole {
    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::A => 0,
            Self::B => 1,
        }
    }

    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::A),
            1 => Some(Self::B),
            _ => None,
        }
    }

    pub const fn suffix(self) -> &'static str {
        match self {
            Self::A => "lora_a",
            Self::B => "lora_b",
        }
    }
}

impl std::fmt::Display for TensorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blk.{}.{}.{}",
            self.layer,
            self.module.gguf_stem(),
            self.role.suffix()
        )
    }
}

/// A tensor's shape, dtype and byte count do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    #[error(
        "{dtype} stores blocks of 32 values along each row, but the row length is {cols}; \
         use f32/f16 for this tensor or pad its columns to a multiple of 32"
    )]
    NotBlockAligned { dtype: TensorDtype, cols: u64 },
    #[error("a tensor of shape [{}, {}] is too large to address; split or shrink it", shape[0], shape[1])]
    TooLarge { shape: [u64; 2] },
    #[error("shape [{}, {}] holds {expected} values but {found} were given", shape[0], shape[1])]
    ValueCountMismatch {
        shape: [u64; 2],
        expected: u64,
        found: u64,
    },
    #[error("{dtype} data for {values} values must be {expected} bytes, found {found}")]
    ByteLenMismatch {
        dtype: TensorDtype,
        values: u64,
        expected: u64,
        found: u64,
    },
}

/// Why a `.paw` file could not be read or written, or why a program is not valid.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is {len} bytes, larger than the {max}-byte limit for a .paw file; it is not a program \
         this tool can load", path.display()
    )]
    FileTooLarge { path: PathBuf, len: u64, max: u64 },
    #[error(
        "not a .paw file: it starts with {found:02x?} instead of the .paw magic; check that the \
         path points at a compiled program"
    )]
    BadMagic { found: Vec<u8> },
    #[error(
        "this program uses .paw format version {found}.x but this build only reads {supported}.x; \
         upgrade paw to run it"
    )]
    UnsupportedMajorVersion { found: u16, supported: u16 },
    #[error(
        "the file is truncated: {what} needs {needed} bytes but only {found} are present; the \
         download or copy was cut short, fetch the program again"
    )]
    Truncated {
        what: &'static str,
        needed: u64,
        found: u64,
    },
    #[error(
        "{found} unexpected bytes follow {what}; the file was appended to or is not canonical, \
         fetch or recompile the program"
    )]
    TrailingBytes { what: &'static str, found: u64 },
    #[error("the header claims to be {found} bytes, less than the {min}-byte fixed header; the file is corrupt")]
    HeaderTooShort { found: u32, min: u32 },
    #[error(
        "the header claims to be {found} bytes, more than the {max}-byte limit; the file is \
         corrupt or not a .paw file"
    )]
    HeaderTooLarge { found: u32, max: u32 },
    #[error("the header sets flags {found:#010x} that this version does not define; upgrade paw")]
    UnknownHeaderFlags { found: u32 },
    #[error("the file lists {found} sections, more than the limit of {max}; the file is corrupt")]
    TooManySections { found: u32, max: u32 },
    #[error("section {kind} appears after a section of a later kind; sections must be sorted by kind, recompile the program")]
    SectionsOutOfOrder { kind: SectionKind },
    #[error("section {kind} appears twice; the file is corrupt")]
    DuplicateSection { kind: SectionKind },
    #[error("section {kind} has flags {found:#06x} but this reader expects {expected:#06x}; the file is corrupt or from a newer paw")]
    UnexpectedSectionFlags {
        kind: SectionKind,
        found: u16,
        expected: u16,
    },
    #[error("section {kind} uses compression method {found}, which this build does not know; upgrade paw")]
    UnknownCompression { kind: SectionKind, found: u8 },
    #[error("section {kind} must be stored uncompressed so it can be memory-mapped, but it is compressed")]
    CompressedTensorData { kind: SectionKind },
    #[error("{what} is {found} where zero is required; the file is corrupt")]
    NonzeroReserved { what: &'static str, found: u64 },
    #[error(
        "section {kind} spans bytes {offset}..{offset}+{len}, beyond the {file_len}-byte file; \
         the file is truncated or corrupt"
    )]
    SectionOutOfRange {
        kind: SectionKind,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("section {kind} starts at byte {offset}, inside the previous section or table ending at {previous_end}; the file is corrupt")]
    OverlappingSections {
        kind: SectionKind,
        offset: u64,
        previous_end: u64,
    },
    #[error("section {kind} starts at byte {offset}, which is not a multiple of 64; the file is corrupt")]
    MisalignedSection { kind: SectionKind, offset: u64 },
    #[error(
        "section {kind} starts at byte {offset} but the canonical layout puts it at {expected}; \
         the file was not written by a canonical writer, recompile or re-pack it"
    )]
    SectionGap {
        kind: SectionKind,
        offset: u64,
        expected: u64,
    },
    #[error("padding byte at offset {offset} is {value:#04x}, but padding must be zero; the file is corrupt or was tampered with")]
    NonzeroPadding { offset: u64, value: u8 },
    #[error("section {kind} is stored uncompressed but its stored length {stored} differs from its length {uncompressed}; the file is corrupt")]
    StoredLengthMismatch {
        kind: SectionKind,
        stored: u64,
        uncompressed: u64,
    },
    #[error("section {kind} declares {len} bytes, more than its limit of {max}; the file is corrupt or hostile")]
    SectionTooLarge {
        kind: SectionKind,
        len: u64,
        max: u64,
    },
    #[error("section {kind} could not be decompressed ({reason}); the file is corrupt")]
    Decompress { kind: SectionKind, reason: String },
    #[error("section {kind} decompressed to {found} bytes, but its table entry says {expected}; the file is corrupt")]
    DecompressedLengthMismatch {
        kind: SectionKind,
        expected: u64,
        found: u64,
    },
    #[error(
        "section {kind} does not match its BLAKE3 hash (expected {expected}, computed {computed}); \
         the file is corrupt or was tampered with, fetch it again"
    )]
    SectionHashMismatch {
        kind: SectionKind,
        expected: String,
        computed: String,
    },
    #[error("section {kind} is marked must-understand but this build does not know it; upgrade paw to load this program")]
    UnknownRequiredSection { kind: SectionKind },
    #[error("the required section {kind} is missing; the file is corrupt or truncated")]
    MissingSection { kind: SectionKind },
    #[error(
        "the metadata says the program {} an adapter but the tensor sections are {}; the file is corrupt",
        if *has_adapter { "has" } else { "has no" },
        if *has_adapter { "missing" } else { "present" }
    )]
    AdapterSectionMismatch { has_adapter: bool },
    #[error("section {kind} is not valid bincode ({reason}); the file is corrupt")]
    Decode { kind: SectionKind, reason: String },
    #[error(
        "section {kind} contains text that is not valid UTF-8 ({reason}); the file is corrupt"
    )]
    BadUtf8 { kind: SectionKind, reason: String },
    #[error("{field} has keys out of order or repeated at {key:?}; keys must be sorted and unique, recompile the program")]
    UnsortedMap { field: &'static str, key: String },
    #[error("the tensor index is {len} bytes, not a whole number of {entry}-byte entries; the file is corrupt")]
    BadTensorIndexLen { len: u64, entry: u64 },
    #[error("tensor index entry {index} names target module code {code}, which this build does not know; upgrade paw")]
    UnknownTargetModule { index: usize, code: u8 },
    #[error("tensor index entry {index} has role code {code}; only 0 (lora_a) and 1 (lora_b) exist, the file is corrupt")]
    UnknownTensorRole { index: usize, code: u8 },
    #[error("tensor index entry {index} uses dtype code {code}, which this build does not know; upgrade paw")]
    UnknownDtype { index: usize, code: u8 },
    #[error("tensor {tensor} is at data offset {offset}, not a multiple of 64, so it cannot be memory-mapped; the file is corrupt")]
    MisalignedTensor { tensor: TensorName, offset: u64 },
    #[error("tensor {tensor} spans data bytes {offset}..{offset}+{len}, beyond the {data_len}-byte tensor data section; the file is corrupt")]
    TensorOutOfRange {
        tensor: TensorName,
        offset: u64,
        len: u64,
        data_len: u64,
    },
    #[error("tensor {tensor} starts at data offset {offset}, overlapping the previous tensor which ends at {previous_end}; the file is corrupt")]
    OverlappingTensors {
        tensor: TensorName,
        offset: u64,
        previous_end: u64,
    },
    #[error("tensor {tensor} starts at data offset {offset} but the canonical layout puts it at {expected}; re-pack the program")]
    TensorGap {
        tensor: TensorName,
        offset: u64,
        expected: u64,
    },
    #[error(
        "tensor {tensor} ({dtype}, shape [{}, {}]) must be {expected} bytes but is {found}; \
         the file is corrupt or the adapter was packed wrongly", shape[0], shape[1]
    )]
    TensorByteSizeMismatch {
        tensor: TensorName,
        dtype: TensorDtype,
        shape: [u64; 2],
        expected: u64,
        found: u64,
    },
    #[error("tensor {tensor}: {source}")]
    TensorShape {
        tensor: TensorName,
        source: TensorError,
    },
    #[error(
        "tensor {tensor} is missing its {missing} partner; every LoRA pair needs both A and B"
    )]
    IncompleteLoraPair {
        tensor: TensorName,
        missing: &'static str,
    },
    #[error("the adapter has two LoRA pairs for layer {layer} module {module}; keep exactly one per (layer, module)")]
    DuplicateLoraPair { layer: u32, module: TargetModule },
    #[error("LoRA pair (layer {layer}, module {module}) comes after a later pair; sort pairs by (layer, module)")]
    LoraPairsOutOfOrder { layer: u32, module: TargetModule },
    #[error(
        "tensor {tensor} has shape [{}, {}] but the adapter rank is {rank}; A must be [rank, in] and B [out, rank]",
        shape[0], shape[1]
    )]
    RankMismatch {
        tensor: TensorName,
        shape: [u64; 2],
        rank: u32,
    },
    #[error("the adapter has {found} tensors, more than the limit of {max}")]
    TooManyTensors { found: u64, max: u64 },
    #[error("the adapter rank must be at least 1 (found {found})")]
    InvalidRank { found: u32 },
    #[error("the adapter alpha must be a finite number greater than 0 (found {found})")]
    InvalidAlpha { found: f32 },
    #[error("the temperature must be a finite number >= 0 without a minus sign (found {found}); use 0 for greedy decoding")]
    InvalidTemperature { found: f32 },
    #[error(
        "the prompt template must contain the input placeholder {placeholder} exactly once, but it \
         appears {found} times; re-render the template"
    )]
    PlaceholderCount {
        placeholder: &'static str,
        found: usize,
    },
    #[error("{field} is {len} bytes, more than the limit of {max}; shorten it")]
    TextTooLong {
        field: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{field} has {found} entries, more than the limit of {max}")]
    TooManyEntries {
        field: &'static str,
        found: u64,
        max: u64,
    },
    #[error("the output contract's {what} is empty, so no answer could satisfy it")]
    EmptyContract { what: &'static str },
    #[error("label {index} of the output contract is empty; labels must be non-empty strings")]
    EmptyLabel { index: usize },
    #[error("the output contract lists the label {label:?} twice; labels must be distinct")]
    DuplicateLabel { label: String },
    #[error("stop string {index} is empty, which would stop generation immediately; remove it")]
    EmptyStopString { index: usize },
    #[error(
        "the file hashes to {actual} but {expected} was expected; it is corrupt or the wrong file"
    )]
    IdMismatch { expected: String, actual: String },
    #[error("the metadata could not be encoded: {reason}")]
    Encode { reason: String },
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
