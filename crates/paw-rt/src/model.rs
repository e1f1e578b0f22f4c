//! One decoder-only transformer forward pass for `llama`, `qwen2` and `qwen3` weights (GGUF,
//! kept quantized, or safetensors, in f32), with an optional unmerged LoRA on every projection.
//!
//! Inputs are batches of right-padded rows with explicit per-token positions and each row's
//! count of real tokens; every row attends over its own cache with single-call shapes, which is
//! what lets batches reproduce single-row results bit for bit.

use std::fs::File;
use std::io::{BufReader, Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor, D};

use crate::error::{Error, Result};
use crate::gguf::ModelConfig;
use crate::lora::{module_index, LoraLinear, LoraWeights};
use crate::matmul::Matmul;
use paw_format::TargetModule;

/// A projection of the base model: quantized weight plus optional bias.
#[derive(Debug)]
struct Linear {
    w: Matmul,
    bias: Option<Tensor>,
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
struct Layer {
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

/// Token embedding table: looked up quantized when the row length is a multiple of the block
/// size, otherwise dequantized once.
#[derive(Debug)]
enum Embedding {
    Quantized(QTensor),
    Dense(Tensor),
}

/// Base weights of one model; shared read-only by every bound program.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) cfg: ModelConfig,
    pub(crate) ffn: usize,
    embed: Embedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Matmul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Key/value cache of a batch: per row, per layer `(k, v)` of shape
/// `[kv_heads, capacity, head_dim]`, filled up to that row's own length.
///
/// Rows keep separate caches (no padding slots between a row's tokens) so that every row's
/// attention runs on exactly the tensors a single call of that row would: batching cannot change
/// a row's output bits.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    rows: Vec<RowCache>,
    capacity: usize,
}

#[derive(Debug, Clone)]
struct RowCache {
    layers: Vec<(Tensor, Tensor)>,
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

    /// Keys/values of row 0's positions as `(k, v)` per layer, `[kv_heads, len, head_dim]`.
    pub(crate) fn view(&self) -> Result<Vec<(Tensor, Tensor)>> {
        let Some(row) = self.rows.first() else {
            return Ok(Vec::new());
        };
        row.layers
            .iter()
            .map(|(k, v)| Ok((k.narrow(1, 0, row.len)?, v.narrow(1, 0, row.len)?)))
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
    /// ones are kept as they are.
    pub(crate) fn load(
        src: &mut dyn WeightSource,
        cfg: ModelConfig,
        max_positions: usize,
        quantize: Option<GgmlDType>,
        device: &Device,
    ) -> Result<Self> {
        let (hidden, hd) = (cfg.hidden, cfg.head_dim);
        let has_head = src.has("output.weight");
        let (q_out, kv_out) = (cfg.n_heads * hd, cfg.n_kv_heads * hd);
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
            let p = format!("blk.{i}");
            let gate_shape = [ffn.unwrap_or(ANY_SIZE), hidden];
            let gate_w = get(&format!("{p}.ffn_gate.weight"), Some(&gate_shape))?;
            let f = *ffn.get_or_insert(gate_w.dims().first().copied().unwrap_or(0));
            let mut lin = |stem: &str, shape: [usize; 2], bias: bool| -> Result<Linear> {
                let w = get(&format!("{p}.{stem}.weight"), Some(&shape))?;
                let w = projection(w, quantize, device)?;
                let bias = if bias {
                    Some(get(&format!("{p}.{stem}.bias"), Some(&shape[..1]))?.into_dense(device)?)
                } else {
                    None
                };
                Ok(Linear { w, bias })
            };
            let q = lin("attn_q", [q_out, hidden], cfg.qkv_bias)?;
            let k = lin("attn_k", [kv_out, hidden], cfg.qkv_bias)?;
            let v = lin("attn_v", [kv_out, hidden], cfg.qkv_bias)?;
            let o = lin("attn_output", [hidden, q_out], false)?;
            let up = lin("ffn_up", [f, hidden], false)?;
            let down = lin("ffn_down", [hidden, f], false)?;
            let gate = Linear {
                w: projection(gate_w, quantize, device)?,
                bias: None,
            };
            let mut norm = |name: String, n: usize| get(&name, Some(&[n]))?.into_dense(device);
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(norm(format!("{p}.attn_q_norm.weight"), hd)?),
                    Some(norm(format!("{p}.attn_k_norm.weight"), hd)?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
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
            });
        }
        let embed_w = get("token_embd.weight", Some(&[ANY_SIZE, hidden]))?;
        let vocab = embed_w.dims().first().copied().unwrap_or(0);
        // Tied embeddings: without `output.weight` the embedding table is the LM head.
        let lm_head = if has_head {
            projection(
                get("output.weight", Some(&[vocab, hidden]))?,
                quantize,
                device,
            )?
        } else {
            match &embed_w {
                // A dense table is shared (no copy) unless the head gets quantized.
                RawWeight::Dense(t) => projection(RawWeight::Dense(t.clone()), quantize, device)?,
                RawWeight::Quantized(_) => {
                    projection(get("token_embd.weight", None)?, quantize, device)?
                }
            }
        };
        let embed = match embed_w {
            RawWeight::Quantized(q) if hidden % q.dtype().block_size() == 0 => {
                Embedding::Quantized(q)
            }
            w => Embedding::Dense(w.into_dense(device)?),
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

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    /// An empty cache for `batch` rows and up to `capacity` positions each.
    pub(crate) fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        self.cache_from_prefix(&[], 0, batch, capacity)
    }

    /// A cache for `batch` rows whose first positions are a copy of `prefix` (see
    /// [`KvCache::view`]).
    pub(crate) fn cache_from_prefix(
        &self,
        prefix: &[(Tensor, Tensor)],
        prefix_len: usize,
        batch: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        let shape = (self.cfg.n_kv_heads, capacity, self.cfg.head_dim);
        let zeros = || Tensor::zeros(shape, DType::F32, &self.device);
        let rows = (0..batch)
            .map(|_| {
                let layers = (0..self.cfg.n_layers)
                    .map(|i| {
                        let (k, v) = (zeros()?, zeros()?);
                        if let Some((pk, pv)) = prefix.get(i).filter(|_| prefix_len > 0) {
                            k.slice_set(pk, 1, 0)?;
                            v.slice_set(pv, 1, 0)?;
                        }
                        Ok((k, v))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(RowCache {
                    layers,
                    len: prefix_len,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache { rows, capacity })
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
            return Err(Error::Options(format!(
                "step of {b} rows with {} lengths for a cache of {} rows",
                step.valid.len(),
                cache.rows.len()
            )));
        }
        for (row, &n) in cache.rows.iter().zip(&step.valid) {
            if n > t || row.len + n > cache.capacity {
                return Err(Error::Options(format!(
                    "KV cache capacity {} exceeded by a step reaching {}",
                    cache.capacity,
                    row.len + n
                )));
            }
        }
        let mut x = match &self.embed {
            Embedding::Quantized(q) => q.embedding(&step.ids)?,
            Embedding::Dense(w) => {
                w.index_select(&step.ids.flatten_all()?, 0)?
                    .reshape((b, t, self.cfg.hidden))?
            }
        };
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
                    .then(|| causal_mask(n, row.len, &self.device))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, layer) in self.layers.iter().enumerate() {
            let l = lora.and_then(|w| w.layers.get(i));
            let pick = |m: TargetModule| l.and_then(|s| s[module_index(m)].as_ref());
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.cfg.rms_eps as f32)?;
            let a = self.attention(layer, i, &h, &cos, &sin, &step.valid, &masks, cache, &pick)?;
            x = (x + a)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.cfg.rms_eps as f32)?;
            let g = layer.gate.forward(&h, pick(TargetModule::Gate))?;
            let u = layer.up.forward(&h, pick(TargetModule::Up))?;
            let m = (candle_nn::ops::silu(&g)? * u)?;
            x = (x + layer.down.forward(&m, pick(TargetModule::Down))?)?;
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

    /// Self-attention of layer `i`: projections over the whole padded batch, then attention
    /// row by row over that row's own cache.
    #[allow(clippy::too_many_arguments)]
    fn attention<'l>(
        &self,
        layer: &Layer,
        i: usize,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        valid: &[usize],
        masks: &[Option<Tensor>],
        cache: &KvCache,
        pick: &dyn Fn(TargetModule) -> Option<&'l LoraLinear>,
    ) -> Result<Tensor> {
        let c = &self.cfg;
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let q = layer.q.forward(x, pick(TargetModule::Q))?;
        let k = layer.k.forward(x, pick(TargetModule::K))?;
        let v = layer.v.forward(x, pick(TargetModule::V))?;
        let mut q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let mut k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = candle_nn::ops::rms_norm(&q, qn, c.rms_eps as f32)?;
            k = candle_nn::ops::rms_norm(&k, kn, c.rms_eps as f32)?;
        }
        let (q, k) = if c.rope_interleaved {
            (
                candle_nn::rotary_emb::rope_i(&q, cos, sin)?,
                candle_nn::rotary_emb::rope_i(&k, cos, sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope(&q, cos, sin)?,
                candle_nn::rotary_emb::rope(&k, cos, sin)?,
            )
        };
        // Grouped-query attention without repeating K/V: the `groups` query heads that share KV
        // head `j` are consecutive, so `[heads, n, hd]` reshapes to `[kv_heads, groups·n, hd]`.
        let groups = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut ys = Vec::with_capacity(b);
        for (r, ((row, &n), mask)) in cache.rows.iter().zip(valid).zip(masks).enumerate() {
            if n == 0 {
                ys.push(Tensor::zeros((t, nh * hd), DType::F32, &self.device)?);
                continue;
            }
            let (ck, cv) = &row.layers[i];
            let past = row.len;
            // The cache tensors are preallocated; writing in place avoids re-copying the
            // whole history at every decoded token.
            ck.slice_set(&k.get(r)?.narrow(1, 0, n)?.contiguous()?, 1, past)?;
            cv.slice_set(&v.get(r)?.narrow(1, 0, n)?.contiguous()?, 1, past)?;
            let total = past + n;
            let keys = ck.narrow(1, 0, total)?;
            let values = cv.narrow(1, 0, total)?;
            let qr = q.get(r)?.narrow(1, 0, n)?.reshape((nkv, groups * n, hd))?;
            let scores = (qr.matmul(&keys.t()?)? * scale)?;
            let scores = match mask {
                Some(mask) => scores
                    .reshape((nkv, groups, n, total))?
                    .broadcast_add(mask)?
                    .reshape((nkv, groups * n, total))?,
                None => scores,
            };
            let probs = candle_nn::ops::softmax_last_dim(&scores)?;
            let y = probs
                .matmul(&values)?
                .reshape((nh, n, hd))?
                .transpose(0, 1)?
                .reshape((n, nh * hd))?;
            ys.push(if n < t {
                y.pad_with_zeros(0, 0, t - n)?
            } else {
                y
            });
        }
        let y = Tensor::stack(&ys, 0)?;
        layer.o.forward(&y, pick(TargetModule::O))
    }

    /// Vocabulary logits `[n, vocab]` of hidden rows `[n, hidden]`.
    pub(crate) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(hidden)
    }
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

/// `[t, past + t]` additive causal mask for `t` new tokens after `past` cached ones.
fn causal_mask(t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (t, total), device)?)
}

/// Opens a GGUF file for reading tensors.
pub(crate) fn open(path: &std::path::Path) -> Result<(Content, BufReader<File>)> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = BufReader::new(file);
    let ct = Content::read(&mut reader)?;
    Ok((ct, reader))
}
