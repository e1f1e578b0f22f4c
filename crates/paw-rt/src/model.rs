//! One decoder-only transformer forward pass for `llama`, `qwen2` and `qwen3` weights (GGUF,
//! kept quantized, or safetensors, in f32), with an optional unmerged LoRA on every projection.
//!
//! Inputs are batches of right-padded rows with explicit per-token positions and each row's
//! count of real tokens; every row attends over its own cache with single-call shapes, which is
//! what lets batches reproduce single-row results bit for bit.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};
use crate::gguf::ModelConfig;
use crate::kernels::BlockMatrix;
use crate::lora::{LoraDelta, LoraLinear, LoraWeights, N_MODULES};
use crate::matmul::{block_matrix, Matmul};
use paw_format::TargetModule;

/// A projection of the base model: quantized weight plus optional bias.
#[derive(Debug)]
pub(crate) struct Linear {
    pub(crate) w: Matmul,
    pub(crate) bias: Option<Tensor>,
    /// The weight dequantized, for the trainer's backward pass (training loads only).
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    pub(crate) dense: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor, lora: Option<&LoraLinear>) -> Result<Tensor> {
        let mut y = self.w.forward(x)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(l) = lora {
            y = (y + l.delta(x)?)?;
        }
        Ok(y)
    }
}

#[derive(Debug)]
pub(crate) struct Layer {
    attn_norm: Tensor,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Linear,
    up: Linear,
    down: Linear,
}

/// The operations of a decoder block that running and training do differently: running uses
/// fused kernels and attends row by row over each row's cache; training (`crate::train`)
/// uses differentiable kernels where gradients flow and attends to a shared prompt prefix.
pub(crate) trait BlockOps {
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor>;
    /// Rotary embedding of `x` `[b, heads, t, hd]` with the caller's tables.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor>;
    /// `x·Wᵀ + bias` of projection `m`, plus the adapter's update if there is one.
    fn project(&self, lin: &Linear, m: TargetModule, x: &Tensor) -> Result<Tensor>;
    /// Attention of queries `[b, heads, t, hd]` over this step's keys and values
    /// `[b, kv_heads, t, hd]` and whatever past the implementation holds: `[b, t, heads·hd]`.
    fn attend(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor>;
}

impl Layer {
    /// The block over `x` `[b, t, hidden]`, with rotary tables for its positions.
    pub(crate) fn forward(
        &self,
        cfg: &ModelConfig,
        ops: &mut impl BlockOps,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
        let h = ops.rms_norm(x, &self.attn_norm, cfg.rms_eps)?;
        let q = ops.project(&self.q, TargetModule::Q, &h)?;
        let k = ops.project(&self.k, TargetModule::K, &h)?;
        let v = ops.project(&self.v, TargetModule::V, &h)?;
        let mut q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let mut k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = ops.rms_norm(&q, qn, cfg.rms_eps)?;
            k = ops.rms_norm(&k, kn, cfg.rms_eps)?;
        }
        let q = ops.rope(&q, cos, sin, cfg.rope_interleaved)?;
        let k = ops.rope(&k, cos, sin, cfg.rope_interleaved)?;
        let y = ops.attend(&q, &k, &v)?;
        let x = (x + ops.project(&self.o, TargetModule::O, &y)?)?;
        let h = ops.rms_norm(&x, &self.ffn_norm, cfg.rms_eps)?;
        let g = ops.project(&self.gate, TargetModule::Gate, &h)?;
        let u = ops.project(&self.up, TargetModule::Up, &h)?;
        let m = (g.silu()? * u)?;
        Ok((&x + ops.project(&self.down, TargetModule::Down, &m)?)?)
    }
}

/// Token embedding table: looked up quantized when the row length is a multiple of the block
/// size, otherwise dequantized once.
#[derive(Debug)]
pub(crate) enum Embedding {
    /// Rows in paw-rt's kernel layout; the same matrix as the LM head when the model ties them.
    Blocks(Arc<BlockMatrix>),
    Quantized(QTensor),
    Dense(Tensor),
}

/// Base weights of one model; shared read-only by every bound program.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) cfg: ModelConfig,
    pub(crate) ffn: usize,
    pub(crate) embed: Embedding,
    pub(crate) layers: Vec<Layer>,
    pub(crate) norm: Tensor,
    pub(crate) lm_head: Linear,
    pub(crate) cos: Tensor,
    pub(crate) sin: Tensor,
    device: Device,
}

/// Key/value cache of a batch: the prefix every row starts from (the program's prompt
/// before the input), shared by all rows and never copied, then per row and per layer its own
/// `(k, v)` of shape `[kv_heads, capacity, head_dim]`, filled up to that row's own length.
///
/// Rows keep separate caches (no padding slots between a row's tokens) so that every row's
/// attention runs on exactly the tensors a single call of that row would: batching cannot change
/// a row's output bits. The prefix is shared rather than copied into each row: 16 rows behind a
/// 400-token prompt held ~150 MB of copies.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    /// Per layer `(k, v)` of the shared prefix, `[kv_heads, prefix_len, head_dim]`; empty
    /// without one.
    prefix: Vec<(Tensor, Tensor)>,
    prefix_len: usize,
    rows: Vec<RowCache>,
    /// Positions each row holds beyond the prefix.
    capacity: usize,
}

#[derive(Debug, Clone)]
struct RowCache {
    layers: Vec<(Tensor, Tensor)>,
    /// Positions filled beyond the prefix.
    len: usize,
}

impl KvCache {
    /// Keeps only the given batch rows (indices into the current batch), in that order.
    pub(crate) fn retain_rows(&mut self, rows: &[usize]) {
        let mut old: Vec<Option<RowCache>> = self.rows.drain(..).map(Some).collect();
        self.rows = rows
            .iter()
            .filter_map(|&r| old.get_mut(r)?.take())
            .collect();
    }

    /// Keys/values of row 0's positions (prefix included) as `(k, v)` per layer,
    /// `[kv_heads, len, head_dim]`.
    pub(crate) fn view(&self) -> Result<Vec<(Tensor, Tensor)>> {
        let Some(row) = self.rows.first() else {
            return Ok(Vec::new());
        };
        row.layers
            .iter()
            .enumerate()
            .map(|(i, (k, v))| {
                let (k, v) = (k.narrow(1, 0, row.len)?, v.narrow(1, 0, row.len)?);
                match self.prefix.get(i) {
                    Some((pk, pv)) => Ok((Tensor::cat(&[pk, &k], 1)?, Tensor::cat(&[pv, &v], 1)?)),
                    None => Ok((k, v)),
                }
            })
            .collect()
    }
}

/// One step of input to [`Model::forward`]: a batch of rows padded to a common width.
#[derive(Debug)]
pub(crate) struct Step {
    /// `[batch, t]` u32 token ids.
    pub ids: Tensor,
    /// `[batch, t]` u32 rotary positions.
    pub positions: Tensor,
    /// Real tokens at the start of each row (the rest is padding, never cached or attended).
    pub valid: Vec<usize>,
}

/// One base-model tensor as a weight source hands it over: ggml blocks (GGUF) or a dense f32
/// tensor (safetensors).
#[derive(Debug)]
pub(crate) enum RawWeight {
    Quantized(QTensor),
    Dense(Tensor),
}

impl RawWeight {
    fn dims(&self) -> Vec<usize> {
        match self {
            Self::Quantized(q) => q.shape().dims().to_vec(),
            Self::Dense(t) => t.dims().to_vec(),
        }
    }

    fn into_dense(self, device: &Device) -> Result<Tensor> {
        match self {
            Self::Quantized(q) => Ok(q.dequantize(device)?),
            Self::Dense(t) => Ok(t),
        }
    }
}

/// Where [`Model::load`] gets base weights from. Names are the GGUF tensor names
/// (`blk.{i}.attn_q.weight`, `token_embd.weight`, ...); a source for another layout maps them
/// (see `crate::hf::LAYER_TENSOR_NAMES`).
pub(crate) trait WeightSource {
    /// Whether the model has this tensor. Only asked for `output.weight`: without it the
    /// embedding table doubles as the LM head (tied embeddings).
    fn has(&self, name: &str) -> bool;
    /// The tensor `name`, or [`Error::MissingTensor`] (named as the source calls it).
    fn get(&mut self, name: &str, device: &Device) -> Result<RawWeight>;
    /// How the source itself calls tensor `name`, for error messages.
    fn source_name(&self, name: &str) -> String {
        name.to_string()
    }
}

/// Tensors of an open GGUF file, read on demand.
#[derive(Debug)]
pub(crate) struct GgufSource<R> {
    pub(crate) content: Content,
    pub(crate) reader: R,
}

impl<R: Read + Seek> WeightSource for GgufSource<R> {
    fn has(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn get(&mut self, name: &str, device: &Device) -> Result<RawWeight> {
        if !self.has(name) {
            return Err(Error::MissingTensor {
                name: name.to_string(),
            });
        }
        Ok(RawWeight::Quantized(self.content.tensor(
            &mut self.reader,
            name,
            device,
        )?))
    }
}

impl Model {
    /// Builds the model from `src`, checking every tensor's shape against `cfg`. Float
    /// projection and LM-head weights are quantized to `quantize` when given; block-quantized
    /// ones are kept as they are. With `dense_from`, the projections of that layer and above,
    /// and the LM head, also keep a dequantized copy (for training).
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        cfg: ModelConfig,
        max_positions: usize,
        quantize: Option<GgmlDType>,
        dense_from: Option<usize>,
        device: &Device,
    ) -> Result<Self> {
        let hidden = cfg.hidden;
        let has_head = src.has("output.weight");
        let mut get = |name: &str, expected: Option<&[usize]>| -> Result<RawWeight> {
            let w = src.get(name, device)?;
            match expected {
                Some(e) => check_shape(&src.source_name(name), w, e),
                None => Ok(w),
            }
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        // The feed-forward width is not part of the configuration: it is the first gate's.
        let mut ffn = None;
        for i in 0..cfg.n_layers {
            let dense = dense_from.is_some_and(|first| i >= first);
            let layer = load_layer(&mut get, &cfg, i, &mut ffn, quantize, dense, device)?;
            layers.push(layer);
        }
        let embed_w = get("token_embd.weight", Some(&[ANY_SIZE, hidden]))?;
        let vocab = embed_w.dims().first().copied().unwrap_or(0);
        let train_head = dense_from.is_some();
        let (lm_head, embed) = if has_head {
            let head_w = get("output.weight", Some(&[vocab, hidden]))?;
            let lm_head = linear(head_w, None, quantize, train_head, device)?;
            (lm_head, embedding(embed_w, hidden, device)?)
        } else {
            // Tied embeddings: without `output.weight` the embedding table is the LM head.
            match embed_w {
                // A dense table is shared (no copy) unless the head gets quantized.
                RawWeight::Dense(t) => {
                    let lm_head = linear(
                        RawWeight::Dense(t.clone()),
                        None,
                        quantize,
                        train_head,
                        device,
                    )?;
                    (lm_head, Embedding::Dense(t))
                }
                RawWeight::Quantized(q) => {
                    let lm_head =
                        linear(RawWeight::Quantized(q), None, quantize, train_head, device)?;
                    // Run by paw-rt's kernels: one copy serves lookup and LM head.
                    let embed = match lm_head.w.blocks() {
                        Some(m) => Embedding::Blocks(Arc::clone(m)),
                        None => embedding(get("token_embd.weight", None)?, hidden, device)?,
                    };
                    (lm_head, embed)
                }
            }
        };
        let norm = get("output_norm.weight", Some(&[hidden]))?.into_dense(device)?;
        let (cos, sin) = cfg.rope_tables(max_positions, device)?;
        Ok(Self {
            cfg,
            ffn: ffn.unwrap_or(0),
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// Embeddings `[b, t, hidden]` of token ids `[b, t]`.
    pub(crate) fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        Ok(match &self.embed {
            Embedding::Blocks(m) => {
                let hidden = m.cols();
                let ids: Vec<u32> = ids.flatten_all()?.to_vec1()?;
                let mut out = vec![0f32; ids.len() * hidden];
                for (&id, row) in ids.iter().zip(out.chunks_exact_mut(hidden)) {
                    let id = id as usize;
                    if id >= m.rows() {
                        return Err(Error::TokenOutOfRange {
                            id,
                            vocab: m.rows(),
                        });
                    }
                    m.dequantize_row(id, row);
                }
                Tensor::from_vec(out, (b, t, hidden), &self.device)?
            }
            Embedding::Quantized(q) => q.embedding(ids)?,
            Embedding::Dense(w) => {
                w.index_select(&ids.flatten_all()?, 0)?
                    .reshape((b, t, self.cfg.hidden))?
            }
        })
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for `batch` rows and up to `capacity` positions each.
    pub(crate) fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        self.cache_from_prefix(&[], 0, batch, capacity)
    }

    /// A cache for `batch` rows that all start from `prefix` (per layer `(k, v)` of
    /// `prefix_len` positions, shared, not copied; see [`KvCache::view`]), each with room for
    /// `capacity` positions in all.
    pub(crate) fn cache_from_prefix(
        &self,
        prefix: &[(Tensor, Tensor)],
        prefix_len: usize,
        batch: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        let (prefix, prefix_len) = if prefix_len > 0 && prefix.len() == self.cfg.n_layers {
            (prefix.to_vec(), prefix_len)
        } else {
            (Vec::new(), 0)
        };
        let own = capacity.saturating_sub(prefix_len);
        let shape = (self.cfg.n_kv_heads, own, self.cfg.head_dim);
        let zeros = || Tensor::zeros(shape, DType::F32, &self.device);
        let rows = (0..batch)
            .map(|_| {
                let layers = (0..self.cfg.n_layers)
                    .map(|_| Ok((zeros()?, zeros()?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(RowCache { layers, len: 0 })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            prefix,
            prefix_len,
            rows,
            capacity: own,
        })
    }

    /// Runs the layers over one step, appending each row's real tokens to its cache, and
    /// returns the final-normed hidden states `[batch, t, hidden]` (padding positions hold
    /// unspecified values).
    pub(crate) fn forward(
        &self,
        step: &Step,
        cache: &mut KvCache,
        lora: Option<&LoraWeights>,
    ) -> Result<Tensor> {
        let (b, t) = step.ids.dims2()?;
        if step.valid.len() != b || cache.rows.len() != b {
            return Err(Error::StepShape {
                rows: b,
                lengths: step.valid.len(),
                cache_rows: cache.rows.len(),
            });
        }
        for (row, &n) in cache.rows.iter().zip(&step.valid) {
            if n > t {
                return Err(Error::StepRowLength { valid: n, width: t });
            }
            if row.len + n > cache.capacity {
                return Err(Error::CacheCapacity {
                    capacity: cache.prefix_len + cache.capacity,
                    needed: cache.prefix_len + row.len + n,
                });
            }
        }
        let mut x = self.embed(&step.ids)?;
        let half = self.cfg.head_dim / 2;
        let pos = step.positions.flatten_all()?;
        let cos = self.cos.index_select(&pos, 0)?.reshape((b, t, half))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((b, t, half))?;
        // Each row's causal mask is the same in every layer: built once per step.
        let masks = cache
            .rows
            .iter()
            .zip(&step.valid)
            .map(|(row, &n)| {
                (n > 1)
                    .then(|| causal_mask(n, cache.prefix_len + row.len, DType::F32, &self.device))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let mut ops = RunOps {
                lora: lora.and_then(|w| w.layers.get(i)),
                layer: i,
                valid: &step.valid,
                masks: &masks,
                cache,
                device: &self.device,
            };
            x = layer.forward(&self.cfg, &mut ops, &x, &cos, &sin)?;
        }
        for (row, &n) in cache.rows.iter_mut().zip(&step.valid) {
            row.len += n;
        }
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            self.cfg.rms_eps as f32,
        )?)
    }

    /// Width of the logits: the embedding table's rows (may exceed the tokenizer's vocabulary).
    pub(crate) fn vocab(&self) -> usize {
        match &self.embed {
            Embedding::Blocks(m) => m.rows(),
            Embedding::Quantized(q) => q.shape().dims()[0],
            Embedding::Dense(t) => t.dims()[0],
        }
    }

    /// Vocabulary logits `[n, vocab]` of hidden rows `[n, hidden]`.
    pub(crate) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.w.forward(hidden)
    }
}

/// How [`Model::forward`] runs a block: fused kernels, the program's LoRA, and attention row
/// by row over each row's own cache with exactly a single call's shapes.
struct RunOps<'a> {
    lora: Option<&'a [Option<LoraLinear>; N_MODULES]>,
    layer: usize,
    valid: &'a [usize],
    masks: &'a [Option<Tensor>],
    cache: &'a KvCache,
    device: &'a Device,
}

impl BlockOps for RunOps<'_> {
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(x, w, eps as f32)?)
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
        Ok(if interleaved {
            candle_nn::rotary_emb::rope_i(x, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(x, cos, sin)?
        })
    }

    fn project(&self, lin: &Linear, m: TargetModule, x: &Tensor) -> Result<Tensor> {
        lin.forward(x, self.lora.and_then(|l| l[m.index()].as_ref()))
    }

    fn attend(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, nh, t, hd) = q.dims4()?;
        let nkv = k.dim(1)?;
        // Grouped-query attention without repeating K/V: the `groups` query heads that share KV
        // head `j` are consecutive, so `[heads, n, hd]` reshapes to `[kv_heads, groups·n, hd]`.
        let groups = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut ys = Vec::with_capacity(b);
        let rows = self.cache.rows.iter().zip(self.valid).zip(self.masks);
        for (r, ((row, &n), mask)) in rows.enumerate() {
            if n == 0 {
                ys.push(Tensor::zeros((t, nh * hd), DType::F32, self.device)?);
                continue;
            }
            let (ck, cv) = &row.layers[self.layer];
            let past = row.len;
            // The cache tensors are preallocated; writing in place avoids re-copying the
            // whole history at every decoded token.
            ck.slice_set(&k.get(r)?.narrow(1, 0, n)?.contiguous()?, 1, past)?;
            cv.slice_set(&v.get(r)?.narrow(1, 0, n)?.contiguous()?, 1, past)?;
            let own = past + n;
            let keys = ck.narrow(1, 0, own)?;
            let values = cv.narrow(1, 0, own)?;
            let qr = q.get(r)?.narrow(1, 0, n)?.reshape((nkv, groups * n, hd))?;
            let prefix = self.cache.prefix.get(self.layer);
            // Scores over the shared prefix and the row's own positions, side by side: only
            // these small score rows are joined, never the prefix's keys and values.
            let mut scores = (qr.matmul(&keys.t()?)? * scale)?;
            if let Some((pk, _)) = prefix {
                let before = (qr.matmul(&pk.t()?)? * scale)?;
                scores = Tensor::cat(&[&before, &scores], 2)?;
            }
            let total = self.cache.prefix_len + own;
            let scores = match mask {
                Some(mask) => scores
                    .reshape((nkv, groups, n, total))?
                    .broadcast_add(mask)?
                    .reshape((nkv, groups * n, total))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let mixed = match prefix {
                Some((_, pv)) => {
                    let p = self.cache.prefix_len;
                    let before = probs.narrow(2, 0, p)?.contiguous()?.matmul(pv)?;
                    let after = probs.narrow(2, p, own)?.contiguous()?.matmul(&values)?;
                    (before + after)?
                }
                None => probs.matmul(&values)?,
            };
            let y = mixed
                .reshape((nh, n, hd))?
                .transpose(0, 1)?
                .reshape((n, nh * hd))?;
            ys.push(if n < t {
                y.pad_with_zeros(0, 0, t - n)?
            } else {
                y
            });
        }
        Ok(Tensor::stack(&ys, 0)?)
    }
}

/// Layer `i` of the model; `ffn` is the feed-forward width, set by the first layer's gate.
fn load_layer(
    get: &mut impl FnMut(&str, Option<&[usize]>) -> Result<RawWeight>,
    cfg: &ModelConfig,
    i: usize,
    ffn: &mut Option<usize>,
    quantize: Option<GgmlDType>,
    dense: bool,
    device: &Device,
) -> Result<Layer> {
    let (hidden, hd) = (cfg.hidden, cfg.head_dim);
    let (q_out, kv_out) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
    let p = format!("blk.{i}");
    let gate_shape = [ffn.unwrap_or(ANY_SIZE), hidden];
    let gate_w = get(&format!("{p}.ffn_gate.weight"), Some(&gate_shape))?;
    let f = *ffn.get_or_insert(gate_w.dims().first().copied().unwrap_or(0));
    let mut lin = |stem: &str, shape: [usize; 2], bias: bool| -> Result<Linear> {
        let w = get(&format!("{p}.{stem}.weight"), Some(&shape))?;
        let bias = if bias {
            Some(get(&format!("{p}.{stem}.bias"), Some(&shape[..1]))?.into_dense(device)?)
        } else {
            None
        };
        linear(w, bias, quantize, dense, device)
    };
    let q = lin("attn_q", [q_out, hidden], cfg.qkv_bias)?;
    let k = lin("attn_k", [kv_out, hidden], cfg.qkv_bias)?;
    let v = lin("attn_v", [kv_out, hidden], cfg.qkv_bias)?;
    let o = lin("attn_output", [hidden, q_out], false)?;
    let up = lin("ffn_up", [f, hidden], false)?;
    let down = lin("ffn_down", [hidden, f], false)?;
    let gate = linear(gate_w, None, quantize, dense, device)?;
    let mut norm = |name: String, n: usize| get(&name, Some(&[n]))?.into_dense(device);
    let (q_norm, k_norm) = if cfg.qk_norm {
        (
            Some(norm(format!("{p}.attn_q_norm.weight"), hd)?),
            Some(norm(format!("{p}.attn_k_norm.weight"), hd)?),
        )
    } else {
        (None, None)
    };
    Ok(Layer {
        attn_norm: norm(format!("{p}.attn_norm.weight"), hidden)?,
        q,
        k,
        v,
        o,
        q_norm,
        k_norm,
        ffn_norm: norm(format!("{p}.ffn_norm.weight"), hidden)?,
        gate,
        up,
        down,
    })
}

/// A projection from its weight, with a dequantized copy of the weight when `dense`.
fn linear(
    w: RawWeight,
    bias: Option<Tensor>,
    quantize: Option<GgmlDType>,
    dense: bool,
    device: &Device,
) -> Result<Linear> {
    let dense = if dense {
        Some(match &w {
            RawWeight::Quantized(q) => q.dequantize(device)?,
            RawWeight::Dense(t) => t.clone(),
        })
    } else {
        None
    };
    Ok(Linear {
        w: projection(w, quantize, device)?,
        bias,
        dense,
    })
}

/// The token embedding table of `w` `[vocab, hidden]`.
fn embedding(w: RawWeight, hidden: usize, device: &Device) -> Result<Embedding> {
    Ok(match w {
        RawWeight::Quantized(q) => match block_matrix(&q, device)? {
            Some(m) => Embedding::Blocks(Arc::new(m)),
            None if hidden.is_multiple_of(q.dtype().block_size()) => Embedding::Quantized(q),
            None => Embedding::Dense(q.dequantize(device)?),
        },
        RawWeight::Dense(t) => Embedding::Dense(t),
    })
}

/// A dimension [`check_shape`] accepts whatever its size.
const ANY_SIZE: usize = usize::MAX;

/// `w` if its shape is `expected` (where [`ANY_SIZE`] matches any size), else
/// [`Error::TensorShape`].
fn check_shape(name: &str, w: RawWeight, expected: &[usize]) -> Result<RawWeight> {
    let got = w.dims();
    let fits = |(&e, &g): (&usize, &usize)| e == ANY_SIZE || e == g;
    if got.len() == expected.len() && expected.iter().zip(&got).all(fits) {
        Ok(w)
    } else {
        let expected = expected
            .iter()
            .enumerate()
            .map(|(i, &e)| {
                if e == ANY_SIZE {
                    got.get(i).copied().unwrap_or(0)
                } else {
                    e
                }
            })
            .collect();
        Err(Error::TensorShape {
            name: name.to_string(),
            expected,
            got,
        })
    }
}

/// The matmul of a projection weight: block-quantized weights as they are (in candle's fastest
/// layout, see [`Matmul::quantized`]); float weights dense, or quantized to `quantize` when asked and
/// the rows split into whole blocks.
fn projection(w: RawWeight, quantize: Option<GgmlDType>, device: &Device) -> Result<Matmul> {
    let float = |d: GgmlDType| matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16);
    let dense = match (w, quantize) {
        (RawWeight::Quantized(q), Some(_)) if float(q.dtype()) => q.dequantize(device)?,
        (RawWeight::Quantized(q), _) => return Matmul::quantized(q, device),
        (RawWeight::Dense(t), _) => t,
    };
    match quantize {
        Some(dt) if dense.dim(D::Minus1)? % dt.block_size() == 0 => {
            Matmul::quantized(QTensor::quantize(&dense, dt)?, device)
        }
        Some(dt) => {
            tracing::warn!(
                shape = ?dense.dims(),
                dtype = ?dt,
                "rows are not whole quantization blocks: weight kept in f32"
            );
            Ok(Matmul::dense(dense))
        }
        None => Ok(Matmul::dense(dense)),
    }
}

/// `[t, past + t]` additive causal mask for `t` new tokens after `past` cached ones. A large
/// finite negative rather than -inf: exp underflows to exactly 0 either way (so attention is the
/// same to the bit), and the trainer's backward pass stays free of `0 · inf` NaNs.
pub(crate) fn causal_mask(t: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { -1e9 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (t, total), device)?.to_dtype(dtype)?)
}

/// Opens a GGUF file for reading tensors.
#[cfg(feature = "train")]
pub(crate) fn open(path: &std::path::Path) -> Result<(Content, BufReader<File>)> {
    let file = File::open(path).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })?;
    open_file(file)
}

/// Reads the GGUF header of an open file (from its start) for reading tensors.
pub(crate) fn open_file(mut file: File) -> Result<(Content, BufReader<File>)> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))
        .map_err(candle_core::Error::from)?;
    let mut reader = BufReader::new(file);
    let ct = crate::gguf::read_content(&mut reader)?;
    Ok((ct, reader))
}
