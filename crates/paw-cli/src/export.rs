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
    /// Hugging Face PEFT LoRA directory (vLLM `--lora-modules`, LoRAX, `PeftModel`), with the
    /// prompt template and output contract beside it; `-o` names the directory.
    Peft,
    /// The published Program-as-Weights SDK's `.paw` (a ZIP of `adapter.gguf`,
    /// `prompt_template.txt`, `meta.json`), loadable by its `paw.function(path)`.
    PawSdk,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Program: a path, a full id `b3:<hex>`, or a unique id prefix from the store.
    program: String,
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// Output file (a directory for `peft`).
    #[arg(short, long, value_name = "PATH")]
    output: PathBuf,
    /// `peft`: the base model's Hugging Face name for `base_model_name_or_path` (default: the
    /// interpreter's name as the program records it).
    #[arg(long, value_name = "NAME")]
    base_model: Option<String>,
    /// `peft`: the interpreter (manifest id or path) whose layout the adapter was trained in
    /// (default: the one the program was compiled for, found in the store by hash).
    #[arg(long, value_name = "MODEL")]
    model: Option<String>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let store = open_store()?;
    let (program, id) = read_program(&store, &args.program)?;
    if let ExportFormat::Peft = args.format {
        return export_peft(&store, &program, &id, &args);
    }
    let mut bytes = Vec::new();
    match args.format {
        ExportFormat::PawSdk => bytes = crate::sdk::write_sdk(&program, &id)?,
        _ => write_gguf_lora(&program, &mut bytes)?,
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
    let (format, what) = match args.format {
        ExportFormat::PawSdk => ("paw-sdk", format!("{id} as the published SDK's .paw")),
        _ => (
            "gguf-lora",
            format!("adapter of {id} as a llama.cpp GGUF LoRA"),
        ),
    };
    let contract_file = match program
        .contract
        .as_ref()
        .and_then(llama_cpp_contract)
        .filter(|_| matches!(args.format, ExportFormat::GgufLora))
    {
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
            "format": format,
            "output": args.output,
            "bytes": bytes.len(),
            "contract": program.contract.as_ref().map(|c| c.summary()),
            "contract_file": contract_file,
        }))
    } else {
        outln!(
            "wrote {} ({} bytes): {what}",
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

fn export_peft(
    store: &paw_store::Store,
    program: &paw_format::Program,
    id: &paw_format::ProgramId,
    args: &ExportArgs,
) -> Result<()> {
    let path = match &args.model {
        Some(reference) => paw_store::resolve_model(reference, store)?.path,
        None => store.interpreter_for(program)?,
    };
    // The configuration says how the adapter's rows are laid out (heads, GGUF llama order).
    let interpreter = paw_rt::Interpreter::load(&path)
        .with_context(|| format!("loading interpreter {}", path.display()))?;
    if interpreter.identity().weights_hash != program.interpreter.weights_hash {
        anyhow::bail!(
            "{} is not the interpreter {id} was compiled for (weights {})",
            path.display(),
            program.interpreter.weights_hash
        );
    }
    let base = args
        .base_model
        .clone()
        .unwrap_or_else(|| program.interpreter.name.clone());
    let files = crate::peft::write_peft_dir(program, interpreter.config(), &base, &args.output)?;
    if args.json {
        return print_json(&serde_json::json!({
            "id": id.to_string(),
            "format": "peft",
            "output": args.output,
            "files": files,
        }));
    }
    outln!(
        "wrote {}: adapter of {id} as a PEFT LoRA (base model {base})",
        args.output.display()
    );
    for f in files {
        outln!("  {}", f.display());
    }
    Ok(())
}
