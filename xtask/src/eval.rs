//! `cargo xtask eval`: the suite's baselines table (issue 5).
//!
//! For each task, on the same test cases and through the same harness (paw-eval), four systems:
//! - `interp-direct`: the interpreter prompted with the raw spec (no program);
//! - `pseudo-only`: the compiled program without its adapter;
//! - `teacher-direct`: the teacher prompted with the raw spec;
//! - `paw`: the compiled program (interpreter + adapter), its output contract enforced;
//! - `paw-no-contract`: the same program decoded without its contract (`paw run --no-contract`).
//!
//! Two settings give every system the same information (`--setting`): the spec only (the
//! default, the published SDK's `compile(spec)`), or the spec and the task's examples. Direct
//! prompts use the compiled programs' user-turn shape (`{spec}\n\n[INPUT]\n{input}\n[END_INPUT]`
//! in the model's chat template, the examples after the spec in the second setting), greedy.
//! Peak memory is the VmHWM of this process, reset through `/proc/self/clear_refs` at the start
//! of each phase (one compile, or one bind + evaluation with its model already loaded).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use paw_compile::chat::ChatTemplate;
use paw_compile::pseudo_program::user_turn;
use paw_compile::{compile_key, CompileOptions, CompileOutput, Labelling, PromptKind};
use paw_eval::{evaluate, load_cases, Case, Report, RunOptions, Target};
use paw_format::{GenerationConfig, InterpreterId, Program, Provenance};
use paw_rt::{CallOptions, Function, Interpreter, LoadOptions, Tokenizer};
use paw_store::{resolve_model, CompileCached, CompiledProgram, Manifest, Store};
use serde::{Deserialize, Serialize};

use crate::repo_root;

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Tasks to run, comma-separated (directory names of the suite).
    #[arg(long, value_delimiter = ',', required_unless_present = "all")]
    tasks: Vec<String>,
    /// Run every task of the suite.
    #[arg(long, conflicts_with = "tasks")]
    all: bool,
    /// What every system is given: the spec alone (the published SDK's `compile(spec)`), or
    /// the spec and the task's trusted examples (programs compiled from both, the direct
    /// baselines prompted with them few-shot).
    #[arg(long, value_enum, default_value_t = Setting::Spec)]
    setting: Setting,
    /// Skip the first N tests of each task (`--skip 20` is the dev split: the reported tables
    /// use the first 20).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Only the first N tests of each task (after `--skip`).
    #[arg(long)]
    limit: Option<usize>,
    /// Systems to measure, comma-separated [default: all four].
    #[arg(long, value_delimiter = ',')]
    systems: Vec<System>,
    /// Seed of the paw compiles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inputs per batch (every system gets the same).
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Interpreter: manifest id or GGUF path [default: the manifest's].
    #[arg(long)]
    interpreter: Option<String>,
    /// Teacher: manifest id or GGUF path [default: the manifest's].
    #[arg(long)]
    teacher: Option<String>,
    /// Suite directory [default: fixtures/fuzzybench].
    #[arg(long)]
    suite: Option<PathBuf>,
    /// Compile again even if the store holds the same compile.
    #[arg(long)]
    force: bool,
    /// Markdown table path; the JSON goes beside it with a `.json` extension.
    #[arg(long, default_value = "target/eval/results.md")]
    out: PathBuf,
    #[command(flatten)]
    compile: CompileFlags,
}

/// The information every system gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Setting {
    /// The spec only.
    Spec,
    /// The spec and the task's trusted examples.
    Examples,
}

/// Output budget of a direct baseline given the spec only: no example says how long an answer
/// is, and a larger budget cannot turn a right answer wrong (it stops at end of turn).
const SPEC_ONLY_DIRECT_BUDGET: u32 = 128;

/// Departures from paw-compile's defaults, to measure them (each is part of the compile key).
#[derive(Debug, Clone, Default, Args, Serialize)]
struct CompileFlags {
    /// Reuse the store's cached compile stages (pseudo-program, data), so training options
    /// can be compared without running the teacher again. Compile times are then not fresh.
    #[arg(long)]
    reuse_stages: bool,
    /// Drop label-conditioned items that the teacher, asked directly, labels differently.
    #[arg(long)]
    agreement_filter: bool,
    /// Keep the label each label-conditioned item was written for (the default relabels
    /// with the teacher's direct answer).
    #[arg(long)]
    no_relabel: bool,
    /// How the teacher's answers to label-set inputs are read: `answer`, `calibrated` or
    /// `batch-calibrated`.
    #[arg(long)]
    labelling: Option<Labelling>,
    /// With relabelling: fewest training items the teacher's answers must give each label for
    /// relabelling to apply (1: only a label never given turns it off).
    #[arg(long)]
    relabel_min_per_label: Option<usize>,
    /// With relabelling: rounds of extra requests for labels the teacher's answers starve.
    #[arg(long)]
    starved_label_rounds: Option<usize>,
    /// The prompt the adapter is trained under: `pseudo-program` or `spec`.
    #[arg(long)]
    adapter_prompt: Option<PromptKind>,
    /// Held-out items the teacher writes by their own request (0: every 4th training item).
    #[arg(long)]
    held_out: Option<usize>,
    /// Fewest training items a teacher compile trains an adapter on.
    #[arg(long)]
    min_train_items: Option<usize>,
    /// Teacher requests per label (closed label set) or in total (open outputs).
    #[arg(long)]
    requests: Option<usize>,
    /// Teacher training items wanted (up to two more rounds of requests); 0 = one round.
    #[arg(long)]
    train_items: Option<usize>,
    /// Inputs per teacher request for training data (a numbered list); 1 = one.
    #[arg(long)]
    inputs_per_request: Option<usize>,
    /// Kinds of input the teacher lists first for each label of a label set; 0 = none.
    #[arg(long)]
    kinds: Option<usize>,
    /// Number of top interpreter layers that get an adapter.
    #[arg(long)]
    train_layers: Option<usize>,
    /// Maximum training steps.
    #[arg(long)]
    train_steps: Option<usize>,
    /// Validation evaluations without improvement before training stops.
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long)]
    learning_rate: Option<f64>,
    /// LoRA rank (alpha follows it: scale 1).
    #[arg(long)]
    rank: Option<usize>,
}

impl CompileFlags {
    fn apply(&self, opts: &mut CompileOptions, store: &Store) {
        if self.reuse_stages {
            opts.cache = Some(store.clone());
        }
        opts.agreement_filter |= self.agreement_filter;
        opts.relabel &= !self.no_relabel;
        opts.labelling = self.labelling.unwrap_or(opts.labelling);
        opts.relabel_min_per_label = self
            .relabel_min_per_label
            .unwrap_or(opts.relabel_min_per_label);
        opts.starved_label_rounds = self
            .starved_label_rounds
            .unwrap_or(opts.starved_label_rounds);
        opts.adapter_prompt = self.adapter_prompt.unwrap_or(opts.adapter_prompt);
        opts.requests = self.requests.or(opts.requests);
        opts.train_items = self.train_items.unwrap_or(opts.train_items);
        opts.inputs_per_request = self.inputs_per_request.unwrap_or(opts.inputs_per_request);
        opts.held_out = self.held_out.unwrap_or(opts.held_out);
        opts.min_train_items = self.min_train_items.unwrap_or(opts.min_train_items);
        opts.kinds = self.kinds.unwrap_or(opts.kinds);
        let t = &mut opts.train;
        t.layers = self.train_layers.unwrap_or(t.layers);
        t.steps = self.train_steps.unwrap_or(t.steps);
        t.patience = self.patience.unwrap_or(t.patience);
        t.learning_rate = self.learning_rate.unwrap_or(t.learning_rate);
        if let Some(r) = self.rank {
            t.rank = r;
            t.alpha = r as f64;
        }
    }

    /// The flags given, as they would be typed (empty for the defaults).
    fn describe(&self) -> String {
        let mut s = String::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                let _ = write!(
                    s,
                    " --{name}{}",
                    if v.is_empty() { v } else { format!(" {v}") }
                );
            }
        };
        flag("reuse-stages", self.reuse_stages.then(String::new));
        flag("agreement-filter", self.agreement_filter.then(String::new));
        flag("no-relabel", self.no_relabel.then(String::new));
        flag("labelling", self.labelling.map(|v| v.to_string()));
        flag(
            "relabel-min-per-label",
            self.relabel_min_per_label.map(|v| v.to_string()),
        );
        flag(
            "starved-label-rounds",
            self.starved_label_rounds.map(|v| v.to_string()),
        );
        flag("adapter-prompt", self.adapter_prompt.map(|v| v.to_string()));
        flag("held-out", self.held_out.map(|v| v.to_string()));
        flag(
            "min-train-items",
            self.min_train_items.map(|v| v.to_string()),
        );
        flag("requests", self.requests.map(|v| v.to_string()));
        flag("train-items", self.train_items.map(|v| v.to_string()));
        flag(
            "inputs-per-request",
            self.inputs_per_request.map(|v| v.to_string()),
        );
        flag("kinds", self.kinds.map(|v| v.to_string()));
        flag("train-layers", self.train_layers.map(|v| v.to_string()));
        flag("train-steps", self.train_steps.map(|v| v.to_string()));
        flag("patience", self.patience.map(|v| v.to_string()));
        flag("learning-rate", self.learning_rate.map(|v| v.to_string()));
        flag("rank", self.rank.map(|v| v.to_string()));
        s.trim_start().to_string()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum System {
    InterpDirect,
    PseudoOnly,
    TeacherDirect,
    Paw,
    PawNoContract,
}

impl System {
    const ALL: [System; 5] = [
        System::InterpDirect,
        System::PseudoOnly,
        System::TeacherDirect,
        System::Paw,
        System::PawNoContract,
    ];

    fn name(self) -> &'static str {
        match self {
            System::InterpDirect => "interp-direct",
            System::PseudoOnly => "pseudo-only",
            System::TeacherDirect => "teacher-direct",
            System::Paw => "paw",
            System::PawNoContract => "paw-no-contract",
        }
    }
}

/// One task of the suite.
#[derive(Debug)]
struct Task {
    name: String,
    spec: String,
    examples: Vec<(String, String)>,
    cases: Vec<Case>,
}

/// One system evaluated on one task.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct SystemRun {
    system: System,
    task: String,
    cases: usize,
    exact: usize,
    normalised: usize,
    /// Calls that failed (counted as misses).
    errors: usize,
    /// Wall time of the evaluation (binding excluded).
    wall_seconds: f64,
    generated_tokens: u64,
    /// VmHWM during bind + evaluation, model loaded; `None` where it cannot be reset.
    peak_rss_mib: Option<f64>,
}

/// One paw compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CompileRun {
    task: String,
    key: String,
    id: String,
    /// True when the program came from the store (figures are those of the first compile,
    /// when this tool made it).
    cached: bool,
    seconds: Option<f64>,
    peak_rss_mib: Option<f64>,
    stage_seconds: BTreeMap<String, f64>,
    report: BTreeMap<String, String>,
}

/// Everything measured in one invocation.
#[derive(Debug, Default, Serialize)]
struct Results {
    compiles: Vec<CompileRun>,
    runs: Vec<SystemRun>,
    /// Failures and other things a reader of the table must know.
    notes: Vec<String>,
}

/// A row of the table: one task (or the overall mean).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Row {
    task: String,
    /// Exact-match rate per system, in [`System::ALL`] order; `None` = not measured.
    exact: Vec<Option<f64>>,
    normalised: Vec<Option<f64>>,
    compile_seconds: Option<f64>,
    /// Generated tokens / evaluation wall time of the paw system.
    paw_tokens_per_second: Option<f64>,
    paw_peak_rss_mib: Option<f64>,
}

/// Per-system figures over all tasks.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct SystemSummary {
    system: System,
    /// Tasks this system was measured on.
    tasks: usize,
    mean_exact: Option<f64>,
    mean_normalised: Option<f64>,
    cases: usize,
    errors: usize,
    /// All generated tokens / all evaluation wall time.
    tokens_per_second: Option<f64>,
    cases_per_second: Option<f64>,
    /// Largest per-task peak.
    peak_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
struct Table {
    rows: Vec<Row>,
    /// Means over tasks (exact, normalised, compile time); tokens/s pooled; peak = max.
    overall: Row,
    systems: Vec<SystemSummary>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = values.into_iter().collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

fn max(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    values.into_iter().reduce(f64::max)
}

fn rate(k: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        k as f64 / n as f64
    }
}

/// Tokens per second pooled over runs; `None` without measured time.
fn pooled_tokens_per_second<'a>(runs: impl IntoIterator<Item = &'a SystemRun>) -> Option<f64> {
    let (tokens, secs) = runs.into_iter().fold((0u64, 0f64), |(t, s), r| {
        (t + r.generated_tokens, s + r.wall_seconds)
    });
    (secs > 0.0).then(|| tokens as f64 / secs)
}

impl Table {
    fn new(tasks: &[String], runs: &[SystemRun], compiles: &[CompileRun]) -> Self {
        let find =
            |task: &str, system: System| runs.iter().find(|r| r.task == task && r.system == system);
        let rows: Vec<Row> = tasks
            .iter()
            .map(|task| {
                let paw = find(task, System::Paw);
                Row {
                    task: task.clone(),
                    exact: System::ALL
                        .iter()
                        .map(|&s| find(task, s).map(|r| rate(r.exact, r.cases)))
                        .collect(),
                    normalised: System::ALL
                        .iter()
                        .map(|&s| find(task, s).map(|r| rate(r.normalised, r.cases)))
                        .collect(),
                    compile_seconds: compiles
                        .iter()
                        .find(|c| &c.task == task)
                        .and_then(|c| c.seconds),
                    paw_tokens_per_second: paw.and_then(|r| pooled_tokens_per_second([r])),
                    paw_peak_rss_mib: paw.and_then(|r| r.peak_rss_mib),
                }
            })
            .collect();
        let column = |pick: fn(&Row) -> &Vec<Option<f64>>, i: usize| {
            mean(rows.iter().filter_map(|r| pick(r)[i]))
        };
        let paw_runs = || runs.iter().filter(|r| r.system == System::Paw);
        let overall = Row {
            task: "overall (mean)".into(),
            exact: (0..System::ALL.len())
                .map(|i| column(|r| &r.exact, i))
                .collect(),
            normalised: (0..System::ALL.len())
                .map(|i| column(|r| &r.normalised, i))
                .collect(),
            compile_seconds: mean(rows.iter().filter_map(|r| r.compile_seconds)),
            paw_tokens_per_second: pooled_tokens_per_second(paw_runs()),
            paw_peak_rss_mib: max(paw_runs().filter_map(|r| r.peak_rss_mib)),
        };
        let systems = System::ALL
            .iter()
            .enumerate()
            .map(|(i, &system)| {
                let mine: Vec<&SystemRun> = runs.iter().filter(|r| r.system == system).collect();
                let cases = mine.iter().map(|r| r.cases).sum();
                let secs: f64 = mine.iter().map(|r| r.wall_seconds).sum();
                SystemSummary {
                    system,
                    tasks: rows.iter().filter(|r| r.exact[i].is_some()).count(),
                    mean_exact: overall.exact[i],
                    mean_normalised: overall.normalised[i],
                    cases,
                    errors: mine.iter().map(|r| r.errors).sum(),
                    tokens_per_second: pooled_tokens_per_second(mine.iter().copied()),
                    cases_per_second: (secs > 0.0).then(|| cases as f64 / secs),
                    peak_rss_mib: max(mine.iter().filter_map(|r| r.peak_rss_mib)),
                }
            })
            .collect();
        Table {
            rows,
            overall,
            systems,
        }
    }

    fn markdown(&self) -> String {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{:.1}", x * 100.0));
        let num = |v: Option<f64>, digits: usize| {
            v.map_or("–".to_string(), |x| format!("{x:.digits$}"))
        };
        let mut s = String::new();
        let names: Vec<&str> = System::ALL.iter().map(|s| s.name()).collect();
        let _ = writeln!(
            s,
            "| task | {} | paw compile s | paw gen tok/s | paw peak RSS MiB |",
            names.join(" | ")
        );
        let _ = writeln!(s, "|---|{}---:|---:|---:|", "---:|".repeat(names.len()));
        let total = self.rows.len();
        for row in self.rows.iter().chain([&self.overall]) {
            let overall = std::ptr::eq(row, &self.overall);
            let cells: Vec<String> = row
                .exact
                .iter()
                .zip(&self.systems)
                .map(|(&v, sys)| {
                    let cell = pct(v);
                    // A mean over fewer tasks than the others is not comparable: say so.
                    if overall && v.is_some() && sys.tasks < total {
                        format!("{cell} ({}/{total} tasks)", sys.tasks)
                    } else {
                        cell
                    }
                })
                .collect();
            let task = if overall {
                format!("**{}**", row.task)
            } else {
                row.task.clone()
            };
            let _ = writeln!(
                s,
                "| {task} | {} | {} | {} | {} |",
                cells.join(" | "),
                num(row.compile_seconds, 0),
                num(row.paw_tokens_per_second, 1),
                num(row.paw_peak_rss_mib, 0),
            );
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "| system | tasks | exact % (mean) | normalised % (mean) | cases | errors | gen tok/s | cases/s | peak RSS MiB |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for sys in &self.systems {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                sys.system.name(),
                sys.tasks,
                pct(sys.mean_exact),
                pct(sys.mean_normalised),
                sys.cases,
                sys.errors,
                num(sys.tokens_per_second, 1),
                num(sys.cases_per_second, 2),
                num(sys.peak_rss_mib, 0),
            );
        }
        s
    }
}

/// What every figure means; printed under the tables.
const LEGEND: &str = "\
- exact %: byte-for-byte match with the expected output (paw-eval); normalised ignores surrounding \
whitespace and JSON formatting/key order. Overall = unweighted mean of per-task rates.
- gen tok/s: generated tokens / wall time of the evaluation (prefill of each input included; \
binding and prefix cache excluded), batched as `--batch-size` says.
- peak RSS: VmHWM of the xtask process, reset via /proc/self/clear_refs before each bind + \
evaluation (its model already loaded, no other model loaded); includes what the process held at \
the reset.
- paw compile s: wall time of `paw_compile::compile` with default options; a program reused from \
the store shows the time of the compile that made it, or – if another tool made it.
- direct prompts: `{spec}\\n\\n[INPUT]\\n{input}\\n[END_INPUT]` in the model's chat template (with \
`--setting examples`, the examples as `Input:`/`Output:` lines after the spec), greedy, max tokens = \
1.5 x the longest example output + 4 (at least 16), or 128 with the spec only; no post-processing.
";

/// Output budget of the direct-prompt baselines, by the compiler's own rule for its programs
/// (1.5 x the longest output + 4), applied to the trusted examples every system may see.
fn direct_max_tokens(longest_example_output_tokens: usize) -> u32 {
    (longest_example_output_tokens * 3 / 2 + 4).clamp(16, 512) as u32
}

/// The direct baselines' instructions: the raw spec, then the trusted examples if any.
fn direct_instructions(spec: &str, examples: &[(String, String)]) -> String {
    let mut text = spec.trim().to_string();
    if !examples.is_empty() {
        text.push_str("\n\nExamples:");
        for (input, output) in examples {
            let _ = write!(text, "\nInput: {input}\nOutput: {output}");
        }
    }
    text
}

/// A prompt-only program: the raw spec (and examples) where a compiled program has its
/// pseudo-program.
fn direct_program(
    spec: &str,
    examples: &[(String, String)],
    chat: &ChatTemplate,
    interpreter: &InterpreterId,
    max_tokens: u32,
) -> Program {
    let instructions = direct_instructions(spec, examples);
    Program {
        spec: spec.trim().to_string(),
        prompt_template: chat.render_user(&user_turn(&instructions)),
        pseudo_program: instructions,
        interpreter: interpreter.clone(),
        adapter: None,
        generation: GenerationConfig {
            max_tokens,
            stop: Vec::new(),
            temperature: 0.0,
        },
        contract: None,
        provenance: Provenance {
            compiler: "xtask-eval/direct-prompt".into(),
            compiler_version: env!("CARGO_PKG_VERSION").into(),
            teacher_hash: None,
            seed: 0,
            hyperparameters: BTreeMap::new(),
            report: BTreeMap::new(),
        },
    }
}

/// Answers through a bound function and counts generated tokens.
struct Counting<'a> {
    function: &'a Function,
    options: CallOptions,
    tokens: Cell<u64>,
}

impl Target for Counting<'_> {
    type Error = paw_rt::Error;

    fn answer_batch(&self, inputs: &[&str]) -> Result<Vec<String>, paw_rt::Error> {
        let outputs = match inputs {
            [one] => vec![self.function.call(one, &self.options)?],
            many => self.function.call_batch(many, &self.options)?,
        };
        let n: usize = outputs.iter().map(|o| o.generated_tokens).sum();
        self.tokens.set(self.tokens.get() + n as u64);
        Ok(outputs.into_iter().map(|o| o.text).collect())
    }
}

/// Starts a peak-memory phase; `None` where VmHWM cannot be reset (not Linux, no permission).
fn reset_peak_rss() -> Option<()> {
    std::fs::write("/proc/self/clear_refs", "5").ok()
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn bar_style() -> Result<ProgressStyle> {
    Ok(
        ProgressStyle::with_template("{prefix:>32} [{elapsed:>4}] {wide_bar} {pos}/{len} {msg}")
            .context("progress bar template")?
            .progress_chars("=> "),
    )
}

fn load_task(
    suite: &Path,
    name: &str,
    setting: Setting,
    skip: usize,
    limit: Option<usize>,
) -> Result<Task> {
    let dir = suite.join(name);
    let spec_path = dir.join("spec.txt");
    let spec = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let examples_path = dir.join("examples.jsonl");
    let examples = if setting == Setting::Examples && examples_path.is_file() {
        load_cases(&examples_path)?
            .into_iter()
            .map(|c| (c.input, c.output))
            .collect()
    } else {
        Vec::new()
    };
    let mut cases = load_cases(&dir.join("tests.jsonl"))?;
    cases.drain(..skip.min(cases.len()));
    if let Some(n) = limit {
        cases.truncate(n);
    }
    Ok(Task {
        name: name.to_string(),
        spec,
        examples,
        cases,
    })
}

fn suite_tasks(suite: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(suite).with_context(|| format!("listing {}", suite.display()))? {
        let path = entry?.path();
        if path.join("tests.jsonl").is_file() {
            if let Some(name) = path.file_name() {
                names.push(name.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Compiles a task (or takes the same compile from the store) and times it; the note says
/// which stages came from the stage cache.
fn compile_task(
    task: &Task,
    base: &CompileOptions,
    store: &Store,
    force: bool,
    sidecars: &Path,
    bar: &ProgressBar,
) -> Result<(Program, CompileRun, Option<String>)> {
    let mut opts = base.clone();
    opts.spec = task.spec.clone();
    opts.examples = task.examples.clone();
    let key = compile_key(&opts)?;
    let sidecar = sidecars.join(format!("{}.json", key.trim_start_matches("b3:")));
    let cached = store.compile_cached(
        &key,
        force,
        || -> Result<_> {
            let reset = reset_peak_rss();
            let t0 = Instant::now();
            let out: CompileOutput = paw_compile::compile(&opts, &mut |p| {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(format!("{:?} {}", p.stage, p.message.unwrap_or_default()));
            })?;
            Ok((out, t0.elapsed().as_secs_f64(), reset))
        },
        |(out, ..)| CompiledProgram {
            bytes: &out.bytes,
            id: &out.id,
            key: &out.key,
        },
    )?;
    let (out, seconds, reset, stored) = match cached {
        CompileCached::Found(stored) => {
            let (program, id) = Program::read(&stored.path)?;
            let earlier: Option<CompileRun> = std::fs::read(&sidecar)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let run = CompileRun {
                task: task.name.clone(),
                key,
                id: id.to_string(),
                cached: true,
                seconds: earlier.as_ref().and_then(|e| e.seconds),
                peak_rss_mib: earlier.as_ref().and_then(|e| e.peak_rss_mib),
                stage_seconds: earlier.map(|e| e.stage_seconds).unwrap_or_default(),
                report: program.provenance.report.clone(),
            };
            bar.finish_with_message("from the store");
            return Ok((program, run, None));
        }
        CompileCached::Compiled {
            output: (out, seconds, reset),
            stored,
        } => (out, seconds, reset, stored),
    };
    let run = CompileRun {
        task: task.name.clone(),
        key: out.key.clone(),
        id: stored.id.to_string(),
        cached: false,
        seconds: Some(seconds),
        peak_rss_mib: reset.and_then(|()| peak_rss_mib()),
        stage_seconds: out
            .timings
            .iter()
            .map(|(s, d)| (format!("{s:?}"), d.as_secs_f64()))
            .collect(),
        report: out.report.to_provenance(),
    };
    std::fs::create_dir_all(sidecars)?;
    std::fs::write(&sidecar, serde_json::to_vec_pretty(&run)?)?;
    bar.finish_with_message(format!("compiled in {seconds:.0}s"));
    let reused: Vec<&str> = out.cached_stages.iter().map(|s| s.name()).collect();
    let note = (!reused.is_empty()).then(|| {
        format!(
            "{} compile reused cached stages ({}): its time is not a fresh compile's",
            task.name,
            reused.join(", ")
        )
    });
    Ok((out.program, run, note))
}

/// Binds and evaluates one system on one task.
fn measure(
    system: System,
    task: &Task,
    bind: impl FnOnce() -> paw_rt::Result<Function>,
    batch_size: usize,
    bar: &ProgressBar,
) -> Result<(SystemRun, Report)> {
    let reset = reset_peak_rss();
    let function = bind().context("binding")?;
    let target = Counting {
        function: &function,
        options: CallOptions {
            use_contract: system != System::PawNoContract,
            ..CallOptions::default()
        },
        tokens: Cell::new(0),
    };
    bar.set_length(task.cases.len() as u64);
    let report = evaluate(&target, &task.cases, &RunOptions { batch_size }, |p| {
        bar.set_position(p.done as u64);
        bar.set_message(format!("exact {}/{}", p.exact, p.done));
    });
    let s = &report.summary;
    bar.finish_with_message(format!("exact {}/{}", s.exact, s.total));
    let run = SystemRun {
        system,
        task: task.name.clone(),
        cases: s.total,
        exact: s.exact,
        normalised: s.normalised,
        errors: s.errors,
        wall_seconds: s.wall_seconds,
        generated_tokens: target.tokens.get(),
        peak_rss_mib: reset.and_then(|()| peak_rss_mib()),
    };
    Ok((run, report))
}

/// Longest trusted example output, in `tok` tokens.
fn longest_output(task: &Task, tok: &Tokenizer) -> Result<usize> {
    let mut longest = 0;
    for (_, out) in &task.examples {
        longest = longest.max(tok.encode_plain(out)?.len());
    }
    Ok(longest)
}

/// Which tests of each task ran, in words.
fn tests_described(skip: usize, limit: Option<usize>) -> String {
    match (skip, limit) {
        (0, None) => "all".into(),
        (0, Some(n)) => format!("first {n} (--limit)"),
        (s, None) => format!("from test {} on (--skip {s})", s + 1),
        (s, Some(n)) => format!("tests {}-{} (--skip {s} --limit {n})", s + 1, s + n),
    }
}

/// Where the results go. Rewritten after every measured run, so that an interrupted run
/// keeps what it measured.
struct Output<'a> {
    md: PathBuf,
    cases_dir: PathBuf,
    names: &'a [String],
    args: &'a EvalArgs,
    interpreter: &'a str,
    teacher: &'a str,
}

impl Output<'_> {
    /// Writes the markdown and JSON files; returns the markdown.
    fn write(&self, results: &Results) -> Result<String> {
        let args = self.args;
        let table = Table::new(self.names, &results.runs, &results.compiles);
        let mut md = table.markdown();
        md.push('\n');
        md.push_str(LEGEND);
        let _ = writeln!(
            md,
            "\nsetting: {}; interpreter `{}`, teacher `{}`, seed {}, batch size {}, tests per \
             task: {}",
            match args.setting {
                Setting::Spec => "spec only (`--setting spec`)",
                Setting::Examples =>
                    "spec + the task's examples (`--setting examples`: compiled from both, \
                     direct baselines prompted few-shot)",
            },
            self.interpreter,
            self.teacher,
            args.seed,
            args.batch_size,
            tests_described(args.skip, args.limit),
        );
        let flags = args.compile.describe();
        let _ = writeln!(
            md,
            "compile options: {}",
            if flags.is_empty() { "defaults" } else { &flags }
        );
        for note in &results.notes {
            let _ = writeln!(md, "- note: {note}");
        }
        std::fs::write(&self.md, &md).with_context(|| format!("writing {}", self.md.display()))?;
        let json_path = self.md.with_extension("json");
        let json = serde_json::json!({
            "tasks": self.names,
            "setting": args.setting,
            "skip": args.skip,
            "limit": args.limit,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "compile_flags": args.compile,
            "interpreter": self.interpreter,
            "teacher": self.teacher,
            "table": table,
            "results": results,
        });
        std::fs::write(&json_path, serde_json::to_vec_pretty(&json)?)
            .with_context(|| format!("writing {}", json_path.display()))?;
        Ok(md)
    }
}

/// Runs `systems` (all served by the model at `path`) over `tasks`.
#[allow(clippy::too_many_arguments)]
fn run_model(
    path: &Path,
    name: &str,
    systems: &[System],
    tasks: &[Task],
    programs: &BTreeMap<String, Program>,
    bars: &MultiProgress,
    out: &Output<'_>,
    results: &mut Results,
) -> Result<()> {
    let loading = bars.add(ProgressBar::new_spinner().with_message(format!("loading {name}")));
    loading.enable_steady_tick(Duration::from_millis(200));
    let interpreter = Interpreter::load_with(
        path,
        &LoadOptions {
            name: Some(name.to_string()),
            ..Default::default()
        },
    )
    .with_context(|| format!("loading {}", path.display()))?;
    let chat = ChatTemplate::from_gguf_file(path)?;
    loading.finish_and_clear();
    let style = bar_style()?;
    for task in tasks {
        for &system in systems {
            let program = match system {
                System::InterpDirect | System::TeacherDirect => {
                    let budget = if task.examples.is_empty() {
                        SPEC_ONLY_DIRECT_BUDGET
                    } else {
                        direct_max_tokens(longest_output(task, interpreter.tokenizer())?)
                    };
                    direct_program(
                        &task.spec,
                        &task.examples,
                        &chat,
                        interpreter.identity(),
                        budget,
                    )
                }
                System::PseudoOnly | System::Paw | System::PawNoContract => {
                    match programs.get(&task.name) {
                        Some(p) => p.clone(),
                        None => continue, // its compile failed; noted there
                    }
                }
            };
            let bar = bars.add(
                ProgressBar::new(0)
                    .with_style(style.clone())
                    .with_prefix(format!("{} {}", task.name, system.name())),
            );
            let bind = || match system {
                System::Paw | System::PawNoContract => interpreter.bind(&program),
                _ => interpreter.bind_without_adapter(&program),
            };
            match measure(system, task, bind, out.args.batch_size, &bar) {
                Ok((run, report)) => {
                    if run.errors > 0 {
                        let first = report.cases.iter().find_map(|c| c.error.clone());
                        results.notes.push(format!(
                            "{} {}: {} of {} calls failed (counted as misses), e.g. {}",
                            task.name,
                            system.name(),
                            run.errors,
                            run.cases,
                            first.unwrap_or_default()
                        ));
                    }
                    let path = out
                        .cases_dir
                        .join(format!("{}.{}.json", task.name, system.name()));
                    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
                        .with_context(|| format!("writing {}", path.display()))?;
                    results.runs.push(run);
                }
                Err(e) => {
                    bar.abandon_with_message("failed");
                    results
                        .notes
                        .push(format!("{} {}: {e:#}", task.name, system.name()));
                }
            }
            out.write(results)?;
        }
    }
    Ok(())
}

pub fn run(args: EvalArgs) -> Result<()> {
    let suite = args
        .suite
        .clone()
        .unwrap_or_else(|| repo_root().join("fixtures/fuzzybench"));
    let names = if args.all {
        suite_tasks(&suite)?
    } else {
        args.tasks.clone()
    };
    if names.is_empty() {
        bail!("no tasks selected (give --tasks a,b or --all)");
    }
    let tasks = names
        .iter()
        .map(|n| load_task(&suite, n, args.setting, args.skip, args.limit))
        .collect::<Result<Vec<_>>>()?;
    let wanted = |s: System| args.systems.is_empty() || args.systems.contains(&s);
    let store = Store::open_default()?;
    let manifest = Manifest::embedded()?;
    let interp_name = args
        .interpreter
        .clone()
        .unwrap_or_else(|| manifest.default_interpreter().id.clone());
    let teacher_name = args
        .teacher
        .clone()
        .unwrap_or_else(|| manifest.default_teacher().id.clone());
    let interp_path = resolve_model(&interp_name, &store)?.path;
    let teacher_path = resolve_model(&teacher_name, &store)?.path;
    let md = if args.out.is_absolute() {
        args.out.clone()
    } else {
        repo_root().join(&args.out)
    };
    let cases_dir = md
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("cases");
    std::fs::create_dir_all(&cases_dir)
        .with_context(|| format!("creating {}", cases_dir.display()))?;
    let out = Output {
        md,
        cases_dir,
        names: &names,
        args: &args,
        interpreter: &interp_name,
        teacher: &teacher_name,
    };

    let bars = MultiProgress::new();
    let mut results = Results::default();
    let mut programs = BTreeMap::new();
    // The baselines first: they need no compile, so a run cut short still has them.
    for (system, path, name) in [
        (System::InterpDirect, &interp_path, &interp_name),
        (System::TeacherDirect, &teacher_path, &teacher_name),
    ] {
        if wanted(system) {
            run_model(
                path,
                name,
                &[system],
                &tasks,
                &programs,
                &bars,
                &out,
                &mut results,
            )?;
        }
    }
    let compiled: Vec<System> = [System::PseudoOnly, System::Paw, System::PawNoContract]
        .into_iter()
        .filter(|&s| wanted(s))
        .collect();
    if !compiled.is_empty() {
        let mut base = CompileOptions::new(String::new(), &interp_path);
        base.interpreter_name = Some(interp_name.clone());
        base.teacher = Some(teacher_path.clone());
        base.seed = args.seed;
        args.compile.apply(&mut base, &store);
        let sidecars = repo_root().join("target/eval/compiles");
        let style = bar_style()?;
        for task in &tasks {
            let bar = bars.add(
                ProgressBar::new(0)
                    .with_style(style.clone())
                    .with_prefix(format!("{} compile", task.name)),
            );
            match compile_task(task, &base, &store, args.force, &sidecars, &bar) {
                Ok((program, run, note)) => {
                    programs.insert(task.name.clone(), program);
                    results.compiles.push(run);
                    results.notes.extend(note);
                }
                Err(e) => {
                    bar.abandon_with_message("failed");
                    results
                        .notes
                        .push(format!("{} compile failed: {e:#}", task.name));
                }
            }
            out.write(&results)?;
            // Measured right after its compile: a run cut short still has whole tasks.
            let (path, name, one) = (&interp_path, &interp_name, std::slice::from_ref(task));
            run_model(
                path,
                name,
                &compiled,
                one,
                &programs,
                &bars,
                &out,
                &mut results,
            )?;
        }
    }
    let md = out.write(&results)?;
    println!("{md}");
    println!(
        "wrote {} and its .json (per-case answers in {})",
        out.md.display(),
        out.cases_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(system: System, task: &str, exact: usize, cases: usize) -> SystemRun {
        SystemRun {
            system,
            task: task.into(),
            cases,
            exact,
            normalised: exact + 1,
            errors: 0,
            wall_seconds: 2.0,
            generated_tokens: 40,
            peak_rss_mib: Some(100.0 * exact as f64),
        }
    }

    fn compile(task: &str, seconds: Option<f64>) -> CompileRun {
        CompileRun {
            task: task.into(),
            key: "b3:00".into(),
            id: "b3:11".into(),
            cached: false,
            seconds,
            peak_rss_mib: None,
            stage_seconds: BTreeMap::new(),
            report: BTreeMap::new(),
        }
    }

    fn tasks() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    /// Every system but paw-no-contract, whose column stays blank.
    fn all_runs() -> Vec<SystemRun> {
        vec![
            run(System::InterpDirect, "a", 1, 10),
            run(System::InterpDirect, "b", 3, 10),
            run(System::PseudoOnly, "a", 4, 10),
            run(System::PseudoOnly, "b", 6, 10),
            run(System::TeacherDirect, "a", 5, 10),
            run(System::TeacherDirect, "b", 5, 10),
            run(System::Paw, "a", 9, 10),
            run(System::Paw, "b", 7, 10),
        ]
    }

    #[test]
    fn rows_hold_each_systems_exact_rate_per_task_and_overall_is_their_mean() {
        let t = Table::new(
            &tasks(),
            &all_runs(),
            &[compile("a", Some(100.0)), compile("b", Some(300.0))],
        );
        assert_eq!(
            t.rows[0].exact,
            vec![Some(0.1), Some(0.4), Some(0.5), Some(0.9), None]
        );
        assert_eq!(
            t.rows[1].normalised,
            vec![Some(0.4), Some(0.7), Some(0.6), Some(0.8), None]
        );
        let o = &t.overall;
        let want = [0.2, 0.5, 0.5, 0.8];
        for (got, want) in o.exact.iter().zip(want) {
            assert!((got.expect("measured") - want).abs() < 1e-12);
        }
        assert_eq!(o.compile_seconds, Some(200.0));
        assert_eq!(t.rows[1].compile_seconds, Some(300.0));
    }

    #[test]
    fn paw_tokens_per_second_is_generated_tokens_over_evaluation_wall_time() {
        let mut runs = all_runs();
        runs[7].generated_tokens = 100;
        runs[7].wall_seconds = 4.0;
        let t = Table::new(&tasks(), &runs, &[]);
        assert_eq!(t.rows[0].paw_tokens_per_second, Some(20.0));
        assert_eq!(t.rows[1].paw_tokens_per_second, Some(25.0));
        // Pooled: (40 + 100) tokens over (2 + 4) s.
        assert_eq!(t.overall.paw_tokens_per_second, Some(140.0 / 6.0));
        // Peak memory overall is the largest per-task peak, not a mean.
        assert_eq!(t.overall.paw_peak_rss_mib, Some(900.0));
        let paw = &t.systems[3];
        assert_eq!(
            (paw.cases, paw.tasks, paw.cases_per_second),
            (20, 2, Some(20.0 / 6.0))
        );
    }

    #[test]
    fn a_system_missing_on_a_task_is_blank_and_its_mean_says_over_how_many_tasks() {
        let runs: Vec<SystemRun> = all_runs()
            .into_iter()
            .filter(|r| !(r.task == "b" && matches!(r.system, System::Paw | System::PseudoOnly)))
            .collect();
        let t = Table::new(&tasks(), &runs, &[compile("a", None)]);
        assert_eq!(t.rows[1].exact[3], None);
        assert_eq!(t.rows[1].paw_tokens_per_second, None);
        assert_eq!(t.overall.exact[3], Some(0.9));
        assert_eq!(t.overall.compile_seconds, None);
        assert_eq!(t.systems[3].tasks, 1);
        let md = t.markdown();
        let b_row = md.lines().find(|l| l.starts_with("| b |")).expect("row b");
        assert_eq!(b_row, "| b | 30.0 | – | 50.0 | – | – | – | – | – |");
        let overall = md
            .lines()
            .find(|l| l.contains("overall"))
            .expect("overall row");
        assert!(overall.contains("| 90.0 (1/2 tasks) |"), "{overall}");
        assert!(
            overall.contains("| 20.0 | 40.0 (1/2 tasks) | 50.0 |"),
            "{overall}"
        );
    }

    #[test]
    fn markdown_has_a_header_one_row_per_task_an_overall_row_and_a_system_table() {
        let t = Table::new(
            &tasks(),
            &all_runs(),
            &[compile("a", Some(61.4)), compile("b", Some(80.0))],
        );
        let md = t.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[0],
            "| task | interp-direct | pseudo-only | teacher-direct | paw | paw-no-contract | paw compile s | paw gen tok/s | paw peak RSS MiB |"
        );
        assert_eq!(
            lines[2],
            "| a | 10.0 | 40.0 | 50.0 | 90.0 | – | 61 | 20.0 | 900 |"
        );
        assert_eq!(
            lines[4],
            "| **overall (mean)** | 20.0 | 50.0 | 50.0 | 80.0 | – | 71 | 20.0 | 900 |"
        );
        assert!(
            md.contains("| teacher-direct | 2 | 50.0 | 60.0 | 20 | 0 | 20.0 | 5.00 | 500 |"),
            "{md}"
        );
    }

    #[test]
    fn direct_program_is_the_chat_template_around_spec_and_input_block() {
        let chat = ChatTemplate::parse(
            "{{ '<|im_start|>system\nYou are Qwen.<|im_end|>\n' }}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}",
            "test",
        )
        .expect("chatml");
        let id = InterpreterId {
            architecture: "qwen2".into(),
            name: "m".into(),
            weights_hash: "b3:00".into(),
            tokenizer_hash: "b3:11".into(),
        };
        let p = direct_program("Return ONLY yes or no.\n", &[], &chat, &id, 20);
        assert_eq!(
            p.prompt_template,
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\nReturn ONLY yes or no.\n\n[INPUT]\n{INPUT_PLACEHOLDER}\n[END_INPUT]<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(p.adapter.is_none());
        assert_eq!(
            (p.generation.max_tokens, p.generation.temperature),
            (20, 0.0)
        );
        p.validate().expect("a valid program");
        // The examples setting: the same turn with the examples after the spec.
        let examples = [("a".to_string(), "yes".to_string())];
        let p = direct_program("Return ONLY yes or no.", &examples, &chat, &id, 20);
        assert!(p.prompt_template.contains(
            "user\nReturn ONLY yes or no.\n\nExamples:\nInput: a\nOutput: yes\n\n[INPUT]\n"
        ));
        assert_eq!(
            tests_described(20, Some(30)),
            "tests 21-50 (--skip 20 --limit 30)"
        );
    }

    #[test]
    fn direct_budget_follows_the_compiler_rule_with_a_floor() {
        assert_eq!(direct_max_tokens(1), 16);
        assert_eq!(direct_max_tokens(20), 34);
        assert_eq!(direct_max_tokens(1000), 512);
    }
}
