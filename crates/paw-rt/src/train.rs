//! The interpreter as the compiler's trainer sees it (feature `train`): the runtime's own
//! model (same loader, shape checks and decoder block, see `model.rs`), split into frozen
//! lower layers that run once per example and trained upper layers through which gradients
//! flow to LoRA factors.
//!
//! Where no gradient is needed the block runs the runtime's fused kernels and quantized
//! matmuls, so a trained adapter sees the numbers it will run with. Where gradients flow,
//! RMSNorm, softmax and rotary embedding are composed from differentiable ops, and each frozen
//! projection attaches `FrozenLinear`, whose backward gives only the input gradient, from a
//! dequantized copy of the weight (quantized matmul has no backward pass).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor, D};
use paw_format::TargetModule;

use crate::error::{Error, Result};
use crate::gguf::ModelConfig;
pub use crate::lora::LoraDelta;
use crate::lora::N_MODULES;
use crate::model::{causal_mask, BlockOps, GgufSource, Linear, Model, RawWeight, WeightSource};

/// One layer's updates, indexed like [`TargetModule::ALL`].
pub type LayerDeltas<L> = [Option<L>; N_MODULES];

/// The interpreter's model, its top layers holding dequantized copies for backward passes.
#[derive(Debug)]
pub struct TrainModel {
    model: Model,
    first_trained: usize,
}

/// Hidden states after the frozen layers, plus the frozen layers' keys/values.
#[derive(Debug, Clone)]
pub struct Lower {
    /// `[1, t, hidden]` input of the first trained layer.
    pub hidden: Tensor,
    /// Keys/values `[1, kv_heads, t, head_dim]` of each frozen layer.
    pub kv: Vec<(Tensor, Tensor)>,
}

/// Tensors by GGUF name, as a weight source.
struct TensorMap(BTreeMap<String, Tensor>);

impl WeightSource for TensorMap {
    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    fn get(&mut self, name: &str, _: &Device) -> Result<RawWeight> {
        let t = self.0.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_string(),
        })?;
        Ok(RawWeight::Dense(t.clone()))
    }
}

impl TrainModel {
    /// Loads a GGUF interpreter whose top `trained_layers` layers will be trained.
    pub fn load(path: &Path, trained_layers: usize, max_positions: usize) -> Result<Self> {
        let (content, reader) = crate::model::open(path)?;
        let cfg = ModelConfig::from_gguf(&content)?;
        let mut src = GgufSource { content, reader };
        Self::from_source(&mut src, cfg, trained_layers, max_positions)
    }

    /// A model from dense tensors named as in GGUF files (`blk.{i}.attn_q.weight`, ...), in
    /// their own dtype: f64 tensors give an f64 model, for gradient checks.
    pub fn from_tensors(
        cfg: ModelConfig,
        tensors: BTreeMap<String, Tensor>,
        trained_layers: usize,
        max_positions: usize,
    ) -> Result<Self> {
        Self::from_source(&mut TensorMap(tensors), cfg, trained_layers, max_positions)
    }

    fn from_source(
        src: &mut dyn WeightSource,
        cfg: ModelConfig,
        trained_layers: usize,
        max_positions: usize,
    ) -> Result<Self> {
        let first_trained = cfg.n_layers.saturating_sub(trained_layers);
        let model = Model::load(
            src,
            cfg,
            max_positions,
            None,
            Some(first_trained),
            &Device::Cpu,
        )?;
        Ok(Self {
            model,
            first_trained,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.model.cfg
    }

    /// The first trained layer; the layers below it are frozen.
    pub fn first_trained(&self) -> usize {
        self.first_trained
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    /// The dtype of the model's activations (f32, or f64 for a model of f64 tensors).
    pub fn dtype(&self) -> DType {
        self.model.norm.dtype()
    }

    /// `[in_features, out_features]` of a projection.
    pub fn dims(&self, m: TargetModule) -> [usize; 2] {
        self.model.cfg.projection_dims(self.model.ffn, m)
    }

    /// Runs `ids` (one row, after `past`'s positions) through the frozen layers.
    pub fn lower(&self, ids: &[u32], past: Option<&Lower>) -> Result<Lower> {
        let idx = Tensor::new(ids, self.device())?.unsqueeze(0)?;
        let mut x = self.model.embed(&idx)?;
        let pos0 = past.map_or(0, |p| p.hidden.dim(1).unwrap_or(0));
        let mut kv = Vec::with_capacity(self.first_trained);
        for i in 0..self.first_trained {
            let pkv = past.and_then(|p| p.kv.get(i));
            let (y, k, v) = self.layer::<NoDelta>(i, &x, pos0, pkv, None, false)?;
            x = y;
            kv.push((k, v));
        }
        Ok(Lower { hidden: x, kv })
    }

    /// Runs the trained layers over a shared prefix `[1, p, d]` and right-padded rows
    /// `[b, t, d]` that follow it; returns the rows' hidden states after the final norm.
    pub fn upper<L: LoraDelta>(
        &self,
        prefix: &Tensor,
        rows: &Tensor,
        lora: &[LayerDeltas<L>],
        grad: bool,
    ) -> Result<Tensor> {
        let p = prefix.dim(1)?;
        let mut hp = prefix.clone();
        let mut hr = rows.clone();
        for i in self.first_trained..self.model.layers.len() {
            let l = lora.get(i - self.first_trained);
            let (y, k, v) = self.layer(i, &hp, 0, None, l, grad)?;
            hr = self.layer(i, &hr, p, Some(&(k, v)), l, grad)?.0;
            hp = y;
        }
        rms_norm(&hr, &self.model.norm, self.model.cfg.rms_eps, grad)
    }

    /// Vocabulary logits `[n, vocab]` of final hidden rows `[n, hidden]`.
    pub fn logits(&self, h: &Tensor, grad: bool) -> Result<Tensor> {
        frozen_forward(&self.model.lm_head, h, grad, self.model.cfg.n_layers)
    }

    /// Decoder layer `i` over `x` `[b, t, d]` at positions `pos0..`, attending to `past`
    /// keys/values (batch 1, broadcast over rows). Returns output and this step's keys/values.
    fn layer<L: LoraDelta>(
        &self,
        i: usize,
        x: &Tensor,
        pos0: usize,
        past: Option<&(Tensor, Tensor)>,
        lora: Option<&LayerDeltas<L>>,
        grad: bool,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let t = x.dim(1)?;
        let dtype = x.dtype();
        let cos = self.model.cos.narrow(0, pos0, t)?.to_dtype(dtype)?;
        let sin = self.model.sin.narrow(0, pos0, t)?.to_dtype(dtype)?;
        let mut ops = TrainOps {
            layer: i,
            lora,
            grad,
            past,
            kv: None,
        };
        let y = self.model.layers[i].forward(&self.model.cfg, &mut ops, x, &cos, &sin)?;
        let (k, v) = ops.kv.ok_or(Error::FrozenLayer { layer: i })?;
        Ok((y, k, v))
    }
}

/// No adapter: the frozen layers' type parameter.
enum NoDelta {}

impl LoraDelta for NoDelta {
    fn delta(&self, _: &Tensor) -> Result<Tensor> {
        match *self {}
    }
}

/// How the trainer runs a block: differentiable kernels where gradients flow, the adapter
/// being trained, and attention to the prefix's keys/values broadcast over the rows.
struct TrainOps<'a, L> {
    layer: usize,
    lora: Option<&'a LayerDeltas<L>>,
    grad: bool,
    past: Option<&'a (Tensor, Tensor)>,
    /// This step's keys/values, once attended.
    kv: Option<(Tensor, Tensor)>,
}

impl<L: LoraDelta> BlockOps for TrainOps<'_, L> {
    fn rms_norm(&self, x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
        rms_norm(x, w, eps, self.grad)
    }

    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
        rope(x, cos, sin, interleaved, self.grad)
    }

    fn project(&self, lin: &Linear, m: TargetModule, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x2 = x.reshape((b * t, d))?;
        let mut y = frozen_forward(lin, &x2, self.grad, self.layer)?;
        if let Some(bias) = &lin.bias {
            y = y.broadcast_add(bias)?;
        }
        if let Some(l) = self.lora.and_then(|l| l[m.index()].as_ref()) {
            y = (y + l.delta(&x2)?)?;
        }
        let out = y.dim(1)?;
        Ok(y.reshape((b, t, out))?)
    }

    fn attend(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
        let (b, nh, t, hd) = q.dims4()?;
        let nkv = k.dim(1)?;
        let groups = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let qg = q.reshape((b, nkv, groups * t, hd))?;
        // The runtime's arithmetic exactly (paw-rt `RunOps::attend`): scores over the prefix and
        // over the row by separate products, joined; probs·V summed over the two parts.
        let own = (qg.matmul(&k.t()?)? * scale)?;
        let past = match self.past {
            Some((pk, pv)) => {
                let shape = (b, nkv, pk.dim(2)?, hd);
                Some((
                    pk.broadcast_as(shape)?.contiguous()?,
                    pv.broadcast_as(shape)?.contiguous()?,
                ))
            }
            None => None,
        };
        let scores = match &past {
            Some((pk, _)) => Tensor::cat(&[&(qg.matmul(&pk.t()?)? * scale)?, &own], 3)?,
            None => own,
        };
        let total = scores.dim(3)?;
        let scores = scores.reshape((b, nh, t, total))?;
        let mask = causal_mask(t, total - t, scores.dtype(), q.device())?;
        let scores = scores.broadcast_add(&mask)?;
        let probs = softmax(&scores, self.grad)?.reshape((b, nkv, groups * t, total))?;
        self.kv = Some((k.clone(), v.clone()));
        let mixed = match &past {
            Some((_, pv)) => {
                let p = pv.dim(2)?;
                let before = probs.narrow(3, 0, p)?.contiguous()?.matmul(pv)?;
                let after = probs.narrow(3, p, t)?.contiguous()?.matmul(v)?;
                (before + after)?
            }
            None => probs.matmul(v)?,
        };
        Ok(mixed
            .reshape((b, nh, t, hd))?
            .transpose(1, 2)?
            .reshape((b, t, nh * hd))?)
    }
}

/// `x·Wᵀ` `[n, out]` of `x` `[n, in]` with the frozen weight's exact runtime arithmetic; with
/// `grad`, gradients flow to `x` (not to W) through the weight's dequantized copy.
fn frozen_forward(lin: &Linear, x: &Tensor, grad: bool, layer: usize) -> Result<Tensor> {
    let y = lin.w.forward(&x.detach())?;
    if !grad {
        return Ok(y);
    }
    let w = lin.dense.clone().ok_or(Error::FrozenLayer { layer })?;
    Ok(x.apply_op2(&y.contiguous()?, FrozenLinear { w })?)
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

/// Whether the runtime's fused kernel applies: no gradient needed, and f32 (an f64 model has
/// no fused kernels).
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
