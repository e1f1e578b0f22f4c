//! Small helpers over ggml block data: building candle `QTensor`s from raw bytes, and the
//! lossless Q5_0 -> Q8_0 conversion.
//!
//! Why the conversion: candle 0.11 has SIMD kernels for Q8_0 but only a scalar dot product for
//! Q5_0, and llama.cpp's Q4_K_M files of models whose rows are not a multiple of 256 (e.g.
//! Qwen2.5-0.5B, hidden 896) store most projections as Q5_0. A Q5_0 value is `q·d` with an
//! integer `q` in [-16, 15]; a Q8_0 block with the same `d` holds it exactly, so the result is
//! bit-identical in value at 34 instead of 22 bytes per 32 weights.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;

use crate::error::Result;

const QK: usize = 32;
const Q5_0_BLOCK: usize = 22;
const Q8_0_BLOCK: usize = 34;

/// A `QTensor` `[rows, cols]` of `dtype` from ggml bytes of any alignment.
pub(crate) fn qtensor_from_bytes(
    bytes: &[u8],
    dtype: GgmlDType,
    shape: (usize, usize),
    device: &Device,
) -> Result<QTensor> {
    // candle reinterprets the bytes as blocks (f16 scale first) and asserts their alignment;
    // copying at an even offset of a fresh buffer satisfies it whatever the source was.
    let storage = if (bytes.as_ptr() as usize).is_multiple_of(4) {
        QStorage::from_data(Cow::Borrowed(bytes), device, dtype)?
    } else {
        let mut buf: Vec<u8> = Vec::with_capacity(bytes.len() + 4);
        let pad = (4 - (buf.as_ptr() as usize) % 4) % 4;
        buf.resize(pad, 0);
        buf.extend_from_slice(bytes);
        QStorage::from_data(Cow::Borrowed(&buf[pad..]), device, dtype)?
    };
    Ok(QTensor::new(storage, shape)?)
}

/// Re-encodes a Q5_0 tensor as Q8_0 without changing any value.
pub(crate) fn q5_0_to_q8_0(t: &QTensor, device: &Device) -> Result<QTensor> {
    let src = t.data()?;
    let mut out = Vec::with_capacity(src.len() / Q5_0_BLOCK * Q8_0_BLOCK);
    for block in src.chunks_exact(Q5_0_BLOCK) {
        let (d, rest) = block.split_at(2);
        let (qh, qs) = rest.split_at(4);
        let qh = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
        out.extend_from_slice(d);
        let mut vals = [0u8; QK];
        for (j, &byte) in qs.iter().enumerate() {
            let hi0 = (((qh >> j) << 4) & 0x10) as u8;
            let hi1 = ((qh >> (j + 12)) & 0x10) as u8;
            vals[j] = (((byte & 0x0F) | hi0) as i8 - 16) as u8;
            vals[j + QK / 2] = (((byte >> 4) | hi1) as i8 - 16) as u8;
        }
        out.extend_from_slice(&vals);
    }
    let (rows, cols) = t.shape().dims2()?;
    qtensor_from_bytes(&out, GgmlDType::Q8_0, (rows, cols), device)
}

/// A Q8_0 tensor `[rows, cols]` widened to `[rows, padded]` by appending all-zero blocks
/// (scale 0, quants 0) to every row.
pub(crate) fn pad_q8_0_columns(t: &QTensor, padded: usize, device: &Device) -> Result<QTensor> {
    let (rows, cols) = t.shape().dims2()?;
    let src = t.data()?;
    let (have, want) = (cols / QK * Q8_0_BLOCK, padded / QK * Q8_0_BLOCK);
    let mut out = Vec::with_capacity(rows * want);
    for row in src.chunks_exact(have) {
        out.extend_from_slice(row);
        out.resize(out.len() + want - have, 0);
    }
    qtensor_from_bytes(&out, GgmlDType::Q8_0, (rows, padded), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q5_0_to_q8_0_keeps_every_value() -> Result<()> {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..64 * 96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let dense = candle_core::Tensor::from_vec(vals, (64, 96), &dev)?;
        let q5 = QTensor::quantize(&dense, GgmlDType::Q5_0)?;
        let q8 = q5_0_to_q8_0(&q5, &dev)?;
        assert_eq!(q8.dtype(), GgmlDType::Q8_0);
        let a: Vec<f32> = q5.dequantize(&dev)?.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = q8.dequantize(&dev)?.flatten_all()?.to_vec1()?;
        assert_eq!(a, b);
        Ok(())
    }

    #[test]
    fn padding_appends_zero_columns_only() -> Result<()> {
        let dev = Device::Cpu;
        let vals: Vec<f32> = (0..4 * 64).map(|i| (i as f32 - 100.0) / 9.0).collect();
        let dense = candle_core::Tensor::from_vec(vals, (4, 64), &dev)?;
        let q = QTensor::quantize(&dense, GgmlDType::Q8_0)?;
        let padded = pad_q8_0_columns(&q, 256, &dev)?.dequantize(&dev)?;
        assert_eq!(padded.dims(), [4, 256]);
        let left: Vec<f32> = padded.narrow(1, 0, 64)?.flatten_all()?.to_vec1()?;
        let orig: Vec<f32> = q.dequantize(&dev)?.flatten_all()?.to_vec1()?;
        assert_eq!(left, orig);
        let right: Vec<f32> = padded.narrow(1, 64, 192)?.flatten_all()?.to_vec1()?;
        assert!(right.iter().all(|&v| v == 0.0));
        Ok(())
    }
}
