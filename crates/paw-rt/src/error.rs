//! Typed errors of the runtime.

use std::path::PathBuf;

/// Everything that can go wrong while loading an interpreter, binding a program or calling it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("GGUF metadata key `{key}` is missing")]
    MissingMetadata { key: String },

    #[error("GGUF metadata key `{key}` has an unexpected type: expected {expected}")]
    BadMetadata { key: String, expected: &'static str },

    #[error("GGUF tensor `{name}` is missing")]
    MissingTensor { name: String },

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

    #[error("invalid call options: {0}")]
    Options(String),

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
