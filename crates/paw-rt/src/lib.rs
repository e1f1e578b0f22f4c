//! paw-rt: load a frozen interpreter model (GGUF file or Hugging Face safetensors directory),
//! bind compiled `.paw` programs to it (LoRA adapter applied unmerged on the base weights, prompt
//! prefix KV-cached) and run them.
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
//! Execution: the prompt template is split at its single `{INPUT_PLACEHOLDER}`; the fixed
//! parts are tokenized with control tokens recognised, the input as plain text (so `<|im_end|>`
//! typed by a user stays ordinary characters). The prefix's KV cache is computed once at
//! [`Interpreter::bind`] with the adapter active. Decoding is greedy unless a temperature is
//! given (then nucleus sampling from an explicit seed) and stops at any end-of-generation token
//! the model declares, at stop strings, or at `max_tokens`. Prefix + input + suffix + max_tokens
//! must fit the context window, otherwise [`Error::ContextOverflow`] says by how much.
//!
//! Batching: [`Function::call_batch`] right-pads the inputs into batches of up to
//! [`MAX_BATCH_ROWS`] rows that share the prefix cache. The projections and MLPs run over the
//! whole batch (their rows are independent); attention runs row by row over each row's own
//! key/value cache, with exactly the shapes a single call uses, so each output equals the
//! corresponding single call bit for bit.
//!
//! Weights stay quantized, one copy each: Q8_0 and Q5_0 tensors run on paw-rt's own kernels
//! (`kernels.rs`, the only module with `unsafe`: AVX512-VNNI over 16-row tiles where the CPU
//! has it, else AVX2 or scalar over the file's own blocks), other block types on candle's
//! `QMatMul`; a tied embedding table is held once for lookup and LM head. LoRA is applied
//! unmerged: `y = W·x + (alpha/rank)·B·(A·x)` on q, k, v, o, gate, up and down.
//!
//! Threading: [`Interpreter`] and [`Function`] are `Send + Sync` and cheap to clone; there is
//! no global mutable state. Concurrent `call`s run in parallel (no lock), each with its own
//! cache; they share the CPU through candle's thread pool.
//!
//! Training (feature `train`, used by paw-compile): `train::TrainModel` is this same model,
//! loaded by the same code and run by the same decoder block, with differentiable kernels where
//! gradients flow; a service needs none of it.

mod contract;
pub mod error;
mod function;
mod ggml;
mod gguf;
mod hash_cache;
mod hf;
#[allow(unsafe_code)]
mod kernels;
mod lora;
mod matmul;
mod model;
mod rng;
mod sampling;
mod tokenizer;
#[cfg(feature = "train")]
pub mod train;

pub use contract::{ContractChecker, ContractOutcome};
pub use error::{Error, Result};
pub use function::{
    CallOptions, Function, Interpreter, LoadOptions, Output, Quantization, StopReason, Timings,
    DEFAULT_CONTEXT_WINDOW, MAX_BATCH_ROWS,
};
pub use gguf::{read_content, tokenizer_hash, Architecture, ModelConfig};
pub use hf::{check_hf_configs, hf_module_path};
pub use rng::SplitMix64;
pub use tokenizer::{HfSpecialTokens, Tokenizer};

/// The identity of the interpreter at `path` without loading its weights: a GGUF file or a
/// Hugging Face safetensors directory (`spec/interpreter-identity.md`). `name` defaults to the
/// file or directory name. A loaded interpreter gives the same from [`Interpreter::identity`].
pub fn identity(path: &std::path::Path, name: Option<&str>) -> Result<paw_format::InterpreterId> {
    if path.is_dir() {
        hf::identity(path, name)
    } else {
        gguf::identity(path, name)
    }
}

/// `b3:<hex>` weights hash of the interpreter at `path` (GGUF file or safetensors directory),
/// as `spec/interpreter-identity.md` defines it. Memoized per process: a model file is read
/// again only when its path, length or modification time changes.
pub fn weights_hash(path: &std::path::Path) -> Result<String> {
    if path.is_dir() {
        hf::weights_hash(path)
    } else {
        gguf::weights_hash(path)
    }
}
