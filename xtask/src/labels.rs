//! `cargo xtask labels`: how often the teacher's labels, read as a compile reads them, equal the
//! suite's true labels. The compiler trains on these labels, so their accuracy bounds the
//! program's; this measures each labelling on its own, without compiling anything.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use paw_compile::spec::label_set;
use paw_compile::synth::teacher_labels;
use paw_compile::Labelling;
use paw_eval::load_cases;
use paw_store::{resolve_model, Manifest, Store};
use serde::Serialize;

use crate::repo_root;

#[derive(Debug, Args)]
pub struct LabelsArgs {
    /// Tasks, comma-separated [default: every task of the suite whose spec names a label set].
    #[arg(long, value_delimiter = ',')]
    tasks: Vec<String>,
    /// Suite directory [default: fixtures/fuzzybench].
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Skip the first N tests of each task (`--skip 20`: the dev split).
    #[arg(long, default_value_t = 20)]
    skip: usize,
    /// Only the first N tests of each task (after `--skip`).
    #[arg(long, default_value_t = 30)]
    limit: usize,
    /// Teacher: manifest id or GGUF path [default: the manifest's teacher].
    #[arg(long)]
    teacher: Option<String>,
    /// Show the teacher the task's trusted examples (examples.jsonl) as the compile shows it
    /// its reference examples; without, the spec alone.
    #[arg(long)]
    with_examples: bool,
    /// Markdown table written here (and JSON beside it).
    #[arg(long, default_value = "target/eval/labels.md")]
    out: PathBuf,
}

#[derive(Debug, Serialize)]
struct TaskLabels {
    task: String,
    cases: usize,
    /// Cases labelled right, per labelling, in [`LABELLINGS`] order.
    correct: Vec<usize>,
    /// Answers outside the label set, per labelling.
    outside: Vec<usize>,
}

const LABELLINGS: [Labelling; 3] = [
    Labelling::Answer,
    Labelling::Calibrated,
    Labelling::BatchCalibrated,
];

pub fn run(args: &LabelsArgs) -> Result<()> {
    let suite = args
        .suite
        .clone()
        .unwrap_or_else(|| repo_root().join("fixtures/fuzzybench"));
    let mut names = args.tasks.clone();
    if names.is_empty() {
        for entry in
            std::fs::read_dir(&suite).with_context(|| format!("listing {}", suite.display()))?
        {
            let dir = entry?.path();
            let Ok(spec) = std::fs::read_to_string(dir.join("spec.txt")) else {
                continue;
            };
            if label_set(&spec).is_some() {
                if let Some(name) = dir.file_name() {
                    names.push(name.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
    }
    if names.is_empty() {
        bail!("no task with a label set in {}", suite.display());
    }
    let store = Store::open_default()?;
    let teacher_ref = match &args.teacher {
        Some(t) => t.clone(),
        None => Manifest::embedded()?.default_teacher().id.clone(),
    };
    let teacher = resolve_model(&teacher_ref, &store)?.path;

    let mut rows = Vec::new();
    for name in &names {
        let dir = suite.join(name);
        let spec = std::fs::read_to_string(dir.join("spec.txt"))
            .with_context(|| format!("reading {name}'s spec"))?;
        let Some(labels) = label_set(&spec) else {
            bail!("{name}: the spec names no label set");
        };
        let reference: Vec<(String, String)> = if args.with_examples {
            load_cases(&dir.join("examples.jsonl"))?
                .into_iter()
                .map(|c| (c.input, c.output))
                .collect()
        } else {
            Vec::new()
        };
        let cases: Vec<_> = load_cases(&dir.join("tests.jsonl"))?
            .into_iter()
            .skip(args.skip)
            .take(args.limit)
            .collect();
        let inputs: Vec<&str> = cases.iter().map(|c| c.input.as_str()).collect();
        let mut row = TaskLabels {
            task: name.clone(),
            cases: cases.len(),
            correct: Vec::new(),
            outside: Vec::new(),
        };
        for got in teacher_labels(&teacher, &spec, &reference, &labels, &inputs, &LABELLINGS)? {
            let correct = got
                .iter()
                .zip(&cases)
                .filter(|(g, c)| g.as_deref() == Some(c.output.trim()))
                .count();
            row.correct.push(correct);
            row.outside.push(got.iter().filter(|g| g.is_none()).count());
        }
        let each: Vec<String> = LABELLINGS
            .iter()
            .zip(&row.correct)
            .map(|(l, c)| format!("{c} ({l})"))
            .collect();
        eprintln!("{name}: of {}: {}", row.cases, each.join(", "));
        rows.push(row);
    }

    let names: Vec<String> = LABELLINGS.iter().map(ToString::to_string).collect();
    let mut md = format!(
        "Teacher `{teacher_ref}`, tests {}-{} of each task, {}.\n\n\
         | task | cases | {} | answer outside the set |\n|---|---:|{}---:|\n",
        args.skip + 1,
        args.skip + args.limit,
        if args.with_examples {
            "the task's trusted examples shown"
        } else {
            "the spec alone"
        },
        names.join(" | "),
        "---:|".repeat(names.len()),
    );
    let pct = |k: usize, n: usize| 100.0 * k as f64 / n.max(1) as f64;
    for r in &rows {
        let rates: Vec<String> = r
            .correct
            .iter()
            .map(|&c| format!("{:.1}", pct(c, r.cases)))
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.task,
            r.cases,
            rates.join(" | "),
            r.outside[0]
        );
    }
    let mean =
        |i: usize| rows.iter().map(|r| pct(r.correct[i], r.cases)).sum::<f64>() / rows.len() as f64;
    let means: Vec<String> = (0..LABELLINGS.len())
        .map(|i| format!("**{:.1}**", mean(i)))
        .collect();
    let _ = writeln!(md, "| **mean** | | {} | |", means.join(" | "));
    let out = repo_root().join(&args.out);
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &md).with_context(|| format!("writing {}", out.display()))?;
    std::fs::write(
        out.with_extension("json"),
        serde_json::to_string_pretty(&rows)?,
    )?;
    println!("{md}");
    Ok(())
}
