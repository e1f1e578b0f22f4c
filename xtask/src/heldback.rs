//! `cargo xtask heldback`: turns a file of real specs with expected outputs that lives outside
//! the repository (by default the published SDK's examples, `../shared/reference/
//! official-examples.jsonl`: one JSON object per line with `spec`, `inputs` and
//! `expected_outputs`, `null` where no output is known) into a suite directory that `cargo xtask
//! eval --suite DIR --all` measures. No one tunes the compiler to it: it is the held-back check
//! that a gain on FuzzyBench is general.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
pub struct HeldbackArgs {
    /// The JSONL file of specs, inputs and expected outputs.
    #[arg(long, default_value = "../shared/reference/official-examples.jsonl")]
    from: PathBuf,
    /// Suite directory to write (one directory per task: spec.txt, tests.jsonl).
    #[arg(long, default_value = "target/heldback")]
    out: PathBuf,
    /// Tasks with fewer known outputs than this are left out.
    #[arg(long, default_value_t = 3)]
    min_cases: usize,
}

pub fn run(args: &HeldbackArgs, root: &Path) -> Result<()> {
    let from = root.join(&args.from);
    let text =
        std::fs::read_to_string(&from).with_context(|| format!("reading {}", from.display()))?;
    let out = root.join(&args.out);
    let (mut tasks, mut cases) = (0, 0);
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", from.display(), n + 1))?;
        let Some(spec) = row["spec"].as_str() else {
            continue;
        };
        let empty = Vec::new();
        let inputs = row["inputs"].as_array().unwrap_or(&empty);
        let outputs = row["expected_outputs"].as_array().unwrap_or(&empty);
        let tests: Vec<String> = inputs
            .iter()
            .zip(outputs)
            .filter_map(|(i, o)| Some((i.as_str()?, o.as_str()?)))
            .map(|(i, o)| serde_json::json!({"input": i, "output": o}).to_string() + "\n")
            .collect();
        if tests.len() < args.min_cases || spec.starts_with('(') {
            continue;
        }
        let slug: String = spec
            .to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .take(5)
            .collect::<Vec<_>>()
            .join("-");
        let dir = out.join(format!("{:02}-{slug}", n + 1));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("spec.txt"), spec)?;
        std::fs::write(dir.join("tests.jsonl"), tests.concat())?;
        tasks += 1;
        cases += tests.len();
    }
    eprintln!("wrote {tasks} tasks, {cases} cases to {}", out.display());
    Ok(())
}
