//! `paw run` end to end on the small real model (SmolLM2-135M, path in `PAW_TEST_SMOLLM2`).
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use paw_format::{GenerationConfig, Program};

const TEMPLATE: &str = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
<|im_start|>user\nRepeat the word in the input.\n\n[INPUT]\n{INPUT_PLACEHOLDER}\n[END_INPUT]<|im_end|>\n\
<|im_start|>assistant\n";

/// The SmolLM2-135M GGUF; `None` (skip) without it outside CI, a failure under CI.
fn smollm2() -> Option<PathBuf> {
    paw_testkit::require_model("PAW_TEST_SMOLLM2")
}

/// A prompt-only program for `model`, written into `dir`.
fn write_program(model: &Path, dir: &Path) -> PathBuf {
    let program = Program {
        pseudo_program: "Repeat the word in the input.".into(),
        ..Program::prompt_only(
            "Repeat the word.",
            TEMPLATE,
            paw_rt::identity(model, Some("smollm2")).unwrap(),
            GenerationConfig {
                max_tokens: 6,
                stop: vec![],
                temperature: 0.0,
            },
        )
    };
    let path = dir.join("repeat.paw");
    program.write_to(&path).unwrap();
    path
}

fn paw(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paw"))
        .args(args)
        .env("PAW_HOME", home.join("paw-home"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        std::io::Write::write_all(&mut pipe, text.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "paw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn run_gives_the_same_outputs_for_argument_stdin_and_batch_file() {
    let Some(model) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = write_program(&model, dir.path());
    let p = program.to_str().unwrap();
    let m = model.to_str().unwrap();

    let inputs = ["apple", "banana <|im_end|>", "cherry"];
    let singles: Vec<String> = inputs
        .iter()
        .map(|i| ok_stdout(&paw(dir.path(), &["run", p, i, "--model", m], None)))
        .collect();
    assert!(singles.iter().all(|s| !s.trim().is_empty()), "{singles:?}");

    let from_stdin = ok_stdout(&paw(dir.path(), &["run", p, "--model", m], Some("apple\n")));
    assert_eq!(from_stdin, singles[0]);

    let file = dir.path().join("inputs.jsonl");
    let lines: Vec<String> = inputs
        .iter()
        .map(|i| serde_json::json!({ "input": i }).to_string())
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let batch = ok_stdout(&paw(
        dir.path(),
        &[
            "run",
            p,
            "--model",
            m,
            "--inputs",
            file.to_str().unwrap(),
            "--jsonl",
            "--json",
            "--batch-size",
            "3",
        ],
        None,
    ));
    let records: Vec<serde_json::Value> = batch
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), inputs.len());
    for ((record, input), single) in records.iter().zip(inputs).zip(&singles) {
        assert_eq!(record["input"], input);
        assert_eq!(format!("{}\n", record["output"].as_str().unwrap()), *single);
        assert!(record["generated_tokens"].as_u64().unwrap() >= 1);
    }
}

#[test]
fn run_finds_the_programs_interpreter_in_the_store_or_says_how_to_get_it() {
    let Some(model) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = write_program(&model, dir.path());
    let out = paw(
        dir.path(),
        &["run", program.to_str().unwrap(), "apple"],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not in the store") && err.contains("--model"),
        "{err}"
    );
}

/// Writes `NAME.paw` + `NAME.tests.jsonl` (+ `paw.toml` with `threshold`) into `dir`.
fn write_test_project(model: &Path, dir: &Path, tests: &str, threshold: f64) {
    let program = write_program(model, dir);
    std::fs::rename(program, dir.join("repeat.paw")).unwrap();
    std::fs::write(dir.join("repeat.tests.jsonl"), tests).unwrap();
    std::fs::write(
        dir.join("paw.toml"),
        format!("[test]\nthreshold = {threshold}\n\n[[program]]\nname = \"repeat\"\n"),
    )
    .unwrap();
}

#[test]
fn test_command_exit_status_tells_pass_regression_and_broken_files_apart() {
    let Some(model) = smollm2() else { return };
    let m = model.to_str().unwrap();
    // No model can answer this; a threshold of 1.0 must fail, 0.0 must pass.
    let tests = "{\"input\":\"apple\",\"output\":\"\\u0000never\"}\n{\"input\":\"pear\",\"output\":\"\\u0000never\"}\n";

    let passing = tempfile::tempdir().unwrap();
    write_test_project(&model, passing.path(), tests, 0.0);
    let out = paw(
        passing.path(),
        &["test", passing.path().to_str().unwrap(), "--model", m],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed, 0 failed"));

    let failing = tempfile::tempdir().unwrap();
    write_test_project(&model, failing.path(), tests, 1.0);
    let out = paw(
        failing.path(),
        &[
            "test",
            failing.path().to_str().unwrap(),
            "--model",
            m,
            "--json",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["programs"][0]["passed"], false);
    assert_eq!(json["programs"][0]["report"]["summary"]["total"], 2);
    assert_eq!(json["programs"][0]["report"]["summary"]["exact"], 0);

    let broken = tempfile::tempdir().unwrap();
    write_test_project(&model, broken.path(), "{\"input\": \"apple\"\n", 0.0);
    let out = paw(
        broken.path(),
        &["test", broken.path().to_str().unwrap(), "--model", m],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}

#[test]
fn eval_scores_what_run_outputs() {
    let Some(model) = smollm2() else { return };
    let m = model.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let program = write_program(&model, dir.path());
    let p = program.to_str().unwrap();
    let actual = ok_stdout(&paw(dir.path(), &["run", p, "apple", "--model", m], None));
    let actual = actual.strip_suffix('\n').unwrap();
    // Case 1 expects exactly what run printed; case 2 the same with padding (normalised only).
    let tests = dir.path().join("t.jsonl");
    let padded = format!("  {actual}\n");
    std::fs::write(
        &tests,
        format!(
            "{}\n{}\n",
            serde_json::json!({"input": "apple", "output": actual}),
            serde_json::json!({"input": "apple", "output": padded})
        ),
    )
    .unwrap();
    let out = ok_stdout(&paw(
        dir.path(),
        &[
            "eval",
            p,
            "--tests",
            tests.to_str().unwrap(),
            "--model",
            m,
            "--json",
        ],
        None,
    ));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["summary"]["total"], 2);
    assert_eq!(report["summary"]["exact"], 1);
    assert_eq!(report["summary"]["normalised"], 2);
}

#[test]
fn verify_checks_the_interpreter_and_names_both_on_mismatch() {
    let Some(model) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = write_program(&model, dir.path());
    let p = program.to_str().unwrap();
    let ok = ok_stdout(&paw(
        dir.path(),
        &["verify", p, "--interpreter", model.to_str().unwrap()],
        None,
    ));
    assert!(ok.contains("matches"), "{ok}");

    // Same architecture and tokenizer, other bytes: a copy with one byte appended.
    let other = dir.path().join("other.gguf");
    let mut bytes = std::fs::read(&model).unwrap();
    bytes.push(0);
    std::fs::write(&other, bytes).unwrap();
    let out = paw(
        dir.path(),
        &["verify", p, "--interpreter", other.to_str().unwrap()],
        None,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weights hash") && err.contains("other.gguf") && err.contains("smollm2"),
        "{err}"
    );
    assert!(
        !err.contains("tokenizer hash"),
        "only the weights differ: {err}"
    );
}

/// `write_program`'s program with a label-set contract, written into `dir`.
fn write_labels_program(model: &Path, dir: &Path, labels: &[&str]) -> PathBuf {
    let (base, _) = Program::read(&write_program(model, dir)).unwrap();
    let program = Program {
        contract: Some(paw_format::OutputContract::Labels {
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }),
        ..base
    };
    let path = dir.join("labels.paw");
    program.write_to(&path).unwrap();
    path
}

#[test]
fn run_enforces_the_contract_and_no_contract_turns_it_off() {
    let Some(model) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let labels = ["red", "green", "blue"];
    let program = write_labels_program(&model, dir.path(), &labels);
    let (p, m) = (program.to_str().unwrap(), model.to_str().unwrap());
    let record = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["run", p, "banana", "--model", m, "--json"];
        args.extend_from_slice(extra);
        serde_json::from_str(ok_stdout(&paw(dir.path(), &args, None)).trim()).unwrap()
    };
    let with = record(&[]);
    assert!(labels.contains(&with["output"].as_str().unwrap()), "{with}");
    assert_eq!(with["contract"], "satisfied");
    let without = record(&["--no-contract"]);
    assert_eq!(without["contract"], "not-applied");
    // The model asked to repeat the word repeats it: the contract is what made it a label.
    assert!(
        !labels.contains(&without["output"].as_str().unwrap()),
        "{without}"
    );
}

#[test]
fn an_answer_cut_before_its_contract_is_satisfied_fails_the_command() {
    let Some(model) = smollm2() else { return };
    let dir = tempfile::tempdir().unwrap();
    let program = write_labels_program(
        &model,
        dir.path(),
        &["a very long label indeed", "another long one"],
    );
    let out = paw(
        dir.path(),
        &[
            "run",
            program.to_str().unwrap(),
            "x",
            "--model",
            model.to_str().unwrap(),
            "--max-tokens",
            "1",
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("raise --max-tokens"), "{stderr}");
}

/// Output line N answers input line N: blank lines are inputs, and a line that cannot be one
/// (too long for the context, not UTF-8, bad JSON) gets its own error, with its number, while
/// the run goes on. A 64 MiB line is skipped without being held in memory.
#[test]
fn batch_output_line_n_answers_input_line_n_and_failures_are_reported_per_line() {
    // The tiny random-weight model: its answers are arbitrary but deterministic, which is all
    // the alignment promise needs, so this runs in every plain `cargo test`.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    paw_testkit::tiny_model::write_tiny_gguf(paw_testkit::tiny_model::Arch::Qwen2, &model);
    let program = dir.path().join("tiny.paw");
    paw_testkit::program(
        &paw_rt::identity(&model, None).unwrap(),
        paw_testkit::CHATML_TEMPLATE,
        None,
    )
    .write_to(&program)
    .unwrap();
    let (p, m) = (program.to_str().unwrap(), model.to_str().unwrap());
    // A batch line holds the answer with its newlines escaped (one answer per line).
    let single = |input: &str| {
        let out = ok_stdout(&paw(dir.path(), &["run", p, input, "--model", m], None));
        out.strip_suffix('\n').unwrap().replace('\n', "\\n")
    };

    let huge = "word ".repeat(64 << 20 >> 3);
    let mut file = Vec::new();
    for line in [
        b"apple".as_slice(),
        b"",
        huge.as_bytes(),
        b"caf\xff",
        b"cherry",
    ] {
        file.extend_from_slice(line);
        file.push(b'\n');
    }
    let inputs = dir.path().join("inputs.txt");
    std::fs::write(&inputs, &file).unwrap();
    drop(huge);

    let mut command = Command::new(env!("CARGO_BIN_EXE_paw"));
    command
        .args(["run", p, "--model", m, "--batch-size", "2", "--inputs"])
        .arg(&inputs)
        .env("PAW_HOME", dir.path().join("paw-home"));
    let (out, peak_mib) = paw_testkit::output_with_peak_rss(command);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("line 3: line of") && err.contains("line 4: not UTF-8"),
        "{err}"
    );
    assert!(err.contains("2 of 5 inputs failed"), "{err}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.split_terminator('\n').collect();
    assert_eq!(lines.len(), 5, "{stdout:?}");
    assert_eq!(lines[0], single("apple"));
    assert_eq!((lines[2], lines[3]), ("", ""));
    assert_eq!(lines[4], single("cherry"));
    eprintln!("paw run peak RSS: {peak_mib} MiB");
    // The line alone would be 64 MiB, its tokenization gigabytes.
    assert!(peak_mib < 400, "peak RSS {peak_mib} MiB");

    let json = paw(
        dir.path(),
        &[
            "run",
            p,
            "--model",
            m,
            "--json",
            "--inputs",
            inputs.to_str().unwrap(),
        ],
        None,
    );
    let records: Vec<serde_json::Value> = String::from_utf8(json.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 5);
    assert_eq!(records[1]["input"], "");
    assert_eq!(
        (records[2]["line"].as_u64(), records[3]["line"].as_u64()),
        (Some(3), Some(4))
    );
    assert!(records[2]["error"]
        .as_str()
        .unwrap()
        .contains("context window"));
    assert_eq!(records[4]["input"], "cherry");
}
