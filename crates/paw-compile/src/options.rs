//! What a compile depends on, and the checks made before any model runs.

use std::path::PathBuf;

use paw_format::TensorDtype;
use paw_store::{resolve_model, Manifest, ResolveModelError, Store};

use crate::contract::ContractRequest;
use crate::error::{CompileError, Result};
use crate::report::PromptKind;
use crate::train::TrainOptions;

/// Longest spec accepted, in bytes.
pub const MAX_SPEC_LEN: usize = 16 * 1024;

/// Everything a compile depends on; same options => same bytes (on the same machine).
#[derive(Debug, Clone, PartialEq)]
pub struct CompileOptions {
    pub spec: String,
    /// Trusted `(input, output)` examples; they come first in the pseudo-program and the data.
    pub examples: Vec<(String, String)>,
    /// The interpreter GGUF the program will run on.
    pub interpreter: PathBuf,
    /// Interpreter name recorded in the program (defaults to the file name).
    pub interpreter_name: Option<String>,
    /// The teacher GGUF; `None` trains from `examples` only.
    pub teacher: Option<PathBuf>,
    pub seed: u64,
    pub train: TrainOptions,
    /// Teacher requests per label (closed label set) or in total (open outputs);
    /// `None` picks about 48 items in total, at least 8 per label.
    pub requests: Option<usize>,
    /// Teacher training items wanted: when the first round of requests leaves fewer (after the
    /// checks, relabelling and balancing), the compile asks the teacher again, up to two more
    /// rounds; 0 makes one round only.
    pub train_items: usize,
    /// Inputs each training-data request asks the teacher for, as a numbered list; 1 asks
    /// for one input per request.
    pub inputs_per_request: usize,
    /// Held-out items the teacher writes by their own request for hard and unusual inputs
    /// (spread over the labels of a label set); candidates are chosen on them. 0 holds out
    /// every 4th training item instead.
    pub held_out: usize,
    /// A teacher compile with fewer training items than this trains no adapter: it ships the
    /// best prompt-only candidate and says so.
    pub min_train_items: usize,
    /// Drop label-conditioned items that the teacher, asked directly, labels differently.
    pub agreement_filter: bool,
    /// Label each label-conditioned item with the teacher's own direct answer instead of the
    /// label it was asked to write for (items it answers outside the label set are dropped;
    /// labels are then balanced to at most twice the rarest). Default on: the 1.5B agrees with
    /// its own label-conditioned items on 25-78% while answering 77-97% of real inputs right
    /// (bench/EVAL.md, eighth and ninth sessions).
    pub relabel: bool,
    /// How the teacher's answers to label-set inputs are read (with `relabel` or
    /// `agreement_filter`). Default calibrated: with `relabel_min_per_label` 4, dev exact match
    /// 51.4% -> 59.5% on seven label tasks, none lower (bench/EVAL.md, sixteenth session).
    pub labelling: Labelling,
    /// With `relabel`: fewest training items the teacher's own answers must give each label
    /// (that items were written for) for relabelling to apply; otherwise every item keeps the
    /// label it was written for, as when the teacher never gives a label. A label the teacher
    /// gives 2 or 3 items would cut every other label to twice that by balancing (spam: 6
    /// training items, no adapter). 1: only a label never given (the behaviour before this
    /// option).
    pub relabel_min_per_label: usize,
    /// With `relabel`: rounds of extra input requests, written for the labels the teacher's
    /// answers give fewer than `relabel_min_per_label` items, before relabelling gives up and
    /// keeps the written-for labels. 0 (default): give up at once.
    pub starved_label_rounds: usize,
    /// The prompt the adapter is trained under (and ships with, if it is kept). Default: the
    /// bare spec, which beat teacher-written pseudo-programs alone on 4 of 6 dev tasks; with
    /// `relabel`, dev exact match 45.6% -> 54.4% (bench/EVAL.md, ninth session).
    pub adapter_prompt: PromptKind,
    /// Kinds of input the teacher lists per label before writing inputs, one kind per request
    /// (label sets only; open outputs always use style hints); 0 uses style hints only.
    pub kinds: usize,
    /// Token budget of the pseudo-program.
    pub pseudo_program_budget: usize,
    /// Adapter storage precision; `None` = the smallest that loses nothing on validation.
    pub adapter_dtype: Option<TensorDtype>,
    /// The program's output contract: inferred (default), given, or none.
    pub contract: ContractRequest,
    /// Store whose stage cache holds finished stages (pseudo-program, training data), so that
    /// an interrupted or repeated compile resumes from them; `None` computes every stage and
    /// caches nothing. Not part of the compile key: it never changes the program.
    pub cache: Option<Store>,
}

/// How the teacher's direct answer to an input of a label set is read (relabelling, the
/// agreement filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Labelling {
    /// The label its greedy reply spells.
    Answer,
    /// The label with the largest first-token probability over the teacher's probability
    /// of it on content-free inputs (its bias divided out); labels that share a first token
    /// fall back to [`Labelling::Answer`].
    #[default]
    Calibrated,
    /// As [`Labelling::Calibrated`], with the prior estimated as the teacher's mean label
    /// probabilities over the inputs being labelled themselves (batch calibration, Zhou et al.
    /// 2024) instead of content-free inputs, whose probabilities can exaggerate a lean (the
    /// 1.5B puts 0.85 on `neutral` for `N/A`, so calibrated sentiment nearly never answers it).
    /// The compile's label-conditioned inputs are written evenly over the labels, so their mean
    /// is the teacher's lean, not the data's. Later rounds of requests reuse the first round's
    /// prior.
    BatchCalibrated,
}

impl std::str::FromStr for Labelling {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "answer" => Ok(Self::Answer),
            "calibrated" => Ok(Self::Calibrated),
            "batch-calibrated" => Ok(Self::BatchCalibrated),
            other => Err(format!(
                "unknown labelling `{other}` (expected `answer`, `calibrated` or \
                 `batch-calibrated`)"
            )),
        }
    }
}

impl std::fmt::Display for Labelling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Answer => "answer",
            Self::Calibrated => "calibrated",
            Self::BatchCalibrated => "batch-calibrated",
        })
    }
}

/// The teacher of a compile, before it is resolved to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeacherChoice<'a> {
    /// The manifest's default teacher.
    Default,
    /// No teacher: train from the trusted examples only.
    None,
    /// A manifest id or a path.
    Model(&'a str),
}

impl CompileOptions {
    /// Options for `spec` with the interpreter (a manifest id or path; `None` is the
    /// manifest's default) and the teacher resolved in `store`, as `paw compile`, `paw build`
    /// and the Python bindings do.
    pub fn resolved(
        spec: impl Into<String>,
        store: &Store,
        interpreter: Option<&str>,
        teacher: TeacherChoice<'_>,
    ) -> std::result::Result<Self, ResolveModelError> {
        let manifest = Manifest::embedded()?;
        let interpreter_ref = interpreter.unwrap_or(&manifest.default_interpreter().id);
        let interpreter = resolve_model(interpreter_ref, store)?;
        let teacher = match teacher {
            TeacherChoice::None => None,
            TeacherChoice::Model(reference) => Some(resolve_model(reference, store)?.path),
            TeacherChoice::Default => {
                Some(resolve_model(&manifest.default_teacher().id, store)?.path)
            }
        };
        let mut opts = Self::new(spec, &interpreter.path);
        opts.interpreter_name = interpreter.entry.as_ref().map(|e| e.id.clone());
        opts.teacher = teacher;
        Ok(opts)
    }

    /// Whether the teacher's direct answers label anything (relabelling or the agreement
    /// filter), so that [`CompileOptions::labelling`] can change the program: only then does it
    /// enter the compile keys and the program's provenance.
    pub(crate) fn labelling_applies(&self) -> bool {
        self.relabel || self.agreement_filter
    }

    /// The labelling settings that can change this compile's program and differ from the
    /// behaviour before they existed (greedy answers, relabel unless a label is never given),
    /// as `(name, value)`. These alone enter the compile key, the data-stage key and the
    /// program's recorded hyperparameters, so that compiles keyed before the options keep their
    /// keys and bytes.
    pub(crate) fn labelling_settings(&self) -> Vec<(&'static str, String)> {
        let mut settings = Vec::new();
        if self.labelling_applies() && self.labelling != Labelling::Answer {
            settings.push(("labelling", self.labelling.to_string()));
        }
        if self.relabel && self.relabel_min_per_label != 1 {
            settings.push((
                "relabel_min_per_label",
                self.relabel_min_per_label.to_string(),
            ));
        }
        if self.relabel && self.starved_label_rounds != 0 {
            settings.push((
                "starved_label_rounds",
                self.starved_label_rounds.to_string(),
            ));
        }
        settings
    }

    pub fn new(spec: impl Into<String>, interpreter: impl Into<PathBuf>) -> Self {
        Self {
            spec: spec.into(),
            examples: Vec::new(),
            interpreter: interpreter.into(),
            interpreter_name: None,
            teacher: None,
            seed: 0,
            train: TrainOptions::default(),
            requests: None,
            train_items: 0,
            inputs_per_request: 1,
            held_out: 24,
            min_train_items: 16,
            agreement_filter: false,
            relabel: true,
            labelling: Labelling::Calibrated,
            relabel_min_per_label: 4,
            starved_label_rounds: 0,
            adapter_prompt: PromptKind::Spec,
            kinds: 8,
            pseudo_program_budget: 250,
            adapter_dtype: None,
            contract: ContractRequest::Infer,
            cache: None,
        }
    }

    /// The checks that need no model: a typed error before any work starts.
    pub(crate) fn check(&self) -> Result<()> {
        if self.spec.trim().is_empty() {
            return Err(CompileError::EmptySpec);
        }
        if self.spec.len() > MAX_SPEC_LEN {
            return Err(CompileError::SpecTooLong {
                len: self.spec.len(),
                max: MAX_SPEC_LEN,
            });
        }
        for (index, (i, o)) in self.examples.iter().enumerate() {
            if i.is_empty() || o.trim().is_empty() {
                return Err(CompileError::EmptyExample { index });
            }
        }
        for p in std::iter::once(&self.interpreter).chain(&self.teacher) {
            if !p.is_file() {
                return Err(CompileError::ModelNotFound(p.clone()));
            }
        }
        if self.teacher.is_none() && self.examples.is_empty() {
            return Err(CompileError::NothingToTrainOn);
        }
        if self.inputs_per_request == 0 {
            return Err(CompileError::ZeroOption {
                name: "inputs_per_request",
            });
        }
        let t = &self.train;
        let counts = [
            ("rank", t.rank),
            ("layers", t.layers),
            ("steps", t.steps),
            ("batch", t.batch),
        ];
        if let Some(&(name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Err(CompileError::ZeroOption { name });
        }
        if t.modules.is_empty() {
            return Err(CompileError::NoTrainModules);
        }
        for (name, value) in [("learning_rate", t.learning_rate), ("alpha", t.alpha)] {
            if value.is_nan() || value <= 0.0 {
                return Err(CompileError::NonPositive { name, value });
            }
        }
        Ok(())
    }

    /// The interpreter's name as the program records it.
    pub(crate) fn interpreter_name(&self) -> String {
        self.interpreter_name.clone().unwrap_or_else(|| {
            self.interpreter
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    /// Teacher requests per label (label sets) or in total (open outputs).
    pub(crate) fn requests_for(&self, labels: Option<&[String]>) -> usize {
        self.requests.unwrap_or(match labels {
            Some(l) => (48 / l.len().max(1)).max(8),
            None => 48,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_bad_training_option_is_named() {
        let model = tempfile::NamedTempFile::new().expect("temp file");
        let base = || {
            let mut o = CompileOptions::new("Say hi.", model.path());
            o.examples = vec![("a".into(), "b".into())];
            o
        };
        assert!(base().check().is_ok());
        let with = |f: &dyn Fn(&mut TrainOptions)| {
            let mut o = base();
            f(&mut o.train);
            o.check().expect_err("invalid")
        };
        assert!(matches!(
            with(&|t| t.layers = 0),
            CompileError::ZeroOption { name: "layers" }
        ));
        assert!(matches!(
            with(&|t| t.modules.clear()),
            CompileError::NoTrainModules
        ));
        let err = with(&|t| t.alpha = -1.0);
        assert!(
            matches!(err, CompileError::NonPositive { name: "alpha", value } if value == -1.0),
            "{err}"
        );
        assert!(matches!(
            with(&|t| t.learning_rate = f64::NAN),
            CompileError::NonPositive {
                name: "learning_rate",
                ..
            }
        ));
    }

    #[test]
    fn labellings_read_back_as_written() {
        for l in [
            Labelling::Answer,
            Labelling::Calibrated,
            Labelling::BatchCalibrated,
        ] {
            assert_eq!(l.to_string().parse::<Labelling>(), Ok(l));
        }
        let err = "batch".parse::<Labelling>().expect_err("unknown");
        assert!(err.contains("batch-calibrated"), "{err}");
    }

    /// The defaults record both labelling settings; the behaviour before the options existed
    /// (greedy answers, never-given rule) and compiles that label nothing record neither, so
    /// their keys and bytes are those of compiles made before.
    #[test]
    fn labelling_settings_only_where_they_change_the_program() {
        let o = CompileOptions::new("Say hi.", "model.gguf");
        assert!(o.relabel);
        assert_eq!(
            o.labelling_settings(),
            [
                ("labelling", "calibrated".to_string()),
                ("relabel_min_per_label", "4".to_string())
            ]
        );
        let mut before = o.clone();
        before.labelling = Labelling::Answer;
        before.relabel_min_per_label = 1;
        assert!(before.labelling_settings().is_empty());
        let mut ask_again = o.clone();
        ask_again.starved_label_rounds = 2;
        assert_eq!(
            ask_again.labelling_settings().last(),
            Some(&("starved_label_rounds", "2".to_string()))
        );
        let mut unlabelled = o.clone();
        unlabelled.relabel = false;
        assert!(unlabelled.labelling_settings().is_empty());
        unlabelled.agreement_filter = true;
        assert_eq!(
            unlabelled.labelling_settings(),
            [("labelling", "calibrated".to_string())]
        );
    }
}
