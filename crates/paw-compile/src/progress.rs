//! Stages as progress sees them, and the clock that times them and reports their progress.

use std::time::{Duration, Instant};

use paw_store::Store;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cache;
use crate::error::Result;

/// Pipeline stage, for progress reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    PseudoProgram,
    Data,
    Train,
    Validate,
    Pack,
}

impl Stage {
    /// Short name, for progress, summaries and the stage cache.
    pub fn name(self) -> &'static str {
        match self {
            Self::PseudoProgram => "pseudo-program",
            Self::Data => "data",
            Self::Train => "train",
            Self::Validate => "validate",
            Self::Pack => "pack",
        }
    }
}

/// A progress event: `done` of `total` units of `stage` (teacher requests, examples, steps...).
#[derive(Debug, Clone)]
pub struct Progress {
    pub stage: Stage,
    pub done: usize,
    pub total: usize,
    /// Short status, e.g. the current training loss.
    pub message: Option<String>,
    /// The stage's output was loaded from the stage cache (reported once, as `1/1`).
    pub cached: bool,
}

/// Times each stage, forwards progress, and serves stage outputs from the stage cache.
pub(crate) struct StageClock<'a> {
    progress: &'a mut dyn FnMut(Progress),
    timings: Vec<(Stage, Duration)>,
    current: Option<(Stage, Instant)>,
    cached: Vec<Stage>,
}

impl<'a> StageClock<'a> {
    pub(crate) fn new(progress: &'a mut dyn FnMut(Progress)) -> Self {
        Self {
            progress,
            timings: Vec::new(),
            current: None,
            cached: Vec::new(),
        }
    }

    /// Ends the current stage (if any) and starts `stage`.
    pub(crate) fn start(&mut self, stage: Stage) {
        self.finish();
        tracing::info!(?stage, "stage started");
        self.current = Some((stage, Instant::now()));
        (self.progress)(Progress {
            stage,
            done: 0,
            total: 0,
            message: None,
            cached: false,
        });
    }

    /// `stage`'s output: loaded from the stage cache under `key` if it holds a sound entry
    /// (reported as cached), else computed by `compute` and cached.
    pub(crate) fn cached_or<T: Serialize + DeserializeOwned>(
        &mut self,
        stage: Stage,
        cache: Option<&Store>,
        key: &str,
        compute: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let Some(store) = cache else {
            return compute(self);
        };
        if let Some(value) = cache::load(store, stage, key) {
            tracing::info!(?stage, key, "stage loaded from the cache");
            self.cached.push(stage);
            (self.progress)(Progress {
                stage,
                done: 1,
                total: 1,
                message: Some("cached".into()),
                cached: true,
            });
            return Ok(value);
        }
        let value = compute(self)?;
        cache::save(store, stage, key, &value);
        Ok(value)
    }

    /// Progress within the current stage.
    pub(crate) fn report(&mut self, done: usize, total: usize, message: Option<String>) {
        if let Some((stage, _)) = self.current {
            (self.progress)(Progress {
                stage,
                done,
                total,
                message,
                cached: false,
            });
        }
    }

    fn finish(&mut self) {
        if let Some((stage, t0)) = self.current.take() {
            let d = t0.elapsed();
            tracing::info!(?stage, secs = d.as_secs_f64(), "stage finished");
            self.timings.push((stage, d));
        }
    }

    /// Ends the last stage: the wall time per stage, and the stages loaded from the cache.
    pub(crate) fn stop(mut self) -> (Vec<(Stage, Duration)>, Vec<Stage>) {
        self.finish();
        (self.timings, self.cached)
    }
}
