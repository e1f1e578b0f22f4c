//! Stage 5: the adapter at a storage precision, and the program around it, with its
//! provenance (compiler, teacher, seed, hyperparameters and the compile report).

use std::collections::BTreeMap;

use paw_format::{
    Adapter, GenerationConfig, InterpreterId, LoraPair, OutputContract, Program, Provenance,
    TargetModule, TensorData, TensorDtype,
};

use crate::error::Result;
use crate::report::{CompileReport, PromptKind};
use crate::train::{lora::LayerLora, TrainOptions};
use crate::{CompileOptions, COMPILER_NAME, COMPILER_VERSION};

/// Everything of the program but its adapter and report: validation builds programs from it
/// with each candidate adapter, packing with the chosen one.
pub(crate) struct ProgramDraft<'a> {
    pub opts: &'a CompileOptions,
    pub pseudo_program: String,
    pub prompt_template: String,
    /// The template with the bare spec in the pseudo-program's place.
    pub spec_prompt_template: String,
    pub interpreter: InterpreterId,
    pub max_tokens: u32,
    pub teacher_hash: Option<String>,
    /// Validation binds every candidate with it, as the program will run.
    pub contract: Option<OutputContract>,
}

impl ProgramDraft<'_> {
    /// The program with `prompt` and `adapter`, and no hyperparameters or report yet.
    pub fn program(&self, prompt: PromptKind, adapter: Option<Adapter>) -> Program {
        let (pseudo_program, prompt_template) = match prompt {
            PromptKind::PseudoProgram => {
                (self.pseudo_program.clone(), self.prompt_template.clone())
            }
            PromptKind::Spec => (
                self.opts.spec.trim().to_string(),
                self.spec_prompt_template.clone(),
            ),
        };
        Program {
            spec: self.opts.spec.clone(),
            pseudo_program,
            prompt_template,
            interpreter: self.interpreter.clone(),
            adapter,
            generation: GenerationConfig {
                max_tokens: self.max_tokens,
                stop: Vec::new(),
                temperature: 0.0,
            },
            contract: self.contract.clone(),
            provenance: Provenance {
                compiler: COMPILER_NAME.into(),
                compiler_version: COMPILER_VERSION.into(),
                teacher_hash: self.teacher_hash.clone(),
                seed: self.opts.seed,
                hyperparameters: BTreeMap::new(),
                report: BTreeMap::new(),
            },
        }
    }
}

/// The final program: the report's prompt, the adapter at `dtype` if the report's verdict
/// keeps it, the options that shaped it, and the report.
pub(crate) fn run(
    draft: &ProgramDraft<'_>,
    lora: Option<&TrainedLora>,
    dtype: TensorDtype,
    requests: usize,
    report: &CompileReport,
) -> Result<Program> {
    let (opts, t) = (draft.opts, &draft.opts.train);
    let kept = lora.filter(|_| report.adapter.is_kept());
    let keep = kept.is_some();
    let adapter = kept.map(|l| l.adapter(t, dtype)).transpose()?;
    let mut program = draft.program(report.prompt, adapter);
    let layers = match lora {
        Some(l) => format!("{}..{}", l.first_layer, l.first_layer + l.factors.len()),
        None => "none".into(),
    };
    let modules: Vec<&str> = t.modules.iter().map(|m| m.as_str()).collect();
    let stored = if keep {
        dtype.to_string()
    } else {
        "none".into()
    };
    program.provenance.hyperparameters = [
        ("adapter_dtype", stored),
        ("rank", t.rank.to_string()),
        ("alpha", t.alpha.to_string()),
        ("layers", layers),
        ("modules", modules.join(",")),
        ("max_steps", t.steps.to_string()),
        ("learning_rate", t.learning_rate.to_string()),
        ("batch", t.batch.to_string()),
        ("eval_every", t.eval_every.to_string()),
        ("patience", t.patience.to_string()),
        ("teacher_requests", requests.to_string()),
        ("held_out_requests", opts.held_out.to_string()),
        ("min_train_items", opts.min_train_items.to_string()),
        ("agreement_filter", opts.agreement_filter.to_string()),
        ("input_kinds", opts.kinds.to_string()),
        (
            "pseudo_program_budget",
            opts.pseudo_program_budget.to_string(),
        ),
    ]
    .into_iter()
    .chain([
        ("relabel", opts.relabel.to_string()),
        ("adapter_prompt", opts.adapter_prompt.to_string()),
    ])
    .chain(opts.labelling_settings())
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    program.provenance.report = report.to_provenance();
    Ok(program)
}

/// Storage type of a `[rows, cols]` factor: the ggml block types need `cols` to be a multiple
/// of 32 (true of A's input width, of B only for ranks 32, 64, ...); otherwise f16.
fn storage(want: TensorDtype, cols: usize) -> TensorDtype {
    match want {
        TensorDtype::Q8_0 | TensorDtype::Q4_0 if !cols.is_multiple_of(paw_format::quant::QK) => {
            TensorDtype::F16
        }
        d => d,
    }
}

fn encode(t: &candle_core::Tensor, want: TensorDtype) -> Result<TensorData> {
    let (rows, cols) = t.dims2()?;
    let values: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(TensorData::from_f32(
        storage(want, cols),
        [rows as u64, cols as u64],
        &values,
    )?)
}

/// The trained LoRA factors of layers `first_layer..`.
pub(crate) struct TrainedLora {
    pub factors: Vec<LayerLora>,
    pub first_layer: usize,
}

impl TrainedLora {
    /// The factors as an adapter stored at `dtype`.
    pub fn adapter(&self, t: &TrainOptions, dtype: TensorDtype) -> Result<Adapter> {
        let mut pairs = Vec::new();
        for (i, slots) in self.factors.iter().enumerate() {
            for (slot, module) in slots.iter().zip(TargetModule::ALL) {
                let Some(l) = slot else { continue };
                pairs.push(LoraPair {
                    layer: (self.first_layer + i) as u32,
                    module,
                    a: encode(l.a.as_tensor(), dtype)?,
                    b: encode(l.b.as_tensor(), dtype)?,
                });
            }
        }
        Ok(Adapter {
            rank: t.rank as u32,
            alpha: t.alpha as f32,
            pairs,
        })
    }
}
