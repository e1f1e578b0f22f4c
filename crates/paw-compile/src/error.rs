//! Typed errors of the compiler.

use std::path::PathBuf;

/// Everything that can make a compile fail. Nothing is written anywhere when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the spec is empty")]
    EmptySpec,

    #[error("the spec is {len} bytes long; the limit is {max}")]
    SpecTooLong { len: usize, max: usize },

    #[error("example {index} has an empty input or output")]
    EmptyExample { index: usize },

    #[error(
        "{what} contains `{token}`, which the interpreter reads as a control token; the \
         program's prompt would change shape (rephrase it)"
    )]
    ControlTokenText { what: String, token: String },

    #[error("model file not found: {0}")]
    ModelNotFound(PathBuf),

    #[error("no teacher and no examples: compiling from examples only needs at least one example")]
    NothingToTrainOn,

    #[error("no valid training data could be produced: {0}")]
    NoValidData(String),

    #[error(
        "the chat template of {model} is not ChatML; only ChatML models are supported for now"
    )]
    UnsupportedChatTemplate { model: String },

    #[error("invalid option: {0}")]
    Options(String),

    #[error("runtime: {0}")]
    Runtime(#[from] paw_rt::Error),

    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),

    #[error("format: {0}")]
    Format(#[from] paw_format::FormatError),

    #[error("tensor encoding: {0}")]
    Tensor(#[from] paw_format::TensorError),

    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;
