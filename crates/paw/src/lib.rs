//! Call a project's fuzzy functions by name from Rust: the programs `paw build` pinned in
//! `paw.lock`, each on the interpreter it was compiled for, found in the local store by hash.
//! The Rust counterpart of the published SDK's `paw.function(id)(input)`.
//!
//! ```no_run
//! let project = paw::Project::open("paw.lock")?;
//! let triage = project.function("log_alert")?;
//! let out = triage.call("disk full on /var", &paw::CallOptions::default())?;
//! println!("{}", out.text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every program is read from the store by its locked id (its bytes re-hashed), every
//! interpreter is the installed model whose BLAKE3 and SHA-256 are the locked ones, and each
//! interpreter is loaded once for all the functions that share it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use paw_format::Program;
use paw_store::{LockError, LockedFunction, Lockfile, Store, StoreError};

pub use paw_rt::{CallOptions, Function, Interpreter, Output};

#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("opening the store: {0}")]
    Store(#[source] StoreError),
    #[error("function `{name}`: reading its program {program} from the store: {source}")]
    Program {
        name: String,
        program: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "function `{name}`: its program records interpreter {recorded}, the lock says {locked}"
    )]
    InterpreterMismatch {
        name: String,
        recorded: String,
        locked: String,
    },
    #[error("function `{name}` needs interpreter {interpreter_name} (weights {weights_hash}, sha256 {sha256}), which is not installed in {store}: `paw models fetch ID` or `paw models add FILE`")]
    InterpreterNotInstalled {
        name: String,
        interpreter_name: String,
        weights_hash: String,
        sha256: String,
        store: PathBuf,
    },
    #[error("loading interpreter {path}: {source}")]
    LoadInterpreter {
        path: PathBuf,
        #[source]
        source: Box<paw_rt::Error>,
    },
    #[error("function `{name}`: binding its program: {source}")]
    Bind {
        name: String,
        #[source]
        source: Box<paw_rt::Error>,
    },
    #[error("{lock} pins no function `{name}` (it pins: {known})")]
    UnknownFunction {
        name: String,
        lock: PathBuf,
        known: String,
    },
}

/// The functions of one `paw.lock`, loaded and ready to call.
#[derive(Debug)]
pub struct Project {
    lock_path: PathBuf,
    lock: Lockfile,
    functions: BTreeMap<String, Function>,
}

impl Project {
    /// Opens `lock` with the default store (`$PAW_HOME`, else `~/.cache/paw`).
    pub fn open(lock: impl AsRef<Path>) -> Result<Self, ProjectError> {
        let store = Store::open_default().map_err(ProjectError::Store)?;
        Self::open_in(lock, &store)
    }

    /// Opens `lock` with the programs and models of `store`.
    pub fn open_in(lock: impl AsRef<Path>, store: &Store) -> Result<Self, ProjectError> {
        let lock_path = lock.as_ref().to_path_buf();
        let lock = Lockfile::read(&lock_path)?;
        let installed = store.installed_models().map_err(ProjectError::Store)?;
        let mut interpreters: BTreeMap<String, Interpreter> = BTreeMap::new();
        let mut functions = BTreeMap::new();
        for (name, entry) in &lock.functions {
            let program = read_program(store, name, entry)?;
            if program.interpreter.weights_hash != entry.interpreter {
                return Err(ProjectError::InterpreterMismatch {
                    name: name.clone(),
                    recorded: program.interpreter.weights_hash.clone(),
                    locked: entry.interpreter.clone(),
                });
            }
            let interpreter = match interpreters.get(&entry.interpreter) {
                Some(i) => i,
                None => {
                    let model = installed
                        .iter()
                        .find(|m| {
                            m.meta.blake3 == entry.interpreter
                                && m.meta.sha256 == entry.interpreter_sha256
                        })
                        .ok_or_else(|| ProjectError::InterpreterNotInstalled {
                            name: name.clone(),
                            interpreter_name: entry.interpreter_name.clone(),
                            weights_hash: entry.interpreter.clone(),
                            sha256: entry.interpreter_sha256.clone(),
                            store: store.root().to_path_buf(),
                        })?;
                    tracing::info!(path = %model.path.display(), "loading interpreter");
                    let loaded = Interpreter::load(&model.path).map_err(|source| {
                        ProjectError::LoadInterpreter {
                            path: model.path.clone(),
                            source: Box::new(source),
                        }
                    })?;
                    interpreters
                        .entry(entry.interpreter.clone())
                        .or_insert(loaded)
                }
            };
            let function = interpreter
                .bind(&program)
                .map_err(|source| ProjectError::Bind {
                    name: name.clone(),
                    source: Box::new(source),
                })?;
            functions.insert(name.clone(), function);
        }
        Ok(Self {
            lock_path,
            lock,
            functions,
        })
    }

    /// The function pinned under `name`.
    pub fn function(&self, name: &str) -> Result<&Function, ProjectError> {
        self.functions
            .get(name)
            .ok_or_else(|| ProjectError::UnknownFunction {
                name: name.to_owned(),
                lock: self.lock_path.clone(),
                known: self
                    .functions
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// The names of the pinned functions, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.functions.keys().map(String::as_str)
    }

    /// What the lock pins for `name`.
    pub fn locked(&self, name: &str) -> Option<&LockedFunction> {
        self.lock.functions.get(name)
    }
}

/// The locked program, its bytes checked against the id.
fn read_program(
    store: &Store,
    name: &str,
    entry: &LockedFunction,
) -> Result<Program, ProjectError> {
    let err = |source: Box<dyn std::error::Error + Send + Sync>| ProjectError::Program {
        name: name.to_owned(),
        program: entry.program.to_string(),
        source,
    };
    let bytes = store
        .read_stored(&entry.program)
        .map_err(|e| err(Box::new(e)))?;
    let (program, _) = Program::from_bytes(&bytes).map_err(|e| err(Box::new(e)))?;
    Ok(program)
}
