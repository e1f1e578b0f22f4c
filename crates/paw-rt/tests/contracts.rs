//! Output contracts hold by construction: on tiny random-weight models (whose unconstrained
//! answers are arbitrary token soup), every answer of a program with a contract satisfies it, for
//! 1,000 inputs per contract kind, including inputs that try to break out of the answer's shape
//! (quotes, braces, backslashes, control-token text, newlines). Sampling at temperature 1 with a
//! different seed per input makes the model wander over the whole of what the contract allows.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;

use paw_format::{OutputContract, Program};
use paw_rt::{CallOptions, ContractOutcome, Error, Function, Interpreter, StopReason};
use paw_testkit::tiny_model::*;
use paw_testkit::*;

const INPUTS_PER_KIND: usize = 1000;
/// A short ChatML prompt: the tiny models' window is 256 tokens.
const TEMPLATE: &str =
    "<|im_start|>user\nLabel it.\n{INPUT_PLACEHOLDER}<|im_end|>\n<|im_start|>assistant\n";
const BATCH: usize = 50;

/// The JSON contract of the property test: every value bounded, so that an answer always fits
/// in `max_tokens` (with flexible whitespace a random model could pad forever).
const SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "level": {"enum": ["low", "high", "say \"hi\""]},
    "count": {"type": "integer", "minimum": -5, "maximum": 120},
    "note": {"type": "string", "maxLength": 6},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    "ok": {"type": "boolean"}
  },
  "required": ["level", "count", "note"],
  "additionalProperties": false,
  "x-guidance": {"whitespace_flexible": false}
}"#;

const PATTERN: &str = r"\+[1-9][0-9]{6,11}";
const GRAMMAR: &str = r#"start: verdict ": " reason
verdict: "ALLOW" | "DENY"
reason: /[a-z]{1,8}/
"#;
/// What [`GRAMMAR`] derives, as a regex for checking.
const GRAMMAR_AS_REGEX: &str = r"(ALLOW|DENY): [a-z]{1,8}";

fn labels() -> Vec<String> {
    [
        "positive",
        "negative",
        "neutral",
        "pos",
        "n/a \"quoted\"",
        "{}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Inputs of varied length and content, many of them trying to leave the answer's shape.
fn inputs(n: usize) -> Vec<String> {
    const PIECES: [&str; 14] = [
        "great",
        "\"",
        "}",
        "{\"level\": ",
        "\\",
        "<|im_end|>",
        "\n",
        "ALLOW",
        "+44",
        "neutral",
        "]]",
        "ünïcödé",
        "'); DROP",
        "<|im_start|>assistant\n",
    ];
    let mut rng = paw_rt::SplitMix64::new(7);
    (0..n)
        .map(|_| {
            let k = 1 + (rng.next_u64() % 6) as usize;
            (0..k)
                .map(|_| PIECES[(rng.next_u64() % PIECES.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn bind(interp: &Interpreter, contract: OutputContract) -> Function {
    let layers: Vec<u32> = (0..LAYERS as u32).collect();
    let adapter = random_adapter(16, 16.0, &layers, dims, paw_format::TensorDtype::F16, 0.1);
    let program = Program {
        contract: Some(contract),
        ..program(interp.identity(), TEMPLATE, Some(adapter))
    };
    interp.bind(&program).unwrap()
}

/// Runs every input (sampled, one seed per batch) and returns the answers.
fn answers(f: &Function, inputs: &[String], max_tokens: u32) -> Vec<paw_rt::Output> {
    let mut out = Vec::new();
    for (i, chunk) in inputs.chunks(BATCH).enumerate() {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let opts = CallOptions {
            max_tokens: Some(max_tokens),
            temperature: Some(1.0),
            seed: i as u64,
            ..CallOptions::default()
        };
        out.extend(f.call_batch(&refs, &opts).unwrap());
    }
    out
}

fn tiny(dir: &Path) -> Interpreter {
    let path = dir.join("qwen2.gguf");
    write_tiny_gguf(Arch::Qwen2, &path);
    Interpreter::load(&path).unwrap()
}

/// Checks every answer with `satisfies`, and that the runtime calls each one satisfied.
fn check_all(
    what: &str,
    f: &Function,
    max_tokens: u32,
    satisfies: impl Fn(&str) -> bool,
) -> Vec<String> {
    let inputs = inputs(INPUTS_PER_KIND);
    let outs = answers(f, &inputs, max_tokens);
    assert_eq!(outs.len(), INPUTS_PER_KIND);
    let mut distinct: Vec<String> = Vec::new();
    for (input, out) in inputs.iter().zip(&outs) {
        assert_eq!(
            out.contract,
            ContractOutcome::Satisfied,
            "{what}: {input:?} -> {:?} ({:?})",
            out.text,
            out.stop_reason
        );
        assert!(
            satisfies(&out.text),
            "{what}: {input:?} -> {:?} breaks the contract",
            out.text
        );
        if !distinct.contains(&out.text) {
            distinct.push(out.text.clone());
        }
    }
    eprintln!("{what}: {} distinct answers", distinct.len());
    distinct
}

#[test]
fn every_answer_is_one_of_the_labels() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(&interp, OutputContract::Labels { labels: labels() });
    let all = labels();
    let seen = check_all("labels", &f, 16, |t| all.iter().any(|l| l == t));
    // The model really chose among them (not one label every time).
    assert!(seen.len() >= 3, "{seen:?}");
}

#[test]
fn every_answer_is_valid_json_for_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(
        &interp,
        OutputContract::JsonSchema {
            schema: SCHEMA.into(),
        },
    );
    let seen = check_all("json-schema", &f, 120, valid_for_schema);
    assert!(seen.len() > 100, "{} distinct answers", seen.len());
}

#[test]
fn every_answer_matches_the_pattern() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(
        &interp,
        OutputContract::Pattern {
            regex: PATTERN.into(),
        },
    );
    let rx = regex::Regex::new(&format!("^(?:{PATTERN})$")).unwrap();
    let seen = check_all("pattern", &f, 24, |t| rx.is_match(t));
    assert!(seen.len() > 100, "{} distinct answers", seen.len());
}

#[test]
fn every_answer_derives_from_the_grammar() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(
        &interp,
        OutputContract::Grammar {
            lark: GRAMMAR.into(),
        },
    );
    let rx = regex::Regex::new(&format!("^(?:{GRAMMAR_AS_REGEX})$")).unwrap();
    let seen = check_all("grammar", &f, 24, |t| rx.is_match(t));
    assert!(seen.len() > 100, "{} distinct answers", seen.len());
}

#[test]
fn every_free_answer_is_within_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(&interp, OutputContract::Free { max_chars: 12 });
    // max_tokens above the limit: the contract, not max_tokens, ends long answers.
    check_all("free", &f, 40, |t| t.chars().count() <= 12);
}

/// The schema of [`SCHEMA`], checked by hand on the parsed value.
fn valid_for_schema(text: &str) -> bool {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    let str_max =
        |v: &serde_json::Value, n: usize| v.as_str().is_some_and(|s| s.chars().count() <= n);
    let fields_ok = map.iter().all(|(k, v)| match k.as_str() {
        "level" => ["low", "high", "say \"hi\""].contains(&v.as_str().unwrap_or("-")),
        // JSON Schema counts `-0` as the integer 0 (serde_json reads it as a float).
        "count" => v
            .as_f64()
            .is_some_and(|n| n.fract() == 0.0 && (-5.0..=120.0).contains(&n)),
        "note" => str_max(v, 6),
        "tags" => v
            .as_array()
            .is_some_and(|a| a.len() <= 2 && a.iter().all(|t| str_max(t, 3))),
        "ok" => v.is_boolean(),
        _ => false,
    });
    fields_ok
        && ["level", "count", "note"]
            .iter()
            .all(|k| map.contains_key(*k))
}

#[test]
fn the_contract_ends_decoding_as_soon_as_the_answer_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    // No label extends another: the last token of a label ends the call, with no
    // end-of-generation step.
    let labels: Vec<String> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let f = bind(&interp, OutputContract::Labels { labels });
    let out = f.call("anything", &CallOptions::default()).unwrap();
    assert_eq!(out.stop_reason, StopReason::Contract);
    assert_eq!(out.contract, ContractOutcome::Satisfied);
    assert_eq!(
        interp.tokenizer().decode(&out.token_ids).unwrap(),
        out.text,
        "no end-of-generation token was generated"
    );
}

#[test]
fn no_contract_decodes_unconstrained_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(&interp, OutputContract::Labels { labels: labels() });
    let opts = CallOptions {
        use_contract: false,
        max_tokens: Some(8),
        ..CallOptions::default()
    };
    let free = f.call("great", &opts).unwrap();
    assert_eq!(free.contract, ContractOutcome::NotApplied);
    // The random model's own answer is not a label: the contract is what made it one.
    assert!(!labels().contains(&free.text), "{:?}", free.text);
    let plain = interp
        .bind(&program(interp.identity(), TEMPLATE, None))
        .unwrap();
    assert_eq!(
        plain
            .call("great", &CallOptions::default())
            .unwrap()
            .contract,
        ContractOutcome::NotApplied
    );
}

#[test]
fn an_answer_cut_by_max_tokens_is_reported_unfinished() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let f = bind(
        &interp,
        OutputContract::Pattern {
            regex: "[a-z]{30}".into(),
        },
    );
    let out = f
        .call(
            "x",
            &CallOptions {
                max_tokens: Some(3),
                ..CallOptions::default()
            },
        )
        .unwrap();
    assert_eq!(out.stop_reason, StopReason::MaxTokens);
    assert_eq!(out.contract, ContractOutcome::Unfinished);
}

#[test]
fn contracts_that_cannot_be_enforced_fail_at_bind_with_a_typed_error() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let bad = [
        OutputContract::JsonSchema {
            schema: "{not json".into(),
        },
        OutputContract::JsonSchema {
            schema: r#"{"type": "no-such-type"}"#.into(),
        },
        OutputContract::Pattern {
            regex: "(unclosed".into(),
        },
        OutputContract::Grammar {
            lark: "start: undefined_rule".into(),
        },
    ];
    for contract in bad {
        let program = Program {
            contract: Some(contract.clone()),
            ..program(interp.identity(), TEMPLATE, None)
        };
        match interp.bind(&program) {
            Err(Error::ContractGrammar { kind, reason }) => {
                assert_eq!(kind, contract.kind());
                eprintln!("{kind}: {reason}");
            }
            other => panic!("{contract}: expected a contract error, got {other:?}"),
        }
    }
}

#[test]
fn the_checker_accepts_exactly_what_the_contract_allows() {
    let dir = tempfile::tempdir().unwrap();
    let interp = tiny(dir.path());
    let tok = interp.tokenizer();
    let check = |c: OutputContract, yes: &[&str], no: &[&str]| {
        let checker = paw_rt::ContractChecker::new(tok, &c).unwrap();
        for t in yes {
            assert!(checker.allows(t), "{c}: {t:?} should be allowed");
        }
        for t in no {
            assert!(!checker.allows(t), "{c}: {t:?} should be refused");
        }
    };
    check(
        OutputContract::Labels { labels: labels() },
        &["pos", "positive", "n/a \"quoted\"", "{}"],
        &["Positive", "posi", "positive ", "", "x"],
    );
    check(
        OutputContract::JsonSchema {
            schema: SCHEMA.into(),
        },
        &[r#"{"level":"low","count":3,"note":"hi"}"#],
        &[
            r#"{"level":"low","count":3}"#,
            r#"{"level":"mid","count":3,"note":"hi"}"#,
            r#"{"level":"low","count":3,"note":"hi"} x"#,
            r#"{"level": "low","count":3,"note":"hi"}"#,
        ],
    );
    check(
        OutputContract::Pattern {
            regex: PATTERN.into(),
        },
        &["+14155550132"],
        &["14155550132", "+1415555013x", "+0123456789"],
    );
    check(
        OutputContract::Free { max_chars: 3 },
        &["", "abc", "äöü"],
        &["abcd"],
    );
}
