//! `paw eval` (one program against a test file) and `paw test` (a project's declared tests).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use paw_eval::{evaluate, load_cases, Case, Metric, PawTarget, Report, RunOptions};
use paw_format::{Program, ProgramId};
use paw_project::{ProjectManifest, TestDefaults};
use paw_rt::CallOptions;
use paw_store::{Lockfile, Store};
use serde::{Deserialize, Serialize};

use crate::interpreter::BindArgs;
use crate::output::{open_store, outln, print_json, read_text_file};
use crate::run::read_program;

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MetricArg {
    Exact,
    Normalised,
}

impl From<paw_project::Metric> for MetricArg {
    fn from(m: paw_project::Metric) -> Self {
        match m {
            paw_project::Metric::Exact => MetricArg::Exact,
            paw_project::Metric::Normalised => MetricArg::Normalised,
        }
    }
}

impl From<MetricArg> for Metric {
    fn from(m: MetricArg) -> Self {
        match m {
            MetricArg::Exact => Metric::Exact,
            MetricArg::Normalised => Metric::Normalised,
        }
    }
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    /// Test cases: JSON lines of {"input": ..., "output": ...}.
    #[arg(long, value_name = "FILE")]
    tests: PathBuf,
    #[command(flatten)]
    bind: BindArgs,
    /// Show every failing case (input, expected, actual).
    #[arg(long)]
    failures: bool,
    /// Print the whole report (summary and every case) as JSON.
    #[arg(long)]
    json: bool,
}

/// Evaluates `program` over `cases`, drawing a progress bar.
fn evaluate_program(
    store: &Store,
    program: &Program,
    bind: &BindArgs,
    cases: &[Case],
) -> Result<Report> {
    let function = bind.bind(store, program)?;
    let bar = ProgressBar::new(cases.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} cases, {msg} eta {eta}",
        )
        .context("progress bar template")?
        .progress_chars("=> "),
    );
    let target = PawTarget::new(&function, CallOptions::default());
    let report = evaluate(
        &target,
        cases,
        &RunOptions {
            batch_size: bind.batch_size as usize,
        },
        |p| {
            bar.set_position(p.done as u64);
            bar.set_message(format!("{} exact", p.exact));
        },
    );
    bar.finish_and_clear();
    Ok(report)
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let store = open_store()?;
    let cases = load_cases(&args.tests)?;
    if cases.is_empty() {
        bail!("{} holds no test cases", args.tests.display());
    }
    let (program, id) = read_program(&store, &args.program)?;
    let report = evaluate_program(&store, &program, &args.bind, &cases)?;
    if args.json {
        return print_json(&report);
    }
    outln!(
        "{id}{}",
        if args.bind.no_adapter {
            " (without adapter)"
        } else {
            ""
        }
    );
    outln!("{}", report.summary);
    if args.failures {
        print_failures(&report, usize::MAX);
    }
    Ok(())
}

fn print_failures(report: &Report, limit: usize) {
    for case in report.failures(Metric::Exact).take(limit) {
        outln!("--- case {} ---", case.index + 1);
        outln!("input:    {:?}", case.input);
        outln!("expected: {:?}", case.expected);
        match (&case.actual, &case.error) {
            (_, Some(err)) => outln!("error:    {err}"),
            (Some(actual), None) => outln!("actual:   {actual:?}"),
            (None, None) => {}
        }
    }
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Directory holding `paw.toml` or `NAME.tests.jsonl` + `NAME.paw` pairs.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Only these programs (by name).
    #[arg(long = "program", value_name = "NAME")]
    programs: Vec<String>,
    /// Override the metric the threshold applies to.
    #[arg(long)]
    metric: Option<MetricArg>,
    /// Override the minimum pass rate (0..=1).
    #[arg(long)]
    threshold: Option<f64>,
    #[command(flatten)]
    bind: BindArgs,
    /// Failing cases shown per program.
    #[arg(long, default_value_t = 5)]
    show_failures: usize,
    /// Print one JSON object with every program's report.
    #[arg(long)]
    json: bool,
}

/// `paw.toml`, as specified in spec/paw-test.md.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectFile {
    #[serde(default)]
    test: TestDefaults,
    #[serde(default, rename = "program")]
    programs: Vec<ProgramEntry>,
    /// Built functions (spec/paw-toml.md): read by [`ProjectManifest`]; tested against
    /// `paw.lock`'s programs.
    #[serde(default, rename = "defaults")]
    _defaults: Option<toml::Table>,
    #[serde(default, rename = "function")]
    functions: Vec<toml::Table>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgramEntry {
    name: String,
    metric: Option<paw_project::Metric>,
    threshold: Option<f64>,
    program: Option<PathBuf>,
    tests: Option<PathBuf>,
    examples: Option<PathBuf>,
    spec: Option<PathBuf>,
}

/// One program to test, with every path resolved.
#[derive(Debug)]
struct TestTarget {
    name: String,
    metric: MetricArg,
    threshold: f64,
    program: PathBuf,
    tests: PathBuf,
    examples: PathBuf,
    spec: PathBuf,
    /// The id `paw.lock` pins for a built function: the program read must hash to it.
    locked: Option<ProgramId>,
}

/// Reads `paw.toml` in `dir`, or discovers `*.tests.jsonl` files there.
fn test_targets(dir: &Path) -> Result<Vec<TestTarget>> {
    let toml_path = dir.join("paw.toml");
    let project = if toml_path.exists() {
        let text = read_text_file(&toml_path)?;
        toml::from_str::<ProjectFile>(&text)
            .with_context(|| format!("parsing {}", toml_path.display()))?
    } else {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let file_name = entry?.file_name();
            if let Some(name) = file_name
                .to_str()
                .and_then(|n| n.strip_suffix(".tests.jsonl"))
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        ProjectFile {
            test: TestDefaults::default(),
            _defaults: None,
            functions: Vec::new(),
            programs: names
                .into_iter()
                .map(|name| ProgramEntry {
                    name,
                    metric: None,
                    threshold: None,
                    program: None,
                    tests: None,
                    examples: None,
                    spec: None,
                })
                .collect(),
        }
    };
    let mut targets = locked_function_targets(dir, &toml_path, &project)?;
    targets.extend(project.programs.into_iter().map(|p| {
        let file = |given: Option<PathBuf>, suffix: &str| {
            dir.join(given.unwrap_or_else(|| format!("{}{suffix}", p.name).into()))
        };
        TestTarget {
            metric: p.metric.unwrap_or(project.test.metric).into(),
            threshold: p.threshold.unwrap_or(project.test.threshold),
            program: file(p.program, ".paw"),
            tests: file(p.tests, ".tests.jsonl"),
            examples: file(p.examples, ".examples.jsonl"),
            spec: file(p.spec, ".txt"),
            name: p.name,
            locked: None,
        }
    }));
    for t in &targets {
        if !(0.0..=1.0).contains(&t.threshold) {
            bail!(
                "program {}: threshold {} is not in 0..=1",
                t.name,
                t.threshold
            );
        }
    }
    Ok(targets)
}

/// The manifest's built functions that declare tests, each with the program `paw.lock` pins
/// (in the store, by id). None without `[[function]]` entries.
fn locked_function_targets(
    dir: &Path,
    toml_path: &Path,
    project: &ProjectFile,
) -> Result<Vec<TestTarget>> {
    if project.functions.is_empty() {
        return Ok(Vec::new());
    }
    let manifest = ProjectManifest::read(toml_path)?;
    let lock_path = dir.join(crate::build::LOCK_FILE);
    let lock =
        Lockfile::read(&lock_path).context("paw.toml declares functions: run `paw build` first")?;
    let store = open_store()?;
    let mut targets = Vec::new();
    for f in manifest.functions.iter().filter(|f| f.tests.is_some()) {
        let entry = lock.functions.get(&f.name).with_context(|| {
            format!(
                "function `{}` is not in {}: run `paw build`",
                f.name,
                lock_path.display()
            )
        })?;
        targets.push(TestTarget {
            name: f.name.clone(),
            metric: f.metric.into(),
            threshold: f.threshold,
            program: store.program_path(&entry.program),
            tests: f.tests.clone().unwrap_or_default(),
            examples: f.examples.clone().unwrap_or_default(),
            spec: match &f.spec {
                paw_project::SpecSource::File(p) => p.clone(),
                paw_project::SpecSource::Inline(_) => PathBuf::new(),
            },
            locked: Some(entry.program),
        });
    }
    Ok(targets)
}

#[derive(Debug, Serialize)]
struct ProgramOutcome {
    name: String,
    id: String,
    metric: MetricArg,
    threshold: f64,
    passed: bool,
    warnings: Vec<String>,
    report: Report,
}

/// Exit status of `paw test`: 0 all pass, 1 a regression, 2 missing or malformed files.
pub fn test(args: TestArgs) -> Result<std::process::ExitCode> {
    let store = open_store()?;
    let mut targets = test_targets(&args.dir)?;
    if !args.programs.is_empty() {
        targets.retain(|t| args.programs.contains(&t.name));
    }
    if targets.is_empty() {
        bail!(
            "no programs to test in {} (expected paw.toml or NAME.tests.jsonl files)",
            args.dir.display()
        );
    }
    // Read every file before running anything, so a typo fails fast and nothing is half-scored.
    let mut loaded = Vec::with_capacity(targets.len());
    for t in targets {
        let cases = load_cases(&t.tests)?;
        let (program, id) = Program::read(&t.program)
            .with_context(|| format!("reading {}", t.program.display()))?;
        if let Some(locked) = &t.locked {
            if &id != locked {
                bail!(
                    "function `{}`: {} does not hash to the locked id {locked}",
                    t.name,
                    t.program.display()
                );
            }
        }
        let mut warnings = Vec::new();
        if t.examples.exists() {
            let examples = load_cases(&t.examples)?;
            let leaked = cases
                .iter()
                .filter(|c| examples.iter().any(|e| e.input == c.input))
                .count();
            if leaked > 0 {
                warnings.push(format!(
                    "{leaked} test inputs also appear in {}",
                    t.examples.display()
                ));
            }
        }
        if let Ok(spec) = read_text_file(&t.spec) {
            if spec.trim() != program.spec.trim() {
                warnings.push(format!(
                    "{} differs from the spec compiled into the program: recompile",
                    t.spec.display()
                ));
            }
        }
        loaded.push((t, cases, program, id, warnings));
    }
    let mut outcomes = Vec::new();
    for (t, cases, program, id, warnings) in loaded {
        let metric = args.metric.unwrap_or(t.metric);
        let threshold = args.threshold.unwrap_or(t.threshold);
        let report = evaluate_program(&store, &program, &args.bind, &cases)?;
        let passed = report.meets(metric.into(), threshold);
        if !args.json {
            outln!(
                "{} {} ({}): {} metric, threshold {:.2}",
                if passed { "PASS" } else { "FAIL" },
                t.name,
                id.short(),
                format!("{metric:?}").to_lowercase(),
                threshold
            );
            for w in &warnings {
                outln!("  warning: {w}");
            }
            outln!("  {}", report.summary.to_string().replace('\n', "\n  "));
            if !passed {
                print_failures(&report, args.show_failures);
            }
        }
        outcomes.push(ProgramOutcome {
            name: t.name,
            id: id.to_string(),
            metric,
            threshold,
            passed,
            warnings,
            report,
        });
    }
    let all_passed = outcomes.iter().all(|o| o.passed);
    if args.json {
        print_json(&serde_json::json!({ "programs": outcomes }))?;
    } else {
        let failed = outcomes.iter().filter(|o| !o.passed).count();
        outln!("{} passed, {} failed", outcomes.len() - failed, failed);
    }
    Ok(if all_passed {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}
