//! Running a model as a plain chat assistant through paw-rt: a prompt-only program whose
//! template is the model's chat template around one user message.

use std::path::Path;

use paw_format::{GenerationConfig, Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Interpreter};

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

    /// Answers the messages `shared + tail` for each of `tails`; `temperature` 0 is greedy.
    /// The shared beginning (the spec and its examples, in the data stage: most of each
    /// prompt) is prefilled once per call, not once per message. Text in it that the tokenizer
    /// would read as control tokens is not put in the cached prefix: then each whole message is
    /// tokenized as plain text, as the tails always are.
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
        let tokenizer = self.interpreter.tokenizer();
        let cacheable =
            tokenizer.encode_with_specials(shared)? == tokenizer.encode_plain(shared)?;
        let (prefix, messages): (&str, Vec<String>) = if cacheable {
            (shared, tails.to_vec())
        } else {
            tracing::debug!("control-token text in the shared prompt: not cached");
            ("", tails.iter().map(|t| format!("{shared}{t}")).collect())
        };
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
        let function = self.interpreter.bind(&program)?;
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
}
