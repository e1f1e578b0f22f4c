//! The compile report: one typed value per stage, gathered into [`CompileReport`], and turned
//! into the program's provenance text (string pairs) only when the container is written.
//!
//! The provenance keys and texts are part of the program's bytes: [`CompileReport::to_provenance`]
//! must keep them stable (the goldens in `tests/golden.rs` check it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pseudo_program::Source;
use crate::train::TrainReport;

/// What every stage of one compile reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompileReport {
    /// The label set the spec names, or `None` for open outputs.
    pub label_set: Option<Vec<String>>,
    /// The program's output contract (one line) and where it came from.
    #[serde(default)]
    pub contract: ContractReport,
    pub pseudo_program: PseudoProgramReport,
    pub data: DataReport,
    /// `None` when too little data was gathered to train an adapter.
    pub training: Option<TrainReport>,
    pub runtime_check: Option<RuntimeCheck>,
    /// The held-out comparison; `None` when there was no held-out data.
    pub held_out: Option<HeldOutReport>,
    /// Whether the trained adapter ships, or why not.
    pub adapter: AdapterVerdict,
    /// The prompt the program runs with.
    pub prompt: PromptKind,
}

/// The prompt a program runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PromptKind {
    /// The pseudo-program the compiler wrote.
    PseudoProgram,
    /// The user's spec, as written.
    Spec,
}

impl std::str::FromStr for PromptKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "pseudo-program" => Ok(Self::PseudoProgram),
            "spec" => Ok(Self::Spec),
            other => Err(format!(
                "unknown prompt `{other}` (expected `pseudo-program` or `spec`)"
            )),
        }
    }
}

impl std::fmt::Display for PromptKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PseudoProgram => "pseudo-program",
            Self::Spec => "spec",
        })
    }
}

/// The output contract the program carries.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContractReport {
    /// `OutputContract::summary`, or `None` for no contract.
    pub summary: Option<String>,
    /// `ContractSource` as displayed: given, inferred from what, or why there is none.
    pub source: String,
}

/// Stage 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PseudoProgramReport {
    pub source: Source,
    /// Length of the rendered pseudo-program in interpreter tokens.
    pub tokens: usize,
    pub examples: usize,
}

/// Stage 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataReport {
    pub train: usize,
    pub validation: usize,
    pub rejected: usize,
    /// Items (training and held-out) dropped because their output breaks the contract.
    #[serde(default)]
    pub contract_rejected: usize,
    /// Items (training and held-out) per label, in the label set's order; label sets only.
    pub per_label: Option<Vec<(String, usize)>>,
    pub teacher_direct: TeacherDirect,
    /// Labels the teacher gave too few of its own inputs, so relabelling was not applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_refused: Vec<String>,
    /// Labels the teacher's answers first gave too few items, asked for again (with
    /// `starved_label_rounds`), as `(label, extra inputs asked for)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabel_asked_again: Vec<(String, usize)>,
    /// With a calibrated labelling: the teacher's mean label probabilities on content-free
    /// inputs, or on the labelled inputs themselves with `batch-calibrated` (`label=p,...`),
    /// the bias divided out of its answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_prior: Option<String>,
}

/// The teacher's own one-shot answers on the held-out split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeacherDirect {
    /// This many of them equal the held-out labels.
    Hits(usize),
    /// Not asked: the held-out labels are the teacher's own answers.
    LabelsAreAnswers,
    /// No teacher, or no held-out split.
    NotMeasured,
}

/// The packed f32 adapter run through paw-rt against the trainer's own forward pass, on the
/// first output token of up to 8 rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeCheck {
    /// Rows whose most probable first token agrees.
    pub agreeing: usize,
    pub rows: usize,
    pub max_logit_diff: f32,
}

/// Stage 4 on the held-out split: exact-match hits of each candidate program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldOutReport {
    pub items: usize,
    pub pseudo_program_only: usize,
    /// The bare spec as the prompt, no adapter.
    pub spec_prompt_only: usize,
    /// `None` (and the precisions empty) when no adapter was trained.
    pub adapter_f32: Option<usize>,
    /// Each storage precision tried (as `TensorDtype` displays it), in order, with its hits.
    pub adapter_at: Vec<(String, usize)>,
    /// Hits of the adapter at the precision chosen.
    pub adapter: Option<usize>,
}

/// Whether the adapter ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdapterVerdict {
    Kept,
    /// Early stopping rewound to step 0: the update is zero.
    NoStepHelped,
    /// A prompt alone got more held-out items right than the adapter.
    LostToPrompt {
        prompt: PromptKind,
        prompt_hits: usize,
        adapter: usize,
        items: usize,
    },
    /// The teacher's data left fewer training items than the compile's minimum.
    TooLittleData {
        items: usize,
        min: usize,
    },
}

impl AdapterVerdict {
    pub fn is_kept(&self) -> bool {
        matches!(self, Self::Kept)
    }
}

impl std::fmt::Display for AdapterVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kept => f.write_str("kept"),
            Self::NoStepHelped => {
                f.write_str("dropped: no training step lowered the held-out loss")
            }
            Self::LostToPrompt {
                prompt,
                prompt_hits,
                adapter,
                items,
            } => write!(
                f,
                "dropped: the {prompt} alone got {prompt_hits} of {items} held-out items \
                 right, with the adapter {adapter}"
            ),
            Self::TooLittleData { items, min } => write!(
                f,
                "not trained: only {items} training items survived the checks (at least \
                 {min} needed); the program is the best prompt alone"
            ),
        }
    }
}

/// `hits` of `n` as a percentage with one decimal, as the compile report shows exact match.
pub(crate) fn pct(hits: usize, n: usize) -> String {
    format!("{:.1}", 100.0 * hits as f64 / n.max(1) as f64)
}

impl CompileReport {
    /// The report as the program's provenance records it: `key = text` pairs.
    pub fn to_provenance(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put(
            "label_set",
            self.label_set
                .as_ref()
                .map_or("none (open output)".to_string(), |l| l.join(",")),
        );
        put(
            "contract",
            self.contract
                .summary
                .clone()
                .unwrap_or_else(|| "none".into()),
        );
        put("contract_source", self.contract.source.clone());
        let pp = &self.pseudo_program;
        put("pseudo_program_source", pp.source.to_string());
        put("pseudo_program_tokens", pp.tokens.to_string());
        put("pseudo_program_examples", pp.examples.to_string());

        let d = &self.data;
        put("data_train", d.train.to_string());
        put("data_validation", d.validation.to_string());
        put("data_rejected", d.rejected.to_string());
        put("data_contract_rejected", d.contract_rejected.to_string());
        if let Some(counts) = &d.per_label {
            let counts: Vec<String> = counts.iter().map(|(l, n)| format!("{l}={n}")).collect();
            put("data_per_label", counts.join(","));
        }
        if !d.relabel_refused.is_empty() {
            put("data_relabel_refused", d.relabel_refused.join(","));
        }
        if !d.relabel_asked_again.is_empty() {
            let asked: Vec<String> = d
                .relabel_asked_again
                .iter()
                .map(|(l, n)| format!("{l}={n}"))
                .collect();
            put("data_relabel_asked_again", asked.join(","));
        }
        if let Some(prior) = &d.teacher_prior {
            put("data_teacher_prior", prior.clone());
        }
        match d.teacher_direct {
            TeacherDirect::Hits(hits) => {
                put("val_exact_match_teacher_direct", pct(hits, d.validation))
            }
            TeacherDirect::LabelsAreAnswers => put(
                "val_exact_match_teacher_direct",
                "n/a (the held-out labels are the teacher's answers)".into(),
            ),
            TeacherDirect::NotMeasured => {}
        }

        if let Some(t) = &self.training {
            put("train_steps_run", t.steps_run.to_string());
            put("train_best_step", t.best_step.to_string());
            put(
                "train_loss_initial",
                format!("{:.4}", t.train_loss_initial_full),
            );
            put(
                "train_loss_final",
                format!("{:.4}", t.train_loss_final_full),
            );
            if let (Some(a), Some(b)) = (t.val_loss_initial, t.val_loss_best) {
                put("val_loss_initial", format!("{a:.4}"));
                put("val_loss_best", format!("{b:.4}"));
            }
        }
        if let Some(r) = &self.runtime_check {
            put(
                "runtime_first_token_agreement",
                format!("{}/{}", r.agreeing, r.rows),
            );
            put("runtime_max_logit_diff", format!("{:.3}", r.max_logit_diff));
        }

        match &self.held_out {
            Some(h) => {
                put(
                    "val_exact_match_pseudo_program_only",
                    pct(h.pseudo_program_only, h.items),
                );
                put(
                    "val_exact_match_spec_prompt_only",
                    pct(h.spec_prompt_only, h.items),
                );
                if let Some(hits) = h.adapter_f32 {
                    put("val_exact_match_adapter_f32", pct(hits, h.items));
                }
                for (dtype, hits) in &h.adapter_at {
                    put(
                        &format!("val_exact_match_adapter_{dtype}"),
                        pct(*hits, h.items),
                    );
                }
                if let Some(hits) = h.adapter {
                    put("val_exact_match_adapter", pct(hits, h.items));
                }
            }
            None => put("val_exact_match_adapter", "n/a (no held-out data)".into()),
        }
        put("adapter", self.adapter.to_string());
        put("prompt", self.prompt.to_string());
        m
    }
}
