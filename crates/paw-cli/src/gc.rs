//! `paw gc`: remove the stored programs no given lock pins (a dry run unless `--apply`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use paw_format::ProgramId;
use paw_store::Lockfile;
use serde::Serialize;

use crate::build::LOCK_FILE;
use crate::output::{human_bytes, open_store, outln, print_json};

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Lock files whose programs are kept (default: ./paw.lock). Every program no lock pins
    /// is removed.
    #[arg(long = "lock", value_name = "FILE")]
    locks: Vec<PathBuf>,
    /// Also empty the stage cache (finished compile stages kept to resume compiles).
    #[arg(long)]
    stages: bool,
    /// Remove for real; without it, only list what would go.
    #[arg(long)]
    apply: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct GcReport {
    applied: bool,
    kept: usize,
    removed_programs: Vec<String>,
    program_bytes: u64,
    stage_bytes: u64,
    compile_records_pruned: usize,
}

pub fn run(args: GcArgs) -> Result<()> {
    let locks = if args.locks.is_empty() {
        let default = PathBuf::from(LOCK_FILE);
        if !default.is_file() {
            bail!(
                "no {LOCK_FILE} here: name the locks whose programs to keep with --lock FILE \
                 (paw gc never guesses that nothing is pinned)"
            );
        }
        vec![default]
    } else {
        args.locks.clone()
    };
    let mut pinned: BTreeSet<ProgramId> = BTreeSet::new();
    for path in &locks {
        let lock = Lockfile::read(path).with_context(|| format!("reading {}", path.display()))?;
        pinned.extend(lock.functions.values().map(|f| f.program));
    }
    let store = open_store()?;
    let doomed: Vec<_> = store
        .list_programs()?
        .into_iter()
        .filter(|p| !pinned.contains(&p.id))
        .collect();
    let mut report = GcReport {
        applied: args.apply,
        kept: pinned.len(),
        removed_programs: doomed.iter().map(|p| p.id.to_string()).collect(),
        program_bytes: doomed.iter().map(|p| p.size).sum(),
        stage_bytes: if args.stages {
            store.stage_cache_bytes()?
        } else {
            0
        },
        compile_records_pruned: 0,
    };
    if args.apply {
        for p in &doomed {
            store.remove_program(&p.id)?;
        }
        if args.stages {
            store.clear_stage_cache()?;
        }
        report.compile_records_pruned = store.prune_compile_records()?;
    }
    if args.json {
        return print_json(&report);
    }
    let verb = if args.apply {
        "removed"
    } else {
        "would remove"
    };
    for id in &report.removed_programs {
        outln!("{verb} {id}");
    }
    outln!(
        "{verb} {} program(s) ({}){}; kept the {} pinned by {} lock(s){}",
        report.removed_programs.len(),
        human_bytes(report.program_bytes),
        if args.stages {
            format!(" and the stage cache ({})", human_bytes(report.stage_bytes))
        } else {
            String::new()
        },
        report.kept,
        locks.len(),
        if args.apply {
            String::new()
        } else {
            "; run again with --apply to remove".to_owned()
        }
    );
    Ok(())
}
