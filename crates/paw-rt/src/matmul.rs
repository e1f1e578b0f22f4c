//! Weight matmuls `x·Wᵀ` of the base model.
//!
//! Q8_0 and Q5_0 weights (most of a llama.cpp Q4_K_M file of a model whose rows are not a
//! multiple of 256, e.g. Qwen2.5-0.5B) run on paw-rt's own kernels (`crate::kernels`), one
//! copy each. Other block types (Q4_K, Q6_K...) and dense weights go through candle's
//! `QMatMul`.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

use crate::error::Result;
use crate::kernels::{BlockFormat, BlockMatrix, QuantizedActivations, BLOCK};

/// A frozen base-model weight `[out, in]` multiplied as `x·Wᵀ` (by the runtime and, through
/// the same model, by the trainer: `crate::train`).
#[derive(Debug)]
pub enum Matmul {
    /// paw-rt's kernels; shared with the embedding lookup when the model ties them.
    Blocks(Arc<BlockMatrix>),
    Candle(QMatMul),
}

impl Matmul {
    /// A block-quantized (or f32/f16 `QTensor`) weight `[out, in]`.
    pub fn quantized(t: QTensor, device: &Device) -> Result<Self> {
        if let Some(m) = block_matrix(&t, device)? {
            return Ok(Self::Blocks(Arc::new(m)));
        }
        Ok(Self::Candle(QMatMul::from_qtensor(t)?))
    }

    /// A dense f32 weight `[out, in]`.
    pub fn dense(w: Tensor) -> Self {
        Self::Candle(QMatMul::Tensor(w))
    }

    /// The weight when it runs on paw-rt's kernels.
    pub(crate) fn blocks(&self) -> Option<&Arc<BlockMatrix>> {
        match self {
            Self::Blocks(m) => Some(m),
            Self::Candle(_) => None,
        }
    }

    /// `x` is `[.., in]`; returns `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(w) => Ok(w.forward(x)?),
            Self::Blocks(w) => {
                let mut dims = x.dims().to_vec();
                let k = dims.pop().unwrap_or(0);
                let m: usize = dims.iter().product();
                if k != w.cols() {
                    return Err(candle_core::Error::ShapeMismatchBinaryOp {
                        lhs: x.shape().clone(),
                        rhs: (w.rows(), w.cols()).into(),
                        op: "matmul",
                    }
                    .into());
                }
                let xs: Vec<f32> = x
                    .flatten_all()?
                    .to_dtype(candle_core::DType::F32)?
                    .to_vec1()?;
                let mut out = vec![0f32; m * w.rows()];
                w.matmul(&QuantizedActivations::new(&xs, m, k), &mut out);
                dims.push(w.rows());
                Ok(Tensor::from_vec(out, dims, x.device())?)
            }
        }
    }
}

/// `t` as a [`BlockMatrix`] when paw-rt's kernels can run it: a Q8_0 or Q5_0 matrix on the CPU.
pub(crate) fn block_matrix(t: &QTensor, device: &Device) -> Result<Option<BlockMatrix>> {
    let format = match t.dtype() {
        GgmlDType::Q8_0 => BlockFormat::Q8_0,
        GgmlDType::Q5_0 => BlockFormat::Q5_0,
        _ => return Ok(None),
    };
    let Ok((n, k)) = t.shape().dims2() else {
        return Ok(None);
    };
    if !device.is_cpu() || !k.is_multiple_of(BLOCK) {
        return Ok(None);
    }
    Ok(BlockMatrix::new(format, n, k, &t.data()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both weight paths give the dequantized product up to the activations' 8-bit rounding.
    #[test]
    fn quantized_matmul_matches_dense() -> Result<()> {
        let dev = Device::Cpu;
        let (out, cols, m) = (32, 96, 5);
        let vals: Vec<f32> = (0..out * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let x = Tensor::from_vec(x, (m, cols), &dev)?;
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q5_0, GgmlDType::Q4_0] {
            let w = QTensor::quantize(&Tensor::from_vec(vals.clone(), (out, cols), &dev)?, dtype)?;
            let dense = w.dequantize(&dev)?;
            let mm = Matmul::quantized(w, &dev)?;
            assert_eq!(mm.blocks().is_some(), dtype != GgmlDType::Q4_0);
            let got: Vec<f32> = mm.forward(&x)?.flatten_all()?.to_vec1()?;
            let want: Vec<f32> = x.matmul(&dense.t()?)?.flatten_all()?.to_vec1()?;
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
            // Inputs are quantized to 8 bits inside the kernel: a few per mille of the range.
            assert!(
                err <= 0.02 * scale,
                "{dtype:?}: max error {err} vs scale {scale}"
            );
        }
        Ok(())
    }
}
