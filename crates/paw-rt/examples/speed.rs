//! Prefill and decode speed of paw-rt against stock candle-transformers on one GGUF model.
//!
//! `cargo run -p paw-rt --release --example speed -- MODEL.gguf [ROUNDS]`
//!
//! Runs each (engine, threads) configuration in a child process (candle's thread count is fixed
//! per process by RAYON_NUM_THREADS), alternating configurations over ROUNDS rounds because the
//! machine is shared and noisy, and prints per-round figures and medians.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::process::Command;
use std::time::Instant;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use paw_format::{GenerationConfig, Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Interpreter};

const PREFILL_TOKENS: usize = 200;
const DECODE_TOKENS: u32 = 64;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(&args[2], &args[3]);
        return;
    }
    let model = args
        .get(1)
        .expect("usage: speed MODEL.gguf [ROUNDS]")
        .clone();
    let rounds: usize = args.get(2).map_or(2, |r| r.parse().unwrap());
    let exe = std::env::current_exe().unwrap();
    let mut results: Vec<(String, usize, f64, f64)> = Vec::new();
    for round in 0..rounds {
        for threads in [1usize, 2] {
            for engine in ["paw-rt", "candle"] {
                let out = Command::new(&exe)
                    .args(["--child", &model, engine])
                    .env("RAYON_NUM_THREADS", threads.to_string())
                    .output()
                    .unwrap();
                let line = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let mut it = line.split_whitespace().map(|x| x.parse::<f64>().unwrap());
                let (prefill, decode) = (it.next().unwrap(), it.next().unwrap());
                let batch = match (it.next(), it.next()) {
                    (Some(b), Some(s)) => {
                        format!(", 4 inputs: batched {b:5.1} tok/s vs one by one {s:5.1} tok/s")
                    }
                    _ => String::new(),
                };
                println!(
                    "round {round} {engine:7} threads {threads}: prefill {prefill:7.1} tok/s, \
                     decode {decode:6.1} tok/s{batch}"
                );
                results.push((engine.to_string(), threads, prefill, decode));
            }
        }
    }
    println!("median over {rounds} rounds:");
    for threads in [1usize, 2] {
        for engine in ["paw-rt", "candle"] {
            let sel: Vec<&(String, usize, f64, f64)> = results
                .iter()
                .filter(|r| r.0 == engine && r.1 == threads)
                .collect();
            let med = |f: fn(&(String, usize, f64, f64)) -> f64| {
                let mut v: Vec<f64> = sel.iter().map(|r| f(r)).collect();
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            println!(
                "{engine:7} threads {threads}: prefill {:7.1} tok/s, decode {:6.1} tok/s",
                med(|r| r.2),
                med(|r| r.3)
            );
        }
    }
}

/// Prints "prefill_tok_s decode_tok_s" for one engine.
fn child(model: &str, engine: &str) {
    let interp = Interpreter::load(model).unwrap();
    let tok = interp.tokenizer().clone();
    let filler = "The quick brown fox jumps over the lazy dog while counting 1, 2, 3. ".repeat(40);
    let mut ids = tok
        .encode_with_specials(&format!("<|im_start|>user\n{filler}"))
        .unwrap();
    ids.truncate(PREFILL_TOKENS);
    let gen_prompt = "<|im_start|>user\nWrite a long Python module with ten functions about \
                      string processing, with docstrings.<|im_end|>\n<|im_start|>assistant\n";
    match engine {
        "paw-rt" => {
            interp.next_token_logits(&ids[..16]).unwrap(); // warm-up
            let t = Instant::now();
            interp.next_token_logits(&ids).unwrap();
            let prefill = ids.len() as f64 / t.elapsed().as_secs_f64();
            let template =
                gen_prompt.replace("Write a long", &format!("{INPUT_PLACEHOLDER} Write a long"));
            let program = Program::prompt_only(
                "",
                template,
                interp.identity().clone(),
                GenerationConfig {
                    max_tokens: DECODE_TOKENS,
                    stop: vec![],
                    temperature: 0.0,
                },
            );
            let f = interp.bind(&program).unwrap();
            let out = f.call("Please.", &CallOptions::default()).unwrap();
            // The first token comes from prefill; the rest are decode steps.
            let steps = out.generated_tokens.saturating_sub(1).max(1);
            let decode = steps as f64 / out.timings.decode.as_secs_f64();
            // Throughput of four inputs as one batch against four single calls.
            let inputs = ["Please.", "Thanks!", "Go ahead, please.", "Now."];
            let opts = CallOptions {
                max_tokens: Some(16),
                ..CallOptions::default()
            };
            let t = Instant::now();
            let n_batch: usize = f
                .call_batch(&inputs, &opts)
                .unwrap()
                .iter()
                .map(|o| o.generated_tokens)
                .sum();
            let batch = n_batch as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            let n_single: usize = inputs
                .iter()
                .map(|i| f.call(i, &opts).unwrap().generated_tokens)
                .sum();
            let single = n_single as f64 / t.elapsed().as_secs_f64();
            println!("{prefill} {decode} {batch} {single}");
        }
        _ => {
            use candle_transformers::models::quantized_qwen2::ModelWeights;
            let load = || {
                let mut f = std::fs::File::open(model).unwrap();
                let ct = gguf_file::Content::read(&mut f).unwrap();
                ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).unwrap()
            };
            // Tokens as a batch of one, and the greedy token from a `[1, vocab]` logits row.
            let row = |tokens: &[u32]| {
                Tensor::new(tokens, &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap()
            };
            let greedy = |logits: Tensor| {
                logits
                    .squeeze(0)
                    .unwrap()
                    .argmax(0)
                    .unwrap()
                    .to_scalar::<u32>()
                    .unwrap()
            };
            let mut m = load();
            m.forward(&row(&ids[..16]), 0).unwrap(); // warm-up
            let mut m = load();
            let input = row(&ids);
            let t = Instant::now();
            m.forward(&input, 0).unwrap();
            let prefill = ids.len() as f64 / t.elapsed().as_secs_f64();
            let mut m = load();
            let gen_ids = tok.encode_with_specials(gen_prompt).unwrap();
            let mut next = greedy(m.forward(&row(&gen_ids), 0).unwrap());
            let t = Instant::now();
            for i in 0..DECODE_TOKENS as usize - 1 {
                next = greedy(m.forward(&row(&[next]), gen_ids.len() + i).unwrap());
            }
            let decode = (DECODE_TOKENS - 1) as f64 / t.elapsed().as_secs_f64();
            println!("{prefill} {decode}");
        }
    }
}
