//! Running a model as a plain chat assistant through paw-rt: a prompt-only program whose
//! template is the model's chat template around one user message.

use std::path::Path;

use paw_format::{GenerationConfig, Program, INPUT_PLACEHOLDER};
use paw_rt::{CallOptions, Function, Interpreter};

use crate::chat::ChatTemplate;
use crate::error::Result;

/// A loaded chat model answering whole user messages.
#[derive(Debug)]
pub(crate) struct ChatModel {
    function: Function,
    /// Rows per batched call; bounded so that one slow batch does not stall progress.
    batch: usize,
}

impl ChatModel {
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let interpreter = Interpreter::load(path)?;
        let chat = ChatTemplate::from_gguf_file(path)?;
        let program = Program::prompt_only(
            "",
            chat.render_user(INPUT_PLACEHOLDER),
            interpreter.identity().clone(),
            GenerationConfig {
                max_tokens: 256,
                stop: Vec::new(),
                temperature: 0.0,
            },
        );
        let function = interpreter.bind(&program)?;
        Ok(Self { function, batch: 8 })
    }

    /// Answers each message; `temperature` 0 is greedy. Each batch gets its own seed derived
    /// from `seed`, so identical messages in different batches still differ when sampling.
    /// `one_line` stops each answer at its first newline (after some text): replies that
    /// must be one line then cost no tokens beyond it.
    pub(crate) fn ask(
        &self,
        messages: &[String],
        max_tokens: u32,
        temperature: f32,
        seed: u64,
        one_line: bool,
        mut on_batch: impl FnMut(usize),
    ) -> Result<Vec<String>> {
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
            for o in self.function.call_batch(&refs, &opts)? {
                out.push(o.text);
            }
            on_batch(out.len());
        }
        Ok(out)
    }
}
