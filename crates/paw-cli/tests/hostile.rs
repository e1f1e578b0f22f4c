//! The hostile-input suite (`paw_testkit::hostile`): every broken model file ends `paw run` and
//! `paw verify --interpreter` with a typed error naming what is wrong: exit 1, no panic, and
//! memory bounded far below what the file's claims would take.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

/// The outcome of `paw ARGS` and its peak resident memory (MiB).
fn paw_watched(home: &Path, args: &[&str]) -> (std::process::Output, u64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paw"));
    command
        .args(args)
        .env("PAW_HOME", home)
        .env_remove("RUST_LOG");
    paw_testkit::output_with_peak_rss(command)
}

#[test]
fn every_hostile_model_file_is_a_typed_error_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let cases = paw_testkit::hostile::hostile_ggufs(dir.path());
    assert!(cases.len() >= 25, "{}", cases.len());
    let fallback =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/programs/prompt-only.paw");
    let mut failures = Vec::new();
    for case in &cases {
        let model = case.path.to_str().unwrap();
        // A program for the file itself where its identity can be read (so that a file that
        // loads is also run), else any program.
        let program = match paw_rt::identity(&case.path, None) {
            Ok(identity) => {
                let p = dir.path().join(format!("{}.paw", case.name));
                paw_testkit::program(&identity, paw_testkit::CHATML_TEMPLATE, None)
                    .write_to(&p)
                    .unwrap();
                p
            }
            Err(_) => fallback.clone(),
        };
        let program = program.to_str().unwrap();
        for args in [
            vec!["run", program, "some input", "--model", model],
            vec!["verify", program, "--interpreter", model],
        ] {
            let (out, peak_mib) = paw_watched(&home, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            let verify_of_loadable = args[0] == "verify" && case.expect == "non-finite logit";
            let expected = if verify_of_loadable {
                // Its metadata is sound: verify only finds the identity (weights) differ, or
                // passes for its own program.
                out.status.code() == Some(0) || out.status.code() == Some(1)
            } else {
                out.status.code() == Some(1)
                    && err.to_lowercase().contains(&case.expect.to_lowercase())
            };
            if !expected || err.contains("panicked") || peak_mib > 300 {
                failures.push(format!(
                    "{} ({}): exit {:?}, peak {peak_mib} MiB, stderr: {err}",
                    case.name,
                    args[0],
                    out.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Hostile project and text files: oversized, unknown keys, over-long or non-UTF-8 JSONL lines.
/// Each ends in a typed error naming the file, with memory bounded (nothing is read whole
/// beyond 1 MiB, no JSONL line beyond its cap).
#[test]
fn hostile_project_files_are_typed_errors_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let project = |name: &str, toml: &[u8], tests: &[u8]| {
        let p = dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("paw.toml"), toml).unwrap();
        std::fs::write(p.join("t.tests.jsonl"), tests).unwrap();
        p
    };
    let ok_toml = b"[[program]]\nname = \"t\"\n".as_slice();
    let huge = "#".repeat(64 << 20);
    let long_line = format!(
        "{{\"input\": \"{}\", \"output\": \"x\"}}\n",
        "a".repeat(32 << 20)
    );
    let cases: Vec<(&str, std::path::PathBuf, &str)> = vec![
        (
            "toml-huge",
            project("toml-huge", huge.as_bytes(), b""),
            "larger than",
        ),
        (
            "toml-unknown-key",
            project(
                "toml-unknown-key",
                b"[[program]]\nname = \"t\"\nsurprise = 1\n",
                b"",
            ),
            "unknown field",
        ),
        (
            "toml-not-utf8",
            project("toml-not-utf8", b"name = \"\xff\"\n", b""),
            "UTF-8",
        ),
        (
            "jsonl-line-huge",
            project("jsonl-line-huge", ok_toml, long_line.as_bytes()),
            "line 1",
        ),
        (
            "jsonl-not-json",
            project("jsonl-not-json", ok_toml, b"{\"input\": \n"),
            "line 1",
        ),
    ];
    let mut failures = Vec::new();
    for (name, path, expect) in &cases {
        let (out, peak_mib) = paw_watched(&home, &["test", path.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || !err.contains(expect)
            || err.contains("panicked")
            || peak_mib > 100
        {
            failures.push(format!(
                "{name}: exit {:?}, peak {peak_mib} MiB: {err}",
                out.status.code()
            ));
        }
    }
    let spec = dir.path().join("spec.txt");
    std::fs::write(&spec, &huge).unwrap();
    let (out, peak_mib) = paw_watched(&home, &["compile", "--spec-file", spec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(1) || !err.contains("larger than") || peak_mib > 100 {
        failures.push(format!(
            "spec-huge: exit {:?}, peak {peak_mib} MiB: {err}",
            out.status.code()
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
