//! The in-memory model of one compiled fuzzy function: what a `.paw` file holds.

use std::collections::BTreeMap;

/// The literal that marks where the user's input goes in [`Program::prompt_template`].
pub const INPUT_PLACEHOLDER: &str = "{INPUT_PLACEHOLDER}";

/// One compiled fuzzy function.
#[derive(Debug, Clone, PartialEq)]
pub struct Program {
    /// The spec text the user wrote.
    pub spec: String,
    /// The pseudo-program (task restatement + examples) the interpreter sees.
    pub pseudo_program: String,
    /// The fully rendered prompt (chat template applied, generation prompt added) with exactly
    /// one [`INPUT_PLACEHOLDER`].
    pub prompt_template: String,
    /// Which base model this program was compiled for.
    pub interpreter: InterpreterId,
    /// The LoRA adapter; `None` for a prompt-only program.
    pub adapter: Option<Adapter>,
    pub generation: GenerationConfig,
    pub provenance: Provenance,
}

/// Identity of the frozen base model a program runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpreterId {
    /// Architecture name as in GGUF `general.architecture`: `qwen2`, `qwen3`, `llama`.
    pub architecture: String,
    /// Human-readable model id (manifest id or file name); informational only.
    pub name: String,
    /// `b3:<hex>` BLAKE3 of the weights file bytes (GGUF file, or safetensors files concatenated
    /// in sorted file-name order).
    pub weights_hash: String,
    /// `b3:<hex>` BLAKE3 of the canonical tokenizer description (see spec/paw-format.md).
    pub tokenizer_hash: String,
}

/// Projection a LoRA pair attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TargetModule {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

/// Storage type of an adapter tensor. Q8_0 and Q4_0 use ggml's block layout (32 values per
/// block, an f16 scale first) so that a runtime can hand the bytes to a ggml-compatible kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorDtype {
    F32,
    F16,
    Q8_0,
    Q4_0,
}

/// A 2-D tensor as stored: row-major `[rows, cols]`; quantized rows are blocked along `cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub dtype: TensorDtype,
    pub shape: [u64; 2],
    pub bytes: Vec<u8>,
}

/// The A/B pair for one (layer, module). `a` is `[rank, in_features]`, `b` is
/// `[out_features, rank]`; the update is `(alpha / rank) * B · A`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraPair {
    pub layer: u32,
    pub module: TargetModule,
    pub a: TensorData,
    pub b: TensorData,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adapter {
    pub rank: u32,
    pub alpha: f32,
    /// Sorted by (layer, module); at most one pair per (layer, module).
    pub pairs: Vec<LoraPair>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    pub max_tokens: u32,
    /// Extra stop strings besides the model's end-of-generation tokens.
    pub stop: Vec<String>,
    /// `0.0` means greedy.
    pub temperature: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub compiler: String,
    pub compiler_version: String,
    /// `b3:<hex>` of the teacher weights file, or `None` when compiled from examples only.
    pub teacher_hash: Option<String>,
    pub seed: u64,
    /// Hyperparameters as text (learning rate, steps, ...), sorted by key.
    pub hyperparameters: BTreeMap<String, String>,
    /// Compile report (validation accuracy, data counts, ...), sorted by key.
    pub report: BTreeMap<String, String>,
}
