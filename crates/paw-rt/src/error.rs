//! Typed errors of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong while loading an interpreter, binding a program or calling it.
///
/// A variant that adds context to an underlying error prints that error in its own message and
/// keeps it in a field named `error`, not as its `source`, so a printed error chain shows it
/// once; a wrapper that adds nothing is `transparent`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },

    #[error("safetensors file {path}: {why}")]
    SafetensorsHeader { path: PathBuf, why: String },

    #[error("{path} is larger than {max} bytes, more than any real file of its kind")]
    FileTooLarge { path: PathBuf, max: u64 },

    #[error("GGUF metadata key `{key}` is missing")]
    MissingMetadata { key: String },

    #[error("GGUF metadata key `{key}` is invalid: expected {expected}")]
    BadMetadata { key: String, expected: &'static str },

    #[error(
        "adapter factor of layer {layer} `{module}` holds a non-finite value (NaN or infinity)"
    )]
    LoraNonFinite { layer: u32, module: &'static str },

    #[error(
        "the model produced a non-finite logit (NaN or +infinity) at output token {position}: \
         its weights or adapter are damaged"
    )]
    NonFiniteLogits { position: usize },

    #[error("GGUF tensor `{name}` is invalid: {why}")]
    BadTensor { name: String, why: &'static str },

    #[error("token id {id} has no embedding row (the table has {vocab})")]
    TokenOutOfRange { id: usize, vocab: usize },

    #[error("weight tensor `{name}` is missing from the model")]
    MissingTensor { name: String },

    #[error("layer {layer} has no dequantized weights: it was not loaded as a trained layer")]
    FrozenLayer { layer: usize },

    #[error(
        "weight tensor `{name}` has shape {got:?}, the model configuration implies {expected:?}"
    )]
    TensorShape {
        name: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },

    #[error("weight tensor `{name}` has dtype {dtype} (supported: f32, f16, bf16)")]
    UnsupportedTensorDtype { name: String, dtype: String },

    #[error("weight tensor `{name}` appears twice (again in {path})")]
    DuplicateTensor { name: String, path: PathBuf },

    #[error(
        "{dir} has no {file}: a safetensors model directory needs config.json, \
         *.safetensors and tokenizer.json"
    )]
    MissingModelFile { dir: PathBuf, file: &'static str },

    #[error("{path} is not valid JSON: {error}")]
    ConfigJson {
        path: PathBuf,
        error: serde_json::Error,
    },

    #[error("{path}: key `{key}` is missing")]
    MissingConfigKey { path: PathBuf, key: &'static str },

    #[error("{path}: key `{key}` has an unexpected value: expected {expected}")]
    BadConfigKey {
        path: PathBuf,
        key: &'static str,
        expected: &'static str,
    },

    #[error(
        "{path}: `rope_scaling` is set ({value}); only plain RoPE is supported, so this model \
         would run with wrong positions"
    )]
    RopeScaling { path: PathBuf, value: String },

    #[error("{path}: `{key}` = {value} is not supported (supported: {supported})")]
    UnsupportedConfig {
        path: PathBuf,
        key: &'static str,
        value: String,
        supported: &'static str,
    },

    #[error("{path}: {reason}")]
    SafetensorsIndex { path: PathBuf, reason: String },

    #[error("cannot read safetensors file {path}: {error}")]
    Safetensors {
        path: PathBuf,
        error: candle_core::Error,
    },

    #[error("unsupported architecture `{0}` (supported: llama, qwen2, qwen3)")]
    UnsupportedArchitecture(String),

    #[error("unsupported tokenizer: {0}")]
    UnsupportedTokenizer(String),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error(
        "program was compiled for interpreter `{}` ({}, weights {}, tokenizer {}) but the loaded \
         interpreter is `{}` ({}, weights {}, tokenizer {})",
        .program.name, .program.architecture, .program.weights_hash, .program.tokenizer_hash,
        .loaded.name, .loaded.architecture, .loaded.weights_hash, .loaded.tokenizer_hash
    )]
    InterpreterMismatch {
        program: Box<paw_format::InterpreterId>,
        loaded: Box<paw_format::InterpreterId>,
    },

    #[error("prompt template must contain `{placeholder}` exactly once, found it {found} times")]
    Placeholder {
        placeholder: &'static str,
        found: usize,
    },

    #[error(
        "LoRA tensor for layer {layer} module {module} has shape {got:?}, expected {expected:?}"
    )]
    LoraShape {
        layer: u32,
        module: &'static str,
        got: [u64; 2],
        expected: [u64; 2],
    },

    #[error("LoRA pair targets layer {layer} but the interpreter has {n_layers} layers")]
    LoraLayer { layer: u32, n_layers: usize },

    #[error(
        "LoRA tensor for layer {layer} module {module} holds {got} bytes, expected {expected}"
    )]
    LoraBytes {
        layer: u32,
        module: &'static str,
        got: usize,
        expected: usize,
    },

    #[error("invalid LoRA adapter: rank {rank}, alpha {alpha}")]
    LoraHyper { rank: u32, alpha: f32 },

    #[error(
        "input does not fit the {window}-token context window by {excess} tokens \
         (program prefix {prefix_tokens} + input {input_tokens} + suffix {suffix_tokens} \
         + reserved output {max_tokens})"
    )]
    ContextOverflow {
        window: usize,
        excess: usize,
        prefix_tokens: usize,
        input_tokens: usize,
        suffix_tokens: usize,
        max_tokens: usize,
    },

    #[error(
        "input of {bytes} bytes cannot fit the {window}-token context window (at most \
         {max_bytes} bytes can, and only if they tokenize very well); refused before tokenizing"
    )]
    InputTooLong {
        bytes: usize,
        max_bytes: usize,
        window: usize,
    },

    #[error("max_tokens is 0: a call must be allowed to generate at least 1 token")]
    ZeroMaxTokens,

    #[error("temperature {value} is invalid: it must be a finite number >= 0 (0 = greedy)")]
    Temperature { value: f32 },

    #[error("top_p {value} is invalid: it must be in (0, 1]")]
    TopP { value: f32 },

    #[error(
        "the input is empty and the prompt template has nothing after the input placeholder: \
         there is no token to continue from (give a non-empty input)"
    )]
    NothingToContinue,

    #[error("internal error: a prompt row has no tokens, so there is no next-token distribution")]
    EmptyPrompt,

    #[error("internal error: the call produced no output")]
    NoOutput,

    #[error(
        "internal error: a decoding step of {rows} rows carries {lengths} row lengths for a KV \
         cache of {cache_rows} rows"
    )]
    StepShape {
        rows: usize,
        lengths: usize,
        cache_rows: usize,
    },

    #[error("internal error: a step row claims {valid} real tokens but is only {width} wide")]
    StepRowLength { valid: usize, width: usize },

    #[error("internal error: KV cache capacity {capacity} exceeded by a step reaching {needed}")]
    CacheCapacity { capacity: usize, needed: usize },

    #[error("the interpreter's tokenizer cannot drive an output contract: {reason}")]
    ContractTokenizer { reason: String },

    #[error("the program's {kind} contract cannot be enforced: {reason}")]
    ContractGrammar { kind: &'static str, reason: String },

    #[error("internal error: the output contract failed while decoding: {reason}")]
    ContractDecode { reason: String },

    #[error(
        "internal error: the output contract allows no next token, yet the answer is not complete"
    )]
    ContractDeadEnd,

    #[error(transparent)]
    Format(#[from] paw_format::FormatError),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn tokenizer(e: impl std::fmt::Display) -> Self {
        Self::Tokenizer(e.to_string())
    }
}
