//! The interpreter's forward pass in differentiable form, for LoRA training.
//!
//! This duplicates the structure of paw-rt's `model.rs` (which is crate-private and built on
//! fused kernels without backward passes). Frozen lower layers run exactly like the runtime
//! (quantized matmuls, fused norm/softmax/rope kernels). Trained upper layers run the same
//! quantized matmuls forward but attach a [`FrozenLinear`] op whose backward computes only the
//! input gradient from a dequantized copy of the weight, and use composed (differentiable)
//! RMSNorm, softmax and rotary embedding.

use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, Var, D};
use paw_format::TargetModule;
use paw_rt::{Matmul, ModelConfig};

use crate::error::{CompileError, Result};

/// A frozen projection weight `[out, in]`.
#[derive(Debug)]
pub(crate) enum Weight {
    /// Quantized, multiplied exactly as the runtime does; `dense` is the dequantized copy
    /// backward passes need.
    Quant { q: Matmul, dense: Option<Tensor> },
    /// Dense weight (the tiny random test model).
    #[cfg(test)]
    Dense(Tensor),
}

/// Backward-only companion of a frozen linear map: forward passes the precomputed output
/// through unchanged; backward gives the input gradient `grad · W` and no weight gradient,
/// which candle's own matmul would compute (and quantized matmul cannot compute at all).
struct FrozenLinear {
    w: Tensor,
}

impl CustomOp2 for FrozenLinear {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (start, end) = l2
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen-linear: non-contiguous".into()))?;
        let out = match s2 {
            CpuStorage::F32(v) => CpuStorage::F32(v[start..end].to_vec()),
            CpuStorage::F64(v) => CpuStorage::F64(v[start..end].to_vec()),
            _ => {
                return Err(candle_core::Error::Msg(
                    "frozen-linear: f32/f64 only".into(),
                ))
            }
        };
        Ok((out, l2.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(grad.matmul(&self.w)?), None))
    }
}

impl Weight {
    /// `x` is `[n, in]`; returns `[n, out]`. With `grad`, gradients flow to `x` (not to W).
    fn forward(&self, x: &Tensor, grad: bool) -> Result<Tensor> {
        let xd = x.detach();
        let (y, w) = match self {
            Weight::Quant { q, dense } => (q.forward(&xd)?, dense.as_ref()),
            #[cfg(test)]
            Weight::Dense(w) => (xd.matmul(&w.t()?)?, Some(w)),
        };
        if !grad {
            return Ok(y);
        }
        let w =
            w.ok_or_else(|| CompileError::Options("no dense weight for a trained layer".into()))?;
        Ok(x.apply_op2(&y.contiguous()?, FrozenLinear { w: w.clone() })?)
    }
}

/// One trainable low-rank update `scale · B · A`.
#[derive(Debug)]
pub(crate) struct Lora {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
}

/// LoRA factors for every (layer, module) trained, indexed like [`TargetModule::ALL`].
pub(crate) type LayerLora = [Option<Lora>; 7];

fn module_slot(m: TargetModule) -> usize {
    TargetModule::ALL.iter().position(|x| *x == m).unwrap_or(0)
}

#[derive(Debug)]
struct Proj {
    w: Weight,
    bias: Option<Tensor>,
}

impl Proj {
    /// `x` is `[b, t, in]`.
    fn forward(&self, x: &Tensor, lora: Option<&Lora>, grad: bool) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x2 = x.reshape((b * t, d))?;
        let mut y = self.w.forward(&x2, grad)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(l) = lora {
            let h = x2.matmul(&l.a.as_tensor().t()?)?;
            y = (y + (h.matmul(&l.b.as_tensor().t()?)? * l.scale)?)?;
        }
        let out = y.dim(1)?;
        Ok(y.reshape((b, t, out))?)
    }
}

#[derive(Debug)]
struct Layer {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// The interpreter's weights as the trainer needs them.
#[derive(Debug)]
pub(crate) struct TrainModel {
    pub cfg: ModelConfig,
    /// `[in, out]` dims per module, for creating LoRA factors.
    pub ffn: usize,
    /// First layer with dense copies (trainable); layers below are frozen and run once.
    pub first_trained: usize,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Weight,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// Hidden states after the frozen layers, plus the frozen layers' keys/values.
#[derive(Debug, Clone)]
pub(crate) struct Lower {
    /// `[1, t, hidden]` input of layer `first_trained`.
    pub hidden: Tensor,
    /// Keys/values `[1, kv_heads, t, head_dim]` of each frozen layer.
    pub kv: Vec<(Tensor, Tensor)>,
}

impl TrainModel {
    /// Loads a GGUF interpreter; its top `trained_layers` layers also keep dequantized weights.
    pub(crate) fn load(path: &Path, trained_layers: usize, max_positions: usize) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| CompileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = std::io::BufReader::new(file);
        let ct = Content::read(&mut reader)?;
        let cfg = ModelConfig::from_gguf(&ct)?;
        let first_trained = cfg.n_layers.saturating_sub(trained_layers);
        let device = Device::Cpu;
        let mut get = |name: &str| -> Result<candle_core::quantized::QTensor> {
            if !ct.tensor_infos.contains_key(name) {
                return Err(CompileError::Options(format!(
                    "GGUF tensor `{name}` is missing"
                )));
            }
            Ok(ct.tensor(&mut reader, name, &device)?)
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let trained = i >= first_trained;
            let p = format!("blk.{i}");
            let mut proj = |stem: &str, bias: bool| -> Result<Proj> {
                let qt = get(&format!("{p}.{stem}.weight"))?;
                let dense = if trained {
                    Some(qt.dequantize(&device)?)
                } else {
                    None
                };
                let w = Weight::Quant {
                    q: Matmul::quantized(qt, &device)?,
                    dense,
                };
                let bias = if bias {
                    Some(get(&format!("{p}.{stem}.bias"))?.dequantize(&device)?)
                } else {
                    None
                };
                Ok(Proj { w, bias })
            };
            let q = proj("attn_q", cfg.qkv_bias)?;
            let k = proj("attn_k", cfg.qkv_bias)?;
            let v = proj("attn_v", cfg.qkv_bias)?;
            let o = proj("attn_output", false)?;
            let gate = proj("ffn_gate", false)?;
            let up = proj("ffn_up", false)?;
            let down = proj("ffn_down", false)?;
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(get(&format!("{p}.attn_q_norm.weight"))?.dequantize(&device)?),
                    Some(get(&format!("{p}.attn_k_norm.weight"))?.dequantize(&device)?),
                )
            } else {
                (None, None)
            };
            layers.push(Layer {
                attn_norm: get(&format!("{p}.attn_norm.weight"))?.dequantize(&device)?,
                q,
                k,
                v,
                o,
                q_norm,
                k_norm,
                ffn_norm: get(&format!("{p}.ffn_norm.weight"))?.dequantize(&device)?,
                gate,
                up,
                down,
            });
        }
        let embed_q = get("token_embd.weight")?;
        let embed = embed_q.dequantize(&device)?;
        // Tied embeddings: without `output.weight` the embedding table is the LM head.
        let head_q = if ct.tensor_infos.contains_key("output.weight") {
            get("output.weight")?
        } else {
            embed_q
        };
        let head_dense = head_q.dequantize(&device)?;
        let lm_head = Weight::Quant {
            q: Matmul::quantized(head_q, &device)?,
            dense: Some(head_dense),
        };
        let ffn = layers
            .first()
            .map(|l| match &l.gate.w {
                Weight::Quant { q, .. } => q.out_features(),
                #[cfg(test)]
                Weight::Dense(t) => Ok(t.dims2()?.0),
            })
            .transpose()?
            .unwrap_or(0);
        let norm = get("output_norm.weight")?.dequantize(&device)?;
        let (cos, sin) = cfg.rope_tables(max_positions, &device)?;
        Ok(Self {
            cfg,
            ffn,
            first_trained,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
            device,
        })
    }

    pub(crate) fn device(&self) -> &Device {
        &self.device
    }

    pub(crate) fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// `[in_features, out_features]` of a projection.
    pub(crate) fn dims(&self, m: TargetModule) -> (usize, usize) {
        let c = &self.cfg;
        let q = c.n_heads * c.head_dim;
        let kv = c.n_kv_heads * c.head_dim;
        match m {
            TargetModule::Q => (c.hidden, q),
            TargetModule::K | TargetModule::V => (c.hidden, kv),
            TargetModule::O => (q, c.hidden),
            TargetModule::Gate | TargetModule::Up => (c.hidden, self.ffn),
            TargetModule::Down => (self.ffn, c.hidden),
        }
    }

    /// Runs `ids` (one row, after `past`'s positions) through the frozen layers.
    pub(crate) fn lower(&self, ids: &[u32], past: Option<&Lower>) -> Result<Lower> {
        let t = ids.len();
        let idx = Tensor::new(ids, &self.device)?;
        let mut x = self
            .embed
            .index_select(&idx, 0)?
            .reshape((1, t, self.cfg.hidden))?;
        let pos0 = past.map_or(0, |p| p.hidden.dim(1).unwrap_or(0));
        let mut kv = Vec::with_capacity(self.first_trained);
        for i in 0..self.first_trained {
            let pkv = past.and_then(|p| p.kv.get(i));
            let (y, k, v) = self.layer(i, &x, pos0, pkv, None, false)?;
            x = y;
            kv.push((k, v));
        }
        Ok(Lower { hidden: x, kv })
    }

    /// Runs the trained layers over a shared prefix `[1, p, d]` and right-padded rows
    /// `[b, t, d]` that follow it; returns the rows' hidden states after the final norm.
    pub(crate) fn upper(
        &self,
        prefix: &Tensor,
        rows: &Tensor,
        lora: &[LayerLora],
        grad: bool,
    ) -> Result<Tensor> {
        let p = prefix.dim(1)?;
        let mut hp = prefix.clone();
        let mut hr = rows.clone();
        for i in self.first_trained..self.layers.len() {
            let l = lora.get(i - self.first_trained);
            let (y, k, v) = self.layer(i, &hp, 0, None, l, grad)?;
            hr = self.layer(i, &hr, p, Some(&(k, v)), l, grad)?.0;
            hp = y;
        }
        rms_norm(&hr, &self.norm, self.cfg.rms_eps, grad)
    }

    /// Vocabulary logits `[n, vocab]` of final hidden rows `[n, hidden]`.
    pub(crate) fn logits(&self, h: &Tensor, grad: bool) -> Result<Tensor> {
        self.lm_head.forward(h, grad)
    }

    /// One decoder layer over `x` `[b, t, d]` at positions `pos0..`, attending to `past`
    /// keys/values (batch 1, broadcast over rows). Returns output and this step's keys/values.
    fn layer(
        &self,
        i: usize,
        x: &Tensor,
        pos0: usize,
        past: Option<&(Tensor, Tensor)>,
        lora: Option<&LayerLora>,
        grad: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let c = &self.cfg;
        let layer = &self.layers[i];
        let pick = |m: TargetModule| lora.and_then(|l| l[module_slot(m)].as_ref());
        let (b, t, _) = x.dims3()?;
        let (nh, nkv, hd) = (c.n_heads, c.n_kv_heads, c.head_dim);
        let h = rms_norm(x, &layer.attn_norm, c.rms_eps, grad)?;
        let q = layer.q.forward(&h, pick(TargetModule::Q), grad)?;
        let k = layer.k.forward(&h, pick(TargetModule::K), grad)?;
        let v = layer.v.forward(&h, pick(TargetModule::V), grad)?;
        let mut q = q.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous()?;
        let mut k = k.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        let v = v.reshape((b, t, nkv, hd))?.transpose(1, 2)?.contiguous()?;
        if let (Some(qn), Some(kn)) = (&layer.q_norm, &layer.k_norm) {
            q = rms_norm(&q, qn, c.rms_eps, grad)?;
            k = rms_norm(&k, kn, c.rms_eps, grad)?;
        }
        let cos = self.cos.narrow(0, pos0, t)?;
        let sin = self.sin.narrow(0, pos0, t)?;
        let q = rope(&q, &cos, &sin, c.rope_interleaved, grad)?;
        let k = rope(&k, &cos, &sin, c.rope_interleaved, grad)?;
        let (keys, values) = match past {
            Some((pk, pv)) => {
                let p = pk.dim(2)?;
                let shape = (b, nkv, p, hd);
                (
                    Tensor::cat(&[&pk.broadcast_as(shape)?.contiguous()?, &k], 2)?,
                    Tensor::cat(&[&pv.broadcast_as(shape)?.contiguous()?, &v], 2)?,
                )
            }
            None => (k.clone(), v.clone()),
        };
        let total = keys.dim(2)?;
        let groups = nh / nkv;
        let qg = q.reshape((b, nkv, groups * t, hd))?;
        let scores = (qg.matmul(&keys.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = scores.reshape((b, nh, t, total))?;
        let mask = causal_mask(t, total - t, scores.dtype(), &self.device)?;
        let scores = scores.broadcast_add(&mask)?;
        let probs = softmax(&scores, grad)?.reshape((b, nkv, groups * t, total))?;
        let y = probs
            .matmul(&values)?
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?;
        let x = (x + layer.o.forward(&y, pick(TargetModule::O), grad)?)?;
        let h = rms_norm(&x, &layer.ffn_norm, c.rms_eps, grad)?;
        let g = layer.gate.forward(&h, pick(TargetModule::Gate), grad)?;
        let u = layer.up.forward(&h, pick(TargetModule::Up), grad)?;
        let m = (g.silu()? * u)?;
        let x = (x + layer.down.forward(&m, pick(TargetModule::Down), grad)?)?;
        Ok((x, k, v))
    }
}

/// Whether the runtime's fused kernel applies: no gradient needed, and f32 (the f64 test
/// model has no fused kernels).
fn fused(x: &Tensor, grad: bool) -> bool {
    !grad && x.dtype() == DType::F32
}

/// RMSNorm; composed from elementary ops when gradients must flow (the fused kernel has none).
fn rms_norm(x: &Tensor, w: &Tensor, eps: f64, grad: bool) -> Result<Tensor> {
    if fused(x, grad) {
        return Ok(candle_nn::ops::rms_norm(x, w, eps as f32)?);
    }
    let inv = (x.sqr()?.mean_keepdim(D::Minus1)? + eps)?.sqrt()?.recip()?;
    Ok(x.broadcast_mul(&inv)?.broadcast_mul(w)?)
}

/// Softmax over the last axis; the max is detached (it cancels out of the gradient).
fn softmax(x: &Tensor, grad: bool) -> Result<Tensor> {
    if fused(x, grad) {
        return Ok(candle_nn::ops::softmax_last_dim(x)?);
    }
    let m = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&m)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?)
}

/// Rotary embedding of `x` `[b, h, t, d]` with tables `[t, d/2]`: interleaved pairs (llama's
/// GGUF layout) or the NeoX half split (Qwen).
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool, grad: bool) -> Result<Tensor> {
    if fused(x, grad) {
        return Ok(if interleaved {
            candle_nn::rotary_emb::rope_i(&x.contiguous()?, cos, sin)?
        } else {
            candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?
        });
    }
    let (b, h, t, d) = x.dims4()?;
    let half = d / 2;
    if interleaved {
        let xs = x.reshape((b, h, t, half, 2))?;
        let x1 = xs.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
        let x2 = xs.narrow(D::Minus1, 1, 1)?.squeeze(D::Minus1)?;
        let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
        let o2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
        Ok(Tensor::stack(&[o1, o2], D::Minus1)?.reshape((b, h, t, d))?)
    } else {
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let o1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
        let o2 = (x1.broadcast_mul(sin)? + x2.broadcast_mul(cos)?)?;
        Ok(Tensor::cat(&[o1, o2], D::Minus1)?)
    }
}

/// `[t, past + t]` additive causal mask. A large finite negative instead of -inf keeps
/// `0 · inf` NaNs out of the backward pass; exp underflows to exactly 0 either way.
fn causal_mask(t: usize, past: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { -1e9 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(data, (t, total), device)?.to_dtype(dtype)?)
}

#[cfg(test)]
pub(crate) mod tiny {
    //! A tiny random model in f64 for gradient checks.
    use super::*;
    use crate::rng::SplitMix64;
    use paw_rt::Architecture;

    fn rand(rng: &mut SplitMix64, shape: (usize, usize), s: f64) -> Tensor {
        let v: Vec<f64> = (0..shape.0 * shape.1)
            .map(|_| (rng.next_f64() * 2.0 - 1.0) * s)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
    }

    pub(crate) fn model(interleaved: bool, seed: u64) -> TrainModel {
        let mut rng = SplitMix64::new(seed);
        let cfg = ModelConfig {
            architecture: if interleaved {
                Architecture::Llama
            } else {
                Architecture::Qwen2
            },
            n_layers: 2,
            hidden: 16,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 4,
            rope_theta: 10_000.0,
            rms_eps: 1e-6,
            context_length: 64,
            rope_interleaved: interleaved,
            qkv_bias: !interleaved,
            qk_norm: false,
        };
        let (d, f, kv, vocab) = (16, 24, 8, 11);
        let mut proj = |o: usize, i: usize, bias: bool| Proj {
            w: Weight::Dense(rand(&mut rng, (o, i), 0.4)),
            bias: bias.then(|| rand(&mut rng, (1, o), 0.1).reshape(o).expect("bias")),
        };
        let layers = (0..2)
            .map(|_| Layer {
                attn_norm: Tensor::ones(d, DType::F64, &Device::Cpu).expect("ones"),
                q: proj(d, d, !interleaved),
                k: proj(kv, d, !interleaved),
                v: proj(kv, d, !interleaved),
                o: proj(d, d, false),
                q_norm: None,
                k_norm: None,
                ffn_norm: Tensor::ones(d, DType::F64, &Device::Cpu).expect("ones"),
                gate: proj(f, d, false),
                up: proj(f, d, false),
                down: proj(d, f, false),
            })
            .collect();
        let embed = rand(&mut rng, (vocab, d), 1.0);
        let (cos, sin) = cfg.rope_tables(64, &Device::Cpu).expect("rope");
        let (cos, sin) = (
            cos.to_dtype(DType::F64).expect("cos"),
            sin.to_dtype(DType::F64).expect("sin"),
        );
        TrainModel {
            cfg,
            ffn: f,
            first_trained: 1,
            lm_head: Weight::Dense(embed.clone()),
            embed,
            layers,
            norm: Tensor::ones(d, DType::F64, &Device::Cpu).expect("ones"),
            cos,
            sin,
            device: Device::Cpu,
        }
    }
}
