//! paw-compile: compile a natural-language spec of a fuzzy function into a `.paw` program,
//! locally and offline.
//!
//! The first strategy is compile-by-training ([`TrainingCompiler`]), a pipeline
//! (`pipeline.rs`) of stages (`stages/`), each with a typed part of the [`CompileReport`]:
//! 1. pseudo-program: a teacher model writes the task paragraph and examples ([`pseudo_program`]);
//! 2. data: training data, label-conditioned when the spec names its outputs ([`synth`]);
//! 3. train: a LoRA adapter trained on the interpreter with candle autograd ([`train`]);
//! 4. validate: through paw-rt on a held-out split (with and without adapter, and the teacher);
//! 5. pack: at the smallest adapter precision that loses nothing on validation.
//!
//! With [`CompileOptions::cache`] set, the outputs of stages 1 and 2 (the teacher's work, most
//! of a compile's time) are cached in the store under keys of exactly their inputs, so an
//! interrupted or repeated compile resumes from them; the program's bytes are the same either way.
//!
//! Another strategy (a hypernetwork emitting the adapter in one pass) can implement
//! [`Compiler`] beside it.
//!
//! ```no_run
//! use paw_compile::{compile, CompileOptions};
//! # fn run() -> paw_compile::Result<()> {
//! let mut opts = CompileOptions::new(
//!     "Classify a log line. Return ONLY one word: ALERT or QUIET.",
//!     "/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
//! );
//! opts.teacher = Some("/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf".into());
//! let out = compile(&opts, &mut |p| eprintln!("{:?} {}/{}", p.stage, p.done, p.total))?;
//! std::fs::write("triage.paw", &out.bytes).ok();
//! # Ok(()) }
//! ```

mod cache;
pub mod chat;
pub mod contract;
pub mod error;
mod options;
mod pipeline;
mod progress;
pub mod pseudo_program;
pub mod report;
pub mod spec;
mod stages;
pub mod synth;
mod teacher;
pub mod train;

use std::path::Path;
use std::time::Duration;

use paw_format::{Program, ProgramId};

pub use contract::{ContractRequest, ContractSource};
pub use error::{CompileError, Result};
pub use options::{CompileOptions, Labelling, TeacherChoice, MAX_SPEC_LEN};
pub use progress::{Progress, Stage};
pub use report::{CompileReport, PromptKind};
pub use synth::{Example, Origin, TrainingData};
pub use train::{TrainOptions, TrainReport};

use cache::KeyHasher;

/// Name recorded in the program's provenance.
pub const COMPILER_NAME: &str = "paw-compile/train";
/// Bumped whenever the compiler's output for the same inputs changes.
pub const COMPILER_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "+train.15");

/// The result of a compile.
#[derive(Debug, Clone)]
pub struct CompileOutput {
    pub program: Program,
    /// `program.to_bytes()`: deterministic for the same options.
    pub bytes: Vec<u8>,
    pub id: ProgramId,
    /// [`compile_key`] of the options.
    pub key: String,
    /// What each stage reported (recorded in `program.provenance.report` as
    /// [`CompileReport::to_provenance`]).
    pub report: CompileReport,
    pub data: TrainingData,
    /// Wall time per stage (not part of the program: it would break reproducibility).
    pub timings: Vec<(Stage, Duration)>,
    /// Stages loaded from the stage cache instead of computed.
    pub cached_stages: Vec<Stage>,
}

/// A way to turn a spec into a program.
pub trait Compiler {
    fn name(&self) -> &'static str;
    fn compile(
        &self,
        opts: &CompileOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CompileOutput>;
}

/// Compile by training: pseudo-program, synthesised data, LoRA trained on the interpreter.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrainingCompiler;

impl Compiler for TrainingCompiler {
    fn name(&self) -> &'static str {
        COMPILER_NAME
    }

    fn compile(
        &self,
        opts: &CompileOptions,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<CompileOutput> {
        pipeline::run(opts, progress)
    }
}

/// [`TrainingCompiler::compile`].
pub fn compile(opts: &CompileOptions, progress: &mut dyn FnMut(Progress)) -> Result<CompileOutput> {
    TrainingCompiler.compile(opts, progress)
}

/// The compile key: BLAKE3 of the compiler version and every input (spec, examples, weights
/// hashes of interpreter and teacher, all options). A stored program under this key is what
/// the same compile would produce.
pub fn compile_key(opts: &CompileOptions) -> Result<String> {
    let interp = paw_rt::weights_hash(&opts.interpreter)?;
    let teacher = match &opts.teacher {
        Some(t) => Some(paw_rt::weights_hash(t)?),
        None => None,
    };
    Ok(key_from_hashes(opts, &interp, teacher.as_deref()))
}

pub(crate) fn key_from_hashes(
    opts: &CompileOptions,
    interp: &str,
    teacher: Option<&str>,
) -> String {
    let mut key = KeyHasher::new("paw-compile-key-v1", opts);
    key.str(interp)
        .str(opts.interpreter_name.as_deref().unwrap_or(""))
        .str(&opts.interpreter_name())
        .str(teacher.unwrap_or("none"))
        // Debug formatting of these plain values is stable and covers every field.
        .str(&format!(
            "{}|{:?}|{:?}|{}|{}|{}|{}|{}|{}|{:?}|{:?}|{}",
            opts.seed,
            opts.train,
            opts.requests,
            opts.held_out,
            opts.min_train_items,
            opts.agreement_filter,
            opts.relabel,
            opts.kinds,
            opts.pseudo_program_budget,
            opts.adapter_dtype,
            opts.contract,
            opts.adapter_prompt
        ));
    // Only a top-up target enters the key, so that compiles without one keep their keys.
    if opts.train_items > 0 {
        key.str(&format!("train_items={}", opts.train_items));
    }
    if opts.inputs_per_request != 1 {
        key.str(&format!(
            "inputs_per_request/styled={}",
            opts.inputs_per_request
        ));
    }
    for (name, value) in opts.labelling_settings() {
        key.str(&format!("{name}={value}"));
    }
    key.finish()
}

/// Reads `{"input","output"}` JSONL examples (the CLI's `--examples` file) with paw-eval's case
/// reader, so examples and test cases share one format, one set of limits and one set of errors.
pub fn read_examples(path: &Path) -> Result<Vec<(String, String)>> {
    let cases = paw_eval::load_cases(path).map_err(|error| match error {
        paw_eval::CasesError::Open { path, source } => CompileError::Io {
            path,
            error: source,
        },
        error => CompileError::Examples {
            path: path.to_path_buf(),
            error,
        },
    })?;
    Ok(cases.into_iter().map(|c| (c.input, c.output)).collect())
}
