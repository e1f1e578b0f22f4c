//! Stage 2: training data (label-conditioned when the spec names its outputs) and a held-out
//! split, written by the teacher (see [`crate::synth`]), plus the teacher's own one-shot
//! answers on that split for the report. Cached in the store's stage cache.

use serde::{Deserialize, Serialize};

use crate::cache;
use crate::error::Result;
use crate::pipeline::{Context, LazyTeacher};
use crate::progress::{Stage, StageClock};
use crate::pseudo_program::PseudoProgram;
use crate::report::{DataReport, TeacherDirect};
use crate::stages::validate;
use crate::synth::{self, Example, TrainingData};
use crate::teacher::ChatModel;

/// What the stage produces and caches: the data, and the teacher's one-shot answers on the
/// validation split (`None` without a teacher or validation split). Its serialised form is the
/// stage cache's entry: changing it needs a new key domain in [`cache::data_key`].
#[derive(Serialize, Deserialize)]
struct Cached {
    data: TrainingData,
    teacher_answers: Option<Vec<String>>,
}

/// The stage's output.
pub(crate) struct DataOutput {
    pub data: TrainingData,
    /// Teacher requests made (per label, or in total for open outputs).
    pub requests: usize,
    pub report: DataReport,
}

pub(crate) fn run(
    ctx: &Context<'_>,
    mut teacher: LazyTeacher<'_>,
    pp: &PseudoProgram,
    clock: &mut StageClock<'_>,
) -> Result<DataOutput> {
    let opts = ctx.opts;
    let labels = ctx.labels.as_deref();
    let requests = opts.requests_for(labels);
    let key = cache::data_key(opts, ctx.teacher_hash.as_deref(), &pp.examples, requests);
    // The held-out labels are the teacher's own one-shot answers for open outputs and with
    // `relabel`, and for label-conditioned items the teacher had to agree with: comparing it
    // with them would give 100%, so its answers are not asked again.
    let labels_are_answers = |data: &TrainingData| {
        labels.is_none()
            || opts.agreement_filter
            || (opts.relabel && data.relabel_refused.is_empty())
    };
    let Cached {
        mut data,
        teacher_answers,
    } = clock.cached_or(Stage::Data, opts.cache.as_ref(), &key, |clock| {
        let teacher = teacher.get()?;
        let data = synth::synthesize(
            teacher,
            &synth::SynthRequest {
                spec: &opts.spec,
                user_examples: &opts.examples,
                reference: &pp.examples,
                labels,
                requests,
                agreement_filter: opts.agreement_filter,
                relabel: opts.relabel,
                labelling: opts.labelling,
                relabel_min_per_label: opts.relabel_min_per_label,
                starved_label_rounds: opts.starved_label_rounds,
                kinds: opts.kinds,
                held_out: opts.held_out,
                train_items: opts.train_items,
                inputs_per_request: opts.inputs_per_request,
                seed: opts.seed,
            },
            |done, total| clock.report(done, total, Some("teacher requests".into())),
        )?;
        let teacher_answers = match teacher {
            Some(t) if !labels_are_answers(&data) && !data.validation.is_empty() => {
                Some(teacher_answers(ctx, t, pp, &data.validation)?)
            }
            _ => None,
        };
        Ok(Cached {
            data,
            teacher_answers,
        })
    })?;
    // Outputs the program could never give under its contract teach it nothing it may use.
    // The teacher's held-out answers (if any) stay aligned with the kept held-out items.
    let before = data.train.len() + data.validation.len();
    data.train.retain(|e| ctx.contract.allows(&e.output));
    let keep: Vec<bool> = data
        .validation
        .iter()
        .map(|e| ctx.contract.allows(&e.output))
        .collect();
    data.validation = kept(std::mem::take(&mut data.validation), &keep);
    let teacher_answers = teacher_answers.map(|answers| kept(answers, &keep));
    let contract_rejected = before - data.train.len() - data.validation.len();
    if data.train.is_empty() {
        return Err(crate::error::CompileError::NoValidData(format!(
            "every training item breaks the output contract ({})",
            ctx.contract.source
        )));
    }
    let val = &data.validation;
    let teacher_direct = match &teacher_answers {
        Some(answers) => TeacherDirect::Hits(validate::hits(val, answers)),
        None if labels_are_answers(&data) && !val.is_empty() => TeacherDirect::LabelsAreAnswers,
        None => TeacherDirect::NotMeasured,
    };
    // Per-label counts show a one-sided data set (e.g. a filter that dropped a label).
    let per_label = labels.map(|labels| {
        labels
            .iter()
            .map(|l| {
                let n = data
                    .train
                    .iter()
                    .chain(val)
                    .filter(|e| &e.output == l)
                    .count();
                (l.clone(), n)
            })
            .collect()
    });
    let report = DataReport {
        train: data.train.len(),
        validation: val.len(),
        rejected: data.rejected.len(),
        contract_rejected,
        per_label,
        teacher_direct,
        relabel_refused: data.relabel_refused.clone(),
        relabel_asked_again: data.relabel_asked_again.clone(),
        teacher_prior: data.teacher_prior.clone(),
    };
    Ok(DataOutput {
        data,
        requests,
        report,
    })
}

/// The teacher's own one-shot answers to the held-out inputs, for comparison.
fn teacher_answers(
    ctx: &Context<'_>,
    teacher: &ChatModel,
    pp: &PseudoProgram,
    held_out: &[Example],
) -> Result<Vec<String>> {
    let inputs: Vec<&str> = held_out.iter().map(|e| e.input.as_str()).collect();
    let labels = ctx.labels.as_deref();
    let replies = synth::direct_replies(teacher, &ctx.opts.spec, &pp.examples, labels, &inputs)?;
    Ok(replies
        .iter()
        .map(|a| synth::answer_output(a, &pp.examples))
        .collect())
}

/// The program's output token limit: half again the longest output in the data, plus a margin.
pub(crate) fn max_tokens(ctx: &Context<'_>, data: &TrainingData) -> Result<u32> {
    let lengths = data
        .train
        .iter()
        .chain(&data.validation)
        .map(|e: &Example| ctx.tok.encode_plain(&e.output).map(|v| v.len()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let max_out = lengths.into_iter().max().unwrap_or(16);
    Ok((max_out * 3 / 2 + 4).min(512) as u32)
}

/// The items whose flag in `keep` is set, in order.
fn kept<T>(items: Vec<T>, keep: &[bool]) -> Vec<T> {
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, &k)| k.then_some(item))
        .collect()
}
