//! The model worker: one thread that takes queued requests, decodes the inputs of every request
//! for the same program together (`Function::call_batch`), and answers each request.
//!
//! One thread, because the model already uses every core through candle's thread pool: two
//! concurrent forward passes would only share them. While a batch runs, new requests queue;
//! the next batch takes all of them (up to the batch limit), so batches grow with the load.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use paw_rt::{CallOptions, Output};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::registry::Served;

/// One request's work.
#[derive(Debug)]
pub(crate) struct Job {
    pub served: Served,
    pub inputs: Vec<String>,
    pub max_tokens: Option<u32>,
    pub enqueued: Instant,
    pub reply: oneshot::Sender<JobResult>,
}

#[derive(Debug)]
pub(crate) struct JobResult {
    pub outputs: Result<Vec<Output>, JobError>,
    /// Time from queueing to the start of the batch that ran it.
    pub queued: Duration,
    /// Inputs in the batch that ran it.
    pub batch_inputs: usize,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum JobError {
    #[error(transparent)]
    Runtime(#[from] paw_rt::Error),
    #[error("the model worker panicked while running this batch")]
    Panicked,
}

/// Starts the worker; it ends when every sender of `queue` is dropped and the queue is empty.
pub(crate) fn spawn(
    mut queue: mpsc::Receiver<Job>,
    max_batch_inputs: usize,
    metrics: Arc<Metrics>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("paw-serve-model".into())
        .spawn(move || {
            while let Some(first) = queue.blocking_recv() {
                let mut jobs = vec![first];
                let mut inputs = jobs[0].inputs.len();
                while inputs < max_batch_inputs {
                    match queue.try_recv() {
                        Ok(job) => {
                            inputs += job.inputs.len();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                metrics
                    .queue_depth
                    .fetch_sub(jobs.len() as u64, Ordering::Relaxed);
                for group in by_program(jobs) {
                    run_group(group, &metrics);
                }
            }
        })
}

/// Jobs grouped by program and call settings, in arrival order of each group's first job.
fn by_program(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for job in jobs {
        match groups.iter_mut().find(|g| {
            g[0].served.program == job.served.program && g[0].max_tokens == job.max_tokens
        }) {
            Some(group) => group.push(job),
            None => groups.push(vec![job]),
        }
    }
    groups
}

fn run_group(group: Vec<Job>, metrics: &Metrics) {
    // A request whose client gave up (timeout, disconnect) is not run.
    let group: Vec<Job> = group.into_iter().filter(|j| !j.reply.is_closed()).collect();
    let Some(first) = group.first() else {
        return;
    };
    let started = Instant::now();
    let function = first.served.function.clone();
    let opts = CallOptions {
        max_tokens: first.max_tokens,
        ..CallOptions::default()
    };
    let inputs: Vec<&str> = group
        .iter()
        .flat_map(|j| j.inputs.iter().map(String::as_str))
        .collect();
    let batch_inputs = inputs.len();
    let run = |inputs: &[&str]| -> Result<Vec<Output>, JobError> {
        catch_unwind(AssertUnwindSafe(|| function.call_batch(inputs, &opts)))
            .map_err(|_| JobError::Panicked)?
            .map_err(JobError::from)
    };
    let batched = run(&inputs);
    if let Ok(outputs) = &batched {
        let prompt: usize = outputs
            .iter()
            .map(|o| o.prefix_tokens + o.input_tokens + o.suffix_tokens)
            .sum();
        let generated: usize = outputs.iter().map(|o| o.generated_tokens).sum();
        metrics.batch(batch_inputs, prompt as u64, generated as u64);
    }
    match batched {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for job in group {
                let mine: Vec<Output> = outputs.by_ref().take(job.inputs.len()).collect();
                answer(job, Ok(mine), started, batch_inputs);
            }
        }
        Err(e) if group.len() == 1 => {
            if let Some(job) = group.into_iter().next() {
                answer(job, Err(e), started, batch_inputs);
            }
        }
        // One bad input must not fail the other requests of its batch: each runs alone.
        Err(_) => {
            for job in group {
                let inputs: Vec<&str> = job.inputs.iter().map(String::as_str).collect();
                let outputs = run(&inputs);
                let n = inputs.len();
                answer(job, outputs, started, n);
            }
        }
    }
}

fn answer(job: Job, outputs: Result<Vec<Output>, JobError>, started: Instant, batch_inputs: usize) {
    let queued = started.saturating_duration_since(job.enqueued);
    // The receiver may be gone (timed out meanwhile): nothing to do then.
    let _ = job.reply.send(JobResult {
        outputs,
        queued,
        batch_inputs,
    });
}
