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
use crate::output::{one_line, open_store, outln, terminal_safe};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    /// The input. Without it (and without --inputs), the whole of stdin is one input.
    input: Option<String>,
    /// Run every input in FILE (`-`: stdin), read line by line: one input per line (blank
    /// lines included), or one JSON value per line with --jsonl (a string, or an object with
    /// an "input" field). Output line N answers line N; a line that fails gets an empty
    /// output line (an error record with --json) and its error on stderr, and the run goes on.
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
    if args.input.is_none() && args.inputs.is_none() && std::io::stdin().is_terminal() {
        bail!("no input: pass it as an argument, pipe it on stdin, or use --inputs FILE");
    }
    let (program, _id) = read_program(&store, &args.program)?;
    let function = args.bind.bind(&store, &program)?;
    let options = CallOptions {
        max_tokens: args.max_tokens,
        use_contract: !args.no_contract,
        ..CallOptions::default()
    };
    let batch_size = args.bind.batch_size as usize;
    if let Some(path) = &args.inputs {
        let (reader, name, len): (Box<dyn BufRead>, String, Option<u64>) =
            if path.as_os_str() == "-" {
                (Box::new(std::io::stdin().lock()), "stdin".into(), None)
            } else {
                let file = std::fs::File::open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let len = file.metadata().ok().map(|m| m.len());
                (
                    Box::new(std::io::BufReader::new(file)),
                    path.display().to_string(),
                    len,
                )
            };
        let lines = InputLines {
            reader,
            name,
            jsonl: args.jsonl,
            cap: line_cap(function.max_input_bytes(), args.jsonl),
            number: 0,
            read: 0,
        };
        return run_lines(&function, lines, len, &options, batch_size, args.json);
    }
    let input = match args.input {
        Some(input) => input,
        None => read_stdin(function.max_input_bytes())?,
    };
    let out = function
        .call(&input, &options)
        .context("running the program")?;
    if args.json {
        outln!("{}", serde_json::to_string(&RunRecord::new(&input, &out))?);
    } else if std::io::stdout().is_terminal() {
        outln!("{}", terminal_safe(&out.text));
    } else {
        outln!("{}", out.text);
    }
    if out.contract == ContractOutcome::Unfinished {
        bail!(
            "the answer reached max_tokens before its output contract was satisfied (printed \
             as far as it got); raise --max-tokens"
        );
    }
    Ok(())
}

/// Reads and fully verifies a program by reference.
pub fn read_program(store: &Store, reference: &str) -> Result<(Program, paw_format::ProgramId)> {
    let loaded = store.load_program(reference)?;
    Program::from_bytes(&loaded.bytes).with_context(|| format!("reading {}", loaded.path.display()))
}

/// The whole of stdin as one input, read no further than `max` bytes can fit.
fn read_stdin(max: usize) -> Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max as u64 + 2)
        .read_to_end(&mut bytes)
        .context("reading stdin")?;
    // A trailing newline from `echo` is not part of the input.
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    if bytes.len() > max {
        bail!(
            "stdin holds more than {max} bytes: more than the program's context window can \
             hold (for many inputs, one per line, use --inputs -)"
        );
    }
    String::from_utf8(bytes).context("stdin is not UTF-8")
}

/// Longest line worth keeping for an input of at most `max_input` bytes (a JSON line may
/// spell each byte as a 6-byte `\u` escape).
fn line_cap(max_input: usize, jsonl: bool) -> usize {
    if jsonl {
        max_input.saturating_mul(6).saturating_add(64)
    } else {
        max_input
    }
}

/// Input lines read one at a time, each kept to `cap` bytes (the rest of a longer line is
/// skipped, not stored): memory stays flat in the number and length of lines.
struct InputLines {
    reader: Box<dyn BufRead>,
    name: String,
    jsonl: bool,
    cap: usize,
    /// Number of the last line read (1-based).
    number: usize,
    /// Bytes read so far.
    read: u64,
}

/// One line of input: its number, and the input or why it cannot be one.
struct InputLine {
    number: usize,
    input: Result<String, String>,
}

impl InputLines {
    fn next_line(&mut self) -> Result<Option<InputLine>> {
        let mut kept = Vec::new();
        let mut total = 0usize;
        let mut ended = false;
        loop {
            let buf = self
                .reader
                .fill_buf()
                .with_context(|| format!("reading {}", self.name))?;
            if buf.is_empty() {
                break;
            }
            let (chunk, newline) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (&buf[..i], true),
                None => (buf, false),
            };
            let room = (self.cap + 1).saturating_sub(kept.len());
            kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
            total += chunk.len();
            let used = chunk.len() + usize::from(newline);
            self.reader.consume(used);
            self.read += used as u64;
            if newline {
                ended = true;
                break;
            }
        }
        if !ended && total == 0 {
            return Ok(None);
        }
        self.number += 1;
        if kept.last() == Some(&b'\r') && total <= self.cap {
            kept.pop();
            total -= 1;
        }
        let input = if total > self.cap {
            Err(format!(
                "line of {total} bytes: longer than the {} bytes that could fit the context \
                 window",
                self.cap
            ))
        } else {
            match String::from_utf8(kept) {
                Err(_) => Err("not UTF-8".to_string()),
                Ok(line) if self.jsonl => jsonl_input(&line).map_err(|e| format!("{e:#}")),
                Ok(line) => Ok(line),
            }
        };
        Ok(Some(InputLine {
            number: self.number,
            input,
        }))
    }
}

#[derive(Debug, Serialize)]
struct ErrorRecord<'a> {
    line: usize,
    error: &'a str,
}

/// Runs every line, `batch_size` at a time. Output line N answers input line N: an input that
/// fails gets an error record (`--json`) or an empty line, its error goes to stderr with the
/// line number, and the run goes on; the exit status says if any failed.
fn run_lines(
    function: &Function,
    mut lines: InputLines,
    len: Option<u64>,
    options: &CallOptions,
    batch_size: usize,
    json: bool,
) -> Result<()> {
    let bar = match len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {percent}% of the input file, {msg} eta {eta}",
            )
            .context("progress bar template")?
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner(),
    };
    let (mut done, mut failed, mut unfinished) = (0usize, 0usize, 0usize);
    loop {
        let mut batch = Vec::with_capacity(batch_size);
        while batch.len() < batch_size {
            match lines.next_line()? {
                Some(line) => batch.push(line),
                None => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        for (line, answer) in batch.iter().zip(answer_lines(function, &batch, options)) {
            done += 1;
            let result = line.input.as_ref().map_err(String::clone).and(answer);
            bar.suspend(|| -> Result<()> {
                match (&result, &line.input) {
                    (Ok(out), Ok(input)) => {
                        if out.contract == ContractOutcome::Unfinished {
                            unfinished += 1;
                        }
                        if json {
                            outln!("{}", serde_json::to_string(&RunRecord::new(input, out))?);
                        } else {
                            outln!("{}", one_line(&out.text));
                        }
                    }
                    (Err(error), _) | (Ok(_), Err(error)) => {
                        failed += 1;
                        eprintln!("error: {} line {}: {error}", lines.name, line.number);
                        if json {
                            let record = ErrorRecord {
                                line: line.number,
                                error,
                            };
                            outln!("{}", serde_json::to_string(&record)?);
                        } else {
                            outln!();
                        }
                    }
                }
                Ok(())
            })?;
        }
        bar.set_position(lines.read);
        bar.set_message(format!("{done} inputs"));
    }
    bar.finish_and_clear();
    if done == 0 {
        bail!("{} holds no inputs", lines.name);
    }
    if failed > 0 {
        bail!(
            "{failed} of {done} inputs failed (see the errors above; their output lines are empty)"
        );
    }
    if unfinished > 0 {
        bail!(
            "{unfinished} of {done} answers reached max_tokens before their output contract was \
             satisfied (printed as far as they got); raise --max-tokens"
        );
    }
    Ok(())
}

/// The answer to each line's input (lines that are not inputs get an error back): one batched
/// call, or, if the batch fails, one call per input so that each error lands on its own line.
fn answer_lines(
    function: &Function,
    batch: &[InputLine],
    options: &CallOptions,
) -> Vec<Result<Output, String>> {
    let inputs: Vec<&str> = batch
        .iter()
        .filter_map(|l| l.input.as_deref().ok())
        .collect();
    let mut batched = match function.call_batch(&inputs, options) {
        Ok(outputs) => Some(outputs.into_iter()),
        Err(error) => {
            tracing::debug!(%error, "batch failed; running its inputs one by one");
            None
        }
    };
    batch
        .iter()
        .map(|line| {
            let input = line.input.as_deref().map_err(|e| e.clone())?;
            match batched.as_mut() {
                Some(outputs) => outputs
                    .next()
                    .ok_or_else(|| "the batch returned too few outputs".to_string()),
                None => function
                    .call(input, options)
                    .map_err(|e| format!("{:#}", anyhow::Error::from(e))),
            }
        })
        .collect()
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
