//! The program's output contract: given by the user, or inferred from the spec and the trusted
//! examples. An inferred contract is kept only if every example's output satisfies it, so
//! inference can narrow what the program may answer but never forbid an answer the user showed.

use paw_format::OutputContract;
use paw_rt::ContractChecker;
use serde_json::{json, Map, Value};

use crate::error::{CompileError, Result};
use crate::report::ContractReport;
use crate::spec::canonical_label;

/// How a compile chooses its contract (`paw compile --labels/--json-schema/--pattern/--grammar/
/// --free/--no-contract`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ContractRequest {
    /// Infer one from the spec and examples (label set, JSON schema, a named format); none if
    /// nothing is recognised.
    #[default]
    Infer,
    /// Use exactly this contract; every example must satisfy it.
    Given(OutputContract),
    /// No contract: free text up to the program's `max_tokens`.
    Without,
}

/// Where the program's contract came from (in the compile report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContractSource {
    Given,
    /// The spec's closed label set.
    SpecLabels,
    /// A JSON schema inferred from the examples' JSON outputs.
    ExampleJson,
    /// A format the spec names (`YYYY-MM-DD`, `E.164`, ...).
    SpecFormat(&'static str),
    /// Inferred, then dropped because an example's output does not satisfy it.
    Dropped {
        kind: &'static str,
        example: usize,
    },
    /// Nothing recognised.
    NotInferred,
    /// `--no-contract`.
    Disabled,
}

impl std::fmt::Display for ContractSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Given => f.write_str("given"),
            Self::SpecLabels => f.write_str("inferred: the spec's label set"),
            Self::ExampleJson => f.write_str("inferred: JSON schema of the examples' outputs"),
            Self::SpecFormat(name) => write!(f, "inferred: the spec names {name}"),
            Self::Dropped { kind, example } => write!(
                f,
                "none: the inferred {kind} contract refused example {example}'s output"
            ),
            Self::NotInferred => f.write_str("none: nothing in the spec or examples fixes a shape"),
            Self::Disabled => f.write_str("none: disabled"),
        }
    }
}

/// The contract a compile uses, checked against the trusted examples, with a checker for the
/// training data.
pub(crate) struct Decided {
    /// The contract and its checker; `None` for no contract.
    pub enforced: Option<(OutputContract, ContractChecker)>,
    pub source: ContractSource,
}

impl Decided {
    pub fn contract(&self) -> Option<&OutputContract> {
        self.enforced.as_ref().map(|(c, _)| c)
    }

    /// Whether a training item's output is an answer the program could give.
    pub fn allows(&self, output: &str) -> bool {
        match &self.enforced {
            Some((c, checker)) => checker.allows(as_answer(c, output)),
            None => true,
        }
    }

    pub fn report(&self) -> ContractReport {
        ContractReport {
            summary: self.contract().map(OutputContract::summary),
            source: self.source.to_string(),
        }
    }
}

/// Applies `request`: a given contract must accept every example (else an error); an inferred
/// one is dropped if any example's output breaks it.
pub(crate) fn decide(
    request: &ContractRequest,
    spec: &str,
    labels: Option<&[String]>,
    examples: &[(String, String)],
    tok: &paw_rt::Tokenizer,
) -> Result<Decided> {
    let (contract, source) = match request {
        ContractRequest::Without => (None, ContractSource::Disabled),
        ContractRequest::Given(c) => (Some(c.clone()), ContractSource::Given),
        ContractRequest::Infer => {
            let outputs: Vec<&str> = examples.iter().map(|(_, o)| o.as_str()).collect();
            match infer(spec, labels, &outputs) {
                Some((c, s)) => (Some(c), s),
                None => (None, ContractSource::NotInferred),
            }
        }
    };
    let Some(contract) = contract else {
        return Ok(Decided {
            enforced: None,
            source,
        });
    };
    let checker =
        ContractChecker::new(tok, &contract).map_err(|error| CompileError::Contract { error })?;
    let refused = examples
        .iter()
        .position(|(_, o)| !checker.allows(as_answer(&contract, o)));
    match (refused, request) {
        (Some(index), ContractRequest::Given(_)) => Err(CompileError::ExampleViolatesContract {
            index,
            output: examples[index].1.clone(),
            contract: contract.summary(),
        }),
        (Some(example), _) => Ok(Decided {
            source: ContractSource::Dropped {
                kind: contract.kind(),
                example,
            },
            enforced: None,
        }),
        (None, _) => Ok(Decided {
            enforced: Some((contract, checker)),
            source,
        }),
    }
}

/// A candidate contract before the examples check.
pub(crate) fn infer(
    spec: &str,
    labels: Option<&[String]>,
    outputs: &[&str],
) -> Option<(OutputContract, ContractSource)> {
    if let Some(labels) = labels {
        let contract = OutputContract::Labels {
            labels: labels.to_vec(),
        };
        return Some((contract, ContractSource::SpecLabels));
    }
    if let Some(schema) = json_schema_of(outputs) {
        let schema = serde_json::to_string_pretty(&schema).unwrap_or_default();
        return Some((
            OutputContract::JsonSchema { schema },
            ContractSource::ExampleJson,
        ));
    }
    named_format(spec).map(|(name, regex)| {
        (
            OutputContract::Pattern {
                regex: with_sentinels(spec, regex),
            },
            ContractSource::SpecFormat(name),
        )
    })
}

/// The text an example output stands for under `contract`: label outputs are matched to their
/// label the way the data stage matches them (case-insensitive, trailing period).
pub(crate) fn as_answer<'a>(contract: &'a OutputContract, output: &'a str) -> &'a str {
    match contract {
        OutputContract::Labels { labels } => canonical_label(labels, output).unwrap_or(output),
        _ => output,
    }
}

/// Formats whose names fix an answer's shape, most specific first: (what the report calls it,
/// the spec's wording in lowercase, the pattern).
const FORMATS: &[(&str, &[&str], &str)] = &[
    (
        "an ISO 8601 date",
        &["yyyy-mm-dd", "iso 8601 date", "iso date"],
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}",
    ),
    ("HH:MM:SS", &["hh:mm:ss"], r"[0-9]{2}:[0-9]{2}:[0-9]{2}"),
    ("HH:MM", &["hh:mm"], r"[0-9]{2}:[0-9]{2}"),
    ("E.164", &["e.164", "e164"], r"\+[1-9][0-9]{6,14}"),
    (
        "an ISO 3166-1 alpha-2 code",
        &["alpha-2", "alpha2"],
        r"[A-Z]{2}",
    ),
    (
        "an ISO 3166-1 alpha-3 code",
        &["alpha-3", "alpha3"],
        r"[A-Z]{3}",
    ),
    (
        "MAJOR.MINOR.PATCH",
        &["major.minor.patch", "semantic version", "semver"],
        r"[0-9]+\.[0-9]+\.[0-9]+",
    ),
    ("snake_case", &["snake_case"], r"[a-z0-9]+(?:_[a-z0-9]+)*"),
    (
        "kebab-case",
        &["to kebab-case"],
        r"[a-z0-9]+(?:-[a-z0-9]+)*",
    ),
    (
        "an amount with two decimals",
        &["two decimals", "2 decimals", "two decimal places"],
        r"-?[0-9]+\.[0-9]{2}",
    ),
    (
        "an integer",
        &[
            "the integer",
            "an integer",
            "whole number",
            "only the integer",
        ],
        r"-?[0-9]+",
    ),
];

/// Words a spec commonly names as the answer when there is nothing to extract.
const SENTINELS: [&str; 6] = ["NONE", "UNKNOWN", "N/A", "NULL", "INVALID", "EMPTY"];

fn named_format(spec: &str) -> Option<(&'static str, &'static str)> {
    let lower = spec.to_lowercase();
    FORMATS
        .iter()
        .find(|(_, cues, _)| cues.iter().any(|c| lower.contains(c)))
        .map(|(name, _, regex)| (*name, *regex))
}

/// Adds the sentinel answers the spec spells in capitals ("... or NONE if there is none").
fn with_sentinels(spec: &str, regex: &str) -> String {
    let words: Vec<&str> = spec
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '/' || c == '_'))
        .collect();
    let found: Vec<&str> = SENTINELS
        .iter()
        .copied()
        .filter(|s| words.contains(s))
        .collect();
    if found.is_empty() {
        return regex.to_string();
    }
    let alternatives: Vec<String> = found.iter().map(|s| regex_syntax::escape(s)).collect();
    format!("(?:{regex})|{}", alternatives.join("|"))
}

/// A schema every output satisfies, when all outputs are JSON objects or all are JSON arrays.
/// Compact JSON only (`whitespace_flexible: false`): the data stage compacts JSON answers, so
/// the program learns and is held to one spelling.
fn json_schema_of(outputs: &[&str]) -> Option<Value> {
    if outputs.is_empty() {
        return None;
    }
    let values: Vec<Value> = outputs
        .iter()
        .map(|o| serde_json::from_str::<Value>(o.trim()).ok())
        .collect::<Option<_>>()?;
    let all_objects = values.iter().all(Value::is_object);
    let all_arrays = values.iter().all(Value::is_array);
    if !(all_objects || all_arrays) {
        return None;
    }
    let mut schema = schema_of(&values.iter().collect::<Vec<_>>());
    if let Value::Object(m) = &mut schema {
        m.insert("x-guidance".into(), json!({"whitespace_flexible": false}));
    }
    Some(schema)
}

/// The loosest useful schema of several values: their JSON types; for objects whose examples all
/// have the same keys, those keys (all required, no others); for arrays, their items' schema.
fn schema_of(values: &[&Value]) -> Value {
    let mut types: Vec<&'static str> = Vec::new();
    for v in values {
        let t = type_name(v);
        if !types.contains(&t) {
            types.push(t);
        }
    }
    // An integer also satisfies "number": one type covers both.
    if types.contains(&"number") {
        types.retain(|t| *t != "integer");
    }
    if types.len() != 1 {
        return json!({ "type": types });
    }
    match types[0] {
        "object" => object_schema(values),
        "array" => {
            let items: Vec<&Value> = values
                .iter()
                .filter_map(|v| v.as_array())
                .flatten()
                .collect();
            if items.is_empty() {
                json!({"type": "array"})
            } else {
                json!({"type": "array", "items": schema_of(&items)})
            }
        }
        t => json!({ "type": t }),
    }
}

fn object_schema(values: &[&Value]) -> Value {
    let maps: Vec<&Map<String, Value>> = values.iter().filter_map(|v| v.as_object()).collect();
    let keys = |m: &Map<String, Value>| m.keys().cloned().collect::<Vec<_>>();
    let first = maps.first().map(|m| keys(m)).unwrap_or_default();
    let mut sorted_first = first.clone();
    sorted_first.sort();
    let same_keys = maps.iter().all(|m| {
        let mut k = keys(m);
        k.sort();
        k == sorted_first
    });
    if !same_keys || first.is_empty() {
        // Keys vary with the input (key/value extraction): any keys, values of the seen types.
        let all: Vec<&Value> = maps.iter().flat_map(|m| m.values()).collect();
        return if all.is_empty() {
            json!({"type": "object"})
        } else {
            json!({"type": "object", "additionalProperties": schema_of(&all)})
        };
    }
    let mut properties = Map::new();
    for k in &first {
        let vs: Vec<&Value> = maps.iter().filter_map(|m| m.get(k)).collect();
        properties.insert(k.clone(), schema_of(&vs));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": first,
        "additionalProperties": false,
    })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn label_sets_come_first() {
        let labels = vec!["a".to_string(), "b".to_string()];
        let (c, src) = infer(
            "Return ONLY a or b. Dates as YYYY-MM-DD.",
            Some(&labels),
            &[],
        )
        .unwrap();
        assert_eq!(src, ContractSource::SpecLabels);
        assert_eq!(c, OutputContract::Labels { labels });
    }

    #[test]
    fn fixed_key_objects_get_their_keys_and_types() {
        let outs = [
            r#"{"title":"Standup","minutes":15,"room":null}"#,
            r#"{"title":"Review","minutes":60,"room":"B2"}"#,
        ];
        let schema = json_schema_of(&outs).unwrap();
        assert_eq!(schema["required"], json!(["title", "minutes", "room"]));
        assert_eq!(schema["additionalProperties"], json!(false));
        assert_eq!(schema["properties"]["minutes"], json!({"type": "integer"}));
        assert_eq!(
            schema["properties"]["room"],
            json!({"type": ["null", "string"]})
        );
        assert_eq!(schema["x-guidance"], json!({"whitespace_flexible": false}));
    }

    #[test]
    fn varying_keys_allow_any_key_with_the_seen_value_types() {
        let outs = [r#"{"a":1,"b":true}"#, r#"{"name":"x"}"#];
        let schema = json_schema_of(&outs).unwrap();
        assert_eq!(schema["type"], json!("object"));
        assert_eq!(
            schema["additionalProperties"],
            json!({"type": ["integer", "boolean", "string"]})
        );
        assert!(schema.get("required").is_none());
    }

    #[test]
    fn arrays_get_an_item_schema_and_empty_arrays_any_items() {
        let schema = json_schema_of(&[r#"["a@b.c"]"#, "[]"]).unwrap();
        assert_eq!(schema["items"], json!({"type": "string"}));
        let schema = json_schema_of(&["[]"]).unwrap();
        assert!(schema.get("items").is_none());
        assert!(json_schema_of(&["[1]", "{}"]).is_none(), "mixed shapes");
        assert!(json_schema_of(&["plain text"]).is_none());
    }

    #[test]
    fn integers_and_floats_share_number() {
        let schema = json_schema_of(&[r#"{"x":1}"#, r#"{"x":1.5}"#]).unwrap();
        assert_eq!(schema["properties"]["x"], json!({"type": "number"}));
    }

    #[test]
    fn named_formats_become_patterns_with_the_spec_sentinels() {
        let (c, src) = infer(
            "Convert to ISO 8601 (YYYY-MM-DD). Output NONE if no date.",
            None,
            &[],
        )
        .unwrap();
        assert_eq!(src, ContractSource::SpecFormat("an ISO 8601 date"));
        assert_eq!(
            c,
            OutputContract::Pattern {
                regex: r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2})|NONE".into()
            }
        );
        let (c, _) = infer("Normalise to E.164.", None, &[]).unwrap();
        assert_eq!(
            c,
            OutputContract::Pattern {
                regex: r"\+[1-9][0-9]{6,14}".into()
            }
        );
        assert!(infer("Summarise the text in one sentence.", None, &["A summary."]).is_none());
    }

    #[test]
    fn example_outputs_are_read_as_their_labels() {
        let c = OutputContract::Labels {
            labels: vec!["ERROR".into(), "INFO".into()],
        };
        assert_eq!(as_answer(&c, "error."), "ERROR");
        assert_eq!(as_answer(&c, "other"), "other");
    }
}
