//! Compile one FuzzyBench task from its spec (and optionally its examples) and score the
//! program on the task's tests.jsonl against two baselines: the pseudo-program alone and the
//! interpreter prompted with the raw spec.
//!
//! cargo run -p paw-compile --release --example fuzzybench -- TASK_DIR INTERPRETER TEACHER|none
//!     [--steps N] [--layers N] [--rank N] [--lr X] [--requests N] [--examples] [--agree]
//!     [--seed N] [--out FILE.paw]
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use paw_compile::{compile, read_examples, CompileOptions};
use paw_format::{Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Function, Interpreter};

fn score(f: &Function, cases: &[(String, String)], max_tokens: u32) -> Result<f64> {
    let opts = CallOptions {
        max_tokens: Some(max_tokens),
        temperature: Some(0.0),
        ..CallOptions::default()
    };
    let mut hits = 0;
    for chunk in cases.chunks(8) {
        let inputs: Vec<&str> = chunk.iter().map(|c| c.0.as_str()).collect();
        for (c, o) in chunk.iter().zip(f.call_batch(&inputs, &opts)?) {
            hits += usize::from(paw_eval::exact_match(&c.1, &o.text));
        }
    }
    Ok(hits as f64 / cases.len().max(1) as f64)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [task, interp, teacher, rest @ ..] = &args[..] else {
        anyhow::bail!("usage: fuzzybench TASK_DIR INTERPRETER TEACHER|none [options]");
    };
    let task = PathBuf::from(task);
    let spec = std::fs::read_to_string(task.join("spec.txt"))?;
    let mut opts = CompileOptions::new(spec.trim(), interp);
    if teacher != "none" {
        opts.teacher = Some(teacher.into());
    }
    let mut out_path = None;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().context("missing value");
        match a.as_str() {
            "--steps" => opts.train.steps = val()?.parse()?,
            "--layers" => opts.train.layers = val()?.parse()?,
            "--rank" => opts.train.rank = val()?.parse()?,
            "--alpha" => opts.train.alpha = val()?.parse()?,
            "--lr" => opts.train.learning_rate = val()?.parse()?,
            "--batch" => opts.train.batch = val()?.parse()?,
            "--requests" => opts.requests = Some(val()?.parse()?),
            "--seed" => opts.seed = val()?.parse()?,
            "--out" => out_path = Some(PathBuf::from(val()?)),
            "--examples" => opts.examples = read_examples(&task.join("examples.jsonl"))?,
            "--agree" => opts.agreement_filter = true,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let t0 = Instant::now();
    let out = compile(&opts, &mut |p| {
        if p.done > 0 && (p.done == p.total || p.done % 10 == 0) {
            eprintln!(
                "  {:?} {}/{} {}",
                p.stage,
                p.done,
                p.total,
                p.message.unwrap_or_default()
            );
        }
    })?;
    let total = t0.elapsed();
    println!("task {}", task.display());
    for (stage, d) in &out.timings {
        println!("time {stage:?}: {:.1}s", d.as_secs_f64());
    }
    println!("time total: {:.1}s", total.as_secs_f64());
    for (k, v) in &out.report.to_provenance() {
        println!("report {k} = {v}");
    }
    for (k, v) in &out.program.provenance.hyperparameters {
        println!("hyper {k} = {v}");
    }
    println!("pseudo-program:\n{}", out.program.pseudo_program);
    for e in out.data.train.iter().chain(&out.data.validation).take(12) {
        println!("data {:?}: {} => {}", e.origin, e.input, e.output);
    }
    println!(
        "adapter bytes {}, program bytes {}, id {}",
        out.program.adapter.as_ref().map_or(0, |a| a
            .pairs
            .iter()
            .map(|p| p.a.bytes.len() + p.b.bytes.len())
            .sum::<usize>()),
        out.bytes.len(),
        out.id
    );
    if let Some(p) = &out_path {
        std::fs::write(p, &out.bytes)?;
    }

    // Score on tests.jsonl.
    let cases = read_examples(&task.join("tests.jsonl"))?;
    let interpreter = Interpreter::load(&opts.interpreter)?;
    let max = out.program.generation.max_tokens;
    let t1 = Instant::now();
    let with = score(&interpreter.bind(&out.program)?, &cases, max)?;
    let without = score(
        &interpreter.bind_without_adapter(&out.program)?,
        &cases,
        max,
    )?;
    let chat = paw_compile::chat::ChatTemplate::from_gguf_file(&opts.interpreter)?;
    let raw = Program {
        prompt_template: chat.render_user(&format!(
            "{}\n\nInput: {INPUT_PLACEHOLDER}\n\nReply with the output only.",
            spec.trim()
        )),
        adapter: None,
        ..out.program.clone()
    };
    let raw_score = score(&interpreter.bind(&raw)?, &cases, 32)?;
    println!(
        "tests {}: exact match compiled {:.1}% | pseudo-program only {:.1}% | raw spec prompt {:.1}% (scoring {:.0}s)",
        cases.len(),
        with * 100.0,
        without * 100.0,
        raw_score * 100.0,
        t1.elapsed().as_secs_f64()
    );
    Ok(())
}
