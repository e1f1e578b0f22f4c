//! Stage 1: the pseudo-program (task paragraph and reference examples) the teacher writes, or
//! the spec itself without a teacher. Cached in the store's stage cache.

use crate::cache;
use crate::error::{CompileError, Result};
use crate::pipeline::{Context, LazyTeacher};
use crate::progress::{Stage, StageClock};
use crate::pseudo_program::{self, PseudoProgram};
use crate::report::PseudoProgramReport;
use crate::CompileOptions;

/// The spec and the user's examples become part of the program's prompt template, where
/// control-token text is read as control tokens (inputs never are): refuse it.
pub(crate) fn check_control_tokens(tok: &paw_rt::Tokenizer, opts: &CompileOptions) -> Result<()> {
    let examples = opts.examples.iter().enumerate().flat_map(|(n, (i, o))| {
        [
            (format!("example {n}"), i.as_str()),
            (format!("example {n}"), o.as_str()),
        ]
    });
    for (what, text) in
        std::iter::once(("the spec".to_string(), opts.spec.as_str())).chain(examples)
    {
        if let Some(token) = tok.first_control_token(text)? {
            return Err(CompileError::ControlTokenText { what, token });
        }
    }
    Ok(())
}

/// The stage's output: the pseudo-program, its rendered text (the program stores it and its
/// prompt template wraps it), and the report.
pub(crate) struct PseudoProgramOutput {
    pub program: PseudoProgram,
    pub text: String,
    pub report: PseudoProgramReport,
}

pub(crate) fn run(
    ctx: &Context<'_>,
    teacher: &mut LazyTeacher<'_>,
    clock: &mut StageClock<'_>,
) -> Result<PseudoProgramOutput> {
    let opts = ctx.opts;
    let count = |s: &str| ctx.count_tokens(s);
    let key = cache::pseudo_program_key(opts, ctx.teacher_hash.as_deref(), &ctx.tokenizer_hash);
    let pp: PseudoProgram =
        clock.cached_or(Stage::PseudoProgram, opts.cache.as_ref(), &key, |_| {
            pseudo_program::write(
                teacher.get()?,
                &pseudo_program::Request {
                    spec: &opts.spec,
                    user_examples: &opts.examples,
                    labels: ctx.labels.as_deref(),
                    budget: opts.pseudo_program_budget,
                    count_tokens: &count,
                },
            )
        })?;
    let text = pp.render();
    let report = PseudoProgramReport {
        source: pp.source,
        tokens: ctx.count_tokens(&text)?,
        examples: pp.examples.len(),
    };
    Ok(PseudoProgramOutput {
        program: pp,
        text,
        report,
    })
}
