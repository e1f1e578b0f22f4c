//! paw-serve: fuzzy functions over HTTP. One process loads each interpreter once and serves
//! every program bound to it; requests are queued (bounded) and the inputs of queued requests
//! for the same program are decoded together on one model thread.
//!
//! Endpoints (`spec/serve.md`): `POST /v1/functions/{name}`, the OpenAI-compatible
//! `POST /v1/completions` and `POST /v1/chat/completions` (`model` = function name or program
//! id), `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus text).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let project = paw::Project::open("paw.lock").expect("lock");
//! let server = paw_serve::Server::start(
//!     paw_serve::Registry::from_project(&project),
//!     paw_serve::ServeOptions::default(),
//! )?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod api;
mod batcher;
mod metrics;
mod registry;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

pub use metrics::Metrics;
pub use registry::{Registry, Served};

/// Limits and sizes of a server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Requests waiting for the model at most; one more is answered 429 with `Retry-After`.
    pub queue_capacity: usize,
    /// Inputs decoded together at most (requests are not split: one request with more inputs
    /// runs as its own batch).
    pub max_batch_inputs: usize,
    /// Time from arrival to answer at most; later, the request is answered 504 (and is not
    /// run if it has not started).
    pub request_timeout: Duration,
    /// Request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// Inputs one request may carry.
    pub max_inputs_per_request: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            max_batch_inputs: 32,
            request_timeout: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            max_inputs_per_request: 64,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub(crate) struct State {
    registry: RwLock<Arc<Registry>>,
    /// `None` once the server stopped: the worker ends when this last sender is dropped.
    queue: Mutex<Option<mpsc::Sender<batcher::Job>>>,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    next_request: AtomicU64,
    shutting_down: AtomicBool,
}

impl State {
    fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }
}

/// A running model worker with its functions; [`Server::serve`] puts it on a listener.
#[derive(Debug)]
pub struct Server {
    state: Arc<State>,
    worker: JoinHandle<()>,
}

/// Changes a running server's functions (hot reload).
#[derive(Debug, Clone)]
pub struct ServerHandle {
    state: Arc<State>,
}

impl ServerHandle {
    /// Serves `registry` from now on. Requests already queued finish on the functions they
    /// were queued for (a removed program drains).
    pub fn replace_registry(&self, registry: Registry) {
        let registry = Arc::new(registry);
        match self.state.registry.write() {
            Ok(mut r) => *r = registry,
            Err(poisoned) => *poisoned.into_inner() = registry,
        }
    }

    /// The server's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.state.metrics)
    }
}

impl Server {
    /// Starts the model worker for `registry`.
    pub fn start(registry: Registry, options: ServeOptions) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel(options.queue_capacity.max(1));
        let metrics = Arc::new(Metrics::default());
        let worker = batcher::spawn(jobs, options.max_batch_inputs.max(1), Arc::clone(&metrics))?;
        let state = Arc::new(State {
            registry: RwLock::new(Arc::new(registry)),
            queue: Mutex::new(Some(queue)),
            metrics,
            options,
            next_request: AtomicU64::new(1),
            shutting_down: AtomicBool::new(false),
        });
        Ok(Self { state, worker })
    }

    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            state: Arc::clone(&self.state),
        }
    }

    /// The HTTP routes, for embedding in another axum application.
    pub fn router(&self) -> axum::Router {
        api::router(Arc::clone(&self.state))
    }

    /// Serves HTTP on `listener` until `shutdown` completes, then stops taking connections,
    /// finishes every request in flight, and stops the model worker.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let stopping = async move {
            shutdown.await;
            state.shutting_down.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: finishing the requests in flight");
        };
        axum::serve(listener, self.router())
            .with_graceful_shutdown(stopping)
            .await?;
        // Every handler has returned; dropping the queue's only sender ends the worker once
        // it has run what is queued.
        let Server { state, worker } = self;
        let sender = match state.queue.lock() {
            Ok(mut q) => q.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        drop(sender);
        tokio::task::spawn_blocking(move || worker.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the model worker panicked"))?;
        Ok(())
    }
}
