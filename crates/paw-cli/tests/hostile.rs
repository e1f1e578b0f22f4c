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
