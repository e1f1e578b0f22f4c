//! Output contracts enforced while decoding: each contract becomes an llguidance grammar whose
//! token mask is applied to the logits before a token is picked, so every finished answer
//! satisfies the contract by construction (`spec/paw-format.md`, section 7a).

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use paw_format::OutputContract;
use toktrie::{SimpleVob, TokEnv};

use crate::error::{Error, Result};
use crate::tokenizer::Tokenizer;

/// How a call's answer relates to the program's contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContractOutcome {
    /// The program has no contract, or the call turned it off.
    NotApplied,
    /// The answer satisfies the contract.
    Satisfied,
    /// `max_tokens` ran out before the answer could end; the text is a prefix of an answer the
    /// contract allows, not a complete one. Raise `max_tokens`.
    Unfinished,
}

impl ContractOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NotApplied => "not-applied",
            Self::Satisfied => "satisfied",
            Self::Unfinished => "unfinished",
        }
    }
}

/// The interpreter's tokenizer as llguidance sees it: built once per interpreter, on the first
/// program with a grammar contract (loading an interpreter does not pay for it).
pub(crate) struct GrammarEnv {
    factory: ParserFactory,
}

impl std::fmt::Debug for GrammarEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarEnv").finish_non_exhaustive()
    }
}

impl GrammarEnv {
    /// `vocab` is the model's logits width, which may exceed the tokenizer's vocabulary.
    pub(crate) fn new(tok: &Tokenizer, vocab: usize) -> Result<Self> {
        let json = tok.to_json()?;
        let mut bt = toktrie_hf_tokenizers::ByteTokenizer::from_json_bytes(json.as_bytes())
            .map_err(|e| Error::ContractTokenizer {
                reason: e.to_string(),
            })?;
        let eog = tok.eog_ids();
        if eog.is_empty()
            || eog
                .iter()
                .any(|&t| t as usize >= bt.tokrx_info().vocab_size as usize)
        {
            return Err(Error::ContractTokenizer {
                reason: format!("end-of-generation ids {eog:?} are outside the vocabulary"),
            });
        }
        bt.set_eos_tokens(eog);
        let env: TokEnv = bt
            .into_tok_env(Some(vocab))
            .map_err(|e| Error::ContractTokenizer {
                reason: e.to_string(),
            })?;
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| Error::ContractTokenizer {
                reason: e.to_string(),
            })?;
        // Warnings go to tracing through our own errors, not to stderr.
        factory.quiet();
        Ok(Self { factory })
    }
}

/// Checks finished texts against a contract with the same grammar the runtime decodes with: the
/// compiler uses it to drop training data that no constrained answer could be.
#[derive(Debug)]
pub struct ContractChecker {
    contract: CompiledContract,
}

impl ContractChecker {
    /// Compiles `contract` over `tok` (typed error if it cannot be enforced).
    pub fn new(tok: &Tokenizer, contract: &OutputContract) -> Result<Self> {
        let contract = CompiledContract::compile(contract, || {
            Ok(Arc::new(GrammarEnv::new(tok, tok.vocab_size())?))
        })?;
        Ok(Self { contract })
    }

    /// Whether `text` is a complete answer the contract allows.
    pub fn allows(&self, text: &str) -> bool {
        self.contract.start().accepts_whole(text)
    }
}

/// A program's contract, compiled once at bind time.
#[derive(Clone)]
pub(crate) enum CompiledContract {
    /// A grammar's start state; every row of a call decodes with its own clone.
    Grammar(Arc<Matcher>),
    /// Free text: cut at this many characters.
    MaxChars(usize),
}

impl std::fmt::Debug for CompiledContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Grammar(_) => f.write_str("Grammar"),
            Self::MaxChars(n) => write!(f, "MaxChars({n})"),
        }
    }
}

impl CompiledContract {
    /// Compiles `contract`; `env` builds the grammar environment when one is needed.
    pub(crate) fn compile(
        contract: &OutputContract,
        env: impl FnOnce() -> Result<Arc<GrammarEnv>>,
    ) -> Result<Self> {
        let grammar = match contract {
            OutputContract::Free { max_chars } => return Ok(Self::MaxChars(*max_chars as usize)),
            OutputContract::Labels { labels } => TopLevelGrammar::from_regex(&labels_regex(labels)),
            OutputContract::Pattern { regex } => TopLevelGrammar::from_regex(regex),
            OutputContract::Grammar { lark } => TopLevelGrammar::from_lark(lark.clone()),
            OutputContract::JsonSchema { schema } => {
                let value: serde_json::Value =
                    serde_json::from_str(schema).map_err(|e| Error::ContractGrammar {
                        kind: contract.kind(),
                        reason: format!("the schema is not JSON: {e}"),
                    })?;
                TopLevelGrammar::from_json_schema(value)
            }
        };
        let env = env()?;
        let mut matcher = Matcher::new(env.factory.create_parser(grammar));
        if let Some(reason) = matcher.get_error() {
            return Err(Error::ContractGrammar {
                kind: contract.kind(),
                reason,
            });
        }
        // A grammar that allows no answer at all would make every call fail later.
        let start = matcher.compute_mask().map_err(|e| Error::ContractGrammar {
            kind: contract.kind(),
            reason: e.to_string(),
        })?;
        if start.is_zero() {
            return Err(Error::ContractGrammar {
                kind: contract.kind(),
                reason: "no answer satisfies it".into(),
            });
        }
        Ok(Self::Grammar(Arc::new(matcher)))
    }

    /// The per-row decoding state of one call.
    pub(crate) fn start(&self) -> RowContract {
        match self {
            Self::Grammar(m) => RowContract::Grammar(Box::new(Matcher::clone(m))),
            Self::MaxChars(n) => RowContract::MaxChars(*n),
        }
    }
}

/// One row's contract state while decoding.
pub(crate) enum RowContract {
    Grammar(Box<Matcher>),
    MaxChars(usize),
}

impl std::fmt::Debug for RowContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Grammar(_) => f.write_str("Grammar"),
            Self::MaxChars(n) => write!(f, "MaxChars({n})"),
        }
    }
}

impl RowContract {
    /// Sets the logits of tokens the contract does not allow next to -inf.
    pub(crate) fn mask_logits(&mut self, logits: &mut [f32]) -> Result<()> {
        let Self::Grammar(m) = self else {
            return Ok(());
        };
        let mask: SimpleVob = m.compute_mask().map_err(grammar_error)?;
        if mask.is_zero() {
            return Err(Error::ContractDeadEnd);
        }
        for (id, l) in logits.iter_mut().enumerate() {
            if !mask.is_allowed(id as u32) {
                *l = f32::NEG_INFINITY;
            }
        }
        Ok(())
    }

    /// Advances past a picked (non end-of-generation) token; `true` if the contract allows
    /// nothing more, so decoding stops at once.
    pub(crate) fn advance(&mut self, token: u32, text: &mut String) -> Result<bool> {
        match self {
            Self::Grammar(m) => {
                m.consume_token(token).map_err(grammar_error)?;
                Ok(m.is_stopped())
            }
            Self::MaxChars(n) => match text.char_indices().nth(*n) {
                Some((cut, _)) => {
                    text.truncate(cut);
                    Ok(true)
                }
                None => Ok(text.chars().count() == *n),
            },
        }
    }

    /// From the start state: whether `text` as a whole is a complete answer.
    fn accepts_whole(&mut self, text: &str) -> bool {
        match self {
            Self::Grammar(m) => {
                let Ok(env) = m.tok_env() else {
                    return false;
                };
                let tokens = env.tokenize_bytes(text.as_bytes());
                matches!(m.validate_tokens(&tokens), Ok(n) if n == tokens.len())
                    && m.consume_tokens(&tokens).is_ok()
                    && self.is_complete()
            }
            Self::MaxChars(n) => text.chars().count() <= *n,
        }
    }

    /// Whether the text so far is a complete answer (checked when `max_tokens` runs out).
    pub(crate) fn is_complete(&mut self) -> bool {
        match self {
            Self::Grammar(m) => m.is_stopped() || m.is_accepting().unwrap_or(false),
            Self::MaxChars(_) => true,
        }
    }

    /// Stop strings end free text; a grammar decides its own end.
    pub(crate) fn honours_stop_strings(&self) -> bool {
        matches!(self, Self::MaxChars(_))
    }
}

fn grammar_error(e: impl std::fmt::Display) -> Error {
    Error::ContractDecode {
        reason: e.to_string(),
    }
}

/// One alternative per label, each matched literally.
fn labels_regex(labels: &[String]) -> String {
    labels
        .iter()
        .map(|l| format!("(?:{})", regex_syntax::escape(l)))
        .collect::<Vec<_>>()
        .join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_alternatives_match_literally() {
        let rx = labels_regex(&["a.b".into(), "(x)".into(), "c|d".into()]);
        assert_eq!(rx, r"(?:a\.b)|(?:\(x\))|(?:c\|d)");
    }
}
