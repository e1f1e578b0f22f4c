//! `paw build`: compile every function of `paw.toml` whose compile key changed, store the
//! programs, and pin them in `paw.lock` (spec/paw-toml.md).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use paw_compile::{compile_key, CompileOptions, CompileOutput, COMPILER_NAME, COMPILER_VERSION};
use paw_project::{FunctionDecl, ModelRef, ProjectManifest, SpecSource, MANIFEST_FILE};
use paw_store::{
    model_dir_sha256, sha256_file, CompileCached, CompiledProgram, LockedFunction, Lockfile, Store,
};
use serde::Serialize;

use crate::compile::{base_options, compile_with_bars, contract_request};
use crate::output::{open_store, outln, print_json, read_text_file};
use paw_compile::TeacherChoice;

/// The lock file's name, beside the manifest.
pub const LOCK_FILE: &str = "paw.lock";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Functions to build (default: every function of the manifest).
    names: Vec<String>,
    /// The project manifest.
    #[arg(long, value_name = "FILE", default_value = MANIFEST_FILE)]
    manifest: PathBuf,
    /// Fail if the build would change paw.lock (for CI): a function added, removed, or whose
    /// compile key or program changed.
    #[arg(long)]
    locked: bool,
    /// Like --locked, and never compile: every locked program must already be in the store.
    #[arg(long)]
    frozen: bool,
    /// Also write each built program as DIR/NAME.paw.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print one JSON object with every function's result.
    #[arg(long)]
    json: bool,
}

/// What happened to one function.
#[derive(Debug, Serialize)]
struct Built {
    name: String,
    /// `unchanged` (the lock's program, same compile key), `found` (the store's compile index
    /// held this compile), `compiled`, or `failed`.
    status: &'static str,
    program: Option<String>,
    seconds: f64,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct BuildSummary {
    lock: PathBuf,
    lock_changed: bool,
    functions: Vec<Built>,
    failed: usize,
}

pub fn run(args: BuildArgs) -> Result<()> {
    let manifest = ProjectManifest::read(&args.manifest)?;
    let lock_path = manifest.dir.join(LOCK_FILE);
    let old_lock = Lockfile::read_or_empty(&lock_path)?;
    let selected = manifest.select(&args.names)?;
    let store = open_store()?;
    let locked = args.locked || args.frozen;

    // Each function's compile, planned before anything compiles: --locked must fail early.
    let mut plans = Vec::with_capacity(selected.len());
    for f in &selected {
        let plan = plan(&store, f).with_context(|| format!("function `{}`", f.name));
        plans.push((f.name.clone(), plan));
    }
    if locked {
        let mut changes = Vec::new();
        for (name, plan) in &plans {
            match (plan, old_lock.functions.get(name)) {
                (Err(e), _) => changes.push(format!("{name}: {e:#}")),
                (Ok(_), None) => changes.push(format!("{name}: not in {LOCK_FILE}")),
                (Ok(p), Some(l)) if p.key != l.compile_key => {
                    changes.push(format!("{name}: its compile key changed"));
                }
                _ => {}
            }
        }
        if args.names.is_empty() {
            for name in old_lock.functions.keys() {
                if !manifest.functions.iter().any(|f| &f.name == name) {
                    changes.push(format!("{name}: locked but no longer declared"));
                }
            }
        }
        if !changes.is_empty() {
            bail!(
                "{} would change (--locked):\n  {}",
                lock_path.display(),
                changes.join("\n  ")
            );
        }
    }

    let mut new_lock = old_lock.clone();
    if args.names.is_empty() {
        new_lock
            .functions
            .retain(|name, _| manifest.functions.iter().any(|f| &f.name == name));
    }
    let mut results = Vec::with_capacity(plans.len());
    let total = plans.len();
    // One bar for the whole build (drawn on a terminal only), the compiler's stage bars below it.
    let bars = MultiProgress::new();
    let overall = bars.add(
        ProgressBar::new(total as u64)
            .with_style(
                ProgressStyle::with_template(
                    "{prefix:>15} [{elapsed:>4}] {wide_bar} {pos}/{len} functions {msg}",
                )
                .context("progress bar template")?
                .progress_chars("=> "),
            )
            .with_prefix("build"),
    );
    for (i, (name, plan)) in plans.into_iter().enumerate() {
        let started = Instant::now();
        let prefix = format!("[{}/{total}] {name}", i + 1);
        overall.set_message(name.clone());
        let outcome = plan.and_then(|plan| {
            build_one(
                &store,
                &plan,
                old_lock.functions.get(&name),
                args.frozen,
                &prefix,
                &bars,
            )
        });
        let built = match outcome {
            Ok((status, entry)) => {
                if locked && old_lock.functions.get(&name) != Some(&entry) {
                    let e = format!(
                        "the program differs from the one {} pins (compiles are byte-reproducible \
                         only on the machine that locked them)",
                        lock_path.display()
                    );
                    Built::failed(name.clone(), started, e)
                } else {
                    if let Some(dir) = &args.out {
                        write_out(&store, dir, &name, &entry)?;
                    }
                    let id = entry.program.to_string();
                    new_lock.functions.insert(name.clone(), entry);
                    Built {
                        name: name.clone(),
                        status,
                        program: Some(id),
                        seconds: started.elapsed().as_secs_f64(),
                        error: None,
                    }
                }
            }
            Err(e) => Built::failed(name.clone(), started, format!("{e:#}")),
        };
        if !args.json {
            bars.suspend(|| match &built.error {
                None => outln!(
                    "{prefix}: {} {} ({:.1}s)",
                    built.status,
                    built.program.as_deref().unwrap_or_default(),
                    built.seconds
                ),
                Some(e) => outln!("{prefix}: FAILED: {e}"),
            });
        }
        overall.inc(1);
        results.push(built);
    }
    overall.finish_and_clear();

    let lock_changed = new_lock != old_lock;
    if lock_changed && !locked {
        new_lock
            .write(&lock_path)
            .with_context(|| format!("writing {}", lock_path.display()))?;
    }
    let failed = results.iter().filter(|b| b.error.is_some()).count();
    let summary = BuildSummary {
        lock: lock_path,
        lock_changed,
        functions: results,
        failed,
    };
    if args.json {
        print_json(&summary)?;
    } else if failed == 0 {
        outln!(
            "built {} function(s); {} {}",
            summary.functions.len(),
            summary.lock.display(),
            if lock_changed { "updated" } else { "unchanged" }
        );
    }
    if failed > 0 {
        let names: Vec<&str> = summary
            .functions
            .iter()
            .filter(|b| b.error.is_some())
            .map(|b| b.name.as_str())
            .collect();
        bail!("{failed} function(s) failed: {}", names.join(", "));
    }
    Ok(())
}

impl Built {
    fn failed(name: String, started: Instant, error: String) -> Self {
        Self {
            name,
            status: "failed",
            program: None,
            seconds: started.elapsed().as_secs_f64(),
            error: Some(error),
        }
    }
}

/// One function's compile, resolved: its options and compile key.
struct Plan {
    opts: CompileOptions,
    key: String,
}

fn plan(store: &Store, f: &FunctionDecl) -> Result<Plan> {
    let spec = match &f.spec {
        SpecSource::Inline(s) => s.clone(),
        SpecSource::File(p) => read_text_file(p)?,
    };
    let path_text = |p: &Path| p.to_string_lossy().into_owned();
    let interpreter = match &f.interpreter {
        Some(ModelRef::Named(id)) => Some(id.clone()),
        Some(ModelRef::Path(p)) => Some(path_text(p)),
        Some(ModelRef::None) | None => None,
    };
    let teacher_path;
    let teacher = match &f.teacher {
        Some(ModelRef::None) => TeacherChoice::None,
        Some(ModelRef::Named(id)) => TeacherChoice::Model(id),
        Some(ModelRef::Path(p)) => {
            teacher_path = path_text(p);
            TeacherChoice::Model(&teacher_path)
        }
        None => TeacherChoice::Default,
    };
    let mut opts = base_options(
        store,
        spec,
        f.examples.as_deref(),
        interpreter.as_deref(),
        teacher,
    )?;
    opts.seed = f.seed;
    if let Some(steps) = f.steps {
        opts.train.steps = steps;
    }
    if let Some(n) = f.train_items {
        opts.train_items = n;
    }
    opts.contract = contract_request(&f.contract)?;
    opts.cache = Some(store.clone());
    let key = compile_key(&opts)?;
    Ok(Plan { opts, key })
}

/// Builds one function: the lock's program when its compile key is unchanged and the store
/// holds it, else the store's compile of this key, else a fresh compile (refused when
/// `frozen`). Returns the status and the function's lock entry.
fn build_one(
    store: &Store,
    plan: &Plan,
    locked: Option<&LockedFunction>,
    frozen: bool,
    prefix: &str,
    bars: &MultiProgress,
) -> Result<(&'static str, LockedFunction)> {
    if let Some(l) = locked.filter(|l| l.compile_key == plan.key) {
        // Loading by id re-hashes the bytes: a damaged or swapped entry is refused here.
        match store.read_stored(&l.program) {
            Ok(_) => return Ok(("unchanged", l.clone())),
            Err(e) if frozen => {
                return Err(e).context("the locked program is not usable (--frozen)");
            }
            Err(e) => tracing::warn!(error = %e, "the locked program is not usable; rebuilding"),
        }
    } else if frozen {
        bail!("needs a compile, and --frozen compiles nothing");
    }
    let cached = store.compile_cached(
        &plan.key,
        false,
        || -> Result<CompileOutput> {
            bars.suspend(|| progress_line(&format!("{prefix}: compiling")));
            compile_with_bars(&plan.opts, bars)
        },
        |output| CompiledProgram {
            bytes: &output.bytes,
            id: &output.id,
            key: &output.key,
        },
    )?;
    let (status, id, path) = match cached {
        CompileCached::Found(stored) => ("found", stored.id, stored.path),
        CompileCached::Compiled { stored, .. } => ("compiled", stored.id, stored.path),
    };
    let (program, _) = paw_format::Program::read(&path)
        .with_context(|| format!("reading the stored program {}", path.display()))?;
    let interpreter_sha256 = interpreter_sha256(store, &plan.opts.interpreter, &program)?;
    let teacher = match &plan.opts.teacher {
        Some(t) => paw_rt::weights_hash(t)?,
        None => "none".to_owned(),
    };
    Ok((
        status,
        LockedFunction {
            program: id,
            compile_key: plan.key.clone(),
            interpreter_name: program.interpreter.name.clone(),
            interpreter: program.interpreter.weights_hash.clone(),
            interpreter_sha256,
            teacher,
            compiler: format!("{COMPILER_NAME} {COMPILER_VERSION}"),
        },
    ))
}

/// The interpreter file's SHA-256: from the store's record when it is an installed model,
/// else hashed now.
fn interpreter_sha256(store: &Store, path: &Path, program: &paw_format::Program) -> Result<String> {
    let installed = store.installed_models()?;
    if let Some(m) = installed
        .iter()
        .find(|m| m.meta.blake3 == program.interpreter.weights_hash)
    {
        return Ok(m.meta.sha256.clone());
    }
    if path.is_dir() {
        return Ok(model_dir_sha256(path)
            .with_context(|| format!("hashing {}", path.display()))?
            .1);
    }
    sha256_file(path).with_context(|| format!("hashing {}", path.display()))
}

/// A progress line on stderr: stdout carries the results (and `--json`'s object) only.
#[allow(clippy::print_stderr)]
fn progress_line(line: &str) {
    eprintln!("{line}");
}

/// Writes the function's program as `dir/NAME.paw` (the stored bytes, atomically).
fn write_out(store: &Store, dir: &Path, name: &str, entry: &LockedFunction) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes = store.read_stored(&entry.program)?;
    let dest = dir.join(format!("{name}.paw"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &bytes)?;
    tmp.persist(&dest)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", dest.display()))?;
    Ok(())
}
