//! `paw`: compile, inspect, verify and run fuzzy functions. A thin layer over the paw libraries:
//! argument parsing, output formatting (human and `--json`), progress bars and error context.

// The binary's job is to print.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod build;
mod compile;
mod eval;
mod export;
mod gc;
mod init;
mod interpreter;
mod models;
mod output;
mod peft;
mod programs;
mod run;
mod sdk;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "paw",
    version,
    about = "Compile and run fuzzy functions on a small local model"
)]
struct Cli {
    /// More logging (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile a spec into a program (stored, and written with -o).
    ///
    /// Finished stages (the pseudo-program and the training data: the teacher's work, most of
    /// the time) are cached in the store under a key of exactly their inputs, so a compile that
    /// was interrupted (Ctrl-C, a crash) resumes after them when run again; the program's bytes
    /// are the same either way. The program enters the store only when complete, never in part.
    /// A repeated compile with the same compile key returns the stored program at once.
    Compile(Box<compile::CompileArgs>),
    /// Compile every function of paw.toml whose compile key changed and pin them in paw.lock.
    ///
    /// Unchanged functions take no time (the lock's program, verified by id); an interrupted
    /// build resumes from the stage cache. A failing function does not stop the others; the
    /// command exits 1 after reporting all failures.
    Build(build::BuildArgs),
    /// Start a project: a commented paw.toml with one function, its examples and tests.
    Init(init::InitArgs),
    /// Remove stored programs no given lock pins (dry run unless --apply).
    Gc(gc::GcArgs),
    /// Print a program's content id and every field.
    Inspect(programs::InspectArgs),
    /// Recompute every hash of a program; optionally check it against an interpreter.
    Verify(programs::VerifyArgs),
    /// Import a program file into the local store.
    Add(programs::AddArgs),
    /// Import a program of the published Program-as-Weights SDK (its `.paw` ZIP) into the store.
    Import(programs::ImportArgs),
    /// List the programs in the local store.
    List(programs::ListArgs),
    /// Base models: list known and installed ones (default), `fetch` them, print a `path`.
    Models(models::ModelsArgs),
    /// Run a program on one input, stdin, or a file of inputs.
    Run(run::RunArgs),
    /// Write a program's adapter for other tools (llama.cpp GGUF LoRA, Hugging Face PEFT).
    Export(export::ExportArgs),
    /// Score a program against a file of expected outputs.
    Eval(eval::EvalArgs),
    /// Run a project's declared program tests; non-zero exit on regressions.
    Test(eval::TestArgs),
    /// Serve functions over HTTP: a lock's (default ./paw.lock) or the given programs, each
    /// interpreter loaded once, requests batched (spec/serve.md).
    ///
    /// SIGTERM or Ctrl-C stops taking connections and finishes the requests in flight; SIGHUP
    /// reloads the lock (new functions served, removed ones drained).
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Test(args) => match eval::test(args) {
            Ok(code) => return code,
            // Missing or malformed files: exit 2, as spec/paw-test.md says.
            Err(err) => {
                eprintln!("error: {err:#}");
                return ExitCode::from(2);
            }
        },
        Command::Inspect(args) => programs::inspect(args),
        Command::Verify(args) => programs::verify(args),
        Command::Add(args) => programs::add(args),
        Command::List(args) => programs::list(args),
        Command::Import(args) => programs::import(args),
        Command::Models(args) => models::run(args),
        Command::Run(args) => run::run(args),
        Command::Compile(args) => compile::run(*args, cli.verbose > 0),
        Command::Build(args) => build::run(args),
        Command::Init(args) => init::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Eval(args) => eval::eval(args),
        Command::Export(args) => export::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,paw=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
