//! End-to-end compiles on the small real model SmolLM2-135M (teacher and interpreter), with a
//! handful of training steps. Set PAW_TEST_SMOLLM2 to the GGUF path; skipped otherwise.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::time::Instant;

mod common;

use common::{examples, options, SPEC};
use paw_compile::report::PromptKind;
use paw_compile::{compile, CompileError, CompileOptions, CompileOutput, Stage};
use paw_format::{Program, TensorDtype};
use paw_rt::{CallOptions, Interpreter};
use paw_store::Store;

/// The SmolLM2 path; `None` (skip) without it outside CI, a failure under CI.
fn model() -> Option<PathBuf> {
    paw_testkit::require_model("PAW_TEST_SMOLLM2")
}

/// Teacher-driven compile: training lowers the loss, the packed program run through paw-rt
/// reproduces the trained model, and a second compile gives identical bytes.
#[test]
fn compile_with_teacher_trains_packs_and_is_reproducible() {
    let Some(path) = model() else { return };
    let opts = options(&path);
    let mut stages = Vec::new();
    let out = compile(&opts, &mut |p| stages.push(p.stage)).expect("compile");
    let training = out.report.training.clone().expect("enough data to train");
    assert!(
        training.train_loss_final_full < training.train_loss_initial_full,
        "training did not lower the loss: {training:?}"
    );
    // The runtime, given the packed (f32) adapter, predicts the same first output token as
    // the trainer's own forward pass, with logits that agree closely.
    let check = out.report.runtime_check.as_ref().expect("trained");
    assert_eq!(
        check.agreeing, check.rows,
        "first-token agreement {check:?}"
    );
    // Not bit-exact: the trainer runs each row with its output tokens, the runtime without
    // them, and candle's quantized kernels round differently for different row counts (up to
    // ~1 logit on SmolLM2, whose logits reach ~33; 5% of that is the bound paw-rt's own
    // reference tests use).
    assert!(check.max_logit_diff < 1.65, "{check:?}");
    assert!(
        stages.contains(&paw_compile::Stage::Train) && stages.contains(&paw_compile::Stage::Pack)
    );

    // The adapter ships unless a prompt alone beat it on the held-out split, and the report
    // says which, and which prompt the program runs with.
    let verdict = &out.report.adapter;
    assert_eq!(
        out.program.adapter.is_some(),
        verdict.is_kept(),
        "report says {verdict}"
    );
    // The provenance records the same report.
    assert_eq!(out.program.provenance.report, out.report.to_provenance());

    // The program is a valid .paw that paw-rt loads and runs.
    let (program, id) = Program::from_bytes(&out.bytes).expect("valid .paw");
    assert_eq!(id, out.id);
    match out.report.prompt {
        PromptKind::PseudoProgram => assert!(program.prompt_template.contains("[PSEUDO_PROGRAM]")),
        PromptKind::Spec => {
            assert!(!program.prompt_template.contains("[PSEUDO_PROGRAM]"));
            assert!(program.prompt_template.contains(common::SPEC));
        }
    }
    // An adapter runs under the prompt it was trained with.
    if program.adapter.is_some() {
        assert_eq!(out.report.prompt, opts.adapter_prompt);
    }
    let interpreter = Interpreter::load(&path).expect("load");
    let f = interpreter.bind(&program).expect("bind");
    let o = f
        .call("ERROR disk full", &CallOptions::default())
        .expect("call");
    assert!(o.generated_tokens > 0);

    let again = compile(&opts, &mut |_| {}).expect("compile again");
    assert_eq!(again.key, out.key);
    assert!(
        again.bytes == out.bytes,
        "same inputs and seed must give identical bytes"
    );
}

/// Compiles, returning the output, the stages progress reported as cached, and the seconds taken.
fn timed_compile(opts: &CompileOptions) -> (CompileOutput, Vec<Stage>, f64) {
    let mut cached = Vec::new();
    let t0 = Instant::now();
    let out = compile(opts, &mut |p| {
        if p.cached {
            cached.push(p.stage);
        }
    })
    .expect("compile");
    (out, cached, t0.elapsed().as_secs_f64())
}

/// The stage cache: a compile that finds its pseudo-program and data cached (as one that was
/// interrupted after them would) resumes from them and packs identical bytes; a damaged entry
/// is ignored, recomputed and rewritten.
#[test]
fn resumed_compile_loads_finished_stages_and_gives_identical_bytes() {
    let Some(path) = model() else { return };
    let home = tempfile::tempdir().expect("temp PAW_HOME");
    let store = Store::open(home.path()).expect("store");
    let mut opts = options(&path);
    opts.cache = Some(store.clone());

    let (fresh, cached, fresh_secs) = timed_compile(&opts);
    assert!(cached.is_empty() && fresh.cached_stages.is_empty());
    let (resumed, cached, resumed_secs) = timed_compile(&opts);
    let both = vec![Stage::PseudoProgram, Stage::Data];
    assert_eq!(cached, both);
    assert_eq!(resumed.cached_stages, both);
    assert_eq!(resumed.data, fresh.data);
    assert_eq!(resumed.report, fresh.report);
    assert!(
        resumed.bytes == fresh.bytes,
        "a resumed compile must give the computed compile's bytes"
    );
    eprintln!(
        "fresh compile {fresh_secs:.1}s {:?}; resumed {resumed_secs:.1}s {:?}",
        fresh.timings, resumed.timings
    );

    // Damage the cached data: it is not trusted, but recomputed (same bytes) and rewritten.
    let entries: Vec<PathBuf> = std::fs::read_dir(home.path().join("stages/data"))
        .expect("data entries")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(entries.len(), 1);
    let mut bytes = std::fs::read(&entries[0]).expect("read entry");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x20;
    std::fs::write(&entries[0], &bytes).expect("damage entry");
    let (repaired, cached, _) = timed_compile(&opts);
    assert_eq!(cached, vec![Stage::PseudoProgram]);
    assert!(repaired.bytes == fresh.bytes);
    let key = entries[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("key");
    assert!(matches!(store.get_stage("data", key), Ok(Some(_))));
}

/// `--teacher none`: train from the user's examples only, at a forced precision.
#[test]
fn compile_from_examples_only() {
    let Some(path) = model() else { return };
    let mut opts = options(&path);
    opts.teacher = None;
    opts.examples = examples();
    opts.adapter_dtype = Some(TensorDtype::Q8_0);
    let out = compile(&opts, &mut |_| {}).expect("compile");
    assert_eq!(out.data.train.len(), 6);
    assert!(out.data.validation.is_empty());
    assert_eq!(
        out.report.pseudo_program.source,
        paw_compile::pseudo_program::Source::Spec
    );
    let adapter = out.program.adapter.as_ref().expect("adapter");
    assert!(adapter.pairs.iter().all(|p| p.a.dtype == TensorDtype::Q8_0));
    let t = out.report.training.expect("trained");
    assert!(t.train_loss_final_full < t.train_loss_initial_full, "{t:?}");
}

/// A teacher compile that gathers fewer items than its minimum trains nothing, says so, and
/// ships the better of the two prompts on the held-out split (here: 6 items, minimum 100).
#[test]
fn too_little_data_ships_the_best_prompt_and_says_so() {
    let Some(path) = model() else { return };
    let mut opts = options(&path);
    opts.min_train_items = 100;
    let mut stages = Vec::new();
    let out = compile(&opts, &mut |p| stages.push(p.stage)).expect("compile");
    assert_eq!(
        out.report.adapter,
        paw_compile::report::AdapterVerdict::TooLittleData {
            items: out.data.train.len(),
            min: 100
        }
    );
    assert!(out.program.adapter.is_none() && out.report.training.is_none());
    assert!(
        !stages.contains(&Stage::Train),
        "no training ran: {stages:?}"
    );
    let h = out.report.held_out.as_ref().expect("held-out items");
    assert_eq!(h.adapter, None);
    let want = if h.pseudo_program_only > h.spec_prompt_only {
        PromptKind::PseudoProgram
    } else {
        PromptKind::Spec
    };
    assert_eq!(out.report.prompt, want, "{h:?}");
    let text = &out.program.provenance.report["adapter"];
    assert!(text.starts_with("not trained: only"), "{text}");
    let interpreter = Interpreter::load(&path).expect("load");
    let f = interpreter.bind(&out.program).expect("bind");
    f.call("ERROR disk full", &CallOptions::default())
        .expect("call");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mut opts = CompileOptions::new("  ", "/nonexistent/model.gguf");
    assert!(matches!(
        compile(&opts, &mut |_| {}),
        Err(CompileError::EmptySpec)
    ));
    opts.spec = "x".repeat(paw_compile::MAX_SPEC_LEN + 1);
    assert!(matches!(
        compile(&opts, &mut |_| {}),
        Err(CompileError::SpecTooLong { .. })
    ));
    opts.spec = SPEC.to_string();
    assert!(matches!(
        compile(&opts, &mut |_| {}),
        Err(CompileError::ModelNotFound(_))
    ));
    opts.examples = vec![("a".into(), " ".into())];
    assert!(matches!(
        compile(&opts, &mut |_| {}),
        Err(CompileError::EmptyExample { index: 0 })
    ));
    if let Some(path) = model() {
        let mut opts = CompileOptions::new(SPEC, path);
        opts.teacher = None;
        assert!(matches!(
            compile(&opts, &mut |_| {}),
            Err(CompileError::NothingToTrainOn)
        ));
        // Control-token text would become part of the program's prompt template.
        opts.examples = vec![("ok <|im_end|> then".into(), "QUIET".into())];
        match compile(&opts, &mut |_| {}) {
            Err(CompileError::ControlTokenText { what, token }) => {
                assert_eq!((what.as_str(), token.as_str()), ("example 0", "<|im_end|>"));
            }
            other => panic!("expected ControlTokenText, got {:?}", other.map(|_| ())),
        }
        opts.spec = format!("{SPEC} Never answer <|im_start|>.");
        assert!(matches!(
            compile(&opts, &mut |_| {}),
            Err(CompileError::ControlTokenText { .. })
        ));
    }
}
