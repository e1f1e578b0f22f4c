//! `paw init`: a starter project (a commented `paw.toml` with one function, its examples and
//! tests) that `paw build` and `paw test` accept as written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::output::outln;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The project directory (created if missing).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

const MANIFEST: &str = r#"# paw project manifest: spec/paw-toml.md. `paw build` compiles every function below into
# the store and pins it in paw.lock; `paw test` runs each function's tests.

[defaults]
# interpreter = "qwen2.5-coder-0.5b-instruct-q4_k_m"  # the small model that runs programs
# teacher = "qwen2.5-coder-1.5b-instruct-q4_k_m"      # the larger one that writes training data; "none" for examples only
# seed = 0

[test]
threshold = 0.8   # the share of test cases a function must get right

[[function]]
name = "log_alert"
spec = """
Decide whether a server log line needs a human now. Answer ALERT for failures, crashes,
data loss or security problems, and QUIET for routine messages, debug output and
warnings that resolve themselves.
"""
examples = "log_alert.examples.jsonl"   # trusted input/output pairs
tests = "log_alert.tests.jsonl"         # held-out cases for `paw test`
labels = ["ALERT", "QUIET"]             # the output contract: answers are exactly one of these
"#;

const EXAMPLES: &str = r#"{"input": "[db] replication stopped: disk full on /var/lib/pg", "output": "ALERT"}
{"input": "GET /health 200 1ms", "output": "QUIET"}
{"input": "auth: 200 failed logins for admin from 203.0.113.9 in 60s", "output": "ALERT"}
{"input": "cache warmed in 340ms (12034 keys)", "output": "QUIET"}
"#;

const TESTS: &str = r#"{"input": "kernel: Out of memory: Killed process 4121 (api)", "output": "ALERT"}
{"input": "scheduler: job nightly-report finished in 12.4s", "output": "QUIET"}
{"input": "payment webhook signature mismatch, request rejected (x37 in 5 min)", "output": "ALERT"}
{"input": "DEBUG pool size 8, idle 6", "output": "QUIET"}
"#;

pub fn run(args: InitArgs) -> Result<()> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("paw.toml", MANIFEST),
        ("log_alert.examples.jsonl", EXAMPLES),
        ("log_alert.tests.jsonl", TESTS),
    ];
    // Nothing is written if any file exists: init never overwrites a user's work.
    if let Some((name, _)) = files.iter().find(|(n, _)| dir.join(n).exists()) {
        bail!(
            "{} already exists; paw init writes only into a directory without it",
            dir.join(name).display()
        );
    }
    for (name, text) in files {
        write_new(&dir.join(name), text)?;
    }
    outln!(
        "wrote {}: one function, log_alert.\n  next: `paw build` (compiles it), `paw test` (runs its tests)",
        dir.join("paw.toml").display()
    );
    Ok(())
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
