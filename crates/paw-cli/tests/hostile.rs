//! The hostile-input suite (`paw_testkit::hostile`): every broken model file ends `paw run` and
//! `paw verify --interpreter` with a typed error naming what is wrong: exit 1, no panic, and
//! memory bounded far below what the file's claims would take.
#![allow(clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use paw_testkit::hostile::Kind;

/// The outcome of `paw ARGS` and its peak resident memory (MiB).
fn paw_watched(home: &Path, args: &[&str]) -> (std::process::Output, u64) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paw"));
    command
        .args(args)
        .env("PAW_HOME", home)
        .env_remove("RUST_LOG");
    paw_testkit::output_with_peak_rss(command)
}

fn fixtures_hostile() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hostile")
}

/// `fixtures/hostile/` holds exactly what the generator writes (`cargo xtask hostile` rewrites it).
#[test]
fn committed_hostile_suite_is_what_the_generator_writes() {
    let dir = tempfile::tempdir().unwrap();
    let cases = paw_testkit::hostile::write_suite(dir.path());
    assert!(cases.len() >= 45, "{}", cases.len());
    let fresh = paw_testkit::files_under(dir.path());
    let committed = paw_testkit::files_under(&fixtures_hostile());
    let differ: Vec<&String> = fresh
        .keys()
        .chain(committed.keys())
        .filter(|k| fresh.get(*k) != committed.get(*k))
        .collect();
    assert!(
        differ.is_empty(),
        "fixtures/hostile differs from the generator (run `cargo xtask hostile`): {differ:?}"
    );
}

/// The suite's model and program cases through `paw run` and `paw verify`, and its project cases
/// through `paw test`: each a typed error naming what is wrong (exit 1, exit 2 for `paw test`),
/// no panic, peak memory under 300 MiB whatever the file claims.
#[test]
fn every_hostile_file_is_a_typed_error_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("store");
    let mut cases = paw_testkit::hostile::read_suite(&fixtures_hostile());
    cases.extend(paw_testkit::hostile::write_weighted_cases(
        &dir.path().join("weighted"),
    ));
    let tiny = dir.path().join("tiny.gguf");
    paw_testkit::tiny_model::write_tiny_gguf(paw_testkit::tiny_model::Arch::Qwen2, &tiny);
    let tiny = tiny.to_str().unwrap();
    let fallback = fixtures_hostile().join("../programs/prompt-only.paw");
    let mut failures = Vec::new();
    let mut runs = 0;
    for case in &cases {
        let path = case.path.to_str().unwrap();
        let commands: Vec<(Vec<&str>, i32)> = match case.kind {
            Kind::Model => {
                // A program for the file itself where its identity can be read (so that a file
                // that loads is also run), else any program.
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
                let program = program.to_str().unwrap().to_string();
                let program: &str = Box::leak(program.into_boxed_str());
                vec![
                    (vec!["run", program, "some input", "--model", path], 1),
                    (vec!["verify", program, "--interpreter", path], 1),
                ]
            }
            Kind::Program => vec![
                (vec!["run", path, "some input", "--model", tiny], 1),
                (vec!["verify", path, "--interpreter", tiny], 1),
            ],
            Kind::Project => vec![(vec!["test", path], 2)],
        };
        for (args, code) in commands {
            runs += 1;
            let (out, peak_mib) = paw_watched(&home, &args);
            let err = String::from_utf8_lossy(&out.stderr);
            // A program whose container is sound passes `verify` (which does not run it); a
            // model whose metadata is sound only fails verify on its identity.
            let loads_only_to_fail_at_run = args[0] == "verify"
                && matches!(
                    case.expect.as_str(),
                    "non-finite logit" | "non-finite" | "rank"
                );
            let expected = if loads_only_to_fail_at_run {
                matches!(out.status.code(), Some(0 | 1))
            } else {
                out.status.code() == Some(code)
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
    assert!(runs >= 90, "{runs}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Hostile project and text files too large to commit: an oversized `paw.toml`, an over-long JSONL line, an oversized spec.
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
            "jsonl-line-huge",
            project("jsonl-line-huge", ok_toml, long_line.as_bytes()),
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
