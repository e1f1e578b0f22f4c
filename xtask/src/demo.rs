//! `cargo xtask demo`: paw's main job on the default models, in one command. Fetches the
//! default interpreter and teacher if missing, builds `paw`, compiles the log-triage task of the
//! suite from its spec and examples, and runs the program on a few of its held-out inputs.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use paw_store::Manifest;

use crate::{models, repo_root};

/// The suite task the demo compiles.
const TASK: &str = "fixtures/fuzzybench/log-alert";
/// Held-out inputs the demo runs the compiled program on.
const DEMO_INPUTS: usize = 8;

pub fn run() -> Result<()> {
    let manifest = Manifest::embedded()?;
    let ids = [
        manifest.default_interpreter().id.clone(),
        manifest.default_teacher().id.clone(),
    ];
    models::fetch(&ids)?;

    let root = repo_root();
    let paw = crate::build_paw(root)?;
    let task = root.join(TASK);

    println!("== paw compile (spec: {TASK}/spec.txt)");
    let compiled = output_of(
        Command::new(&paw)
            .args(["compile", "--json", "--spec-file"])
            .arg(task.join("spec.txt"))
            .arg("--examples")
            .arg(task.join("examples.jsonl")),
    )?;
    let summary: serde_json::Value =
        serde_json::from_str(&compiled).context("paw compile --json output")?;
    let id = summary["id"]
        .as_str()
        .context("paw compile printed no id")?
        .to_owned();
    println!("{}", serde_json::to_string_pretty(&summary)?);

    let inputs = held_out_inputs(&task.join("tests.jsonl"), DEMO_INPUTS)?;
    let inputs_file = root.join("target/demo-inputs.jsonl");
    std::fs::write(
        &inputs_file,
        inputs
            .iter()
            .map(|(i, _)| serde_json::json!({ "input": i }).to_string() + "\n")
            .collect::<String>(),
    )
    .with_context(|| format!("writing {}", inputs_file.display()))?;
    println!("== paw run {id} on {} held-out inputs", inputs.len());
    let ran = output_of(
        Command::new(&paw)
            .args(["run", &id, "--json", "--jsonl", "--inputs"])
            .arg(&inputs_file),
    )?;
    for (line, (input, expected)) in ran.lines().zip(&inputs) {
        let record: serde_json::Value =
            serde_json::from_str(line).context("paw run --json output")?;
        let output = record["output"].as_str().unwrap_or_default();
        let mark = if output == expected { "ok  " } else { "MISS" };
        println!("{mark} {output:<6} (expected {expected:<6}) {input}");
    }
    println!("program id: {id}");
    Ok(())
}

/// Runs `cmd` with stderr shown (progress bars) and returns its stdout.
fn output_of(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    String::from_utf8(out.stdout).context("non-UTF-8 output")
}

/// The first `n` `(input, output)` cases of a suite test file.
fn held_out_inputs(path: &Path, n: usize) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .take(n)
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("parsing {}", path.display()))?;
            match (v["input"].as_str(), v["output"].as_str()) {
                (Some(i), Some(o)) => Ok((i.to_owned(), o.to_owned())),
                _ => bail!("{}: a line without string input/output", path.display()),
            }
        })
        .collect()
}
