//! Finding and loading the interpreter a program needs.

use anyhow::{bail, Context, Result};
use paw_format::{manifest::resolve_model, store::Store, Program};
use paw_rt::Interpreter;

/// Loads `model` if given (manifest id or path), else the installed model whose BLAKE3 is the
/// one the program was compiled for.
pub fn load_interpreter_for(store: &Store, program: &Program, model: Option<&str>) -> Result<Interpreter> {
    let path = match model {
        Some(reference) => resolve_model(reference, store)?.path,
        None => {
            let wanted = &program.interpreter.weights_hash;
            let installed = store.installed_models()?;
            match installed.into_iter().find(|m| &m.meta.blake3 == wanted) {
                Some(m) => m.path,
                None => bail!(
                    "the program was compiled for interpreter {} ({wanted}), which is not in the store {}; \
                     install it (`cargo xtask models fetch ID`, see `paw models`) or pass --model PATH",
                    program.interpreter.name,
                    store.root().display()
                ),
            }
        }
    };
    Interpreter::load(&path).with_context(|| format!("loading interpreter {}", path.display()))
}
