//! Python bindings: the published SDK's `paw.function(id)(text)` on paw's runtime.
//!
//! ```python
//! import paw
//! f = paw.function("b3:...")      # an id, a unique id prefix, a .paw path, or a lock's name
//! f("disk full on /var")          # -> "ALERT"
//! f.batch(["...", "..."])         # -> ["...", "..."]
//! p = paw.compile("Classify ...") # -> paw.Program (stored); paw.function(p.id)
//! ```
//!
//! The model runs with the GIL released, so Python threads call functions concurrently; each
//! interpreter is loaded once per process and shared by every function bound to it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use paw::{Interpreters, OpenedFunction, ProjectError};
use paw_compile::{compile_key, CompileOptions, CompileOutput, Progress, TeacherChoice};
use paw_rt::{CallOptions, Function, Output};
use paw_store::{CompileCached, CompiledProgram, Store};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    paw,
    PawError,
    PyException,
    "Base class of every error paw raises."
);
create_exception!(
    paw,
    ProgramError,
    PawError,
    "No such program, an ambiguous id prefix, or bytes that are not a valid program."
);
create_exception!(
    paw,
    InterpreterError,
    PawError,
    "The interpreter a program needs is not installed, or cannot be loaded or bound."
);
create_exception!(
    paw,
    LockError,
    PawError,
    "paw.lock cannot be read, or pins no function of that name."
);
create_exception!(
    paw,
    InputError,
    PawError,
    "The input cannot be run: longer than the interpreter's context window holds."
);
create_exception!(paw, CompileError, PawError, "A compile failed.");
create_exception!(
    paw,
    RunError,
    PawError,
    "The model failed while running a program."
);

/// The error and its causes on one line, as the CLI prints them.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Many errors print their source in their own message already.
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

fn project_error(error: ProjectError) -> PyErr {
    let text = chain(&error);
    match error {
        ProjectError::NoSuchProgram { .. }
        | ProjectError::BadProgram { .. }
        | ProjectError::Program { .. } => ProgramError::new_err(text),
        ProjectError::Lock(_) | ProjectError::UnknownFunction { .. } => LockError::new_err(text),
        ProjectError::Store(_) => PawError::new_err(text),
        ProjectError::NoInterpreter { .. }
        | ProjectError::Model { .. }
        | ProjectError::InterpreterMismatch { .. }
        | ProjectError::InterpreterNotInstalled { .. }
        | ProjectError::LoadInterpreter { .. }
        | ProjectError::Bind { .. } => InterpreterError::new_err(text),
    }
}

fn runtime_error(error: paw_rt::Error) -> PyErr {
    let text = chain(&error);
    match error {
        paw_rt::Error::InputTooLong { .. } | paw_rt::Error::ContextOverflow { .. } => {
            InputError::new_err(text)
        }
        _ => RunError::new_err(text),
    }
}

/// Every interpreter this process loaded, shared by all its functions.
fn interpreters() -> &'static Mutex<Interpreters> {
    static INTERPRETERS: OnceLock<Mutex<Interpreters>> = OnceLock::new();
    INTERPRETERS.get_or_init(|| Mutex::new(Interpreters::default()))
}

fn open_store(home: Option<PathBuf>) -> PyResult<Store> {
    match home {
        Some(root) => Store::open(root),
        None => Store::open_default(),
    }
    .map_err(|e| PawError::new_err(format!("opening the store: {}", chain(&e))))
}

/// A program bound to its interpreter: call it like a function.
#[pyclass(frozen, module = "paw", name = "Function")]
struct PyFunction {
    opened: OpenedFunction,
    name: Option<String>,
}

impl PyFunction {
    fn options(&self, max_tokens: Option<u32>, contract: bool) -> CallOptions {
        CallOptions {
            max_tokens,
            use_contract: contract,
            ..CallOptions::default()
        }
    }

    fn function(&self) -> &Function {
        &self.opened.function
    }
}

#[pymethods]
impl PyFunction {
    /// Runs the program on `input` and returns its answer.
    #[pyo3(signature = (input, /, *, max_tokens = None))]
    fn __call__(&self, py: Python<'_>, input: String, max_tokens: Option<u32>) -> PyResult<String> {
        let options = self.options(max_tokens, true);
        py.detach(|| self.function().call(&input, &options))
            .map(|out| out.text)
            .map_err(runtime_error)
    }

    /// Runs the program on `input` and returns the answer with its details.
    #[pyo3(signature = (input, /, *, max_tokens = None, contract = true))]
    fn call(
        &self,
        py: Python<'_>,
        input: String,
        max_tokens: Option<u32>,
        contract: bool,
    ) -> PyResult<PyOutput> {
        let options = self.options(max_tokens, contract);
        py.detach(|| self.function().call(&input, &options))
            .map(PyOutput::from)
            .map_err(runtime_error)
    }

    /// Runs the program on every input, `batch_size` at a time decoded together; answers in
    /// input order. The first failing input raises (nothing is returned).
    #[pyo3(signature = (inputs, /, *, max_tokens = None, batch_size = 8))]
    fn batch(
        &self,
        py: Python<'_>,
        inputs: Vec<String>,
        max_tokens: Option<u32>,
        batch_size: usize,
    ) -> PyResult<Vec<String>> {
        if batch_size == 0 {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "batch_size must be at least 1",
            ));
        }
        let options = self.options(max_tokens, true);
        py.detach(|| {
            let mut answers = Vec::with_capacity(inputs.len());
            for chunk in inputs.chunks(batch_size) {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let outputs = self.function().call_batch(&refs, &options)?;
                answers.extend(outputs.into_iter().map(|o| o.text));
            }
            Ok(answers)
        })
        .map_err(runtime_error)
    }

    /// The program's id (`b3:` and the BLAKE3 of its bytes).
    #[getter]
    fn id(&self) -> String {
        self.opened.id.to_string()
    }

    /// The function's name in the lock it came from, if any.
    #[getter]
    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    /// The spec the program was compiled from.
    #[getter]
    fn spec(&self) -> String {
        self.opened.spec.clone()
    }

    /// The interpreter's name as the program records it.
    #[getter]
    fn interpreter(&self) -> String {
        self.opened.interpreter_name.clone()
    }

    /// The longest input in bytes the interpreter's context window can hold.
    #[getter]
    fn max_input_bytes(&self) -> usize {
        self.function().max_input_bytes()
    }

    fn __repr__(&self) -> String {
        match &self.name {
            Some(name) => format!("<paw.Function {name} {}>", self.opened.id),
            None => format!("<paw.Function {}>", self.opened.id),
        }
    }
}

/// One answer with what it cost.
#[pyclass(frozen, module = "paw", name = "Output", get_all)]
struct PyOutput {
    /// The answer.
    text: String,
    /// `EndOfGeneration`, `StopString`, `MaxTokens` or `ContractComplete`.
    stop_reason: String,
    /// `satisfied`, `unfinished` (cut at max_tokens) or `not-applied`.
    contract: String,
    prompt_tokens: usize,
    input_tokens: usize,
    generated_tokens: usize,
    prefill_ms: f64,
    decode_ms: f64,
}

impl From<Output> for PyOutput {
    fn from(out: Output) -> Self {
        Self {
            stop_reason: format!("{:?}", out.stop_reason),
            contract: out.contract.as_str().to_owned(),
            prompt_tokens: out.prefix_tokens + out.input_tokens + out.suffix_tokens,
            input_tokens: out.input_tokens,
            generated_tokens: out.generated_tokens,
            prefill_ms: out.timings.prefill.as_secs_f64() * 1e3,
            decode_ms: out.timings.decode.as_secs_f64() * 1e3,
            text: out.text,
        }
    }
}

#[pymethods]
impl PyOutput {
    fn __repr__(&self) -> String {
        format!(
            "<paw.Output {:?} ({}, {} generated tokens)>",
            self.text, self.contract, self.generated_tokens
        )
    }
}

/// Opens a fuzzy function.
///
/// `program` is a function name pinned in the lock (`lock`, else `./paw.lock` when it exists
/// and pins that name), a full id `b3:<hex>`, a unique id prefix from the store, or a path to
/// a `.paw` file. `model` binds the program to another interpreter (a manifest id or path)
/// instead of the one it was compiled for; `home` is the store (default `$PAW_HOME`, else
/// `~/.cache/paw`).
#[pyfunction]
#[pyo3(signature = (program, /, *, lock = None, model = None, home = None))]
fn function(
    py: Python<'_>,
    program: String,
    lock: Option<PathBuf>,
    model: Option<String>,
    home: Option<PathBuf>,
) -> PyResult<PyFunction> {
    let store = open_store(home)?;
    let from_lock = match &lock {
        Some(lock) => Some(lock.clone()),
        None => {
            let default = Path::new("paw.lock");
            let pinned = paw_store::is_function_name(&program)
                && !Path::new(&program).exists()
                && paw_store::Lockfile::read(default)
                    .is_ok_and(|l| l.functions.contains_key(&program));
            pinned.then(|| default.to_path_buf())
        }
    };
    py.detach(|| {
        let mut interpreters = interpreters().lock().unwrap_or_else(|e| e.into_inner());
        match from_lock {
            Some(lock) => {
                if model.is_some() {
                    return Err(LockError::new_err(
                        "model= cannot be combined with a function from a lock: the lock pins \
                         its interpreter",
                    ));
                }
                paw::Project::open_function(&lock, &program, &store, &mut interpreters)
                    .map(|opened| PyFunction {
                        opened,
                        name: Some(program.clone()),
                    })
                    .map_err(project_error)
            }
            None => paw::open_function(&store, &program, model.as_deref(), &mut interpreters)
                .map(|opened| PyFunction { opened, name: None })
                .map_err(project_error),
        }
    })
}

/// A compiled program, stored in the store.
#[pyclass(frozen, module = "paw", name = "Program", get_all)]
struct PyProgram {
    /// The program's id: pass it to `paw.function`.
    id: String,
    /// Where the store keeps it.
    path: PathBuf,
    /// Its size in bytes.
    size: u64,
    /// True when the store already held the program of this compile (nothing was compiled).
    cached: bool,
    /// What the compile reported (data, training, the candidates and which shipped).
    report: Vec<(String, String)>,
}

#[pymethods]
impl PyProgram {
    fn __repr__(&self) -> String {
        format!("<paw.Program {} ({} bytes)>", self.id, self.size)
    }
}

/// Compiles `spec` into a program and stores it.
///
/// `examples` are trusted `(input, output)` pairs; `interpreter` and `teacher` are manifest
/// ids or paths (default: the manifest's; `teacher="none"` trains from the examples only);
/// `steps` caps the training steps.
/// `progress` is called as `progress(stage, done, total, message)` as the stages advance.
/// Compiling the same spec, examples,
/// models and seed again returns the stored program.
#[pyfunction]
#[pyo3(signature = (
    spec, /, *, examples = None, interpreter = None, teacher = None, seed = 0, steps = None,
    progress = None, home = None
))]
#[allow(clippy::too_many_arguments)]
fn compile(
    py: Python<'_>,
    spec: String,
    examples: Option<Vec<(String, String)>>,
    interpreter: Option<String>,
    teacher: Option<String>,
    seed: u64,
    steps: Option<usize>,
    progress: Option<Py<PyAny>>,
    home: Option<PathBuf>,
) -> PyResult<PyProgram> {
    let store = open_store(home)?;
    let teacher = match teacher.as_deref() {
        Some("none") => TeacherChoice::None,
        Some(reference) => TeacherChoice::Model(reference),
        None => TeacherChoice::Default,
    };
    let mut opts = CompileOptions::resolved(spec, &store, interpreter.as_deref(), teacher)
        .map_err(|e| InterpreterError::new_err(chain(&e)))?;
    opts.examples = examples.unwrap_or_default();
    opts.seed = seed;
    if let Some(steps) = steps {
        opts.train.steps = steps;
    }
    opts.cache = Some(store.clone());
    let key = compile_key(&opts).map_err(|e| CompileError::new_err(chain(&e)))?;
    let progress = ProgressSink::new(py, progress)?;
    let compiled = py.detach(|| {
        store.compile_cached(
            &key,
            false,
            || -> Result<CompileOutput, Failure> {
                let mut on_progress = |p: Progress| progress.report(&p);
                Ok(paw_compile::compile(&opts, &mut on_progress)?)
            },
            |output| CompiledProgram {
                bytes: &output.bytes,
                id: &output.id,
                key: &output.key,
            },
        )
    });
    let compiled = compiled.map_err(|failure| match failure {
        Failure::Compile(e) => CompileError::new_err(chain(e.as_ref())),
        Failure::Store(e) => PawError::new_err(format!("storing the program: {}", chain(&e))),
    })?;
    Ok(match compiled {
        CompileCached::Found(stored) => {
            let report = paw_format::Program::read(&stored.path)
                .map(|(program, _)| program.provenance.report)
                .map_err(|e| ProgramError::new_err(chain(&e)))?;
            PyProgram {
                id: stored.id.to_string(),
                path: stored.path,
                size: stored.size,
                cached: true,
                report: report.into_iter().collect(),
            }
        }
        CompileCached::Compiled { output, stored } => PyProgram {
            id: stored.id.to_string(),
            path: stored.path,
            size: stored.size,
            cached: false,
            report: output.report.to_provenance().into_iter().collect(),
        },
    })
}

/// Why `paw.compile` failed: the compiler, or storing its program.
enum Failure {
    Compile(Box<paw_compile::CompileError>),
    Store(paw_store::StoreError),
}

impl From<paw_compile::CompileError> for Failure {
    fn from(e: paw_compile::CompileError) -> Self {
        Self::Compile(Box::new(e))
    }
}

impl From<paw_store::StoreError> for Failure {
    fn from(e: paw_store::StoreError) -> Self {
        Self::Store(e)
    }
}

/// Where compile progress goes: a Python callable, called with the GIL taken back.
struct ProgressSink(Option<Py<PyAny>>);

impl ProgressSink {
    fn new(py: Python<'_>, progress: Option<Py<PyAny>>) -> PyResult<Self> {
        if let Some(callback) = &progress {
            if !callback.bind(py).is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(
                    "progress must be callable as progress(stage, done, total, message)",
                ));
            }
        }
        Ok(Self(progress))
    }

    fn report(&self, p: &Progress) {
        let Some(callback) = &self.0 else { return };
        Python::attach(|py| {
            let args = (p.stage.name(), p.done, p.total, p.message.clone());
            if let Err(error) = callback.call1(py, args) {
                // A broken callback must not abort a compile of minutes; Python reports it.
                error.write_unraisable(py, Some(callback.bind(py)));
            }
        });
    }
}

/// Python module `paw`.
#[pymodule(name = "paw")]
fn paw_py(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(function, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_class::<PyFunction>()?;
    m.add_class::<PyOutput>()?;
    m.add_class::<PyProgram>()?;
    m.add("PawError", py.get_type::<PawError>())?;
    m.add("ProgramError", py.get_type::<ProgramError>())?;
    m.add("InterpreterError", py.get_type::<InterpreterError>())?;
    m.add("LockError", py.get_type::<LockError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("RunError", py.get_type::<RunError>())?;
    Ok(())
}
