//! Loading an interpreter, binding programs to it, and running them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, IndexOp, Tensor};
use paw_format::{GenerationConfig, InterpreterId, OutputContract, Program, INPUT_PLACEHOLDER};

use crate::contract::{CompiledContract, ContractOutcome, GrammarEnv, RowContract};
use crate::error::{Error, Result};
use crate::gguf::{self, ModelConfig};
use crate::hf;
use crate::lora::LoraWeights;
use crate::model::{self, GgufSource, KvCache, Model, Step, WeightSource};
use crate::rng::SplitMix64;
use crate::sampling::Sampler;
use crate::tokenizer::Tokenizer;

/// The window the published runtime shares between program, input and output.
pub const DEFAULT_CONTEXT_WINDOW: usize = 2048;

/// Prompt tokens are fed through the model in chunks of this many positions, which bounds the
/// size of the attention score matrix for long prompts.
const PREFILL_CHUNK: usize = 512;

/// Rows decoded together by [`Function::call_batch`]. Each row holds its own copy of the
/// prefix's key/value cache (so that it computes exactly what a single call does), ~25 KB per
/// position on Qwen2.5-0.5B: 64 rows behind a 400-token prompt held 630 MB. Beyond 16 rows a
/// decode step gains little, since it is bound by reading the weights once per step.
pub const MAX_BATCH_ROWS: usize = 16;

/// Options for [`Interpreter::load_with`].
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Tokens shared by program prefix, input and output. Capped at the model's trained context.
    pub context_window: usize,
    /// Human-readable interpreter name recorded in the identity (defaults to the file or
    /// directory name).
    pub name: Option<String>,
    /// Quantize float (f32/f16/bf16) projection and LM-head weights in memory, e.g. those of a
    /// safetensors directory, which otherwise run exactly in f32. Already-quantized GGUF
    /// weights are kept. The identity does not change (it names the files, not the in-memory
    /// precision), but outputs may differ slightly from the exact weights'.
    pub quantize: Option<Quantization>,
}

/// In-memory quantization of float weights ([`LoadOptions::quantize`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quantization {
    /// ggml Q8_0: 8-bit values with one f16 scale per 32 (8.5 bits per weight).
    Q8_0,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            context_window: DEFAULT_CONTEXT_WINDOW,
            name: None,
            quantize: None,
        }
    }
}

#[derive(Debug)]
struct InterpreterInner {
    model: Model,
    tokenizer: Tokenizer,
    identity: InterpreterId,
    window: usize,
    path: PathBuf,
    /// Built on the first program with a grammar contract.
    grammar_env: OnceLock<Arc<GrammarEnv>>,
}

/// A frozen base model (GGUF file or safetensors directory) ready to run programs. Cheap to
/// clone; `Send + Sync`.
///
/// ```no_run
/// use paw_rt::{CallOptions, Interpreter};
/// # fn run(program: &paw_format::Program) -> paw_rt::Result<()> {
/// let interpreter = Interpreter::load("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")?;
/// let function = interpreter.bind(program)?; // checks identity, computes the prefix cache
/// let out = function.call("2024-01-05 ERROR disk full", &CallOptions::default())?;
/// assert!(out.generated_tokens > 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Interpreter {
    inner: Arc<InterpreterInner>,
}

impl Interpreter {
    /// Loads a GGUF model with [`LoadOptions::default`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::load_with(path, &LoadOptions::default())
    }

    /// Loads a GGUF file, or a Hugging Face directory (`config.json`, `*.safetensors`,
    /// `tokenizer.json`; see `crate::hf`) whose float weights are kept in f32 unless
    /// [`LoadOptions::quantize`] says otherwise.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Self> {
        let path = path.as_ref();
        let t0 = Instant::now();
        let device = Device::Cpu;
        let (cfg, tokenizer, weights_hash, tokenizer_hash, mut source) = if path.is_dir() {
            let dir = hf::HfDir::open(path)?;
            let tokenizer = dir.tokenizer()?;
            let weights_hash = dir.weights_hash()?;
            let source: Box<dyn WeightSource> = Box::new(dir.weights(&device)?);
            let cfg = dir.config.model.clone();
            (cfg, tokenizer, weights_hash, dir.tokenizer_hash(), source)
        } else {
            // One open for hashing and loading: the weights loaded are the bytes hashed.
            let file = std::fs::File::open(path).map_err(|error| Error::Io {
                path: path.to_path_buf(),
                error,
            })?;
            let weights_hash = gguf::weights_hash_of_open(path, &file)?;
            let (content, reader) = model::open_file(file)?;
            let cfg = ModelConfig::from_gguf(&content)?;
            let tokenizer = Tokenizer::from_gguf(&content)?;
            let tokenizer_hash = gguf::tokenizer_hash(&content);
            let source: Box<dyn WeightSource> = Box::new(GgufSource { content, reader });
            (cfg, tokenizer, weights_hash, tokenizer_hash, source)
        };
        let window = opts.context_window.min(cfg.context_length).max(1);
        let name = opts.name.clone().unwrap_or_else(|| hf::path_name(path));
        let identity = InterpreterId {
            architecture: cfg.architecture.name().to_string(),
            name,
            weights_hash,
            tokenizer_hash,
        };
        let quantize = opts.quantize.map(|q| match q {
            Quantization::Q8_0 => GgmlDType::Q8_0,
        });
        let model = Model::load(source.as_mut(), cfg, window, quantize, None, &device)?;
        tracing::info!(
            path = %path.display(),
            arch = %identity.architecture,
            layers = model.cfg.n_layers,
            window,
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "interpreter loaded"
        );
        Ok(Self {
            inner: Arc::new(InterpreterInner {
                model,
                tokenizer,
                identity,
                window,
                path: path.to_path_buf(),
                grammar_env: OnceLock::new(),
            }),
        })
    }

    /// Architecture, name, weights hash and tokenizer hash of this interpreter.
    pub fn identity(&self) -> &InterpreterId {
        &self.inner.identity
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.inner.tokenizer
    }

    pub fn context_window(&self) -> usize {
        self.inner.window
    }

    /// Architecture hyperparameters read from the GGUF file.
    pub fn config(&self) -> &ModelConfig {
        &self.inner.model.cfg
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Binds a program with its adapter active. Fails if the program was compiled for another
    /// interpreter. Computes the KV cache of the fixed prompt prefix once (adapter active).
    pub fn bind(&self, program: &Program) -> Result<Function> {
        self.bind_inner(program, true)
    }

    /// Binds a program but ignores its adapter (prompt only), e.g. for `--no-adapter`
    /// comparisons. The identity check still applies.
    pub fn bind_without_adapter(&self, program: &Program) -> Result<Function> {
        self.bind_inner(program, false)
    }

    /// Base-model logits (no adapter) of the token after `ids`, for diagnostics and scoring.
    pub fn next_token_logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let m = &self.inner.model;
        if ids.len() > self.inner.window {
            return Err(Error::ContextOverflow {
                window: self.inner.window,
                excess: ids.len() - self.inner.window,
                prefix_tokens: 0,
                input_tokens: ids.len(),
                suffix_tokens: 0,
                max_tokens: 0,
            });
        }
        let mut cache = m.new_cache(1, ids.len())?;
        let logits = prefill_single(m, ids, 0, &mut cache, None)?;
        Ok(logits.squeeze(0)?.to_vec1()?)
    }

    fn bind_inner(&self, program: &Program, use_adapter: bool) -> Result<Function> {
        self.check_identity(&program.interpreter)?;
        let inner = &self.inner;
        let parts: Vec<&str> = program.prompt_template.split(INPUT_PLACEHOLDER).collect();
        let [before, after] = parts[..] else {
            return Err(Error::Placeholder {
                placeholder: INPUT_PLACEHOLDER,
                found: parts.len().saturating_sub(1),
            });
        };
        let mut prefix_ids = Vec::new();
        if let Some(bos) = inner.tokenizer.bos_to_prepend() {
            prefix_ids.push(bos);
        }
        prefix_ids.extend(inner.tokenizer.encode_with_specials(before)?);
        let suffix_ids = inner.tokenizer.encode_with_specials(after)?;
        let lora = match (&program.adapter, use_adapter) {
            (Some(a), true) => Some(LoraWeights::from_adapter(
                a,
                &inner.model.cfg,
                inner.model.ffn,
                inner.model.device(),
            )?),
            _ => None,
        };
        let contract = match &program.contract {
            Some(c) => Some(CompiledContract::compile(c, || self.grammar_env())?),
            None => None,
        };
        let t0 = Instant::now();
        let prefix_kv = if prefix_ids.is_empty() {
            Vec::new()
        } else if prefix_ids.len() + suffix_ids.len() < inner.window {
            let mut cache = inner.model.new_cache(1, prefix_ids.len())?;
            prefill_single(&inner.model, &prefix_ids, 0, &mut cache, lora.as_ref())?;
            cache.view()?
        } else {
            return Err(Error::ContextOverflow {
                window: inner.window,
                excess: prefix_ids.len() + suffix_ids.len() + 1 - inner.window,
                prefix_tokens: prefix_ids.len(),
                input_tokens: 0,
                suffix_tokens: suffix_ids.len(),
                max_tokens: 1,
            });
        };
        tracing::debug!(
            prefix_tokens = prefix_ids.len(),
            suffix_tokens = suffix_ids.len(),
            adapter = lora.is_some(),
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "program bound, prefix cache computed"
        );
        Ok(Function {
            interp: Arc::clone(&self.inner),
            inner: Arc::new(FunctionInner {
                lora,
                prefix_ids,
                suffix_ids,
                prefix_kv,
                generation: program.generation.clone(),
                declared: program.contract.clone(),
                contract,
            }),
        })
    }

    /// The tokenizer as llguidance sees it, built once.
    fn grammar_env(&self) -> Result<Arc<GrammarEnv>> {
        if let Some(env) = self.inner.grammar_env.get() {
            return Ok(Arc::clone(env));
        }
        let t0 = Instant::now();
        let env = Arc::new(GrammarEnv::new(
            &self.inner.tokenizer,
            self.inner.model.vocab(),
        )?);
        tracing::debug!(
            elapsed_ms = t0.elapsed().as_millis() as u64,
            "contract token trie built"
        );
        Ok(Arc::clone(self.inner.grammar_env.get_or_init(|| env)))
    }

    fn check_identity(&self, want: &InterpreterId) -> Result<()> {
        let have = &self.inner.identity;
        if want.architecture != have.architecture
            || want.weights_hash != have.weights_hash
            || want.tokenizer_hash != have.tokenizer_hash
        {
            return Err(Error::InterpreterMismatch {
                program: Box::new(want.clone()),
                loaded: Box::new(have.clone()),
            });
        }
        Ok(())
    }
}

#[derive(Debug)]
struct FunctionInner {
    lora: Option<LoraWeights>,
    prefix_ids: Vec<u32>,
    suffix_ids: Vec<u32>,
    /// Per-layer `(k, v)` of the prefix, `[1, kv_heads, prefix_len, head_dim]`.
    prefix_kv: Vec<(Tensor, Tensor)>,
    generation: GenerationConfig,
    declared: Option<OutputContract>,
    contract: Option<CompiledContract>,
}

/// A program bound to an interpreter. Cheap to clone; `Send + Sync`.
///
/// Concurrency: `call` takes `&self` and holds no lock, so calls from several threads run in
/// parallel, each with its own KV cache copied from the shared read-only prefix cache. They
/// share the machine's cores through candle's CPU thread pool, so on a small machine
/// [`Function::call_batch`] is the faster way to run many inputs.
#[derive(Debug, Clone)]
pub struct Function {
    interp: Arc<InterpreterInner>,
    inner: Arc<FunctionInner>,
}

/// Per-call settings; `None` fields fall back to the program's [`GenerationConfig`].
#[derive(Debug, Clone)]
pub struct CallOptions {
    pub max_tokens: Option<u32>,
    /// `0.0` is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling threshold, used when temperature > 0.
    pub top_p: f32,
    /// Seed of the sampler. Each input samples from a stream derived from this seed and the
    /// input's tokens: different inputs of a batch sample independently (one shared stream
    /// made similar prompts give identical replies), and a batch still gives the outputs of
    /// the corresponding single calls.
    pub seed: u64,
    /// Stop strings in addition to the program's and the model's end-of-generation tokens.
    pub extra_stop: Vec<String>,
    /// Reuse the program's prefix KV cache (default). `false` recomputes the prompt's prefix
    /// for a single call (then runs the rest as a cached call does, so outputs are the same
    /// bits), which exists to verify the cache and measure prefill; batches always use it.
    pub use_prefix_cache: bool,
    /// Enforce the program's output contract (default). `false` decodes unconstrained, for
    /// debugging a program (`paw run --no-contract`).
    pub use_contract: bool,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            max_tokens: None,
            temperature: None,
            top_p: 1.0,
            seed: 0,
            extra_stop: Vec::new(),
            use_prefix_cache: true,
            use_contract: true,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model emitted one of its end-of-generation tokens.
    EndOfGeneration,
    /// A stop string appeared; it is not included in the text.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The output contract allows nothing more (a label completed, a JSON value closed, free
    /// text at its length limit).
    Contract,
}

/// Wall-clock time spent in one call (for a batch, the whole batch's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timings {
    /// Tokenization and the forward pass over input + suffix tokens.
    pub prefill: Duration,
    /// Token-by-token generation.
    pub decode: Duration,
}

/// The result of one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub text: String,
    /// Generated token ids, including a final end-of-generation token if one was produced.
    pub token_ids: Vec<u32>,
    pub stop_reason: StopReason,
    /// Tokens of the program's fixed prefix (served from cache).
    pub prefix_tokens: usize,
    /// Tokens of the user input.
    pub input_tokens: usize,
    /// Tokens of the fixed text after the input.
    pub suffix_tokens: usize,
    pub generated_tokens: usize,
    /// Whether the output contract was applied and the answer satisfies it.
    pub contract: ContractOutcome,
    pub timings: Timings,
}

impl Function {
    /// Number of tokens in the program's cached prefix.
    pub fn prefix_tokens(&self) -> usize {
        self.inner.prefix_ids.len()
    }

    /// The program's output contract, if it has one.
    pub fn contract(&self) -> Option<&OutputContract> {
        self.inner.declared.as_ref()
    }

    /// Whether the program's adapter is applied.
    pub fn has_adapter(&self) -> bool {
        self.inner.lora.is_some()
    }

    pub fn interpreter_identity(&self) -> &InterpreterId {
        &self.interp.identity
    }

    /// Logits of the first output token for `input` (prompt prefix from cache, adapter active
    /// if bound with it): what greedy decoding starts from. Used for scoring and checks.
    pub fn next_token_logits(&self, input: &str) -> Result<Vec<f32>> {
        let m = &self.interp.model;
        let f = &self.inner;
        self.check_input_bytes(input, 0)?;
        let mut row = self.interp.tokenizer.encode_plain(input)?;
        row.extend_from_slice(&f.suffix_ids);
        let p = f.prefix_ids.len();
        if p + row.len() > self.interp.window {
            return Err(Error::ContextOverflow {
                window: self.interp.window,
                excess: p + row.len() - self.interp.window,
                prefix_tokens: p,
                input_tokens: row.len() - f.suffix_ids.len(),
                suffix_tokens: f.suffix_ids.len(),
                max_tokens: 0,
            });
        }
        let mut cache = m.cache_from_prefix(&f.prefix_kv, p, 1, p + row.len())?;
        let logits = prefill_single(m, &row, p, &mut cache, f.lora.as_ref())?;
        Ok(logits.squeeze(0)?.to_vec1()?)
    }

    /// The most input bytes that could fit the context window beside the program's prompt
    /// (the bound [`Error::InputTooLong`] enforces before tokenizing; callers reading input
    /// can stop reading there).
    pub fn max_input_bytes(&self) -> usize {
        self.interp
            .tokenizer
            .max_input_bytes(self.input_token_room(0))
    }

    /// Tokens left for the input once the prompt's prefix and suffix and `max_tokens` of
    /// output are counted.
    fn input_token_room(&self, max_tokens: usize) -> usize {
        let f = &self.inner;
        self.interp
            .window
            .saturating_sub(f.prefix_ids.len() + f.suffix_ids.len() + max_tokens)
    }

    fn check_input_bytes(&self, input: &str, max_tokens: usize) -> Result<()> {
        let max_bytes = self
            .interp
            .tokenizer
            .max_input_bytes(self.input_token_room(max_tokens));
        if input.len() > max_bytes {
            return Err(Error::InputTooLong {
                bytes: input.len(),
                max_bytes,
                window: self.interp.window,
            });
        }
        Ok(())
    }

    /// Runs the program on one input.
    pub fn call(&self, input: &str, opts: &CallOptions) -> Result<Output> {
        let mut outs = self.run(&[input], opts)?;
        outs.pop().ok_or(Error::NoOutput)
    }

    /// Runs the program on several inputs together (padded, masked batches of up to
    /// [`MAX_BATCH_ROWS`] rows sharing the prefix cache). Each output equals what
    /// [`Function::call`] returns for that input.
    pub fn call_batch(&self, inputs: &[&str], opts: &CallOptions) -> Result<Vec<Output>> {
        let mut outputs = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(MAX_BATCH_ROWS) {
            outputs.extend(self.run(chunk, opts)?);
        }
        Ok(outputs)
    }

    fn run(&self, inputs: &[&str], opts: &CallOptions) -> Result<Vec<Output>> {
        let m = &self.interp.model;
        let tok = &self.interp.tokenizer;
        let f = &self.inner;
        let gen = &f.generation;
        let max_tokens = opts.max_tokens.unwrap_or(gen.max_tokens) as usize;
        let temperature = opts.temperature.unwrap_or(gen.temperature);
        if max_tokens == 0 {
            return Err(Error::ZeroMaxTokens);
        }
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(Error::Temperature { value: temperature });
        }
        if !(opts.top_p > 0.0 && opts.top_p <= 1.0) {
            return Err(Error::TopP { value: opts.top_p });
        }
        let stops: Vec<&str> = gen
            .stop
            .iter()
            .chain(&opts.extra_stop)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .collect();

        let t_prefill = Instant::now();
        let p = f.prefix_ids.len();
        let mut rows = Vec::with_capacity(inputs.len());
        let mut input_lens = Vec::with_capacity(inputs.len());
        for input in inputs {
            self.check_input_bytes(input, max_tokens)?;
            let ids = tok.encode_plain(input)?;
            let needed = p + ids.len() + f.suffix_ids.len() + max_tokens;
            if needed > self.interp.window {
                return Err(Error::ContextOverflow {
                    window: self.interp.window,
                    excess: needed - self.interp.window,
                    prefix_tokens: p,
                    input_tokens: ids.len(),
                    suffix_tokens: f.suffix_ids.len(),
                    max_tokens,
                });
            }
            if ids.is_empty() && f.suffix_ids.is_empty() {
                return Err(Error::NothingToContinue);
            }
            input_lens.push(ids.len());
            let mut row = ids;
            row.extend_from_slice(&f.suffix_ids);
            rows.push(row);
        }

        let lora = f.lora.as_ref();
        let b = rows.len();
        let row_len: Vec<usize> = rows.iter().map(Vec::len).collect();
        let width = row_len.iter().copied().max().unwrap_or(0);
        let capacity = p + width + max_tokens;
        let (mut cache, logits) = if opts.use_prefix_cache || b > 1 {
            let mut cache = m.cache_from_prefix(&f.prefix_kv, p, b, capacity)?;
            let logits = if b == 1 {
                prefill_single(m, &rows[0], p, &mut cache, lora)?
            } else {
                prefill_padded(m, &rows, p, &mut cache, lora)?
            };
            (cache, logits)
        } else {
            // The prefix computed afresh exactly as `bind` computes it, then the rest as a
            // cached call runs it: skipping the cache costs time but never changes a bit.
            let prefix_kv = if p == 0 {
                Vec::new()
            } else {
                let mut cache = m.new_cache(1, p)?;
                prefill_single(m, &f.prefix_ids, 0, &mut cache, lora)?;
                cache.view()?
            };
            let mut cache = m.cache_from_prefix(&prefix_kv, p, 1, capacity)?;
            let logits = prefill_single(m, &rows[0], p, &mut cache, lora)?;
            (cache, logits)
        };
        let prefill = t_prefill.elapsed();

        let t_decode = Instant::now();
        let contract = f.contract.as_ref().filter(|_| opts.use_contract);
        let mut states: Vec<RowState> = rows
            .iter()
            .map(|row| RowState {
                ids: Vec::new(),
                text: String::new(),
                done: None,
                rng: SplitMix64::for_input(opts.seed, row),
                contract: contract.map(CompiledContract::start),
            })
            .collect();
        let sampler = Sampler {
            temperature,
            top_p: opts.top_p,
        };
        let mut logits = logits;
        // Rows still generating, in the order of the cache's batch dimension.
        let mut active: Vec<usize> = (0..b).collect();
        for step in 0..max_tokens {
            let mut rows_logits: Vec<Vec<f32>> = logits.to_dtype(DType::F32)?.to_vec2()?;
            for (&row, lg) in active.iter().zip(rows_logits.iter_mut()) {
                states[row].pick_next(lg, &sampler, tok, &stops, max_tokens)?;
            }
            let keep: Vec<usize> = (0..active.len())
                .filter(|&i| states[active[i]].done.is_none())
                .collect();
            if keep.is_empty() || step + 1 == max_tokens {
                break;
            }
            // Finished rows leave the batch so later steps only compute live ones.
            if keep.len() < active.len() {
                cache.retain_rows(&keep);
                active = keep.iter().map(|&i| active[i]).collect();
            }
            let next: Vec<u32> = active
                .iter()
                .map(|&r| states[r].ids.last().copied().unwrap_or(0))
                .collect();
            let positions: Vec<u32> = active
                .iter()
                .map(|&r| (p + row_len[r] + step) as u32)
                .collect();
            logits = decode_step(m, &next, positions, &mut cache, lora)?;
        }
        let decode = t_decode.elapsed();
        let timings = Timings { prefill, decode };
        Ok(states
            .into_iter()
            .zip(&input_lens)
            .map(|(mut st, &input_tokens)| Output {
                contract: st.outcome(),
                generated_tokens: st.ids.len(),
                text: st.text,
                token_ids: st.ids,
                stop_reason: st.done.unwrap_or(StopReason::MaxTokens),
                prefix_tokens: p,
                input_tokens,
                suffix_tokens: f.suffix_ids.len(),
                timings,
            })
            .collect())
    }
}

#[derive(Debug)]
struct RowState {
    ids: Vec<u32>,
    text: String,
    done: Option<StopReason>,
    rng: SplitMix64,
    /// `None` when the program has no contract or the call turned it off.
    contract: Option<RowContract>,
}

impl RowState {
    /// Picks this row's next token from its logits (masked by the contract) and records why
    /// the row ends, if it does.
    fn pick_next(
        &mut self,
        logits: &mut [f32],
        sampler: &Sampler,
        tok: &Tokenizer,
        stops: &[&str],
        max_tokens: usize,
    ) -> Result<()> {
        // A NaN would make every comparison false and argmax pick token 0 (NUL bytes, exit 0).
        if logits.iter().any(|l| l.is_nan() || *l == f32::INFINITY) {
            return Err(Error::NonFiniteLogits {
                position: self.ids.len(),
            });
        }
        if let Some(c) = &mut self.contract {
            c.mask_logits(logits)?;
        }
        let next = sampler.pick(logits, &mut self.rng);
        self.ids.push(next);
        if tok.eog_ids().contains(&next) {
            self.done = Some(StopReason::EndOfGeneration);
            self.text = tok.decode(&self.ids[..self.ids.len() - 1])?;
            return Ok(());
        }
        self.text = tok.decode(&self.ids)?;
        let (contract_ended, honours_stops) = match &mut self.contract {
            Some(c) => (c.advance(next, &mut self.text)?, c.honours_stop_strings()),
            None => (false, true),
        };
        let stop_at = stops
            .iter()
            .filter(|_| honours_stops)
            .filter_map(|s| self.text.find(s))
            .min();
        if contract_ended {
            self.done = Some(StopReason::Contract);
        } else if let Some(cut) = stop_at {
            self.text.truncate(cut);
            self.done = Some(StopReason::StopString);
        } else if self.ids.len() >= max_tokens {
            self.done = Some(StopReason::MaxTokens);
        }
        Ok(())
    }

    fn outcome(&mut self) -> ContractOutcome {
        let cut_short = self.done == Some(StopReason::MaxTokens);
        match &mut self.contract {
            None => ContractOutcome::NotApplied,
            Some(c) => {
                if !cut_short || c.is_complete() {
                    ContractOutcome::Satisfied
                } else {
                    ContractOutcome::Unfinished
                }
            }
        }
    }
}

/// Feeds `ids` (one row) after `start` cached positions, in chunks; returns the logits of the
/// last token, `[1, vocab]`.
fn prefill_single(
    m: &Model,
    ids: &[u32],
    start: usize,
    cache: &mut KvCache,
    lora: Option<&LoraWeights>,
) -> Result<Tensor> {
    let dev = m.device();
    let mut last = None;
    for (c, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
        let pos0 = (start + c * PREFILL_CHUNK) as u32;
        let n = chunk.len();
        let step = Step {
            ids: Tensor::new(chunk, dev)?.reshape((1, n))?,
            positions: Tensor::arange(pos0, pos0 + n as u32, dev)?.reshape((1, n))?,
            valid: vec![n],
        };
        let h = m.forward(&step, cache, lora)?;
        last = Some(h.i((.., n - 1, ..))?);
    }
    match last {
        Some(h) => m.logits(&h),
        // An empty prompt has no next-token distribution.
        None => Err(Error::EmptyPrompt),
    }
}

/// Prefills right-padded rows after a shared prefix of `p` positions, in chunks of
/// [`PREFILL_CHUNK`] columns like [`prefill_single`] (so each row sees the same chunk boundaries
/// as its single call); returns the logits at each row's last real token, `[batch, vocab]`.
fn prefill_padded(
    m: &Model,
    rows: &[Vec<u32>],
    p: usize,
    cache: &mut KvCache,
    lora: Option<&LoraWeights>,
) -> Result<Tensor> {
    let dev = m.device();
    let b = rows.len();
    let width = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut last: Vec<Option<Tensor>> = vec![None; b];
    for start in (0..width).step_by(PREFILL_CHUNK) {
        let n = PREFILL_CHUNK.min(width - start);
        let mut ids = Vec::with_capacity(b * n);
        let mut pos = Vec::with_capacity(b * n);
        for row in rows {
            for i in start..start + n {
                ids.push(row.get(i).copied().unwrap_or(0));
                pos.push((p + i) as u32);
            }
        }
        let valid: Vec<usize> = rows
            .iter()
            .map(|r| r.len().saturating_sub(start).min(n))
            .collect();
        let step = Step {
            ids: Tensor::from_vec(ids, (b, n), dev)?,
            positions: Tensor::from_vec(pos, (b, n), dev)?,
            valid,
        };
        let h = m.forward(&step, cache, lora)?;
        for (j, row) in rows.iter().enumerate() {
            if (start..start + n).contains(&(row.len() - 1)) {
                last[j] = Some(h.i((j, row.len() - 1 - start, ..))?);
            }
        }
    }
    let last = last
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or(Error::EmptyPrompt)?;
    m.logits(&Tensor::stack(&last, 0)?)
}

/// One decoding step: row `j` feeds token `next[j]` at rotary position `positions[j]`.
fn decode_step(
    m: &Model,
    next: &[u32],
    positions: Vec<u32>,
    cache: &mut KvCache,
    lora: Option<&LoraWeights>,
) -> Result<Tensor> {
    let dev = m.device();
    let b = next.len();
    let st = Step {
        ids: Tensor::new(next, dev)?.reshape((b, 1))?,
        positions: Tensor::from_vec(positions, (b, 1), dev)?,
        valid: vec![1; b],
    };
    let h = m.forward(&st, cache, lora)?;
    m.logits(&h.squeeze(1)?)
}
