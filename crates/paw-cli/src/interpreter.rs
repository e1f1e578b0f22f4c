//! Finding and loading the interpreter a program needs.

use anyhow::{Context, Result};
use clap::Args;
use paw_format::Program;
use paw_rt::{Function, Interpreter};
use paw_store::{resolve_model, Store};

/// How a program is bound to an interpreter and fed, shared by `run`, `eval` and `test`.
#[derive(Debug, Args)]
pub struct BindArgs {
    /// Interpreter model: a manifest id, a GGUF path or a safetensors model directory (default:
    /// the one the program was compiled for, found in the store by its hash).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Use the prompt alone, without the LoRA adapter, for comparisons.
    #[arg(long)]
    pub no_adapter: bool,
    /// Inputs run together per batch.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub batch_size: u32,
}

impl BindArgs {
    /// Loads the interpreter and binds `program` to it as these flags say.
    pub fn bind(&self, store: &Store, program: &Program) -> Result<Function> {
        let interpreter = load_interpreter_for(store, program, self.model.as_deref())?;
        if self.no_adapter {
            interpreter.bind_without_adapter(program)
        } else {
            interpreter.bind(program)
        }
        .context("binding the program to the interpreter")
    }
}

/// Loads `model` if given (manifest id or path), else the installed model whose BLAKE3 is the
/// one the program was compiled for ([`Store::interpreter_for`]).
fn load_interpreter_for(
    store: &Store,
    program: &Program,
    model: Option<&str>,
) -> Result<Interpreter> {
    let path = match model {
        Some(reference) => resolve_model(reference, store)?.path,
        None => store.interpreter_for(program)?,
    };
    Interpreter::load(&path).with_context(|| format!("loading interpreter {}", path.display()))
}
