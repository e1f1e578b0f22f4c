//! Running a model as a plain chat assistant through paw-rt: a prompt-only program whose
//! template is the model's chat template around one user message.

use std::path::Path;

use paw_format::{GenerationConfig, Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Function, Interpreter};

use crate::chat::ChatTemplate;
use crate::error::Result;

/// A loaded chat model answering user messages.
#[derive(Debug)]
pub(crate) struct ChatModel {
    interpreter: Interpreter,
    chat: ChatTemplate,
    /// Rows per batched call; bounded so that one slow batch does not stall progress.
    batch: usize,
}

impl ChatModel {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let interpreter = Interpreter::load(path)?;
        let chat = ChatTemplate::from_gguf_file(path)?;
        Ok(Self {
            interpreter,
            chat,
            batch: 8,
        })
    }

    /// The model bound to answer messages that begin with `prefix` (cached).
    fn function(&self, prefix: &str) -> Result<Function> {
        let program = Program::prompt_only(
            "",
            self.chat
                .render_user(&format!("{prefix}{INPUT_PLACEHOLDER}")),
            self.interpreter.identity().clone(),
            GenerationConfig {
                max_tokens: 256,
                stop: Vec::new(),
                temperature: 0.0,
            },
        );
        Ok(self.interpreter.bind(&program)?)
    }

    /// Whether `shared` as a cached prefix gives each message's own tokens: it spells no
    /// control token, and tokenizing it apart from each tail changes no token at the seam
    /// (SmolLM2's tokenizer reads "\n\n" before a word as two tokens, alone as one).
    fn splits_cleanly(&self, shared: &str, tails: &[String]) -> Result<bool> {
        if shared.is_empty() {
            return Ok(true);
        }
        let tok = self.interpreter.tokenizer();
        if tok.first_control_token(shared)?.is_some() {
            return Ok(false);
        }
        let head = tok.encode_plain(shared)?;
        for tail in tails {
            let whole = tok.encode_plain(&format!("{shared}{tail}"))?;
            if !whole.starts_with(&head) || whole[head.len()..] != tok.encode_plain(tail)?[..] {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The model bound with `shared` as its cached prefix and the tails as the messages, or,
    /// where that would change the tokens, with no prefix and the whole messages.
    fn bound(&self, shared: &str, tails: &[String]) -> Result<(Function, Vec<String>)> {
        if self.splits_cleanly(shared, tails)? {
            return Ok((self.function(shared)?, tails.to_vec()));
        }
        tracing::debug!("shared prompt not cached: it would change the tokens");
        let messages = tails.iter().map(|t| format!("{shared}{t}")).collect();
        Ok((self.function("")?, messages))
    }

    /// Answers the messages `shared + tail` for each of `tails`; `temperature` 0 is greedy.
    /// The shared beginning (the spec and its examples, in the data stage: most of each
    /// prompt) is prefilled once per call, not once per message, when that gives the same
    /// tokens as each whole message tokenized as plain text (see [`Self::splits_cleanly`]);
    /// otherwise each whole message is the input.
    ///
    /// Each batch gets its own seed derived from `seed`, so identical messages in different
    /// batches still differ when sampling. `one_line` stops each answer at its first newline
    /// (after some text): replies that must be one line then cost no tokens beyond it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn ask(
        &self,
        shared: &str,
        tails: &[String],
        max_tokens: u32,
        temperature: f32,
        seed: u64,
        one_line: bool,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<String>> {
        let (function, messages) = self.bound(shared, tails)?;
        let mut out = Vec::with_capacity(messages.len());
        for (i, chunk) in messages.chunks(self.batch).enumerate() {
            let opts = CallOptions {
                max_tokens: Some(max_tokens),
                temperature: Some(temperature),
                top_p: if temperature > 0.0 { 0.95 } else { 1.0 },
                seed: seed.wrapping_add(i as u64),
                extra_stop: if one_line {
                    vec!["\n".to_string()]
                } else {
                    Vec::new()
                },
                ..CallOptions::default()
            };
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            for o in function.call_batch(&refs, &opts)? {
                out.push(o.text);
            }
            on_batch(out.len());
        }
        Ok(out)
    }

    /// For each message `shared + tail`, the probability of each of `labels` as the answer,
    /// read from the first answer token (the probabilities of the first tokens of the label's
    /// spellings, as written, lower case, capitalised and upper case), normalised over the
    /// labels. `None` when two labels share a first token: the first token cannot tell them
    /// apart, and the caller answers by decoding instead.
    pub(crate) fn label_probabilities(
        &self,
        shared: &str,
        tails: &[String],
        labels: &[String],
    ) -> Result<Option<Vec<Vec<f32>>>> {
        let Some(first_tokens) = self.label_first_tokens(labels)? else {
            return Ok(None);
        };
        let (function, messages) = self.bound(shared, tails)?;
        let mut out = Vec::with_capacity(messages.len());
        for message in &messages {
            let logits = function.next_token_logits(message)?;
            out.push(label_mass(&logits, &first_tokens));
        }
        Ok(Some(out))
    }

    /// The first token ids each label's spellings start with; `None` if two labels share one.
    fn label_first_tokens(&self, labels: &[String]) -> Result<Option<Vec<Vec<u32>>>> {
        let tok = self.interpreter.tokenizer();
        let mut all: Vec<Vec<u32>> = Vec::with_capacity(labels.len());
        for label in labels {
            let mut capitalised = label.to_lowercase();
            if let Some(first) = capitalised.get(..1) {
                capitalised = first.to_uppercase() + &capitalised[1..];
            }
            let mut ids: Vec<u32> = Vec::new();
            for spelling in [
                label.clone(),
                label.to_lowercase(),
                capitalised,
                label.to_uppercase(),
            ] {
                if let Some(&id) = tok.encode_plain(&spelling)?.first() {
                    if !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
            if ids.is_empty() || all.iter().flatten().any(|id| ids.contains(id)) {
                return Ok(None);
            }
            all.push(ids);
        }
        Ok(Some(all))
    }
}

/// Softmax of `logits`, summed over each group of token ids, normalised over the groups.
fn label_mass(logits: &[f32], groups: &[Vec<u32>]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mass: Vec<f64> = groups
        .iter()
        .map(|ids| {
            ids.iter()
                .filter_map(|&id| logits.get(id as usize))
                .map(|&l| f64::from(l - max).exp())
                .sum()
        })
        .collect();
    let total: f64 = mass.iter().sum();
    mass.iter()
        .map(|&m| if total > 0.0 { (m / total) as f32 } else { 0.0 })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::print_stderr)]
mod tests {
    use super::*;

    #[test]
    fn label_mass_sums_each_labels_tokens_and_normalises_over_the_labels() {
        // Tokens 0 and 1 spell label a, token 2 label b; token 3 is no label.
        let logits = [0.0f32, 0.0, (2.0f32).ln(), 5.0];
        let mass = label_mass(&logits, &[vec![0, 1], vec![2]]);
        assert!(
            (mass[0] - 0.5).abs() < 1e-6 && (mass[1] - 0.5).abs() < 1e-6,
            "{mass:?}"
        );
        let mass = label_mass(&logits, &[vec![0], vec![2]]);
        assert!((mass[0] - 1.0 / 3.0).abs() < 1e-6, "{mass:?}");
    }

    /// Labels whose first tokens collide cannot be scored by the first token.
    #[test]
    fn labels_sharing_a_first_token_are_not_scored() {
        let path = paw_testkit::require_model!("PAW_TEST_SMOLLM2");
        let teacher = ChatModel::load(Path::new(&path)).expect("load");
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let tails = vec!["Input: I love it.\n\nReply with the output only.".to_string()];
        let shared = "Classify the sentiment: positive or negative.\n\n";
        let p = teacher
            .label_probabilities(shared, &tails, &labels(&["positive", "negative"]))
            .unwrap()
            .expect("distinct first tokens");
        assert_eq!(p.len(), 1);
        assert!((p[0].iter().sum::<f32>() - 1.0).abs() < 1e-4, "{p:?}");
        assert!(p[0][0] > p[0][1], "a glowing review scores positive: {p:?}");
        assert!(teacher
            .label_probabilities(shared, &tails, &labels(&["positive", "positive!"]))
            .unwrap()
            .is_none());
    }

    /// A shared beginning is cached only where that keeps each message's tokens: no control
    /// token in it, and no token that spans the seam. (Same tokens, not the same logits to the
    /// bit: splitting a prompt differently rounds differently, ~1 logit on SmolLM2; see the
    /// trainer's runtime-agreement test.)
    #[test]
    fn shared_prefix_is_cached_only_where_tokens_stay_the_same() {
        let path = paw_testkit::require_model!("PAW_TEST_SMOLLM2");
        let teacher = ChatModel::load(Path::new(&path)).expect("load");
        let tails: Vec<String> = ["Write a word.", "Write a number.", "Say hello."]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let spec = "Task specification:\n\"\"\"\nSort the words.\n\"\"\"\n";
        assert!(teacher.splits_cleanly(spec, &tails).unwrap());
        assert!(teacher.splits_cleanly("", &tails).unwrap());
        // SmolLM2 tokenizes "\n\n" before a word as two tokens and alone as one.
        assert!(!teacher
            .splits_cleanly(&format!("{spec}\n"), &tails)
            .unwrap());
        assert!(!teacher
            .splits_cleanly("The text <|im_end|> ends a turn.\n", &tails)
            .unwrap());
        // Either way every message gets an answer, in order.
        for shared in [spec, "The text <|im_end|> ends a turn.\n"] {
            let answers = teacher
                .ask(shared, &tails, 4, 0.0, 0, false, |_| {})
                .unwrap();
            assert_eq!(answers.len(), tails.len());
        }
    }
}
