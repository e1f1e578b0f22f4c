//! The `paw` binary end to end on fixture programs, with an empty store per test.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/programs")
        .join(name)
}

/// Runs `paw ARGS` with `PAW_HOME` set to `home`.
fn paw(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paw"))
        .args(args)
        .env("PAW_HOME", home.join("paw-home"))
        .env_remove("RUST_LOG")
        .output()
        .expect("paw runs")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "paw failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 stdout")
}

#[test]
fn inspect_prints_every_field() {
    let home = tempfile::tempdir().unwrap();
    for name in ["adapter-mixed.paw", "prompt-only.paw"] {
        let path = fixture(name);
        let text = stdout_of(&paw(home.path(), &["inspect", path.to_str().unwrap()]));
        insta::assert_snapshot!(format!("inspect_{name}"), text);
    }
}

#[test]
fn inspect_json_is_stable() {
    let home = tempfile::tempdir().unwrap();
    let path = fixture("adapter-mixed.paw");
    let text = stdout_of(&paw(
        home.path(),
        &["inspect", "--json", path.to_str().unwrap()],
    ));
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    insta::assert_json_snapshot!("inspect_json_adapter-mixed", json);
}

#[test]
fn added_program_is_found_by_unique_id_prefix() {
    let home = tempfile::tempdir().unwrap();
    let path = fixture("prompt-only.paw");
    let added = stdout_of(&paw(
        home.path(),
        &["add", "--json", path.to_str().unwrap()],
    ));
    let added: serde_json::Value = serde_json::from_str(&added).unwrap();
    let id = added[0]["id"].as_str().unwrap().to_owned();
    let prefix = &id[..10];
    let by_prefix = stdout_of(&paw(home.path(), &["inspect", "--json", prefix]));
    let by_prefix: serde_json::Value = serde_json::from_str(&by_prefix).unwrap();
    assert_eq!(by_prefix["id"], id.as_str());

    let listed = stdout_of(&paw(home.path(), &["list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
}

#[test]
fn verify_rejects_a_tampered_file_and_names_it() {
    let home = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(fixture("adapter-mixed.paw")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let tampered = home.path().join("tampered.paw");
    std::fs::write(&tampered, &bytes).unwrap();
    let out = paw(home.path(), &["verify", tampered.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tampered.paw"), "error names the file: {err}");

    let ok = stdout_of(&paw(
        home.path(),
        &["verify", fixture("adapter-mixed.paw").to_str().unwrap()],
    ));
    assert!(ok.starts_with("ok b3:"), "{ok}");
}

#[test]
fn unknown_program_reference_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let out = paw(home.path(), &["inspect", "b3:0123"]);
    assert!(!out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
}

#[test]
fn models_lists_the_manifest_when_nothing_is_installed() {
    let home = tempfile::tempdir().unwrap();
    let text = stdout_of(&paw(home.path(), &["models"]));
    insta::assert_snapshot!(text);
    assert_eq!(stdout_of(&paw(home.path(), &["models", "list"])), text);

    let json = stdout_of(&paw(home.path(), &["models", "--json"]));
    assert_eq!(
        stdout_of(&paw(home.path(), &["models", "list", "--json"])),
        json
    );
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    let smol = &rows.as_array().unwrap()[2];
    assert_eq!(smol["id"], "smollm2-135m-instruct-q4_1");
    assert_eq!(smol["installed"], serde_json::Value::Null);
    assert_eq!(smol["get"], "paw models fetch smollm2-135m-instruct-q4_1");
}

#[test]
fn models_path_and_fetch_report_missing_and_unknown_models() {
    let home = tempfile::tempdir().unwrap();
    let out = paw(
        home.path(),
        &["models", "path", "smollm2-135m-instruct-q4_1"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: model smollm2-135m-instruct-q4_1 is known but not installed: run \
         `paw models fetch smollm2-135m-instruct-q4_1` (or pass a path to the weights)\n"
    );

    // Every id is checked before anything is downloaded.
    let out = paw(
        home.path(),
        &["models", "fetch", "smollm2-135m-instruct-q4_1", "typo"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unknown model id `typo`; known ids: "),
        "{err}"
    );

    let out = paw(home.path(), &["models", "fetch", "qwen3-0.6b"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("download the hub repository Qwen/Qwen3-0.6B"),
        "{err}"
    );
}

#[test]
fn export_writes_a_gguf_lora_and_refuses_prompt_only_programs() {
    let home = tempfile::tempdir().unwrap();
    let out = home.path().join("adapter.gguf");
    let program = fixture("adapter-mixed.paw");
    let text = stdout_of(&paw(
        home.path(),
        &[
            "export",
            program.to_str().unwrap(),
            "--format",
            "gguf-lora",
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert!(text.starts_with("wrote"), "{text}");
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..4], b"GGUF");

    let refused = paw(
        home.path(),
        &[
            "export",
            fixture("prompt-only.paw").to_str().unwrap(),
            "--format",
            "gguf-lora",
            "-o",
            home.path().join("x.gguf").to_str().unwrap(),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no LoRA adapter"));
    assert!(
        !home.path().join("x.gguf").exists(),
        "nothing is written on error"
    );
}
