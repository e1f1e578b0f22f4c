//! `paw compile`: turn a spec (and optional trusted examples) into a stored `.paw` program.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use paw_compile::{
    compile_key, CompileOptions, CompileOutput, ContractRequest, Labelling, Progress, PromptKind,
    Stage, TeacherChoice,
};
use paw_eval::load_cases;
use paw_format::OutputContract;
use paw_project::ContractDecl;
use paw_store::{CompileCached, CompiledProgram};
use serde::Serialize;

use crate::output::{human_bytes, open_store, outln, print_json, read_text_file};

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The spec, in words. Use --spec-file for a longer one.
    #[arg(required_unless_present = "spec_file", conflicts_with = "spec_file")]
    spec: Option<String>,
    /// Read the spec from FILE.
    #[arg(long, value_name = "FILE")]
    spec_file: Option<PathBuf>,
    /// Trusted examples: JSON lines of {"input": ..., "output": ...}.
    #[arg(long, value_name = "FILE")]
    examples: Option<PathBuf>,
    /// Interpreter the program will run on: manifest id or GGUF path (default: the manifest's).
    #[arg(long, value_name = "MODEL")]
    interpreter: Option<String>,
    /// Teacher that writes the pseudo-program and training data: manifest id, GGUF path, or
    /// `none` to train from --examples only (default: the manifest's teacher).
    #[arg(long, value_name = "MODEL")]
    teacher: Option<String>,
    /// Seed of every random choice; the same inputs and seed give the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Maximum training steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Teacher requests for training inputs: per label when the spec names a label set, else
    /// in total (default: about 48 items in all, at least 8 per label).
    #[arg(long, value_name = "N")]
    requests: Option<usize>,
    /// Teacher training items wanted: when the first round of requests leaves fewer (after the
    /// checks, relabelling and balancing), the teacher is asked again, up to two more rounds;
    /// 0 makes one round only.
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").train_items)]
    train_items: usize,
    /// Inputs each training-data request asks the teacher for, as a numbered list (the
    /// teacher then sees the inputs it already wrote); 1 asks for one input per request.
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").inputs_per_request)]
    inputs_per_request: usize,
    /// Kinds of input the teacher lists first for each label of a label set, one kind per
    /// request; 0 turns this off.
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").kinds)]
    kinds: usize,
    /// Held-out items the teacher writes, asked for hard and unusual inputs; the candidate
    /// programs (adapter, pseudo-program alone, spec alone) are scored on them and the best
    /// ships. 0 holds out every 4th training item instead.
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").held_out)]
    held_out: usize,
    /// With a teacher, fewer training items than this train no adapter: the best prompt alone
    /// ships, and the report says so.
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").min_train_items)]
    min_train_items: usize,
    /// Drop a label-conditioned item when the teacher, asked the task directly, answers a
    /// different label (helps only when the teacher answers the task well).
    #[arg(long)]
    agreement_filter: bool,
    /// Keep the label each input was written for instead of the teacher's own direct answer
    /// to it (the default relabels: the teacher answers inputs far better than it writes
    /// inputs for a given label).
    #[arg(long)]
    no_relabel: bool,
    /// How the teacher's answer to a label-set input is read: `answer` (the label its greedy
    /// reply spells), `calibrated` (the label whose first-token probability most exceeds
    /// the teacher's probability of it on content-free inputs: its bias divided out) or
    /// `batch-calibrated` (the same, the bias estimated over the compile's own inputs).
    #[arg(long, value_name = "HOW", default_value_t = CompileOptions::new("", "").labelling)]
    labelling: Labelling,
    /// With relabelling: fewest training items the teacher's own answers must give each label
    /// for relabelling to apply (else items keep the labels they were written for; 1: only a
    /// label the teacher never gives turns it off).
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").relabel_min_per_label)]
    relabel_min_per_label: usize,
    /// With relabelling: rounds of extra input requests for the labels the teacher's answers
    /// give too few items, before the compile keeps the written-for labels (0: none).
    #[arg(long, value_name = "N", default_value_t = CompileOptions::new("", "").starved_label_rounds)]
    starved_label_rounds: usize,
    /// The prompt the adapter is trained under and ships with: the compiler's pseudo-program
    /// or the bare spec.
    #[arg(long, value_name = "PROMPT", default_value_t = CompileOptions::new("", "").adapter_prompt)]
    adapter_prompt: PromptKind,
    #[command(flatten)]
    contract: ContractArgs,
    /// Also write the program to this file.
    #[arg(short, long, value_name = "OUT.paw")]
    output: Option<PathBuf>,
    /// Write the generated training and validation data as JSONL into DIR.
    #[arg(long, value_name = "DIR")]
    keep_data: Option<PathBuf>,
    /// Compile again even if the store holds the program of the same compile (cached stages
    /// are still reused; see --no-cache).
    #[arg(long)]
    force: bool,
    /// Neither read nor write the stage cache, and compile again even if the store holds the
    /// program of the same compile (implies --force): every stage runs from scratch.
    #[arg(long)]
    no_cache: bool,
    /// Print the final summary as JSON.
    #[arg(long)]
    json: bool,
}

/// The output contract (default: inferred from the spec and examples; see `paw inspect`).
#[derive(Debug, Args)]
#[group(multiple = false)]
struct ContractArgs {
    /// Answers are exactly one of these comma-separated labels.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    labels: Option<Vec<String>>,
    /// Answers are JSON valid against the JSON Schema in FILE.
    #[arg(long, value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// Answers match this regular expression as a whole.
    #[arg(long, value_name = "REGEX")]
    pattern: Option<String>,
    /// Answers derive from the Lark grammar in FILE (llguidance's dialect).
    #[arg(long, value_name = "FILE")]
    grammar: Option<PathBuf>,
    /// Free text of at most N characters.
    #[arg(long, value_name = "N")]
    free: Option<u32>,
    /// No contract at all: free text up to the program's max_tokens.
    #[arg(long)]
    no_contract: bool,
}

impl ContractArgs {
    fn decl(&self) -> ContractDecl {
        if let Some(labels) = &self.labels {
            ContractDecl::Labels(labels.clone())
        } else if let Some(path) = &self.json_schema {
            ContractDecl::JsonSchema(path.clone())
        } else if let Some(regex) = &self.pattern {
            ContractDecl::Pattern(regex.clone())
        } else if let Some(path) = &self.grammar {
            ContractDecl::Grammar(path.clone())
        } else if let Some(max_chars) = self.free {
            ContractDecl::Free(max_chars)
        } else if self.no_contract {
            ContractDecl::Without
        } else {
            ContractDecl::Infer
        }
    }
}

/// The compiler's contract request for a declared contract (`paw compile`'s flags or a
/// `paw.toml` function), files read and the contract checked.
pub(crate) fn contract_request(decl: &ContractDecl) -> Result<ContractRequest> {
    let given = match decl {
        ContractDecl::Infer => return Ok(ContractRequest::Infer),
        ContractDecl::Without => return Ok(ContractRequest::Without),
        ContractDecl::Labels(labels) => OutputContract::Labels {
            labels: labels.iter().map(|l| l.trim().to_string()).collect(),
        },
        ContractDecl::JsonSchema(path) => {
            let schema = read_text_file(path)?;
            serde_json::from_str::<serde_json::Value>(&schema)
                .with_context(|| format!("{} is not JSON", path.display()))?;
            OutputContract::JsonSchema { schema }
        }
        ContractDecl::Pattern(regex) => OutputContract::Pattern {
            regex: regex.clone(),
        },
        ContractDecl::Grammar(path) => OutputContract::Grammar {
            lark: read_text_file(path)?,
        },
        ContractDecl::Free(max_chars) => OutputContract::Free {
            max_chars: *max_chars,
        },
    };
    given.validate().context("the output contract")?;
    Ok(ContractRequest::Given(given))
}

#[derive(Debug, Serialize)]
struct CompileSummary {
    id: String,
    key: String,
    /// True when the store already held the result of this exact compile.
    cached: bool,
    path: PathBuf,
    size: u64,
    report: BTreeMap<String, String>,
    /// Seconds per stage (empty when cached).
    stage_seconds: BTreeMap<String, f64>,
    /// Stages loaded from the stage cache (a resumed compile).
    cached_stages: Vec<String>,
    total_seconds: f64,
}

pub fn run(args: CompileArgs, verbose: bool) -> Result<()> {
    let started = Instant::now();
    let store = open_store()?;
    let spec = match (&args.spec, &args.spec_file) {
        (Some(spec), _) => spec.clone(),
        (None, Some(path)) => read_text_file(path)?,
        (None, None) => bail!("give the spec as an argument or with --spec-file"),
    };
    let teacher = match args.teacher.as_deref() {
        Some("none") => TeacherChoice::None,
        Some(reference) => TeacherChoice::Model(reference),
        None => TeacherChoice::Default,
    };
    let mut opts = base_options(
        &store,
        spec,
        args.examples.as_deref(),
        args.interpreter.as_deref(),
        teacher,
    )?;
    opts.seed = args.seed;
    if let Some(steps) = args.steps {
        opts.train.steps = steps;
    }
    opts.requests = args.requests;
    opts.train_items = args.train_items;
    opts.inputs_per_request = args.inputs_per_request;
    opts.kinds = args.kinds;
    opts.held_out = args.held_out;
    opts.relabel = !args.no_relabel;
    opts.labelling = args.labelling;
    opts.relabel_min_per_label = args.relabel_min_per_label;
    opts.starved_label_rounds = args.starved_label_rounds;
    opts.adapter_prompt = args.adapter_prompt;
    opts.min_train_items = args.min_train_items;
    opts.agreement_filter = args.agreement_filter;
    opts.contract = contract_request(&args.contract.decl())?;
    if !args.no_cache {
        opts.cache = Some(store.clone());
    }

    let key = compile_key(&opts)?;
    // The store write is atomic (temp file + rename): an interrupted compile leaves nothing.
    let cached = store.compile_cached(
        &key,
        args.force || args.no_cache,
        || -> Result<CompileOutput> {
            let output = compile_with_bars(&opts, &MultiProgress::new())?;
            if let Some(dir) = &args.keep_data {
                keep_data(dir, &output)?;
            }
            if verbose {
                for e in &output.data.train {
                    eprintln!("train {:?}: {:?} -> {:?}", e.origin, e.input, e.output);
                }
                for (item, reason) in &output.data.rejected {
                    eprintln!("rejected ({reason}): {item:?}");
                }
            }
            Ok(output)
        },
        |output| CompiledProgram {
            bytes: &output.bytes,
            id: &output.id,
            key: &output.key,
        },
    )?;
    let summary = match cached {
        CompileCached::Found(stored) => {
            tracing::info!(%key, id = %stored.id, "compile key found in the store");
            let (program, _) = paw_format::Program::read(&stored.path)?;
            if let Some(out) = &args.output {
                // Atomic, like every program write: canonical encoding gives the stored bytes.
                program
                    .write_to(out)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            CompileSummary {
                id: stored.id.to_string(),
                key,
                cached: true,
                path: stored.path,
                size: stored.size,
                report: program.provenance.report,
                stage_seconds: BTreeMap::new(),
                cached_stages: Vec::new(),
                total_seconds: started.elapsed().as_secs_f64(),
            }
        }
        CompileCached::Compiled { output, stored } => {
            if let Some(out) = &args.output {
                output
                    .program
                    .write_to(out)
                    .with_context(|| format!("writing {}", out.display()))?;
            }
            CompileSummary {
                id: output.id.to_string(),
                key: output.key.clone(),
                cached: false,
                path: stored.path,
                size: stored.size,
                report: output.report.to_provenance(),
                stage_seconds: output
                    .timings
                    .iter()
                    .map(|(s, d)| (s.name().to_owned(), d.as_secs_f64()))
                    .collect(),
                cached_stages: output
                    .cached_stages
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect(),
                total_seconds: started.elapsed().as_secs_f64(),
            }
        }
    };
    print_summary(&summary, args.json)
}

/// The options `paw compile` and `paw build` both start from: the spec, the examples of a
/// JSONL file, and the models resolved (see [`CompileOptions::resolved`]).
pub(crate) fn base_options(
    store: &paw_store::Store,
    spec: String,
    examples: Option<&Path>,
    interpreter: Option<&str>,
    teacher: TeacherChoice<'_>,
) -> Result<CompileOptions> {
    let mut opts = CompileOptions::resolved(spec, store, interpreter, teacher)?;
    if let Some(path) = examples {
        opts.examples = load_cases(path)?
            .into_iter()
            .map(|c| (c.input, c.output))
            .collect();
    }
    Ok(opts)
}

/// Runs the compiler with one progress bar per stage, each with its elapsed time, added to
/// `bars` (below any bar already there, such as `paw build`'s overall one).
pub(crate) fn compile_with_bars(
    opts: &CompileOptions,
    bars: &MultiProgress,
) -> Result<CompileOutput> {
    let style =
        ProgressStyle::with_template("{prefix:>15} [{elapsed:>4}] {wide_bar} {pos}/{len} {msg}")
            .context("progress bar template")?
            .progress_chars("=> ");
    let mut current: Option<(Stage, ProgressBar)> = None;
    let mut on_progress = |p: Progress| {
        if current.as_ref().map(|(s, _)| *s) != Some(p.stage) {
            if let Some((_, bar)) = current.take() {
                bar.finish();
            }
            let bar = bars.add(
                ProgressBar::new(0)
                    .with_style(style.clone())
                    .with_prefix(p.stage.name()),
            );
            current = Some((p.stage, bar));
        }
        if let Some((_, bar)) = &current {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            if let Some(m) = p.message {
                bar.set_message(m);
            }
        }
    };
    let result = paw_compile::compile(opts, &mut on_progress);
    if let Some((_, bar)) = current.take() {
        bar.finish();
    }
    Ok(result?)
}

fn keep_data(dir: &Path, output: &CompileOutput) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, lines: Vec<String>| -> Result<()> {
        let path = dir.join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    let data = &output.data;
    let as_lines = |examples: &[paw_compile::Example]| -> Result<Vec<String>> {
        examples
            .iter()
            .map(|e| Ok(serde_json::to_string(e)?))
            .collect()
    };
    write("train.jsonl", as_lines(&data.train)?)?;
    write("validation.jsonl", as_lines(&data.validation)?)?;
    write(
        "rejected.jsonl",
        data.rejected
            .iter()
            .map(|(item, reason)| serde_json::json!({ "item": item, "reason": reason }).to_string())
            .collect(),
    )?;
    Ok(())
}

fn print_summary(summary: &CompileSummary, json: bool) -> Result<()> {
    if json {
        return print_json(summary);
    }
    outln!(
        "{} {} ({}){}",
        if summary.cached { "found" } else { "compiled" },
        summary.id,
        human_bytes(summary.size),
        if summary.cached {
            " in the store: same compile key"
        } else {
            ""
        }
    );
    for (stage, secs) in &summary.stage_seconds {
        let cached = if summary.cached_stages.contains(stage) {
            " (cached)"
        } else {
            ""
        };
        outln!("  {stage:<15} {secs:>7.1}s{cached}");
    }
    for (k, v) in &summary.report {
        outln!("  {k} = {v}");
    }
    outln!(
        "  total {:.1}s; run it with `paw run {} \"...\"`",
        summary.total_seconds,
        &summary.id[..15]
    );
    Ok(())
}
