//! `paw run`: run a program on one input, stdin, or a file of inputs.

use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use paw_format::Program;
use paw_rt::{CallOptions, ContractOutcome, Function, Output};
use paw_store::Store;
use serde::Serialize;

use crate::interpreter::BindArgs;
use crate::output::{open_store, outln};
use crate::programs::load_program;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    /// The input. Without it (and without --inputs), the whole of stdin is one input.
    input: Option<String>,
    /// Run every input in FILE: one per line, or one JSON value per line with --jsonl
    /// (a string, or an object with an "input" field).
    #[arg(long, value_name = "FILE", conflicts_with = "input")]
    inputs: Option<PathBuf>,
    /// Read --inputs as JSON lines.
    #[arg(long, requires = "inputs")]
    jsonl: bool,
    /// Stop after this many generated tokens (default: the program's setting).
    #[arg(long)]
    max_tokens: Option<u32>,
    #[command(flatten)]
    bind: BindArgs,
    /// Decode without the program's output contract (for debugging a program: answers may
    /// then fall outside its label set, schema or pattern).
    #[arg(long)]
    no_contract: bool,
    /// Print one JSON object per input (input, output, contract outcome, tokens, timings).
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct RunRecord<'a> {
    input: &'a str,
    output: &'a str,
    stop_reason: String,
    /// `satisfied`, `unfinished` (cut at max_tokens) or `not-applied` (no contract, or
    /// --no-contract).
    contract: &'static str,
    prompt_tokens: usize,
    input_tokens: usize,
    generated_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
}

impl<'a> RunRecord<'a> {
    fn new(input: &'a str, out: &'a Output) -> Self {
        Self {
            input,
            output: &out.text,
            stop_reason: format!("{:?}", out.stop_reason),
            contract: out.contract.as_str(),
            prompt_tokens: out.prefix_tokens + out.input_tokens + out.suffix_tokens,
            input_tokens: out.input_tokens,
            generated_tokens: out.generated_tokens,
            prefill_ms: out.timings.prefill.as_secs_f64() * 1e3,
            decode_ms: out.timings.decode.as_secs_f64() * 1e3,
        }
    }
}

pub fn run(args: RunArgs) -> Result<()> {
    let store = open_store()?;
    let inputs = collect_inputs(&args)?;
    let (program, _id) = read_program(&store, &args.program)?;
    let function = args.bind.bind(&store, &program)?;
    let options = CallOptions {
        max_tokens: args.max_tokens,
        use_contract: !args.no_contract,
        ..CallOptions::default()
    };
    run_inputs(
        &function,
        &inputs,
        &options,
        args.bind.batch_size as usize,
        args.json,
    )
}

/// Reads and fully verifies a program by reference.
pub fn read_program(store: &Store, reference: &str) -> Result<(Program, paw_format::ProgramId)> {
    let loaded = load_program(store, reference)?;
    Program::from_bytes(&loaded.bytes).with_context(|| format!("reading {}", loaded.path.display()))
}

fn collect_inputs(args: &RunArgs) -> Result<Vec<String>> {
    if let Some(input) = &args.input {
        return Ok(vec![input.clone()]);
    }
    if let Some(path) = &args.inputs {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut inputs = Vec::new();
        for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line =
                line.with_context(|| format!("reading {} line {}", path.display(), n + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            inputs.push(if args.jsonl {
                jsonl_input(&line).with_context(|| format!("{} line {}", path.display(), n + 1))?
            } else {
                line
            });
        }
        if inputs.is_empty() {
            bail!("{} holds no inputs", path.display());
        }
        return Ok(inputs);
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        bail!("no input: pass it as an argument, pipe it on stdin, or use --inputs FILE");
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .context("reading stdin")?;
    // A trailing newline from `echo` is not part of the input.
    Ok(vec![text.strip_suffix('\n').unwrap_or(&text).to_owned()])
}

/// One JSONL line: a JSON string, or an object with a string "input" field.
fn jsonl_input(line: &str) -> Result<String> {
    match serde_json::from_str::<serde_json::Value>(line).context("not valid JSON")? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Object(map) => match map.get("input") {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            _ => bail!("expected an object with a string \"input\" field"),
        },
        _ => bail!("expected a JSON string or an object with an \"input\" field"),
    }
}

fn run_inputs(
    function: &Function,
    inputs: &[String],
    options: &CallOptions,
    batch_size: usize,
    json: bool,
) -> Result<()> {
    let bar = if inputs.len() > 1 {
        let bar = ProgressBar::new(inputs.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} inputs {per_sec} eta {eta}",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut unfinished = 0usize;
    for chunk in inputs.chunks(batch_size) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let outputs = function
            .call_batch(&refs, options)
            .context("running the program")?;
        for (input, out) in chunk.iter().zip(&outputs) {
            if out.contract == ContractOutcome::Unfinished {
                unfinished += 1;
            }
            bar.suspend(|| -> Result<()> {
                if json {
                    outln!("{}", serde_json::to_string(&RunRecord::new(input, out))?);
                } else {
                    outln!("{}", out.text);
                }
                Ok(())
            })?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if unfinished > 0 {
        bail!(
            "{unfinished} of {} answers reached max_tokens before their output contract was \
             satisfied (printed as far as they got); raise --max-tokens",
            inputs.len()
        );
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_input_accepts_strings_and_input_objects() {
        assert_eq!(jsonl_input(r#""a\nb""#).unwrap(), "a\nb");
        assert_eq!(jsonl_input(r#"{"input":"x","output":"y"}"#).unwrap(), "x");
        assert!(jsonl_input(r#"{"text":"x"}"#).is_err());
        assert!(jsonl_input("not json").is_err());
    }
}
