//! `paw serve` as a process (issue 18): a lock's functions by name, equal to `paw run`; SIGHUP
//! reloads the lock; SIGTERM ends it cleanly. Tiny random-weight model: runs in every plain
//! `cargo test`. (The server's endpoints, errors, queue and shutdown are tested in
//! `crates/paw-serve/tests/serve.rs`.)
#![allow(clippy::unwrap_used)]
#![cfg(unix)]

use std::io::{BufRead, BufReader};
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use paw_store::{Lockfile, Store};

fn paw_in(cwd: &Path, home: &Path, args: &[&str]) -> std::process::Output {
    paw_testkit::run_in(env!("CARGO_BIN_EXE_paw"), cwd, home, args)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Status and JSON of `POST {base}/v1/functions/{name}` with one input.
fn call(base: &str, name: &str, input: &str) -> (u16, serde_json::Value) {
    let result = ureq::post(&format!("{base}/v1/functions/{name}"))
        .timeout(Duration::from_secs(60))
        .send_json(serde_json::json!({ "input": input }));
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    (response.status(), response.into_json().unwrap())
}

#[test]
fn serves_a_lock_by_name_reloads_on_sighup_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, home) = (tmp.path().join("project"), tmp.path().join("home"));
    std::fs::create_dir_all(&dir).unwrap();
    let model = tmp.path().join("tiny.gguf");
    paw_testkit::tiny_model::write_tiny_gguf(paw_testkit::tiny_model::Arch::Qwen2, &model);
    paw_testkit::stdout_of_success(&paw_in(
        &dir,
        &home,
        &["models", "add", model.to_str().unwrap()],
    ));
    let store = Store::open(&home).unwrap();
    let identity = paw_rt::identity(&model, None).unwrap();
    let sha256 = paw_store::sha256_file(&model).unwrap();
    let mut lock = Lockfile::default();
    for (name, prefix) in [("alpha", "A"), ("beta", "B")] {
        let template = format!(
            "<|im_start|>user\n{prefix}: {}<|im_end|>\n<|im_start|>assistant\n",
            paw_format::INPUT_PLACEHOLDER
        );
        let path = tmp.path().join(format!("{name}.paw"));
        paw_testkit::program(&identity, &template, None)
            .write_to(&path)
            .unwrap();
        let id = store.add_program_file(&path).unwrap().id;
        lock.functions
            .insert(name.into(), common::hand_locked(id, &identity, &sha256));
    }
    let lock_path = dir.join("paw.lock");
    lock.write(&lock_path).unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_paw"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(&dir)
        .env("PAW_HOME", &home)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .rsplit_once(" on ")
        .map(|(_, url)| url.to_owned())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    assert!(
        line.starts_with("serving alpha, beta on http://127.0.0.1:"),
        "{line}"
    );

    for name in ["alpha", "beta"] {
        let (status, v) = call(&base, name, "I love it");
        assert_eq!(status, 200, "{v}");
        let id = lock.functions[name].program.to_string();
        let run = paw_testkit::stdout_of_success(&paw_in(&dir, &home, &["run", &id, "I love it"]));
        assert_eq!(
            v["output"]["text"],
            run.strip_suffix('\n').unwrap(),
            "{name}"
        );
    }

    // SIGHUP: the lock now pins beta only.
    lock.functions.remove("alpha");
    lock.write(&lock_path).unwrap();
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(&base, "alpha", "x").0 != 404 {
        assert!(Instant::now() < deadline, "the reload did not take effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(call(&base, "beta", "x").0, 200);

    signal(&child, "TERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "paw serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn serve_without_a_lock_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = paw_in(tmp.path(), &tmp.path().join("home"), &["serve"]);
    let err = paw_testkit::stderr_of_failure(&out);
    assert!(err.contains("paw.lock"), "{err}");
}
