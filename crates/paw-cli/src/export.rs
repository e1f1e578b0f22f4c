//! `paw export`: write a program's adapter in another tool's format.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use paw_format::export::{llama_cpp_contract, write_gguf_lora};

use crate::output::{open_store, outln, print_json};
use crate::run::read_program;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    /// llama.cpp GGUF LoRA adapter (`--lora` in llama.cpp tools).
    GgufLora,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output file.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let store = open_store()?;
    let (program, id) = read_program(&store, &args.program)?;
    let mut bytes = Vec::new();
    match args.format {
        ExportFormat::GgufLora => write_gguf_lora(&program, &mut bytes)?,
    }
    // Written next to the destination and renamed, so an interrupted export leaves no half file.
    let dir = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .context("writing the export")?;
    tmp.persist(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    // The contract travels beside the adapter, in the form llama.cpp takes.
    let contract_file = match program.contract.as_ref().and_then(llama_cpp_contract) {
        Some((suffix, text)) => {
            let path = args.output.with_extension(suffix);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Some(path)
        }
        None => None,
    };
    if args.json {
        print_json(&serde_json::json!({
            "id": id.to_string(),
            "format": "gguf-lora",
            "output": args.output,
            "bytes": bytes.len(),
            "contract": program.contract.as_ref().map(|c| c.summary()),
            "contract_file": contract_file,
        }))
    } else {
        outln!(
            "wrote {} ({} bytes): adapter of {id} as a llama.cpp GGUF LoRA",
            args.output.display(),
            bytes.len()
        );
        if let Some(path) = contract_file {
            outln!(
                "wrote {}: its output contract for llama.cpp",
                path.display()
            );
        }
        Ok(())
    }
}
