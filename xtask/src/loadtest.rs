//! `cargo xtask loadtest`: `paw serve`'s server under concurrent load on loopback, against
//! sequential calls, with every answer checked against a direct call.
//!
//! Three programs of FuzzyBench tasks (default: the newest stored program compiled from each
//! task's `spec.txt` for the default interpreter) share one loaded interpreter. Phases, one
//! after the other on a quiet machine:
//! 1. direct: each (task, input) case once through `Function::call`, in process (the answers
//!    every later phase must give);
//! 2. one client: the same cases over HTTP, one request at a time;
//! 3. many clients: `--requests` requests over the cases from `--clients` threads.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use paw_format::Program;
use paw_rt::{CallOptions, Interpreter};
use paw_serve::{Registry, ServeOptions, Server};
use paw_store::fetch::installed_path;
use paw_store::{Manifest, Store};
use serde_json::json;

#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// FuzzyBench tasks whose programs are served; their test inputs are the requests.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sentiment,log-level,ticket-routing"
    )]
    tasks: Vec<String>,
    /// Programs instead of the store's newest per task, as TASK=PROGRAM (path or id).
    #[arg(long = "program", value_name = "TASK=PROGRAM")]
    programs: Vec<String>,
    /// Test inputs per task.
    #[arg(long, default_value_t = 24)]
    inputs: usize,
    /// Requests of the concurrent phase.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// The concurrent phase stops sending after this many seconds (the rest counted unsent).
    #[arg(long, default_value_t = 1800)]
    max_seconds: u64,
}

/// One request: a task's program and one of its inputs, with the direct call's answer.
struct Case {
    task: String,
    input: String,
    expected: String,
}

pub fn run(args: LoadtestArgs, root: &Path) -> Result<()> {
    let store = Store::open_default()?;
    let manifest = Manifest::embedded()?;
    let model = installed_path(manifest, &store, &manifest.default_interpreter().id)
        .context("the default interpreter (cargo xtask models fetch)")?;
    let interpreter = Interpreter::load(&model)?;
    let chosen: BTreeMap<String, String> = args
        .programs
        .iter()
        .filter_map(|p| p.split_once('='))
        .map(|(t, p)| (t.to_owned(), p.to_owned()))
        .collect();
    let mut registry = Registry::new();
    let mut functions = BTreeMap::new();
    let mut cases = Vec::new();
    for task in &args.tasks {
        let dir = root.join("fixtures/fuzzybench").join(task);
        let program_ref = match chosen.get(task) {
            Some(p) => p.clone(),
            None => newest_program_for(&store, &dir, &interpreter)?
                .with_context(|| format!("no stored program of {task} for the default interpreter: compile one (cargo xtask eval --tasks {task}) or pass --program {task}=PROGRAM"))?,
        };
        let loaded = store.load_program(&program_ref)?;
        let (program, id) = Program::from_bytes(&loaded.bytes)?;
        let function = interpreter.bind(&program)?;
        eprintln!("{task}: program {id}");
        let tests = paw_eval::load_cases(&dir.join("tests.jsonl"))?;
        for case in tests.into_iter().take(args.inputs) {
            cases.push(Case {
                task: task.clone(),
                input: case.input,
                expected: String::new(),
            });
        }
        registry.insert(task, id, function.clone());
        functions.insert(task.clone(), function);
    }

    // 1. Direct calls: the answers, and the sequential baseline without HTTP.
    let mut direct = Vec::new();
    let started = Instant::now();
    for case in &mut cases {
        let t = Instant::now();
        case.expected = functions[&case.task]
            .call(&case.input, &CallOptions::default())?
            .text;
        direct.push(t.elapsed());
    }
    let direct_secs = started.elapsed().as_secs_f64();

    let server = Server::start(
        registry,
        ServeOptions {
            request_timeout: Duration::from_secs(args.max_seconds + 60),
            ..ServeOptions::default()
        },
    )?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel::<SocketAddr>();
    let serving = std::thread::spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addr_tx.send(listener.local_addr()?)?;
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await?;
            Ok(())
        })
    });
    let base = format!("http://{}", addr_rx.recv_timeout(Duration::from_secs(60))?);
    let cases = Arc::new(cases);

    // 2. One client, one request at a time.
    let mut single = Vec::new();
    let started = Instant::now();
    for case in cases.iter() {
        let t = Instant::now();
        check(&base, case)?;
        single.push(t.elapsed());
    }
    let single_secs = started.elapsed().as_secs_f64();

    // 3. Many clients.
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let started = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let (cases, next, failures, base) = (
                Arc::clone(&cases),
                Arc::clone(&next),
                Arc::clone(&failures),
                base.clone(),
            );
            let total = args.requests;
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= total || Instant::now() > deadline {
                        break;
                    }
                    let t = Instant::now();
                    if let Err(e) = check(&base, &cases[k % cases.len()]) {
                        if let Ok(mut f) = failures.lock() {
                            f.push(format!("{e:#}"));
                        }
                    }
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut concurrent = Vec::new();
    for c in clients {
        concurrent.extend(c.join().map_err(|_| anyhow::anyhow!("a client panicked"))?);
    }
    let concurrent_secs = started.elapsed().as_secs_f64();
    let batches = ureq::get(&format!("{base}/metrics"))
        .call()?
        .into_string()?;
    let _ = stop.send(());
    serving
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))??;

    let failures = failures.lock().map(|f| f.clone()).unwrap_or_default();
    let rps = |n: usize, secs: f64| n as f64 / secs;
    let (r_direct, r_single, r_many) = (
        rps(direct.len(), direct_secs),
        rps(single.len(), single_secs),
        rps(concurrent.len(), concurrent_secs),
    );
    let row = |name: &str, lat: &mut Vec<Duration>, r: f64, secs: f64| {
        lat.sort();
        format!(
            "| {name} | {} | {secs:.1} | {r:.2} | {:.0} | {:.0} |",
            lat.len(),
            pct(lat, 0.50),
            pct(lat, 0.99)
        )
    };
    println!(
        "programs: {}; interpreter {}; {} cases; {} clients\n",
        args.tasks.join(", "),
        model.display(),
        cases.len(),
        args.clients
    );
    println!("| phase | requests | seconds | requests/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|");
    println!(
        "{}",
        row(
            "direct `Function::call`, sequential",
            &mut direct,
            r_direct,
            direct_secs
        )
    );
    println!(
        "{}",
        row("HTTP, 1 client", &mut single, r_single, single_secs)
    );
    println!(
        "{}",
        row(
            &format!("HTTP, {} clients", args.clients),
            &mut concurrent,
            r_many,
            concurrent_secs
        )
    );
    println!(
        "\n{} clients / 1 client: **{:.2}x** requests/s; errors or wrong answers: {}",
        args.clients,
        r_many / r_single,
        failures.len()
    );
    let batch_lines: Vec<&str> = batches
        .lines()
        .filter(|l| l.starts_with("paw_batch_inputs"))
        .collect();
    println!("\n```\n{}\n```", batch_lines.join("\n"));
    if concurrent.len() < args.requests {
        bail!(
            "only {} of {} requests were sent within {} s",
            concurrent.len(),
            args.requests,
            args.max_seconds
        );
    }
    if let Some(first) = failures.first() {
        bail!("{} requests failed; first: {first}", failures.len());
    }
    Ok(())
}

/// Sends one case and checks the answer against the direct call's.
fn check(base: &str, case: &Case) -> Result<()> {
    let response = ureq::post(&format!("{base}/v1/functions/{}", case.task))
        .timeout(Duration::from_secs(3600))
        .send_json(json!({"input": case.input}));
    let v: serde_json::Value = match response {
        Ok(r) => r.into_json()?,
        Err(ureq::Error::Status(code, r)) => bail!("HTTP {code}: {}", r.into_string()?),
        Err(e) => return Err(e.into()),
    };
    let text = v["output"]["text"].as_str().context("no output text")?;
    if text != case.expected {
        bail!(
            "{}: {:?} answered {text:?}, the direct call {:?}",
            case.task,
            case.input,
            case.expected
        );
    }
    Ok(())
}

fn pct(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

/// The newest stored program compiled from `dir/spec.txt` for `interpreter`.
fn newest_program_for(
    store: &Store,
    dir: &Path,
    interpreter: &Interpreter,
) -> Result<Option<String>> {
    let spec = std::fs::read_to_string(dir.join("spec.txt"))
        .with_context(|| format!("reading {}", dir.join("spec.txt").display()))?;
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for stored in store.list_programs()? {
        let Ok((program, _)) = Program::read(&stored.path) else {
            continue;
        };
        if program.spec.trim() != spec.trim()
            || program.interpreter.weights_hash != interpreter.identity().weights_hash
        {
            continue;
        }
        let modified = std::fs::metadata(&stored.path)?.modified()?;
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, stored.path));
        }
    }
    Ok(best.map(|(_, p)| p.to_string_lossy().into_owned()))
}
