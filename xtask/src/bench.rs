//! `cargo xtask bench`: paw-rt against llama.cpp on the same model, adapter, prompts and threads.
//!
//! Setup: a virtualenv `target/bench-venv-<build>` with `llama-cpp-python` built from source,
//! by default for this machine's CPU (`--llama-build native`: paw-rt also picks its fastest
//! kernels, e.g. AVX512-VNNI, at run time) or for plain x86-64-v3 (`--llama-build v3`), a rank-64 adapter on all seven projections of every layer of the model
//! (deterministic random values, stored Q4_0), written as two `.paw` programs (a ~360-token
//! classification prompt and a long-output generation prompt) and exported once as a GGUF LoRA
//! (`paw_format::export::write_gguf_lora`) for llama.cpp.
//!
//! Measurement: each engine runs in its own long-lived child process (so its peak RSS is its
//! own): the paw-rt worker is this binary (`bench --worker`), the llama.cpp worker is
//! `xtask/bench/llama_worker.py`. Both answer the same JSON-lines commands. For each thread count
//! the parent starts both, checks that they agree on the adapter's logits, then runs N rounds; in
//! every round each measurement runs on one engine then the other (the first engine alternates
//! between rounds), so machine load hits both alike. Medians over rounds, and their ratios, are
//! printed as a Markdown report (also saved to `target/bench/report.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::Content;
use clap::Args;
use paw_format::export::write_gguf_lora;
use paw_format::{
    Adapter, GenerationConfig, LoraPair, Program, Provenance, TargetModule, TensorData, TensorDtype,
};
use paw_rt::{CallOptions, Interpreter, SplitMix64};
use paw_store::fetch::installed_path;
use paw_store::{Manifest, Store};
use serde_json::{json, Value};

use crate::repo_root;

const MODEL_ID: &str = "qwen2.5-coder-0.5b-instruct-q4_k_m";
const LLAMA_CPP_PYTHON: &str = "llama-cpp-python==0.3.36";
/// How llama.cpp is built for the comparison.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LlamaBuild {
    /// For this machine's CPU (`GGML_NATIVE`), the fair match for paw-rt's run-time dispatch.
    Native,
    /// For x86-64-v3 (AVX2/FMA), the instruction set paw is compiled for.
    V3,
}

impl LlamaBuild {
    fn cmake_args(self) -> &'static str {
        match self {
            Self::Native => "-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF",
            Self::V3 => {
                "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
                 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
            }
        }
    }

    fn venv(self) -> &'static str {
        match self {
            Self::Native => "target/bench-venv-native",
            Self::V3 => "target/bench-venv-v3",
        }
    }
}
const RANK: u32 = 64;
const ALPHA: f32 = 16.0;
const ADAPTER_DTYPE: TensorDtype = TensorDtype::Q4_0;
const DECODE_TOKENS: u32 = 64;
/// Output cap of the classification calls (a label is 1-3 tokens plus end-of-turn).
const CLASSIFY_TOKENS: u32 = 8;
const BATCH_INPUTS: usize = 64;
const WARM_CALLS: usize = 5;

/// Arguments of `cargo xtask bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Alternating rounds per thread count.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Thread counts to compare, e.g. `--threads 1,2`.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// How llama.cpp is built.
    #[arg(long, value_enum, default_value = "native")]
    llama_build: LlamaBuild,
    /// Base model GGUF [default: the installed qwen2.5-coder-0.5b-instruct-q4_k_m].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Only measure what an output contract costs paw-rt per decoded token (the generation
    /// program with a JSON-schema contract against the same program without; no llama.cpp).
    #[arg(long)]
    contract_cost: bool,
    /// Internal: run as the paw-rt worker with this config file.
    #[arg(long, hide = true)]
    worker: Option<PathBuf>,
}

pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(config) = &args.worker {
        return paw_worker(config);
    }
    if args.rounds == 0 || args.threads.is_empty() || args.threads.contains(&0) {
        bail!("need at least one round and thread counts >= 1");
    }
    let dir = repo_root().join("target/bench");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => installed_model()?,
    };
    if args.contract_cost {
        let report = contract_cost(&model, &dir, args.rounds)?;
        let path = dir.join("contract.md");
        fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
        println!("{report}");
        eprintln!("report saved to {}", path.display());
        return Ok(());
    }
    let python = ensure_venv(args.llama_build)?;
    let config_path = prepare(&model, &dir)?;

    let mut sessions = Vec::new();
    let path = dir.join("report.md");
    let mut report = String::new();
    for &threads in &args.threads {
        sessions.push(session(&python, &config_path, threads, args.rounds)?);
        // Saved after every thread count, so a long run keeps what it measured.
        report = render(&args, &model, &python, &sessions)?;
        fs::write(&path, &report).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{report}");
    eprintln!("report saved to {}", path.display());
    Ok(())
}

fn installed_model() -> Result<PathBuf> {
    let store = Store::open_default()?;
    installed_path(Manifest::embedded()?, &store, MODEL_ID)
        .context("the benchmark's model (or pass --model)")
}

/// The venv's python, with llama-cpp-python installed (built from source on first use).
fn ensure_venv(build: LlamaBuild) -> Result<PathBuf> {
    let venv = repo_root().join(build.venv());
    let python = venv.join("bin/python");
    if !python.exists() {
        eprintln!("creating {}", venv.display());
        check(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
    }
    let installed = Command::new(&python)
        .args(["-c", "import llama_cpp"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        eprintln!(
            "installing {LLAMA_CPP_PYTHON} (builds llama.cpp from source, ~5 min on 2 cores)"
        );
        check(
            Command::new(&python)
                .args(["-m", "pip", "install", "--no-cache-dir", LLAMA_CPP_PYTHON])
                .env("CMAKE_ARGS", build.cmake_args())
                .env("CMAKE_BUILD_PARALLEL_LEVEL", "2"),
            "pip install llama-cpp-python",
        )?;
    }
    Ok(python)
}

fn check(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

const SYSTEM: &str = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";

const CLASSIFY_PSEUDO: &str = "[PSEUDO_PROGRAM]
Task: Classify one line of a server log by how urgently an operator must act. Read the message, \
not only the level field: a line marked INFO that reports data loss is still critical. Return ONLY \
one of: critical, error, warning, info, debug.

Examples:
Input: 2024-03-01 12:00:03 ERROR db-primary: replication stopped, replica 42 GB behind
Output: critical
Input: 2024-03-01 12:00:09 WARN api-gw: p99 latency 870 ms above the 500 ms budget
Output: warning
Input: 2024-03-01 12:01:15 INFO billing: invoice batch 7781 sent to 1,204 customers
Output: info
Input: 2024-03-01 12:02:44 ERROR auth: token refresh failed for user 3381, retrying
Output: error
Input: 2024-03-01 12:03:00 DEBUG cache: evicted 512 keys from shard 3
Output: debug
[END_PSEUDO_PROGRAM]";

const GENERATE_PSEUDO: &str = "[PSEUDO_PROGRAM]
Task: Explain the given code to a new team member. Describe, step by step and in full sentences, \
what every line does, why it is written that way, which inputs make it fail, and how to test it. \
Write at least three paragraphs.
[END_PSEUDO_PROGRAM]";

const DECODE_INPUT: &str = "def merge_intervals(intervals):
    intervals.sort(key=lambda iv: iv[0])
    merged = []
    for start, end in intervals:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged";

const PREFILL_INPUT: &str =
    "2024-03-02 04:17:55 INFO storage-node-7: scrub finished, 3 chunks unreadable and no healthy replica left";

fn template(pseudo: &str) -> String {
    format!(
        "{SYSTEM}<|im_start|>user\n{pseudo}\n\n[INPUT]\n{}\n[END_INPUT]<|im_end|>\n<|im_start|>assistant\n",
        paw_format::INPUT_PLACEHOLDER
    )
}

/// 64 short, distinct log lines (deterministic).
fn short_inputs() -> Vec<String> {
    let services = [
        "api-gw",
        "db-primary",
        "auth",
        "billing",
        "cache",
        "scheduler",
        "mailer",
        "search",
    ];
    let events = [
        ("ERROR", "connection refused by upstream"),
        ("WARN", "disk usage at 91%"),
        ("INFO", "user login succeeded"),
        ("DEBUG", "retrying request 2 of 5"),
        ("ERROR", "out of memory, worker killed"),
        ("INFO", "config reloaded"),
        ("WARN", "certificate expires in 6 days"),
        ("CRIT", "all replicas unreachable"),
    ];
    (0..BATCH_INPUTS)
        .map(|i| {
            let (level, msg) = events[i % events.len()];
            let service = services[(i / events.len()) % services.len()];
            format!(
                "12:{:02}:{:02} {level} {service}: {msg}",
                i / 6,
                (i * 7) % 60
            )
        })
        .collect()
}

/// Rank-64 adapter on every projection of every layer, shapes read from the model file.
fn build_adapter(model: &Path) -> Result<Adapter> {
    let mut file = fs::File::open(model).with_context(|| format!("opening {}", model.display()))?;
    let ct =
        Content::read(&mut file).with_context(|| format!("reading GGUF {}", model.display()))?;
    let layers = (0..)
        .take_while(|l| {
            ct.tensor_infos
                .contains_key(&format!("blk.{l}.attn_q.weight"))
        })
        .count() as u32;
    let mut rng = SplitMix64::new(0x5eed);
    let mut pairs = Vec::new();
    for layer in 0..layers {
        for module in TargetModule::ALL {
            let name = format!("blk.{layer}.{}.weight", module.gguf_stem());
            let info = ct
                .tensor_infos
                .get(&name)
                .ok_or_else(|| anyhow!("{name} missing"))?;
            // candle lists dims outermost first: [out, in].
            let &[out, inp] = info.shape.dims() else {
                bail!("{name} is not 2-D")
            };
            let r = u64::from(RANK);
            // Small enough to keep the model coherent, large enough to move its logits visibly.
            let a: Vec<f32> = (0..r * inp as u64)
                .map(|_| rng.next_f32_symmetric(0.05))
                .collect();
            let b: Vec<f32> = (0..out as u64 * r)
                .map(|_| rng.next_f32_symmetric(0.05))
                .collect();
            pairs.push(LoraPair {
                layer,
                module,
                a: TensorData::from_f32(ADAPTER_DTYPE, [r, inp as u64], &a)?,
                b: TensorData::from_f32(ADAPTER_DTYPE, [out as u64, r], &b)?,
            });
        }
    }
    Ok(Adapter {
        rank: RANK,
        alpha: ALPHA,
        pairs,
    })
}

/// Writes the two programs, the exported GGUF LoRA and the workers' shared config.
fn prepare(model: &Path, dir: &Path) -> Result<PathBuf> {
    eprintln!("hashing {} and building the adapter", model.display());
    let interpreter = paw_rt::identity(model, None)?;
    let adapter = build_adapter(model)?;
    let program = |pseudo: &str, max_tokens: u32| Program {
        spec: "paw-rt vs llama.cpp benchmark".into(),
        pseudo_program: pseudo.into(),
        prompt_template: template(pseudo),
        interpreter: interpreter.clone(),
        adapter: Some(adapter.clone()),
        generation: GenerationConfig {
            max_tokens,
            stop: Vec::new(),
            temperature: 0.0,
        },
        contract: None,
        provenance: Provenance {
            compiler: "xtask-bench".into(),
            compiler_version: env!("CARGO_PKG_VERSION").into(),
            teacher_hash: None,
            seed: 0x5eed,
            hyperparameters: BTreeMap::new(),
            report: BTreeMap::new(),
        },
    };
    let classify = program(CLASSIFY_PSEUDO, CLASSIFY_TOKENS);
    let generate = program(GENERATE_PSEUDO, DECODE_TOKENS);
    classify.write_to(&dir.join("classify.paw"))?;
    generate.write_to(&dir.join("generate.paw"))?;
    let gguf = dir.join("adapter.gguf");
    let mut out = BufWriter::new(fs::File::create(&gguf)?);
    write_gguf_lora(&classify, &mut out)?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;

    let config = json!({
        "model": model,
        "adapter_gguf": gguf,
        "programs": {"classify": dir.join("classify.paw"), "generate": dir.join("generate.paw")},
        "templates": {"classify": classify.prompt_template, "generate": generate.prompt_template},
        "context_window": paw_rt::DEFAULT_CONTEXT_WINDOW,
    });
    let path = dir.join("config.json");
    fs::write(&path, serde_json::to_vec_pretty(&config)?)?;
    Ok(path)
}

/// A JSON-schema contract whose answers can run to the token limit (open strings and arrays),
/// so every decode step of both variants is a real step.
const CONTRACT_SCHEMA: &str = r#"{"type":"object","properties":{"summary":{"type":"string"},"steps":{"type":"array","items":{"type":"string"}}},"required":["summary","steps"],"additionalProperties":false}"#;

/// Decode tok/s of the generation program with and without [`CONTRACT_SCHEMA`], alternating
/// the variants' order between rounds; medians and their ratio, as Markdown.
fn contract_cost(model: &Path, dir: &Path, rounds: usize) -> Result<String> {
    prepare(model, dir)?;
    let (plain, _) = Program::read(&dir.join("generate.paw"))?;
    let constrained = Program {
        contract: Some(paw_format::OutputContract::JsonSchema {
            schema: CONTRACT_SCHEMA.into(),
        }),
        ..plain.clone()
    };
    let interp = Interpreter::load(model)?;
    let t = Instant::now();
    let variants = [
        ("none", interp.bind(&plain)?),
        ("json-schema", interp.bind(&constrained)?),
    ];
    let bind_secs = t.elapsed().as_secs_f64();
    let inputs = short_inputs();
    let inputs = &inputs[..4];
    let opts = CallOptions {
        max_tokens: Some(DECODE_TOKENS),
        ..CallOptions::default()
    };
    // Per variant: tok/s of each round, and tokens per answer.
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut per_answer: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for v in order {
            let (mut tokens, mut secs) = (0usize, 0.0f64);
            for input in inputs {
                let o = variants[v].1.call(input, &opts)?;
                tokens += o.generated_tokens.saturating_sub(1);
                secs += o.timings.decode.as_secs_f64();
                per_answer[v].push(o.generated_tokens as f64);
            }
            rates[v].push(tokens as f64 / secs.max(1e-9));
            eprintln!(
                "round {round} {}: {:.2} tok/s",
                variants[v].0,
                tokens as f64 / secs
            );
        }
    }
    let (none, json) = (median(&rates[0]), median(&rates[1]));
    let mut out = String::new();
    writeln!(
        out,
        "## Output contract cost (`cargo xtask bench --contract-cost`)\n"
    )?;
    writeln!(
        out,
        "CPU: {}; threads: {}; model {}; the rank-{RANK} generation program, max {DECODE_TOKENS} tokens, {} inputs x {rounds} rounds, variants alternated; binding both (prefix caches, the contract's token trie and grammar) took {bind_secs:.2} s.\n",
        cpu_model(),
        candle_core::utils::get_num_threads(),
        model.display(),
        inputs.len(),
    )?;
    writeln!(
        out,
        "| contract | decode tok/s (median) | tokens per answer (mean) |"
    )?;
    writeln!(out, "|---|---:|---:|")?;
    for (v, rate) in [none, json].iter().enumerate() {
        let mean = per_answer[v].iter().sum::<f64>() / per_answer[v].len().max(1) as f64;
        writeln!(out, "| {} | {rate:.2} | {mean:.1} |", variants[v].0)?;
    }
    writeln!(
        out,
        "\njson-schema / none: {:.3}x decode tok/s",
        json / none
    )?;
    Ok(out)
}

// ---------------------------------------------------------------- workers

/// The paw-rt worker: same protocol as `xtask/bench/llama_worker.py`.
fn paw_worker(config: &Path) -> Result<()> {
    let cfg: Value = serde_json::from_slice(&fs::read(config)?)?;
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("bad config"))
    };
    let t0 = Instant::now();
    let interp = Interpreter::load(s(&cfg["model"])?)?;
    let model_secs = t0.elapsed().as_secs_f64();
    let after_load = (vm_kib("VmRSS:")?, vm_hwm_kib()?);
    let mut fns = BTreeMap::new();
    let mut base = BTreeMap::new();
    for name in ["classify", "generate"] {
        let (program, _) = Program::read(Path::new(&s(&cfg["programs"][name])?))?;
        // bind() computes the prefix KV cache: part of load, not of any call.
        fns.insert(name, interp.bind(&program)?);
        // The logit check only needs the adapter-free baseline of the classification prompt.
        if name == "classify" {
            base.insert(name, interp.bind_without_adapter(&program)?);
        }
    }
    let load_secs = t0.elapsed().as_secs_f64();
    // Where paw-rt's memory goes: the weights (and the packing's transient peak), then what
    // binding adds (prefix caches, adapters, contracts, and the buffers of the first forward
    // passes).
    let ready = json!({
        "ready": true,
        "load_secs": load_secs,
        "model_load_secs": model_secs,
        "rss_after_load_kib": after_load.0,
        "hwm_after_load_kib": after_load.1,
        "rss_after_bind_kib": vm_kib("VmRSS:")?,
        "threads": candle_core::utils::get_num_threads(),
    });
    println!("{ready}");
    let opts = |max_tokens: u64| CallOptions {
        max_tokens: Some(max_tokens as u32),
        ..CallOptions::default()
    };
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let cmd: Value = serde_json::from_str(&line)?;
        let f = cmd["template"].as_str().and_then(|t| fns.get(t));
        let max = cmd["max_tokens"].as_u64().unwrap_or(1);
        let strs = || -> Vec<&str> {
            cmd["inputs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        };
        let input = cmd["input"].as_str().unwrap_or_default();
        let reply = match (cmd["task"].as_str().unwrap_or_default(), f) {
            ("prefill", Some(f)) => {
                // The whole prompt, nothing cached: prefill throughput.
                let o = f.call(
                    input,
                    &CallOptions {
                        use_prefix_cache: false,
                        ..opts(1)
                    },
                )?;
                let tokens = o.prefix_tokens + o.input_tokens + o.suffix_tokens;
                json!({"tokens": tokens, "secs": o.timings.prefill.as_secs_f64()})
            }
            ("decode", Some(f)) => {
                let o = f.call(input, &opts(max))?;
                // The first token comes from the prefill logits: generated - 1 decode steps.
                json!({"tokens": o.generated_tokens.saturating_sub(1), "secs": o.timings.decode.as_secs_f64(),
                       "generated": o.generated_tokens, "text": o.text})
            }
            ("warm", Some(f)) => {
                let (mut secs, mut texts) = (Vec::new(), Vec::new());
                for text in strs() {
                    let t = Instant::now();
                    let o = f.call(text, &opts(max))?;
                    secs.push(t.elapsed().as_secs_f64());
                    texts.push(o.text);
                }
                json!({"secs": secs, "texts": texts})
            }
            ("batch", Some(f)) => {
                let t = Instant::now();
                let outs = f.call_batch(&strs(), &opts(max))?;
                let secs = t.elapsed().as_secs_f64();
                let generated: usize = outs.iter().map(|o| o.generated_tokens).sum();
                let texts: Vec<&str> = outs.iter().map(|o| o.text.as_str()).collect();
                json!({"secs": secs, "texts": texts, "generated": generated})
            }
            ("logits", _) => {
                let name = cmd["template"].as_str().unwrap_or_default();
                let with = fns.get(name).ok_or_else(|| anyhow!("no template {name}"))?;
                let without = base
                    .get(name)
                    .ok_or_else(|| anyhow!("no template {name}"))?;
                json!({"logits": with.next_token_logits(input)?, "base_logits": without.next_token_logits(input)?})
            }
            ("rss", _) => json!({"vm_hwm_kib": vm_hwm_kib()?}),
            (task, _) => bail!("bad command {task}: {line}"),
        };
        println!("{reply}");
    }
    Ok(())
}

fn vm_hwm_kib() -> Result<u64> {
    vm_kib("VmHWM:")
}

/// A `/proc/self/status` memory line (`VmHWM:`, `VmRSS:`) in KiB.
fn vm_kib(field: &str) -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow!("no {field} in /proc/self/status"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Paw,
    Llama,
}

struct Worker {
    engine: Engine,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    ready: Value,
}

impl Worker {
    fn spawn(engine: Engine, python: &Path, config: &Path, threads: usize) -> Result<Self> {
        let mut cmd = match engine {
            Engine::Paw => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("bench").arg("--worker").arg(config);
                c
            }
            Engine::Llama => {
                let mut c = Command::new(python);
                c.arg(repo_root().join("xtask/bench/llama_worker.py"))
                    .arg(config)
                    .arg(threads.to_string());
                c
            }
        };
        // candle sizes its rayon pool from RAYON_NUM_THREADS (its barrier pool from
        // CANDLE_NUM_THREADS, falling back to the same); llama.cpp gets n_threads explicitly.
        let n = threads.to_string();
        let mut child = cmd
            .env("RAYON_NUM_THREADS", &n)
            .env("CANDLE_NUM_THREADS", &n)
            .env("OMP_NUM_THREADS", &n)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {engine:?} worker"))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = BufReader::new(child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
        let mut w = Self {
            engine,
            child,
            stdin,
            stdout,
            ready: Value::Null,
        };
        w.ready = w.read()?;
        Ok(w)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!(
                "the {:?} worker exited ({:?})",
                self.engine,
                self.child.wait()?
            );
        }
        Ok(serde_json::from_str(&line)?)
    }

    fn ask(&mut self, cmd: &Value) -> Result<Value> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        self.read()
    }

    fn finish(mut self) -> Result<()> {
        drop(self.stdin);
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the {:?} worker failed ({status})", self.engine);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- measurement

/// Per-engine samples of one thread count.
#[derive(Debug, Default)]
struct Samples {
    decode_tps: Vec<f64>,
    prefill_tps: Vec<f64>,
    warm_ms: Vec<f64>,
    batch_ips: Vec<f64>,
    prefill_tokens: u64,
    decode_generated: u64,
    peak_rss_mib: f64,
    load_secs: f64,
    last_texts: Vec<String>,
    decode_text: String,
}

#[derive(Debug)]
struct Session {
    threads: usize,
    paw: Samples,
    llama: Samples,
    check: Option<LogitCheck>,
    loadavg: Vec<String>,
    llama_version: String,
    paw_phases: PawPhases,
}

/// paw-rt's load split into its phases (from the worker's ready line).
#[derive(Debug)]
struct PawPhases {
    model_load_secs: f64,
    rss_after_load_mib: f64,
    hwm_after_load_mib: f64,
    rss_after_bind_mib: f64,
}

#[derive(Debug)]
struct LogitCheck {
    /// max |llama(adapter) - paw(adapter)| over the vocabulary.
    engines_diff: f64,
    /// max |paw(adapter) - paw(base)|: how far the adapter moves the logits.
    adapter_effect: f64,
    same_argmax: bool,
}

fn f64_of(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .ok_or_else(|| anyhow!("worker reply lacks `{key}`: {v}"))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn session(python: &Path, config: &Path, threads: usize, rounds: usize) -> Result<Session> {
    eprintln!("threads={threads}: starting both workers");
    let mut paw = Worker::spawn(Engine::Paw, python, config, threads)?;
    let mut llama = Worker::spawn(Engine::Llama, python, config, threads)?;
    let got = paw.ready["threads"].as_u64().unwrap_or(0);
    if got != threads as u64 {
        bail!("paw-rt worker runs {got} candle threads, expected {threads}");
    }
    let mut s = Session {
        threads,
        paw: Samples {
            load_secs: f64_of(&paw.ready, "load_secs")?,
            ..Samples::default()
        },
        llama: Samples {
            load_secs: f64_of(&llama.ready, "load_secs")?,
            ..Samples::default()
        },
        check: None,
        loadavg: vec![loadavg()],
        llama_version: llama.ready["version"].as_str().unwrap_or("?").to_string(),
        paw_phases: PawPhases {
            model_load_secs: f64_of(&paw.ready, "model_load_secs")?,
            rss_after_load_mib: f64_of(&paw.ready, "rss_after_load_kib")? / 1024.0,
            hwm_after_load_mib: f64_of(&paw.ready, "hwm_after_load_kib")? / 1024.0,
            rss_after_bind_mib: f64_of(&paw.ready, "rss_after_bind_kib")? / 1024.0,
        },
    };

    // Both engines must run the same adapter: compare first-token logits.
    let cmd = json!({"task": "logits", "template": "classify", "input": PREFILL_INPUT});
    let p = paw.ask(&cmd)?;
    let l = llama.ask(&cmd)?;
    let vec = |v: &Value, k: &str| -> Vec<f64> {
        v[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let (pl, pb, ll) = (vec(&p, "logits"), vec(&p, "base_logits"), vec(&l, "logits"));
    if pl.is_empty() || pl.len() != ll.len() || pl.len() != pb.len() {
        bail!(
            "logit vectors differ in length: paw {} llama {}",
            pl.len(),
            ll.len()
        );
    }
    let max_diff = |a: &[f64], b: &[f64]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let argmax = |a: &[f64]| {
        a.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    };
    s.check = Some(LogitCheck {
        engines_diff: max_diff(&pl, &ll),
        adapter_effect: max_diff(&pl, &pb),
        same_argmax: argmax(&pl) == argmax(&ll),
    });

    let inputs = short_inputs();
    let warm_inputs = &inputs[..WARM_CALLS];
    let cmds = [
        json!({"task": "decode", "template": "generate", "input": DECODE_INPUT, "max_tokens": DECODE_TOKENS}),
        json!({"task": "prefill", "template": "classify", "input": PREFILL_INPUT}),
        json!({"task": "warm", "template": "classify", "inputs": warm_inputs, "max_tokens": CLASSIFY_TOKENS}),
        json!({"task": "batch", "template": "classify", "inputs": inputs, "max_tokens": CLASSIFY_TOKENS}),
    ];
    // One untimed short call each, so first-touch page faults and allocator growth are not measured.
    let warmup = json!({"task": "warm", "template": "classify", "inputs": [&inputs[0]], "max_tokens": CLASSIFY_TOKENS});
    paw.ask(&warmup)?;
    llama.ask(&warmup)?;
    for round in 0..rounds {
        eprintln!(
            "threads={threads}: round {}/{rounds} (load {})",
            round + 1,
            loadavg()
        );
        for cmd in &cmds {
            let order = if round % 2 == 0 {
                [&mut paw, &mut llama]
            } else {
                [&mut llama, &mut paw]
            };
            for w in order {
                let t = Instant::now();
                let r = w.ask(cmd)?;
                eprintln!(
                    "  {:?} {}: {:.1} s",
                    w.engine,
                    cmd["task"],
                    t.elapsed().as_secs_f64()
                );
                let samples = match w.engine {
                    Engine::Paw => &mut s.paw,
                    Engine::Llama => &mut s.llama,
                };
                record(samples, cmd, &r)?;
            }
        }
        s.loadavg.push(loadavg());
    }
    for (w, samples) in [(&mut paw, &mut s.paw), (&mut llama, &mut s.llama)] {
        samples.peak_rss_mib = f64_of(&w.ask(&json!({"task": "rss"}))?, "vm_hwm_kib")? / 1024.0;
    }
    paw.finish()?;
    llama.finish()?;
    Ok(s)
}

fn record(s: &mut Samples, cmd: &Value, r: &Value) -> Result<()> {
    let secs = f64_of(r, "secs");
    match cmd["task"].as_str().unwrap_or_default() {
        "decode" => {
            s.decode_tps.push(f64_of(r, "tokens")? / secs?);
            s.decode_generated = r["generated"].as_u64().unwrap_or(0);
            s.decode_text = r["text"].as_str().unwrap_or_default().to_string();
        }
        "prefill" => {
            s.prefill_tps.push(f64_of(r, "tokens")? / secs?);
            s.prefill_tokens = r["tokens"].as_u64().unwrap_or(0);
        }
        "warm" => {
            let all: Vec<f64> = r["secs"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            s.warm_ms.push(median(&all) * 1000.0);
        }
        "batch" => {
            let n = cmd["inputs"].as_array().map_or(0, Vec::len) as f64;
            s.batch_ips.push(n / secs?);
            s.last_texts = r["texts"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
        }
        other => bail!("unexpected task {other}"),
    }
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

// ---------------------------------------------------------------- report

fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

fn render(args: &BenchArgs, model: &Path, python: &Path, sessions: &[Session]) -> Result<String> {
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()?;
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    let mut r = String::new();
    let version = sessions.first().map_or("?", |s| s.llama_version.as_str());
    writeln!(r, "## paw-rt vs llama.cpp\n")?;
    writeln!(
        r,
        "- date: {}",
        String::from_utf8_lossy(&date.stdout).trim()
    )?;
    writeln!(r, "- machine: {nproc} CPUs, {}", cpu_model())?;
    writeln!(
        r,
        "- model: {} ({})",
        model
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        model.display()
    )?;
    writeln!(r, "- adapter: rank {RANK}, alpha {ALPHA}, all 7 projections of every layer, {ADAPTER_DTYPE} (deterministic random values); llama.cpp loads the same adapter exported by `paw_format::export::write_gguf_lora` (scale 1.0)")?;
    writeln!(
        r,
        "- llama.cpp: llama-cpp-python {version} (`{}`), built with CMAKE_ARGS=`{}`",
        python.display(),
        args.llama_build.cmake_args()
    )?;
    writeln!(r, "- paw-rt: this workspace, release, `-C target-cpu=x86-64-v3` (paw-rt picks its AVX512-VNNI, AVX2 or scalar kernel at run time; candle's for other block types); threads via RAYON_NUM_THREADS/CANDLE_NUM_THREADS, llama.cpp via n_threads = n_threads_batch")?;
    writeln!(r, "- method: each engine in its own child process; {} alternating rounds per thread count (engine order swapped every round) after one untimed warm-up call; medians over rounds", args.rounds)?;
    writeln!(
        r,
        "- rerun: `cargo xtask bench --rounds {} --llama-build {} --threads {}`\n",
        args.rounds,
        match args.llama_build {
            LlamaBuild::Native => "native",
            LlamaBuild::V3 => "v3",
        },
        args.threads
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(",")
    )?;

    writeln!(
        r,
        "| threads | metric | paw-rt | llama.cpp | paw-rt / llama.cpp |"
    )?;
    writeln!(r, "|---|---|---|---|---|")?;
    for s in sessions {
        let prefill = format!(
            "prefill tok/s ({}-token prompt, uncached; llama.cpp tokenizes it to {})",
            s.paw.prefill_tokens, s.llama.prefill_tokens
        );
        let rows: [(&str, f64, f64, bool); 5] = [
            (
                "decode tok/s (greedy, 64 tokens)",
                median(&s.paw.decode_tps),
                median(&s.llama.decode_tps),
                true,
            ),
            (
                &prefill,
                median(&s.paw.prefill_tps),
                median(&s.llama.prefill_tps),
                true,
            ),
            (
                "warm classification call, ms (prefix cached, <= 8 tokens)",
                median(&s.paw.warm_ms),
                median(&s.llama.warm_ms),
                false,
            ),
            (
                "batch of 64 short inputs, inputs/s",
                median(&s.paw.batch_ips),
                median(&s.llama.batch_ips),
                true,
            ),
            (
                "peak RSS, MiB (VmHWM)",
                s.paw.peak_rss_mib,
                s.llama.peak_rss_mib,
                false,
            ),
        ];
        for (name, p, l, higher_better) in rows {
            let note = if higher_better {
                ""
            } else {
                " (lower is better)"
            };
            writeln!(
                r,
                "| {} | {name} | {p:.1} | {l:.1} | {:.2}{note} |",
                s.threads,
                p / l
            )?;
        }
    }
    writeln!(r)?;
    for s in sessions {
        writeln!(
            r,
            "threads={}: load average before/after rounds: {}",
            s.threads,
            s.loadavg.join(" -> ")
        )?;
        writeln!(
            r,
            "  decode tok/s samples: paw {:?} llama {:?}",
            round2(&s.paw.decode_tps),
            round2(&s.llama.decode_tps)
        )?;
        writeln!(
            r,
            "  prefill tok/s samples: paw {:?} llama {:?}",
            round2(&s.paw.prefill_tps),
            round2(&s.llama.prefill_tps)
        )?;
        writeln!(
            r,
            "  warm ms samples: paw {:?} llama {:?}",
            round2(&s.paw.warm_ms),
            round2(&s.llama.warm_ms)
        )?;
        writeln!(
            r,
            "  batch inputs/s samples: paw {:?} llama {:?}",
            round2(&s.paw.batch_ips),
            round2(&s.llama.batch_ips)
        )?;
        writeln!(
            r,
            "  load (incl. prefix caches for paw-rt): paw {:.1} s, llama {:.1} s",
            s.paw.load_secs, s.llama.load_secs
        )?;
        let m = &s.paw_phases;
        writeln!(
            r,
            "  paw-rt phases: model load {:.1} s, then binding (3 prefix caches) {:.1} s; \
             RSS after model load {:.0} MiB (peak so far {:.0}), after binding {:.0} MiB",
            m.model_load_secs,
            s.paw.load_secs - m.model_load_secs,
            m.rss_after_load_mib,
            m.hwm_after_load_mib,
            m.rss_after_bind_mib
        )?;
        writeln!(
            r,
            "  decode generated tokens: paw {} llama {}",
            s.paw.decode_generated, s.llama.decode_generated
        )?;
        if let Some(c) = &s.check {
            writeln!(r, "  adapter check (first-token logits): max|paw - llama| = {:.3}, max|paw(adapter) - paw(no adapter)| = {:.3}, same argmax: {}", c.engines_diff, c.adapter_effect, c.same_argmax)?;
        }
        let same = s
            .paw
            .last_texts
            .iter()
            .zip(&s.llama.last_texts)
            .filter(|(a, b)| a == b)
            .count();
        writeln!(
            r,
            "  batch outputs identical between engines: {same}/{}",
            s.paw.last_texts.len()
        )?;
    }
    if let Some(s) = sessions.first() {
        writeln!(
            r,
            "\ndecode output, paw-rt: {:?}\ndecode output, llama.cpp: {:?}",
            s.paw.decode_text, s.llama.decode_text
        )?;
        writeln!(
            r,
            "classification outputs (first 4), paw-rt: {:?}, llama.cpp: {:?}",
            &s.paw.last_texts[..s.paw.last_texts.len().min(4)],
            &s.llama.last_texts[..s.llama.last_texts.len().min(4)]
        )?;
    }
    Ok(r)
}

fn round2(v: &[f64]) -> Vec<f64> {
    v.iter().map(|x| (x * 100.0).round() / 100.0).collect()
}
