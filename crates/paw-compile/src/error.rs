//! Typed errors of the compiler.

use std::path::PathBuf;

/// Everything that can make a compile fail. Nothing is written anywhere when one is returned.
///
/// A variant that adds context to an underlying error prints that error in its own message and
/// keeps it in a field named `error`, not as its `source`, so a printed error chain shows it
/// once; a wrapper that adds nothing is `transparent`.
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

    #[error(
        "example {index}'s output {output:?} does not satisfy the given output contract \
         ({contract}); fix the example or the contract"
    )]
    ExampleViolatesContract {
        index: usize,
        output: String,
        contract: String,
    },

    #[error("the output contract cannot be used: {error}")]
    Contract { error: paw_rt::Error },

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

    #[error("compile option `{name}` is 0; it must be at least 1")]
    ZeroOption { name: &'static str },

    #[error("no LoRA target modules given; train at least one module")]
    NoTrainModules,

    #[error("training option `{name}` is {value}; it must be a positive number")]
    NonPositive { name: &'static str, value: f64 },

    #[error(
        "the prompt template has no `{}` placeholder for the input",
        paw_format::INPUT_PLACEHOLDER
    )]
    NoPlaceholder,

    #[error(
        "a training example has an empty input and the prompt template has nothing after the \
         input placeholder, so there is no token to predict its output from"
    )]
    NothingBeforeOutput,

    #[error("examples file {}: {error}", path.display())]
    Examples {
        path: PathBuf,
        error: paw_eval::CasesError,
    },

    #[error(transparent)]
    Runtime(#[from] paw_rt::Error),

    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    #[error(transparent)]
    Format(#[from] paw_format::FormatError),

    /// The prefix says which encoder failed; the message is not also exposed as `source`.
    #[error("tensor encoding: {0}")]
    Tensor(paw_format::TensorError),

    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

pub type Result<T, E = CompileError> = std::result::Result<T, E>;

impl From<paw_format::TensorError> for CompileError {
    fn from(e: paw_format::TensorError) -> Self {
        Self::Tensor(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::Path;

    use super::*;

    /// Every message of `e`'s source chain, as `{:#}` of anyhow prints them.
    fn chain(e: &dyn std::error::Error) -> Vec<String> {
        let mut out = vec![e.to_string()];
        let mut next = e.source();
        while let Some(s) = next {
            out.push(s.to_string());
            next = s.source();
        }
        out
    }

    #[test]
    fn wrapped_errors_print_their_message_once() {
        let rt = paw_rt::Error::ZeroMaxTokens;
        let e = CompileError::from(paw_rt::Error::ZeroMaxTokens);
        assert_eq!(chain(&e), vec![rt.to_string()]);

        let tensor = paw_format::TensorError::TooLarge { shape: [1, 2] };
        let e = CompileError::from(paw_format::TensorError::TooLarge { shape: [1, 2] });
        assert_eq!(chain(&e), vec![format!("tensor encoding: {tensor}")]);

        let e = crate::read_examples(Path::new("/nonexistent/paw/examples.jsonl"))
            .expect_err("missing file");
        assert!(matches!(e, CompileError::Io { .. }), "{e:?}");
        assert!(e.source().is_none());
        assert!(
            e.to_string()
                .starts_with("cannot read /nonexistent/paw/examples.jsonl: "),
            "{e}"
        );
    }

    #[test]
    fn examples_are_read_by_the_case_reader() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("examples.jsonl");
        std::fs::write(
            &path,
            "{\"input\":\"a\",\"output\":\"b\",\"id\":1}\r\n\n{\"input\":\"c\",\"output\":\"d\"}",
        )
        .expect("write");
        let pairs = crate::read_examples(&path).expect("valid");
        assert_eq!(
            pairs,
            vec![("a".into(), "b".into()), ("c".into(), "d".into())]
        );

        std::fs::write(
            &path,
            "{\"input\":\"a\",\"output\":\"b\"}\n\n{\"input\":1}\n",
        )
        .expect("write");
        let e = crate::read_examples(&path).expect_err("line 3");
        assert!(
            matches!(
                &e,
                CompileError::Examples {
                    error: paw_eval::CasesError::NotAString { line: 3, .. },
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(chain(&e).len(), 1);
        assert!(e.to_string().contains("examples.jsonl: line 3:"), "{e}");
    }
}
