//! paw-rt: load a frozen interpreter model (GGUF), bind compiled `.paw` programs to it (LoRA
//! adapter applied unmerged on the quantized base, prompt prefix KV-cached) and run them.
//!
//! ```no_run
//! use paw_rt::{CallOptions, Interpreter};
//! # fn run(program: &paw_format::Program) -> paw_rt::Result<()> {
//! let interpreter = Interpreter::load("/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")?;
//! let f = interpreter.bind(program)?;
//! let one = f.call("ERROR: disk /dev/sda1 full", &CallOptions::default())?;
//! let many = f.call_batch(&["a", "b"], &CallOptions::default())?;
//! println!("{} ({} tokens)", one.text, one.generated_tokens);
//! # let _ = many; Ok(()) }
//! ```
//!
//! Threading: [`Interpreter`] and [`Function`] are `Send + Sync` and cheap to clone; there is
//! no global mutable state. Concurrent `call`s run in parallel (no lock), each with its own
//! cache; they share the CPU through candle's thread pool.

pub mod error;
mod function;
mod ggml;
pub mod gguf;
mod lora;
mod model;
mod sampling;
pub mod tokenizer;

pub use error::{Error, Result};
pub use function::{
    CallOptions, Function, Interpreter, LoadOptions, Output, StopReason, Timings,
    DEFAULT_CONTEXT_WINDOW,
};
pub use gguf::{Architecture, ModelConfig};
pub use tokenizer::Tokenizer;
