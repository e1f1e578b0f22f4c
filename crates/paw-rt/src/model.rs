//! One decoder-only transformer forward pass for `llama`, `qwen2` and `qwen3` GGUF weights,
//! kept quantized, with an optional unmerged LoRA on every projection.
//!
//! Inputs are batches of equal-length rows with explicit per-token positions and an optional
//! additive mask, which is what lets right-padded batches reproduce single-row results.

use std::fs::File;
use std::io::{BufReader, Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Tensor};

use crate::error::{Error, Result};
use crate::ggml::q5_0_to_q8_0;
use crate::gguf::ModelConfig;
use crate::lora::{module_index, LoraLinear, LoraWeights};
use paw_format::TargetModule;

/// A projection of the base model: quantized weight plus optional bias.
#[derive(Debug)]
struct Linear {
    w: QMatMul,
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
    lm_head: QMatMul,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Per-layer key/value cache `[batch, kv_heads, capacity, head_dim]`, filled up to `len`.
#[derive(Debug, Clone)]
pub(crate) struct KvCache {
    layers: Vec<(Tensor, Tensor)>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Keeps only the given batch rows (indices into the current batch), in that order.
    pub(crate) fn retain_rows(&mut self, rows: &[usize]) -> Result<()> {
        let Some((k0, _)) = self.layers.first() else {
            return Ok(());
        };
        let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
        let idx = Tensor::new(idx.as_slice(), k0.device())?;
        for (k, v) in &mut self.layers {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        Ok(())
    }

    /// Keys/values of positions `0..len` as `(k, v)` per layer, batch 1 expected.
    pub(crate) fn view(&self) -> Result<Vec<(Tensor, Tensor)>> {
        self.layers
            .iter()
            .map(|(k, v)| Ok((k.narrow(2, 0, self.len)?, v.narrow(2, 0, self.len)?)))
            .collect()
    }
}

/// One step of input to [`Model::forward`].
#[derive(Debug)]
pub(crate) struct Step {
    /// `[batch, t]` u32 token ids.
    pub ids: Tensor,
    /// `[batch, t]` u32 rotary positions.
    pub positions: Tensor,
    /// `[batch, 1, t, cache_len + t]` f32 additive mask; `None` means plain causal.
    pub mask: Option<Tensor>,
}

impl Model {
    pub(crate) fn load<R: Read + Seek>(
        ct: &Content,
        reader: &mut R,
        cfg: ModelConfig,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let mut get = |name: &str| -> Result<QTensor> {
            if !ct.tensor_infos.contains_key(name) {
                return Err(Error::MissingTensor {
                    name: name.to_string(),
                });
            }
            Ok(ct.tensor(reader, name, device)?)
        };
        let dense = |q: QTensor| -> Result<Tensor> { Ok(q.dequantize(device)?) };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("blk.{i}");
            let mut lin = |stem: &str, bias: bool| -> Result<Linear> {
                let w = QMatMul::from_qtensor(fast_matmul_layout(
                    get(&format!("{p}.{stem}.weight"))?,
                    device,
                )?)?;
                let bias = if bias {
                    Some(dense(get(&format!("{p}.{stem}.bias"))?)?)
                } else {
                    None
                };
                Ok(Linear { w, bias })
            };
            let q = lin("attn_q", cfg.qkv_bias)?;
            let k = lin("attn_k", cfg.qkv_bias)?;
            let v = lin("attn_v", cfg.qkv_bias)?;
            let o = lin("attn_output", false)?;
            let gate = lin("ffn_gate", false)?;
            let up = lin("ffn_up", false)?;
            let down = lin("ffn_down", false)?;
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(dense(get(&format!("{p}.attn_q_norm.weight"))?)?),
                    Some(dense(get(&format!("{p}.attn_k_norm.weight"))?)?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
                attn_norm: dense(get(&format!("{p}.attn_norm.weight"))?)?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                ffn_norm: dense(get(&format!("{p}.ffn_norm.weight"))?)?,
                gate,
                up,
                down,
            });
        }
        let ffn = match layers.first() {
            Some(l) => match &l.gate.w {
                QMatMul::QTensor(t) => t.shape().dims2()?.0,
                QMatMul::Tensor(t) | QMatMul::TensorF16(t) => t.dims2()?.0,
            },
            None => 0,
        };
        let embed_q = get("token_embd.weight")?;
        let hidden = embed_q.shape().dims2()?.1;
        // Tied embeddings: without `output.weight` the embedding table is the LM head.
        let head_name = if ct.tensor_infos.contains_key("output.weight") {
            "output.weight"
        } else {
            "token_embd.weight"
        };
        let lm_head = QMatMul::from_qtensor(fast_matmul_layout(get(head_name)?, device)?)?;
        let embed = if hidden % embed_q.dtype().block_size() == 0 {
            Embedding::Quantized(embed_q)
        } else {
            Embedding::Dense(embed_q.dequantize(device)?)
        };
        let norm = dense(get("output_norm.weight")?)?;
        let (cos, sin) = rope_tables(cfg.head_dim, cfg.rope_theta, max_positions, device)?;
        Ok(Self {
            cfg,
            ffn,
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

    /// An empty cache for `batch` rows and up to `capacity` positions.
    pub(crate) fn new_cache(&self, batch: usize, capacity: usize) -> Result<KvCache> {
        let shape = (batch, self.cfg.n_kv_heads, capacity, self.cfg.head_dim);
        let layers = (0..self.cfg.n_layers)
            .map(|_| {
                Ok((
                    Tensor::zeros(shape, DType::F32, &self.device)?,
                    Tensor::zeros(shape, DType::F32, &self.device)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(KvCache {
            layers,
            len: 0,
            capacity,
        })
    }

    /// A cache for `batch` rows whose first positions are a copy of `prefix` (batch 1).
    pub(crate) fn cache_from_prefix(
        &self,
        prefix: &[(Tensor, Tensor)],
        prefix_len: usize,
        batch: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        let mut cache = self.new_cache(batch, capacity)?;
        if prefix_len > 0 {
            for ((k, v), (pk, pv)) in cache.layers.iter_mut().zip(prefix) {
                let shape = (batch, self.cfg.n_kv_heads, prefix_len, self.cfg.head_dim);
                k.slice_set(&pk.broadcast_as(shape)?.contiguous()?, 2, 0)?;
                v.slice_set(&pv.broadcast_as(shape)?.contiguous()?, 2, 0)?;
            }
            cache.len = prefix_len;
        }
        Ok(cache)
    }

    /// Runs the layers over one step, appending its keys/values to `cache`, and returns the
    /// final-normed hidden states `[batch, t, hidden]`.
    pub(crate) fn forward(
        &self,
        step: &Step,
        cache: &mut KvCache,
        lora: Option<&LoraWeights>,
    ) -> Result<Tensor> {
        let (b, t) = step.ids.dims2()?;
        let total = cache.len + t;
        if total > cache.capacity {
            return Err(Error::Options(format!(
                "KV cache capacity {} exceeded by a step reaching {total}",
                cache.capacity
            )));
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
        for (i, layer) in self.layers.iter().enumerate() {
            let l = lora.and_then(|w| w.layers.get(i));
            let pick = |m: TargetModule| l.and_then(|s| s[module_index(m)].as_ref());
            let (ck, cv) = &cache.layers[i];
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, self.cfg.rms_eps as f32)?;
            let a = self.attention(layer, &h, &cos, &sin, step, ck, cv, cache.len, &pick)?;
            x = (x + a)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, self.cfg.rms_eps as f32)?;
            let g = layer.gate.forward(&h, pick(TargetModule::Gate))?;
            let u = layer.up.forward(&h, pick(TargetModule::Up))?;
            let m = (candle_nn::ops::silu(&g)? * u)?;
            x = (x + layer.down.forward(&m, pick(TargetModule::Down))?)?;
        }
        cache.len = total;
        Ok(candle_nn::ops::rms_norm(
            &x,
            &self.norm,
            self.cfg.rms_eps as f32,
        )?)
    }

    #[allow(clippy::too_many_arguments)]
    fn attention<'l>(
        &self,
        layer: &Layer,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        step: &Step,
        ck: &Tensor,
        cv: &Tensor,
        past: usize,
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
        // The cache tensors are preallocated; writing in place avoids re-copying the whole
        // history at every decoded token.
        ck.slice_set(&k, 2, past)?;
        cv.slice_set(&v, 2, past)?;
        let total = past + t;
        let keys = ck.narrow(2, 0, total)?;
        let values = cv.narrow(2, 0, total)?;
        // Grouped-query attention: KV head `h / groups` serves query head `h`. K/V are repeated
        // (as candle-transformers does) rather than stacking a group's query heads into one
        // matmul: the latter changes float summation order, and on SmolLM2 that last-bit
        // difference flips 8-bit activation rounding downstream and moves logits by ~0.7.
        let groups = nh / nkv;
        let (keys, values) = if groups > 1 {
            (
                Tensor::cat(&vec![&keys; groups], 2)?.reshape((b, nh, total, hd))?,
                Tensor::cat(&vec![&values; groups], 2)?.reshape((b, nh, total, hd))?,
            )
        } else {
            (keys.contiguous()?, values.contiguous()?)
        };
        let scores = (q.matmul(&keys.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = match &step.mask {
            Some(mask) => scores.broadcast_add(mask)?,
            None if t > 1 => scores.broadcast_add(&causal_mask(t, past, &self.device)?)?,
            None => scores,
        };
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = probs.matmul(&values)?;
        let y = y.transpose(1, 2)?.reshape((b, t, nh * hd))?;
        layer.o.forward(&y, pick(TargetModule::O))
    }

    /// Vocabulary logits `[n, vocab]` of hidden rows `[n, hidden]`.
    pub(crate) fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.lm_head.forward(hidden)?)
    }
}

/// Weights whose dtype candle only multiplies with scalar code are re-encoded losslessly.
fn fast_matmul_layout(t: QTensor, device: &Device) -> Result<QTensor> {
    if t.dtype() == GgmlDType::Q5_0 {
        q5_0_to_q8_0(&t, device)
    } else {
        Ok(t)
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

fn rope_tables(head_dim: usize, theta: f32, n: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let half = head_dim / 2;
    // f32 arithmetic as in candle-transformers' llama/qwen2 and llama.cpp: quantized models
    // amplify last-bit differences (8-bit activation rounding), so bit-compatible tables matter.
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32))
        .collect();
    let inv = Tensor::from_vec(inv, (1, half), device)?;
    let pos = Tensor::arange(0u32, n as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
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
