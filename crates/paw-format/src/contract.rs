//! The output contract: the shape every answer of a program must have (`spec/paw-format.md`,
//! section 7a). The format only stores and checks it structurally; the runtime compiles it into
//! a decoding constraint, which is where a schema or pattern that does not compile is refused.

use serde::Serialize;

use crate::error::{FormatError, Result};
use crate::layout::{MAX_CONTRACT_TEXT_LEN, MAX_LABELS, MAX_STRING_LEN};
use crate::program::check_len;

/// What every answer of a program must be. Covered by the program's id like every other field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum OutputContract {
    /// Exactly one of these strings (non-empty, distinct, in the order the compiler chose).
    Labels { labels: Vec<String> },
    /// One JSON value valid against this JSON Schema (the schema's JSON text).
    JsonSchema { schema: String },
    /// Text matched as a whole by this regular expression (Rust `regex` / llguidance syntax,
    /// implicitly anchored at both ends).
    Pattern { regex: String },
    /// Text derived from this Lark grammar, in the dialect llguidance accepts.
    Grammar { lark: String },
    /// Any text of at most this many Unicode scalar values.
    Free { max_chars: u32 },
}

impl OutputContract {
    /// Short kind name: `labels`, `json-schema`, `pattern`, `grammar`, `free`.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Labels { .. } => "labels",
            Self::JsonSchema { .. } => "json-schema",
            Self::Pattern { .. } => "pattern",
            Self::Grammar { .. } => "grammar",
            Self::Free { .. } => "free",
        }
    }

    /// One line for humans: `labels: a | b | c`, `pattern: \+[0-9]+`, `free: at most 200 characters`.
    pub fn summary(&self) -> String {
        match self {
            Self::Labels { labels } => format!("labels: {}", labels.join(" | ")),
            Self::JsonSchema { schema } => format!("json-schema: {}", one_line(schema)),
            Self::Pattern { regex } => format!("pattern: {regex}"),
            Self::Grammar { lark } => format!("grammar: {}", one_line(lark)),
            Self::Free { max_chars } => format!("free: at most {max_chars} characters"),
        }
    }

    /// The structural rules of section 7a; the same on write and on read.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Labels { labels } => {
                if labels.is_empty() {
                    return Err(FormatError::EmptyContract { what: "label set" });
                }
                if labels.len() > MAX_LABELS {
                    return Err(FormatError::TooManyEntries {
                        field: "contract labels",
                        found: labels.len() as u64,
                        max: MAX_LABELS as u64,
                    });
                }
                for (index, label) in labels.iter().enumerate() {
                    if label.is_empty() {
                        return Err(FormatError::EmptyLabel { index });
                    }
                    check_len("contract label", label, MAX_STRING_LEN)?;
                    if labels[..index].contains(label) {
                        return Err(FormatError::DuplicateLabel {
                            label: label.clone(),
                        });
                    }
                }
                Ok(())
            }
            Self::JsonSchema { schema: text }
            | Self::Pattern { regex: text }
            | Self::Grammar { lark: text } => {
                if text.trim().is_empty() {
                    return Err(FormatError::EmptyContract { what: self.kind() });
                }
                check_len(self.kind(), text, MAX_CONTRACT_TEXT_LEN)
            }
            Self::Free { max_chars } => {
                if *max_chars == 0 {
                    return Err(FormatError::EmptyContract {
                        what: "free text of at most 0 characters",
                    });
                }
                Ok(())
            }
        }
    }
}

impl std::fmt::Display for OutputContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

fn one_line(text: &str) -> String {
    const SHOWN: usize = 120;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &flat[..cut]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_must_be_non_empty_and_distinct() {
        let labels = |l: &[&str]| OutputContract::Labels {
            labels: l.iter().map(|s| s.to_string()).collect(),
        };
        assert!(labels(&["a", "b"]).validate().is_ok());
        assert!(matches!(
            labels(&[]).validate(),
            Err(FormatError::EmptyContract { .. })
        ));
        assert!(matches!(
            labels(&["a", ""]).validate(),
            Err(FormatError::EmptyLabel { index: 1 })
        ));
        assert!(matches!(
            labels(&["a", "b", "a"]).validate(),
            Err(FormatError::DuplicateLabel { .. })
        ));
    }

    #[test]
    fn texts_and_lengths_must_be_usable() {
        let blank = OutputContract::Pattern { regex: " ".into() };
        assert!(matches!(
            blank.validate(),
            Err(FormatError::EmptyContract { .. })
        ));
        let zero = OutputContract::Free { max_chars: 0 };
        assert!(matches!(
            zero.validate(),
            Err(FormatError::EmptyContract { .. })
        ));
        let long = OutputContract::JsonSchema {
            schema: "x".repeat(MAX_CONTRACT_TEXT_LEN + 1),
        };
        assert!(matches!(
            long.validate(),
            Err(FormatError::TextTooLong { .. })
        ));
    }

    #[test]
    fn summaries_fit_on_one_line() {
        let c = OutputContract::JsonSchema {
            schema: "{\n  \"type\": \"object\"\n}".into(),
        };
        assert_eq!(c.summary(), r#"json-schema: { "type": "object" }"#);
        assert_eq!(
            OutputContract::Free { max_chars: 80 }.to_string(),
            "free: at most 80 characters"
        );
    }
}
