//! The small SmolLM2 compile the integration tests share: a two-label log-triage spec, its
//! examples, and options with a handful of training steps.
#![allow(dead_code)]

use std::path::Path;

use paw_compile::{CompileOptions, TrainOptions};
use paw_format::TargetModule;

pub const SPEC: &str =
    "Classify one line from a server log. Return ONLY one word: ALERT or QUIET. \
ALERT means an error, crash or out-of-memory. QUIET means routine progress or info.";

pub fn examples() -> Vec<(String, String)> {
    [
        ("ERROR worker 3 crashed: segmentation fault", "ALERT"),
        ("INFO step 100 loss=2.31", "QUIET"),
        ("CUDA out of memory while allocating 2.0 GiB", "ALERT"),
        ("info: saved 12 rows in 0.4s", "QUIET"),
        ("FATAL database connection lost", "ALERT"),
        ("debug: heartbeat ok", "QUIET"),
    ]
    .iter()
    .map(|(i, o)| (i.to_string(), o.to_string()))
    .collect()
}

/// SmolLM2 as teacher and interpreter, the first two examples, seed 7, 4 training steps.
pub fn options(path: &Path) -> CompileOptions {
    let mut o = CompileOptions::new(SPEC, path);
    o.teacher = Some(path.to_path_buf());
    o.examples = examples()[..2].to_vec();
    o.seed = 7;
    o.requests = Some(2);
    // A few hard held-out items, and a minimum the 4 teacher items + 2 examples meet.
    o.held_out = 4;
    o.min_train_items = 4;
    // SmolLM2 answers its own inputs outside the label set, so relabelling (the default, for
    // a real teacher) would leave nothing to train on: these tests exercise training.
    o.relabel = false;
    // Small budget: fewer teacher tokens keep the test fast.
    o.pseudo_program_budget = 120;
    o.train = TrainOptions {
        rank: 32,
        alpha: 32.0,
        layers: 2,
        modules: TargetModule::ALL.to_vec(),
        steps: 4,
        learning_rate: 3e-3,
        batch: 4,
        eval_every: 2,
        patience: 5,
    };
    o
}
