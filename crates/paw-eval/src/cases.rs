//! Test cases in JSON Lines: one `{"input": "...", "output": "..."}` object per
//! line. Blank lines are skipped; extra fields (ids, tags) are allowed and
//! ignored so that suites can carry their own metadata.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest accepted line, in bytes (newline excluded). A bound keeps a corrupt
/// or binary file from being read into memory whole; 1 MiB is far above any
/// input that fits the interpreter's 2048-token window.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One test case: the program's input and the exact expected output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Case {
    pub input: String,
    pub output: String,
}

/// Why a case file could not be read. Line numbers are 1-based.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: read failed: {source}")]
    Read {
        line: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("line {line}: longer than {max} bytes")]
    LineTooLong { line: usize, max: usize },
    #[error("line {line}: not valid UTF-8")]
    InvalidUtf8 { line: usize },
    #[error("line {line}: invalid JSON: {source}")]
    InvalidJson {
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("line {line}: expected a JSON object with \"input\" and \"output\"")]
    NotAnObject { line: usize },
    #[error("line {line}: missing field \"{field}\"")]
    MissingField { line: usize, field: &'static str },
    #[error("line {line}: field \"{field}\" must be a string")]
    NotAString { line: usize, field: &'static str },
}

impl CasesError {
    /// The 1-based line the error refers to, if any.
    pub fn line(&self) -> Option<usize> {
        match self {
            CasesError::Open { .. } => None,
            CasesError::Read { line, .. }
            | CasesError::LineTooLong { line, .. }
            | CasesError::InvalidUtf8 { line }
            | CasesError::InvalidJson { line, .. }
            | CasesError::NotAnObject { line }
            | CasesError::MissingField { line, .. }
            | CasesError::NotAString { line, .. } => Some(*line),
        }
    }
}

/// Read cases from a JSONL file.
pub fn load_cases(path: &Path) -> Result<Vec<Case>, CasesError> {
    let file = std::fs::File::open(path).map_err(|source| CasesError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_cases(BufReader::new(file))
}

/// Parse cases from JSONL text already in memory.
pub fn parse_cases(text: &str) -> Result<Vec<Case>, CasesError> {
    read_cases(text.as_bytes())
}

/// Read cases from any buffered reader, never holding more than one line of at
/// most [`MAX_LINE_BYTES`] (plus one byte to detect overflow).
pub fn read_cases<R: BufRead>(mut reader: R) -> Result<Vec<Case>, CasesError> {
    let mut cases = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        line += 1;
        buf.clear();
        // +2: room for the newline and one byte that proves the line is too long.
        let limit = (MAX_LINE_BYTES + 2) as u64;
        let n = (&mut reader)
            .take(limit)
            .read_until(b'\n', &mut buf)
            .map_err(|source| CasesError::Read { line, source })?;
        if n == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        if buf.len() > MAX_LINE_BYTES {
            return Err(CasesError::LineTooLong {
                line,
                max: MAX_LINE_BYTES,
            });
        }
        let text = std::str::from_utf8(&buf).map_err(|_| CasesError::InvalidUtf8 { line })?;
        if text.trim().is_empty() {
            continue;
        }
        cases.push(parse_line(text, line)?);
    }
    Ok(cases)
}

fn parse_line(text: &str, line: usize) -> Result<Case, CasesError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|source| CasesError::InvalidJson { line, source })?;
    let obj = value.as_object().ok_or(CasesError::NotAnObject { line })?;
    let field = |name: &'static str| -> Result<String, CasesError> {
        match obj.get(name) {
            None => Err(CasesError::MissingField { line, field: name }),
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(CasesError::NotAString { line, field: name }),
        }
    };
    Ok(Case {
        input: field("input")?,
        output: field("output")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cases_skipping_blank_lines_and_ignoring_extra_fields() {
        let text = "{\"input\":\"a\",\"output\":\"b\"}\n\n  \n{\"input\":\"é ✓\",\"output\":\"{\\\"k\\\":1}\",\"id\":7}\r\n";
        let cases = parse_cases(text).expect("valid");
        assert_eq!(
            cases,
            vec![
                Case {
                    input: "a".into(),
                    output: "b".into()
                },
                Case {
                    input: "é ✓".into(),
                    output: "{\"k\":1}".into()
                },
            ]
        );
    }

    #[test]
    fn empty_text_gives_no_cases() {
        assert_eq!(parse_cases("").expect("valid"), vec![]);
    }

    #[test]
    fn last_line_without_newline_is_read() {
        let cases = parse_cases("{\"input\":\"x\",\"output\":\"y\"}").expect("valid");
        assert_eq!(cases.len(), 1);
    }

    #[test]
    fn invalid_json_reports_its_line_number() {
        let text = "{\"input\":\"a\",\"output\":\"b\"}\n\n{\"input\":\"a\",\n";
        let err = parse_cases(text).expect_err("broken line 3");
        assert!(
            matches!(err, CasesError::InvalidJson { line: 3, .. }),
            "{err:?}"
        );
        assert_eq!(err.line(), Some(3));
        assert!(err.to_string().starts_with("line 3:"));
    }

    #[test]
    fn missing_and_mistyped_fields_are_named() {
        let err = parse_cases("{\"input\":\"a\"}").expect_err("no output");
        assert!(
            matches!(
                err,
                CasesError::MissingField {
                    line: 1,
                    field: "output"
                }
            ),
            "{err:?}"
        );
        let err = parse_cases("{\"input\":1,\"output\":\"b\"}").expect_err("number input");
        assert!(
            matches!(
                err,
                CasesError::NotAString {
                    line: 1,
                    field: "input"
                }
            ),
            "{err:?}"
        );
        let err = parse_cases("[\"a\",\"b\"]").expect_err("array");
        assert!(
            matches!(err, CasesError::NotAnObject { line: 1 }),
            "{err:?}"
        );
    }

    #[test]
    fn overlong_line_is_rejected_without_reading_it_whole() {
        let long = format!(
            "{{\"input\":\"{}\",\"output\":\"b\"}}\n",
            "x".repeat(MAX_LINE_BYTES)
        );
        let text = format!("{{\"input\":\"a\",\"output\":\"b\"}}\n{long}");
        let err = parse_cases(&text).expect_err("too long");
        assert!(
            matches!(err, CasesError::LineTooLong { line: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn line_of_exactly_the_maximum_length_is_accepted() {
        let overhead = "{\"input\":\"\",\"output\":\"b\"}".len();
        let line = format!(
            "{{\"input\":\"{}\",\"output\":\"b\"}}\n",
            "x".repeat(MAX_LINE_BYTES - overhead)
        );
        assert_eq!(line.len() - 1, MAX_LINE_BYTES);
        assert_eq!(parse_cases(&line).expect("fits").len(), 1);
    }

    #[test]
    fn invalid_utf8_reports_its_line_number() {
        let bytes: &[u8] =
            b"{\"input\":\"a\",\"output\":\"b\"}\n{\"input\":\"\xff\",\"output\":\"b\"}\n";
        let err = read_cases(bytes).expect_err("bad utf8");
        assert!(
            matches!(err, CasesError::InvalidUtf8 { line: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let err = load_cases(Path::new("/nonexistent/paw/tests.jsonl")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/paw/tests.jsonl"));
        assert_eq!(err.line(), None);
    }
}
