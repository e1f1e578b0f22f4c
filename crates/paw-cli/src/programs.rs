//! Commands on program files and the store: inspect, verify, add, list.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use paw_format::{inspect as inspect_bytes, reader::ProgramView, InterpreterId};
use paw_store::{resolve_model, Store};
use serde::Serialize;

use crate::output::{human_bytes, open_store, out, outln, print_json, summary_line, terminal_safe};

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Program: a path, a full id or a unique id prefix.
    program: String,
    /// Also check that the program was compiled for this interpreter (manifest id, GGUF path or
    /// safetensors model directory).
    #[arg(long, value_name = "MODEL")]
    interpreter: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// `.paw` files to import.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn inspect(args: InspectArgs) -> Result<()> {
    let store = open_store()?;
    let program = store.load_program(&args.program)?;
    let inspection = inspect_bytes(&program.bytes)
        .with_context(|| format!("reading {}", program.path.display()))?;
    if args.json {
        print_json(&inspection)
    } else {
        out!("{}", terminal_safe(&inspection.to_string()));
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct VerifyReport {
    id: String,
    path: PathBuf,
    sections: usize,
    tensors: usize,
    /// The interpreter file checked against the program's identity, if one was given.
    interpreter: Option<PathBuf>,
}

pub fn verify(args: VerifyArgs) -> Result<()> {
    let store = open_store()?;
    let program = store.load_program(&args.program)?;
    let view = ProgramView::parse(&program.bytes)
        .with_context(|| format!("verifying {}", program.path.display()))?;
    let report = VerifyReport {
        id: view.id.to_string(),
        path: program.path,
        sections: view.sections.len(),
        tensors: view.adapter.as_ref().map_or(0, |a| a.tensors.len()),
        interpreter: match &args.interpreter {
            Some(reference) => Some(check_interpreter(&store, &view.interpreter, reference)?),
            None => None,
        },
    };
    if args.json {
        print_json(&report)
    } else {
        outln!(
            "ok {}: {} sections and {} tensors hash correctly",
            report.id,
            report.sections,
            report.tensors
        );
        if let Some(path) = &report.interpreter {
            outln!("ok interpreter {} matches the program's architecture, weights and tokenizer hashes", path.display());
        }
        Ok(())
    }
}

/// Hashes the interpreter `reference` and compares it with what the program was compiled for.
fn check_interpreter(store: &Store, wanted: &InterpreterId, reference: &str) -> Result<PathBuf> {
    let path = resolve_model(reference, store)?.path;
    let actual = paw_rt::identity(&path, None)
        .with_context(|| format!("reading interpreter {}", path.display()))?;
    let mismatches: Vec<String> = [
        ("architecture", &wanted.architecture, &actual.architecture),
        ("weights hash", &wanted.weights_hash, &actual.weights_hash),
        (
            "tokenizer hash",
            &wanted.tokenizer_hash,
            &actual.tokenizer_hash,
        ),
    ]
    .into_iter()
    .filter(|(_, w, a)| w != a)
    .map(|(what, w, a)| format!("{what}: program wants {w}, {} has {a}", path.display()))
    .collect();
    if !mismatches.is_empty() {
        bail!(
            "the program was compiled for interpreter {}, not {}:\n  {}",
            wanted.name,
            path.display(),
            mismatches.join("\n  ")
        );
    }
    Ok(path)
}

#[derive(Debug, Serialize)]
struct AddedProgram {
    id: String,
    source: PathBuf,
    stored_at: PathBuf,
    size: u64,
}

pub fn add(args: AddArgs) -> Result<()> {
    let store = open_store()?;
    let mut added = Vec::with_capacity(args.files.len());
    for file in &args.files {
        let stored = store
            .add_program_file(file)
            .with_context(|| format!("adding {}", file.display()))?;
        added.push(AddedProgram {
            id: stored.id.to_string(),
            source: file.clone(),
            stored_at: stored.path,
            size: stored.size,
        });
    }
    if args.json {
        return print_json(&added);
    }
    for a in &added {
        outln!(
            "added {} ({}) from {}",
            a.id,
            human_bytes(a.size),
            a.source.display()
        );
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct ListedProgram {
    /// The id of the entry's bytes (BLAKE3), which is its name unless it is damaged.
    id: String,
    /// Why the entry cannot be used, if it cannot: it still appears, so nobody ships it unknowingly.
    damaged: Option<String>,
    spec: Option<String>,
    interpreter: Option<String>,
    adapter: Option<String>,
    size: u64,
    path: PathBuf,
}

pub fn list(args: ListArgs) -> Result<()> {
    let store = open_store()?;
    let mut rows = Vec::new();
    for stored in store.list_programs()? {
        let mut row = ListedProgram {
            id: stored.id.to_string(),
            damaged: None,
            spec: None,
            interpreter: None,
            adapter: None,
            size: stored.size,
            path: stored.path,
        };
        match store.read_stored(&stored.id) {
            Err(error) => {
                if let paw_store::StoreError::WrongBytes { actual, .. } = &error {
                    row.id = actual.to_string();
                }
                row.damaged = Some(error.to_string());
            }
            Ok(bytes) => match ProgramView::parse(&bytes) {
                Err(error) => row.damaged = Some(format!("not a valid program: {error}")),
                Ok(view) => {
                    row.spec = Some(view.spec.clone());
                    row.interpreter = Some(view.interpreter.name.clone());
                    row.adapter = view
                        .adapter
                        .as_ref()
                        .map(|a| format!("rank {} x {} tensors", a.rank, a.tensors.len()));
                }
            },
        }
        rows.push(row);
    }
    if args.json {
        return print_json(&rows);
    }
    if rows.is_empty() {
        outln!(
            "no programs in {} (add one with `paw add FILE`)",
            store.root().display()
        );
        return Ok(());
    }
    outln!("{:<14} {:>10}  {:<36} SPEC", "ID", "SIZE", "INTERPRETER");
    for r in &rows {
        let short = r.id.get(..14).unwrap_or(&r.id);
        match &r.damaged {
            Some(why) => outln!(
                "{:<14} {:>10}  DAMAGED: {}",
                short,
                human_bytes(r.size),
                summary_line(why, 100)
            ),
            None => outln!(
                "{:<14} {:>10}  {:<36} {}",
                short,
                human_bytes(r.size),
                summary_line(r.interpreter.as_deref().unwrap_or(""), 36),
                summary_line(r.spec.as_deref().unwrap_or(""), 60)
            ),
        }
    }
    let damaged = rows.iter().filter(|r| r.damaged.is_some()).count();
    if damaged > 0 {
        eprintln!(
            "{damaged} damaged entr{} (repair with `paw add FILE` from a good copy)",
            if damaged == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A `.paw` of the published Program-as-Weights SDK (a ZIP).
    file: PathBuf,
    /// The interpreter it runs on (manifest id or path; default: the default interpreter). Its
    /// identity is recorded and the adapter's shapes are checked against it.
    #[arg(long, value_name = "MODEL")]
    interpreter: Option<String>,
    /// Also write the paw program here.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `paw import`: a published SDK program as a paw program, stored (and written with `-o`).
pub fn import(args: ImportArgs) -> Result<()> {
    let store = open_store()?;
    let bytes = read_bounded(&args.file)?;
    let sdk = crate::sdk::read_sdk(&bytes)
        .with_context(|| format!("{} is not a valid published .paw", args.file.display()))?;
    let manifest = paw_store::Manifest::embedded()?;
    let reference = args
        .interpreter
        .clone()
        .unwrap_or_else(|| manifest.default_interpreter().id.clone());
    let model = resolve_model(&reference, &store)?;
    let interpreter = paw_rt::Interpreter::load(&model.path)
        .with_context(|| format!("loading interpreter {}", model.path.display()))?;
    let mut identity = interpreter.identity().clone();
    if let Some(entry) = &model.entry {
        identity.name = entry.id.clone();
    }
    let sdk_interpreter = sdk.meta_str("interpreter").map(str::to_owned);
    let program = crate::sdk::to_program(sdk, identity);
    // Binding checks every adapter shape against the model.
    interpreter.bind(&program).with_context(|| {
        format!(
            "the adapter does not fit {} (the SDK names its interpreter {})",
            model.path.display(),
            sdk_interpreter.as_deref().unwrap_or("nowhere")
        )
    })?;
    let program_bytes = program.to_bytes()?;
    let stored = store.add_program_bytes(&program_bytes, None)?;
    if let Some(out) = &args.output {
        std::fs::write(out, &program_bytes)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    if args.json {
        return print_json(&serde_json::json!({
            "id": stored.id.to_string(),
            "path": stored.path,
            "interpreter": program.interpreter.name,
            "sdk_interpreter": sdk_interpreter,
        }));
    }
    outln!(
        "imported {} as {} (interpreter {})",
        args.file.display(),
        stored.id,
        program.interpreter.name
    );
    Ok(())
}

/// A file's bytes, refused above 1 GiB (what an archive of the largest adapter may take).
fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>> {
    use std::io::Read;
    const MAX: u64 = 1 << 30;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .take(MAX + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX,
        "{} is larger than 1 GiB",
        path.display()
    );
    Ok(bytes)
}
