//! Rendering one user turn with a model's chat template.
//!
//! paw-rt runs fully rendered prompt templates and has no Jinja engine, so the compiler renders
//! them. Only ChatML (`<|im_start|>role\n...<|im_end|>\n`, used by Qwen2.5, Qwen3 and SmolLM2)
//! is supported; its default system message is read from the template text itself so that
//! the rendered prompt equals what the model's own template produces for one user message.

use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};

use crate::error::{CompileError, Result};

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

/// How to wrap one user message for a given model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// System message the template inserts when the conversation has none.
    default_system: Option<String>,
    /// Qwen3-style templates render an empty thinking block when thinking is disabled.
    empty_think: bool,
}

impl ChatTemplate {
    /// Reads `tokenizer.chat_template` from a GGUF file.
    pub fn from_gguf_file(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|error| CompileError::Io {
            path: path.to_path_buf(),
            error,
        })?;
        let ct = paw_rt::read_content(&mut std::io::BufReader::new(file))?;
        Self::from_gguf(&ct, &path.display().to_string())
    }

    /// Reads `tokenizer.chat_template` from a parsed GGUF header of the model `name`.
    pub fn from_gguf(ct: &Content, name: &str) -> Result<Self> {
        match ct.metadata.get("tokenizer.chat_template") {
            Some(Value::String(t)) => Self::parse(t, name),
            _ => Err(CompileError::UnsupportedChatTemplate {
                model: name.to_string(),
            }),
        }
    }

    /// Recognises a ChatML template and extracts its default system message.
    pub fn parse(template: &str, model: &str) -> Result<Self> {
        if !template.contains(IM_START) || !template.contains(IM_END) {
            return Err(CompileError::UnsupportedChatTemplate {
                model: model.to_string(),
            });
        }
        // Templates write newlines either literally or as `\n` escapes inside string literals.
        let t = template.replace("\\n", "\n");
        let marker = format!("{IM_START}system\n");
        let default_system = t.match_indices(&marker).find_map(|(i, _)| {
            let rest = &t[i + marker.len()..];
            let end = rest.find(IM_END)?;
            let text = &rest[..end];
            // A dynamic branch (`' + messages[0]['content'] + '`) is template code, not text.
            (!text.contains(['\'', '"', '{', '+'])).then(|| text.to_string())
        });
        Ok(Self {
            default_system,
            empty_think: t.contains("enable_thinking"),
        })
    }

    /// The prompt for one user message with the generation prompt added (thinking disabled).
    pub fn render_user(&self, user: &str) -> String {
        let mut s = String::new();
        if let Some(sys) = &self.default_system {
            s.push_str(&format!("{IM_START}system\n{sys}{IM_END}\n"));
        }
        s.push_str(&format!(
            "{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"
        ));
        if self.empty_think {
            s.push_str("<think>\n\n</think>\n\n");
        }
        s
    }

    /// The text that ends an assistant turn; the trained adapter learns to emit it.
    pub fn end_of_turn(&self) -> &'static str {
        IM_END
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smollm_and_qwen_defaults() {
        let smol = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}";
        let t = ChatTemplate::parse(smol, "smol").expect("chatml");
        assert_eq!(
            t.render_user("hi"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        let qwen = r"{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}";
        let t = ChatTemplate::parse(qwen, "qwen").expect("chatml");
        assert!(t.render_user("x").starts_with(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nx"
        ));
        assert!(ChatTemplate::parse("[INST] {{ m }} [/INST]", "llama2").is_err());
    }
}
