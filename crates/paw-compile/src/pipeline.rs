//! The compile pipeline, read top to bottom: each stage is a module of [`crate::stages`]
//! with a typed report; this file only passes one stage's output to the next.

use std::path::Path;

use crate::chat::ChatTemplate;
use crate::contract::{self, ContractRequest, Decided};
use crate::error::{CompileError, Result};
use crate::progress::{Progress, Stage, StageClock};
use crate::report::{CompileReport, PromptKind};
use crate::stages::{self, pack::ProgramDraft, validate::Validated};
use crate::teacher::ChatModel;
use crate::{spec, CompileOptions, CompileOutput};
use paw_format::OutputContract;

/// What every stage reads: the options and what was derived from them once.
pub(crate) struct Context<'a> {
    pub opts: &'a CompileOptions,
    /// The label set the spec names, or the one given as the contract (`None`: open outputs).
    pub labels: Option<Vec<String>>,
    /// The program's output contract and the checker of training data against it.
    pub contract: Decided,
    /// The interpreter's tokenizer, and its hash (`spec/interpreter-identity.md`).
    pub tok: paw_rt::Tokenizer,
    pub tokenizer_hash: String,
    /// The interpreter's chat template, which wraps the program's prompt.
    pub chat: ChatTemplate,
    /// `b3:` weights hash of the teacher, if any.
    pub teacher_hash: Option<String>,
}

impl<'a> Context<'a> {
    /// Reads the interpreter's tokenizer and chat template (one read of its GGUF header),
    /// refuses spec or example text that spells a control token, and hashes the teacher.
    fn open(opts: &'a CompileOptions) -> Result<Self> {
        let path = &opts.interpreter;
        let file = std::fs::File::open(path).map_err(|error| CompileError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let ct = paw_rt::read_content(&mut std::io::BufReader::new(file))?;
        let tok = paw_rt::Tokenizer::from_gguf(&ct)?;
        stages::pseudo_program::check_control_tokens(&tok, opts)?;
        let teacher_hash = match &opts.teacher {
            Some(p) => Some(paw_rt::weights_hash(p)?),
            None => None,
        };
        let labels = match &opts.contract {
            ContractRequest::Given(OutputContract::Labels { labels }) => Some(labels.clone()),
            _ => spec::label_set(&opts.spec),
        };
        let contract = contract::decide(
            &opts.contract,
            &opts.spec,
            labels.as_deref(),
            &opts.examples,
            &tok,
        )?;
        tracing::info!(contract = ?contract.contract().map(OutputContract::summary), source = %contract.source, "output contract");
        Ok(Self {
            opts,
            labels,
            contract,
            tokenizer_hash: paw_rt::tokenizer_hash(&ct),
            chat: ChatTemplate::from_gguf(&ct, &path.display().to_string())?,
            tok,
            teacher_hash,
        })
    }

    /// Number of interpreter tokens of `text` (control tokens recognised, as in a template).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.tok.encode_with_specials(text)?.len())
    }
}

/// The teacher, loaded on first use: a compile whose teacher stages are all cached never
/// loads it.
pub(crate) struct LazyTeacher<'a> {
    path: Option<&'a Path>,
    model: Option<ChatModel>,
}

impl<'a> LazyTeacher<'a> {
    fn new(path: Option<&'a Path>) -> Self {
        Self { path, model: None }
    }

    pub fn get(&mut self) -> Result<Option<&ChatModel>> {
        if let (Some(path), None) = (self.path, &self.model) {
            self.model = Some(ChatModel::load(path)?);
        }
        Ok(self.model.as_ref())
    }
}

/// Runs every stage in order.
pub(crate) fn run(
    opts: &CompileOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<CompileOutput> {
    opts.check()?;
    let mut clock = StageClock::new(progress);

    clock.start(Stage::PseudoProgram);
    let ctx = Context::open(opts)?;
    let mut teacher = LazyTeacher::new(opts.teacher.as_deref());
    let pp = stages::pseudo_program::run(&ctx, &mut teacher, &mut clock)?;

    clock.start(Stage::Data);
    // The teacher is dropped at the end of this stage: nothing later needs it.
    let data = stages::data::run(&ctx, teacher, &pp.program, &mut clock)?;

    let prompt_template = stages::train::prompt_template(&ctx, &pp.text);
    let spec_prompt_template = stages::train::prompt_template(&ctx, opts.spec.trim());
    let adapter_template = match opts.adapter_prompt {
        PromptKind::PseudoProgram => &prompt_template,
        PromptKind::Spec => &spec_prompt_template,
    };
    // Too few items teach noise (json-repair: 6 items, 0 of 15 tests): the best prompt ships.
    let enough_data = ctx.teacher_hash.is_none() || data.data.train.len() >= opts.min_train_items;
    let trained = if enough_data {
        clock.start(Stage::Train);
        Some(stages::train::run(
            &ctx,
            adapter_template,
            &data.data,
            &mut clock,
        )?)
    } else {
        None
    };

    clock.start(Stage::Validate);
    let interpreter = stages::validate::load_interpreter(opts)?;
    let draft = ProgramDraft {
        opts,
        pseudo_program: pp.text,
        prompt_template,
        spec_prompt_template,
        interpreter: interpreter.identity().clone(),
        max_tokens: stages::data::max_tokens(&ctx, &data.data)?,
        teacher_hash: ctx.teacher_hash.clone(),
        contract: ctx.contract.contract().cloned(),
    };
    let Validated {
        lora,
        training,
        runtime_check,
        held_out,
        verdict,
        prompt,
        dtype,
    } = stages::validate::run(&interpreter, &draft, &data.data, trained, &mut clock)?;

    clock.start(Stage::Pack);
    let report = CompileReport {
        label_set: ctx.labels.clone(),
        contract: ctx.contract.report(),
        pseudo_program: pp.report,
        data: data.report,
        training,
        runtime_check,
        held_out,
        adapter: verdict,
        prompt,
    };
    let program = stages::pack::run(&draft, lora.as_ref(), dtype, data.requests, &report)?;
    let bytes = program.to_bytes()?;
    let id = program.id()?;
    let key = crate::key_from_hashes(
        opts,
        &draft.interpreter.weights_hash,
        ctx.teacher_hash.as_deref(),
    );
    let (timings, cached_stages) = clock.stop();
    Ok(CompileOutput {
        program,
        bytes,
        id,
        key,
        report,
        data: data.data,
        timings,
        cached_stages,
    })
}
