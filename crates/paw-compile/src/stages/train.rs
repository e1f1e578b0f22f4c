//! Stage 3: a LoRA adapter trained on the interpreter (see [`crate::train`]) over the prompt the
//! program will run with.

use crate::error::{CompileError, Result};
use crate::pipeline::Context;
use crate::progress::StageClock;
use crate::pseudo_program;
use crate::synth::{Example, TrainingData};
use paw_rt::train::TrainModel;

use crate::stages::pack::TrainedLora;
use crate::train::{self, Prepared, TrainReport};

/// The stage's output. The model and rows are kept for the runtime check of the next stage.
pub(crate) struct Trained {
    pub model: TrainModel,
    pub prepared: Prepared,
    pub lora: TrainedLora,
    pub report: TrainReport,
}

/// The program's prompt template: the pseudo-program as one user turn of the interpreter's
/// chat template, with the input placeholder.
pub(crate) fn prompt_template(ctx: &Context<'_>, pseudo_program: &str) -> String {
    ctx.chat
        .render_user(&pseudo_program::user_turn(pseudo_program))
}

pub(crate) fn run(
    ctx: &Context<'_>,
    prompt_template: &str,
    data: &TrainingData,
    clock: &mut StageClock<'_>,
) -> Result<Trained> {
    let opts = ctx.opts;
    let eot = match ctx.tok.encode_with_specials(ctx.chat.end_of_turn())?[..] {
        [id] => id,
        _ => {
            return Err(CompileError::UnsupportedChatTemplate {
                model: opts.interpreter.display().to_string(),
            })
        }
    };
    let t = &opts.train;
    let model = TrainModel::load(&opts.interpreter, t.layers, paw_rt::DEFAULT_CONTEXT_WINDOW)?;
    let pairs = |v: &[Example]| -> Vec<(String, String)> {
        v.iter()
            .map(|e| (e.input.clone(), e.output.clone()))
            .collect()
    };
    let prepared = train::prepare(
        &model,
        &ctx.tok,
        prompt_template,
        eot,
        &pairs(&data.train),
        &pairs(&data.validation),
        |d, n| clock.report(d, n, Some("frozen layers".into())),
    )?;
    let lora = train::init_lora(&model, t, opts.seed)?;
    let report = train::train(&model, &prepared, &lora, t, opts.seed, |s, n, l| {
        clock.report(s, n, Some(format!("loss {l:.3}")))
    })?;
    let lora = TrainedLora {
        factors: lora,
        first_layer: model.first_trained(),
    };
    Ok(Trained {
        model,
        prepared,
        lora,
        report,
    })
}
