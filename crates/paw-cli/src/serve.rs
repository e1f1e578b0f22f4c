//! `paw serve`: the functions of a lock, or the given programs, over HTTP (`paw-serve`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use paw_rt::Interpreter;
use paw_serve::{Registry, ServeOptions, Server, ServerHandle};
use paw_store::Store;

use crate::build::LOCK_FILE;
use crate::output::{open_store, outln};
use crate::run::read_program;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Programs to serve instead of a lock: `NAME=PROGRAM` or `PROGRAM` (a path, served under
    /// its file stem, or an id, served under the id).
    programs: Vec<String>,
    /// The lock whose functions are served by name (default: ./paw.lock when no program is
    /// given).
    #[arg(long, value_name = "FILE", conflicts_with = "programs")]
    lock: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Requests waiting for the model at most; more are answered 429.
    #[arg(long, value_name = "N", default_value_t = ServeOptions::default().queue_capacity)]
    queue: usize,
    /// Inputs decoded together at most.
    #[arg(long, value_name = "N", default_value_t = ServeOptions::default().max_batch_inputs)]
    max_batch: usize,
    /// Seconds a request may take, queueing included, before it is answered 504.
    #[arg(long, value_name = "SECONDS", default_value_t = ServeOptions::default().request_timeout.as_secs_f64())]
    timeout: f64,
    /// Largest request body in bytes (413 above it).
    #[arg(long, value_name = "BYTES", default_value_t = ServeOptions::default().max_body_bytes)]
    max_body: usize,
    /// Inputs one request may carry.
    #[arg(long, value_name = "N", default_value_t = ServeOptions::default().max_inputs_per_request)]
    max_inputs: usize,
}

pub fn run(args: ServeArgs) -> Result<()> {
    if !(args.timeout > 0.0 && args.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds");
    }
    let store = open_store()?;
    let lock = match (&args.lock, args.programs.is_empty()) {
        (Some(lock), _) => Some(lock.clone()),
        (None, true) => Some(PathBuf::from(LOCK_FILE)),
        (None, false) => None,
    };
    let registry = match &lock {
        Some(lock) => from_lock(lock, &store)?,
        None => from_programs(&args.programs, &store)?,
    };
    if registry.is_empty() {
        bail!("nothing to serve: the lock pins no function");
    }
    let options = ServeOptions {
        queue_capacity: args.queue.max(1),
        max_batch_inputs: args.max_batch.max(1),
        request_timeout: Duration::from_secs_f64(args.timeout),
        max_body_bytes: args.max_body,
        max_inputs_per_request: args.max_inputs.max(1),
    };
    let names: Vec<String> = registry.iter().map(|s| s.name.clone()).collect();
    let server = Server::start(registry, options).context("starting the model worker")?;
    let handle = server.handle();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // The one line a supervisor or test waits for.
        outln!("serving {} on http://{addr}", names.join(", "));
        if let Some(lock) = lock {
            tokio::spawn(reload_on_sighup(lock, store, handle));
        }
        server
            .serve(listener, shutdown_signal())
            .await
            .context("serving")
    })
}

fn from_lock(lock: &Path, store: &Store) -> Result<Registry> {
    let project = paw::Project::open_in(lock, store)
        .with_context(|| format!("opening {}", lock.display()))?;
    Ok(Registry::from_project(&project))
}

/// Binds each program to its interpreter, loading each interpreter once.
fn from_programs(references: &[String], store: &Store) -> Result<Registry> {
    let mut interpreters: BTreeMap<PathBuf, Interpreter> = BTreeMap::new();
    let mut registry = Registry::new();
    for reference in references {
        let (name, program_ref) = match reference.split_once('=') {
            Some((name, program)) if paw_store::is_function_name(name) => {
                (name.to_owned(), program)
            }
            _ => {
                let path = Path::new(reference);
                let name = match path.file_stem() {
                    Some(stem) if path.is_file() => stem.to_string_lossy().into_owned(),
                    _ => reference.clone(),
                };
                (name, reference.as_str())
            }
        };
        let (program, id) = read_program(store, program_ref)?;
        let path = store
            .interpreter_for(&program)
            .with_context(|| format!("finding the interpreter of {program_ref}"))?;
        let interpreter = match interpreters.get(&path) {
            Some(i) => i,
            None => {
                let loaded = Interpreter::load(&path)
                    .with_context(|| format!("loading interpreter {}", path.display()))?;
                interpreters.entry(path).or_insert(loaded)
            }
        };
        let function = interpreter
            .bind(&program)
            .with_context(|| format!("binding {program_ref}"))?;
        registry.insert(&name, id, function);
    }
    Ok(registry)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// On SIGHUP: reads the lock again, loads and verifies its programs, and serves them; a lock
/// that fails to load leaves the running functions as they are.
async fn reload_on_sighup(lock: PathBuf, store: Store, handle: ServerHandle) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: reload disabled");
            return;
        };
        while hup.recv().await.is_some() {
            let (lock, store) = (lock.clone(), store.clone());
            let loaded = tokio::task::spawn_blocking(move || from_lock(&lock, &store)).await;
            match loaded {
                Ok(Ok(registry)) => {
                    tracing::info!(functions = registry.len(), "reloaded the lock");
                    handle.replace_registry(registry);
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "reload failed; serving the previous functions")
                }
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (lock, store, handle);
}
