//! Weight matmuls `x·Wᵀ` of the base model, stored in the layout candle multiplies fastest.
//!
//! Two re-encodings, both value-preserving:
//! - Q5_0 becomes Q8_0 (see [`crate::ggml::q5_0_to_q8_0`]): candle has only a scalar Q5_0 dot
//!   product.
//! - On CPUs with 8-bit dot-product instructions (AVX512-VNNI or AVX-VNNI), Q8_0 rows are padded
//!   with zero blocks to a multiple of 256 columns, and inputs with zeros to match. candle's
//!   tiled int8 kernels need whole 256-column super-blocks; without them a Q8_0 matmul falls back
//!   to one dot product per (row, column) pair. On Qwen2.5-0.5B (hidden 896) this is the
//!   difference between ~9 and ~45 GMAC/s for prefill-sized matmuls on this machine's EPYC
//!   (`examples/q8_tiles.rs`).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor, D};

use crate::error::Result;
use crate::ggml::{pad_q8_0_columns, q5_0_to_q8_0};

/// Columns per super-block of candle's tiled int8 kernels (`QK_K`).
const TILE_COLUMNS: usize = 256;

/// A frozen base-model weight `[out, in]` multiplied as `x·Wᵀ` (by the runtime and, through
/// the same model, by the trainer: `crate::train`).
#[derive(Debug)]
pub struct Matmul {
    w: QMatMul,
    /// Zero columns appended to the weight (and to every input) to reach whole tiles.
    pad: usize,
}

impl Matmul {
    /// A block-quantized (or f32/f16 `QTensor`) weight `[out, in]`.
    pub fn quantized(t: QTensor, device: &Device) -> Result<Self> {
        let t = if t.dtype() == GgmlDType::Q5_0 {
            q5_0_to_q8_0(&t, device)?
        } else {
            t
        };
        let (_, cols) = t.shape().dims2()?;
        let padded = cols.next_multiple_of(TILE_COLUMNS);
        let (t, pad) = if t.dtype() == GgmlDType::Q8_0 && padded != cols && int8_tiles_available() {
            (pad_q8_0_columns(&t, padded, device)?, padded - cols)
        } else {
            (t, 0)
        };
        Ok(Self {
            w: QMatMul::from_qtensor(t)?,
            pad,
        })
    }

    /// A dense f32 weight `[out, in]`.
    pub fn dense(w: Tensor) -> Self {
        Self {
            w: QMatMul::Tensor(w),
            pad: 0,
        }
    }

    /// `x` is `[.., in]`; returns `[.., out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.pad == 0 {
            return Ok(self.w.forward(x)?);
        }
        Ok(self.w.forward(&x.pad_with_zeros(D::Minus1, 0, self.pad)?)?)
    }
}

/// Whether candle's CPU backend has tiled int8 kernels for Q8_0 here (its own dispatch checks
/// the same features at run time).
fn int8_tiles_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        (std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vnni"))
            || (std::arch::is_x86_feature_detected!("avxvnni")
                && std::arch::is_x86_feature_detected!("avx2"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padded or not, the product is the same as the unpadded Q8_0 weight's dequantized product.
    #[test]
    fn padded_q8_0_matmul_matches_dense() -> Result<()> {
        let dev = Device::Cpu;
        let (out, cols, m) = (32, 96, 5);
        let vals: Vec<f32> = (0..out * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w = QTensor::quantize(&Tensor::from_vec(vals, (out, cols), &dev)?, GgmlDType::Q8_0)?;
        let dense = w.dequantize(&dev)?;
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
            .collect();
        let x = Tensor::from_vec(x, (m, cols), &dev)?;
        let mm = Matmul::quantized(w, &dev)?;
        let got: Vec<f32> = mm.forward(&x)?.flatten_all()?.to_vec1()?;
        let want: Vec<f32> = x.matmul(&dense.t()?)?.flatten_all()?.to_vec1()?;
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        let err = got
            .iter()
            .zip(&want)
            .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
        // Inputs are quantized to 8 bits inside the kernel: a few per mille of the range.
        assert!(err <= 0.02 * scale, "max error {err} vs scale {scale}");
        Ok(())
    }
}
