//! The trainable LoRA factors. The model they train on is paw-rt's own
//! ([`paw_rt::train::TrainModel`]): same loader, same decoder block, differentiable where
//! gradients flow.

use candle_core::{Tensor, Var};
use paw_rt::train::{LayerDeltas, LoraDelta};

/// One trainable low-rank update `scale · B · A`.
#[derive(Debug)]
pub(crate) struct Lora {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
}

impl LoraDelta for Lora {
    /// `scale · (x · Aᵀ) · Bᵀ` for `x` `[n, in]`.
    fn delta(&self, x: &Tensor) -> paw_rt::Result<Tensor> {
        let h = x.matmul(&self.a.as_tensor().t()?)?;
        Ok((h.matmul(&self.b.as_tensor().t()?)? * self.scale)?)
    }
}

/// LoRA factors for every (layer, module) trained, indexed like
/// [`paw_format::TargetModule::ALL`].
pub(crate) type LayerLora = LayerDeltas<Lora>;

#[cfg(test)]
pub(crate) mod tiny {
    //! A tiny random model in f64 for gradient checks.
    use std::collections::BTreeMap;

    use candle_core::{DType, Device, Tensor};
    use paw_rt::train::TrainModel;
    use paw_rt::{Architecture, ModelConfig, SplitMix64};

    /// Two layers (the top one trained), hidden 16, 4 heads over 2 KV heads, vocabulary 11,
    /// tied embeddings; llama's interleaved rotary layout or Qwen2's half split with q/k/v bias.
    pub(crate) fn model(interleaved: bool, seed: u64) -> TrainModel {
        let mut rng = SplitMix64::new(seed);
        let mut rand = |shape: &[usize], s: f64| -> Tensor {
            let n = shape.iter().product();
            let v: Vec<f64> = (0..n).map(|_| (rng.next_f64() * 2.0 - 1.0) * s).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
        };
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
        let ones = || Tensor::ones(d, DType::F64, &Device::Cpu).expect("ones");
        let mut t = BTreeMap::new();
        for i in 0..2 {
            let p = format!("blk.{i}");
            for (stem, out, inp, bias) in [
                ("attn_q", d, d, !interleaved),
                ("attn_k", kv, d, !interleaved),
                ("attn_v", kv, d, !interleaved),
                ("attn_output", d, d, false),
                ("ffn_gate", f, d, false),
                ("ffn_up", f, d, false),
                ("ffn_down", d, f, false),
            ] {
                t.insert(format!("{p}.{stem}.weight"), rand(&[out, inp], 0.4));
                if bias {
                    t.insert(format!("{p}.{stem}.bias"), rand(&[out], 0.1));
                }
            }
            t.insert(format!("{p}.attn_norm.weight"), ones());
            t.insert(format!("{p}.ffn_norm.weight"), ones());
        }
        t.insert("token_embd.weight".into(), rand(&[vocab, d], 1.0));
        t.insert("output_norm.weight".into(), ones());
        TrainModel::from_tensors(cfg, t, 1, 64).expect("tiny model")
    }
}
