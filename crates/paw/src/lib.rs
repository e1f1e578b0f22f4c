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

use paw_format::{FormatError, Program, ProgramId};
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
    #[error("no program `{reference}`: {source}")]
    NoSuchProgram {
        reference: String,
        #[source]
        source: StoreError,
    },
    #[error("{path} is not a valid program: {source}")]
    BadProgram {
        path: PathBuf,
        #[source]
        source: FormatError,
    },
    #[error("program {program}: {source}")]
    NoInterpreter {
        program: String,
        #[source]
        source: StoreError,
    },
    #[error("interpreter `{reference}`: {source}")]
    Model {
        reference: String,
        #[source]
        source: paw_store::ResolveModelError,
    },
    #[error("{lock} pins no function `{name}` (it pins: {known})")]
    UnknownFunction {
        name: String,
        lock: PathBuf,
        known: String,
    },
}

/// Interpreters loaded once each (by path) and shared by every function bound to them: a
/// 0.5B interpreter is hundreds of megabytes, its programs a few.
#[derive(Debug, Default)]
pub struct Interpreters {
    loaded: BTreeMap<PathBuf, Interpreter>,
}

impl Interpreters {
    /// The interpreter at `path`, loaded on first use.
    pub fn load(&mut self, path: &Path) -> Result<&Interpreter, ProjectError> {
        if !self.loaded.contains_key(path) {
            tracing::info!(path = %path.display(), "loading interpreter");
            let loaded =
                Interpreter::load(path).map_err(|source| ProjectError::LoadInterpreter {
                    path: path.to_path_buf(),
                    source: Box::new(source),
                })?;
            self.loaded.insert(path.to_path_buf(), loaded);
        }
        Ok(&self.loaded[path])
    }
}

/// A program opened by reference and bound to its interpreter.
#[derive(Debug, Clone)]
pub struct OpenedFunction {
    pub function: Function,
    /// The id of the program's bytes.
    pub id: ProgramId,
    /// The spec the program was compiled from.
    pub spec: String,
    /// The interpreter's name as the program records it.
    pub interpreter_name: String,
}

/// Opens the program `reference` (a path, a full id `b3:<hex>` or a unique id prefix; see
/// [`Store::load_program`]), its bytes verified, and binds it to `model` (a manifest id or
/// path) or else to the installed interpreter it was compiled for, found by hash.
pub fn open_function(
    store: &Store,
    reference: &str,
    model: Option<&str>,
    interpreters: &mut Interpreters,
) -> Result<OpenedFunction, ProjectError> {
    let loaded = store
        .load_program(reference)
        .map_err(|source| ProjectError::NoSuchProgram {
            reference: reference.to_owned(),
            source,
        })?;
    let (program, id) =
        Program::from_bytes(&loaded.bytes).map_err(|source| ProjectError::BadProgram {
            path: loaded.path.clone(),
            source,
        })?;
    let path = match model {
        Some(model) => {
            paw_store::resolve_model(model, store)
                .map_err(|source| ProjectError::Model {
                    reference: model.to_owned(),
                    source,
                })?
                .path
        }
        None => store
            .interpreter_for(&program)
            .map_err(|source| ProjectError::NoInterpreter {
                program: id.to_string(),
                source,
            })?,
    };
    let function =
        interpreters
            .load(&path)?
            .bind(&program)
            .map_err(|source| ProjectError::Bind {
                name: reference.to_owned(),
                source: Box::new(source),
            })?;
    Ok(OpenedFunction {
        function,
        id,
        spec: program.spec.clone(),
        interpreter_name: program.interpreter.name.clone(),
    })
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
        let mut interpreters = Interpreters::default();
        let lock_path = lock.as_ref().to_path_buf();
        let lock = Lockfile::read(&lock_path)?;
        let installed = store.installed_models().map_err(ProjectError::Store)?;
        let mut functions = BTreeMap::new();
        for (name, entry) in &lock.functions {
            let program = read_program(store, name, entry)?;
            let function =
                open_locked(store, &installed, name, entry, &program, &mut interpreters)?;
            functions.insert(name.clone(), function);
        }
        Ok(Self {
            lock_path,
            lock,
            functions,
        })
    }

    /// Opens the one function `name` of `lock` (its program and interpreter only).
    pub fn open_function(
        lock: impl AsRef<Path>,
        name: &str,
        store: &Store,
        interpreters: &mut Interpreters,
    ) -> Result<OpenedFunction, ProjectError> {
        let lock_path = lock.as_ref();
        let lock = Lockfile::read(lock_path)?;
        let entry = lock
            .functions
            .get(name)
            .ok_or_else(|| ProjectError::UnknownFunction {
                name: name.to_owned(),
                lock: lock_path.to_path_buf(),
                known: lock
                    .functions
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let installed = store.installed_models().map_err(ProjectError::Store)?;
        let program = read_program(store, name, entry)?;
        let function = open_locked(store, &installed, name, entry, &program, interpreters)?;
        Ok(OpenedFunction {
            function,
            id: entry.program,
            spec: program.spec,
            interpreter_name: entry.interpreter_name.clone(),
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

/// Binds the locked `entry` to the installed interpreter whose BLAKE3 and SHA-256 the lock
/// pins.
fn open_locked(
    store: &Store,
    installed: &[paw_store::InstalledModel],
    name: &str,
    entry: &LockedFunction,
    program: &Program,
    interpreters: &mut Interpreters,
) -> Result<Function, ProjectError> {
    if program.interpreter.weights_hash != entry.interpreter {
        return Err(ProjectError::InterpreterMismatch {
            name: name.to_owned(),
            recorded: program.interpreter.weights_hash.clone(),
            locked: entry.interpreter.clone(),
        });
    }
    let model = installed
        .iter()
        .find(|m| m.meta.blake3 == entry.interpreter && m.meta.sha256 == entry.interpreter_sha256)
        .ok_or_else(|| ProjectError::InterpreterNotInstalled {
            name: name.to_owned(),
            interpreter_name: entry.interpreter_name.clone(),
            weights_hash: entry.interpreter.clone(),
            sha256: entry.interpreter_sha256.clone(),
            store: store.root().to_path_buf(),
        })?;
    interpreters
        .load(&model.path)?
        .bind(program)
        .map_err(|source| ProjectError::Bind {
            name: name.to_owned(),
            source: Box::new(source),
        })
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
