//! f32 <-> F16 / Q8_0 / Q4_0 conversion, bit-compatible with ggml's reference (`*_ref`) kernels so
//! that stored adapter bytes can be handed to a ggml-compatible kernel unchanged.
//!
//! Block layouts (little-endian), 32 values per block:
//! - Q8_0: `d: f16`, `qs: [i8; 32]`; `x = qs[j] * d`.
//! - Q4_0: `d: f16`, `qs: [u8; 16]`; value `j < 16` is the low nibble of `qs[j]`, value `j + 16`
//!   the high nibble; `x = (nibble - 8) * d`.

use half::f16;

use crate::error::TensorError;
use crate::program::TensorDtype;

/// Values per Q8_0 / Q4_0 block.
pub const QK: usize = 32;
pub const Q8_0_BLOCK_BYTES: usize = 2 + QK;
pub const Q4_0_BLOCK_BYTES: usize = 2 + QK / 2;

/// Encodes `values` (a whole number of blocks for block types) as `dtype` bytes.
pub fn quantize(dtype: TensorDtype, values: &[f32]) -> Result<Vec<u8>, TensorError> {
    let n = values.len() as u64;
    let expected = dtype.byte_len([1, n])?;
    let mut out = Vec::with_capacity(
        usize::try_from(expected).map_err(|_| TensorError::TooLarge { shape: [1, n] })?,
    );
    match dtype {
        TensorDtype::F32 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        TensorDtype::F16 => values
            .iter()
            .for_each(|v| out.extend_from_slice(&f16::from_f32(*v).to_le_bytes())),
        TensorDtype::Q8_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q8_0(b, &mut out)),
        TensorDtype::Q4_0 => values
            .chunks_exact(QK)
            .for_each(|b| quantize_block_q4_0(b, &mut out)),
    }
    Ok(out)
}

/// Decodes `dtype` bytes into `out`, whose length is the number of values.
pub fn dequantize(dtype: TensorDtype, bytes: &[u8], out: &mut [f32]) -> Result<(), TensorError> {
    let values = out.len() as u64;
    let expected = dtype.byte_len([1, values])?;
    if expected != bytes.len() as u64 {
        return Err(TensorError::ByteLenMismatch {
            dtype,
            values,
            expected,
            found: bytes.len() as u64,
        });
    }
    match dtype {
        TensorDtype::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        TensorDtype::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        TensorDtype::Q8_0 => {
            for (o, b) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q8_0_BLOCK_BYTES))
            {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                for (x, q) in o.iter_mut().zip(&b[2..]) {
                    *x = f32::from(*q as i8) * d;
                }
            }
        }
        TensorDtype::Q4_0 => {
            for (o, b) in out
                .chunks_exact_mut(QK)
                .zip(bytes.chunks_exact(Q4_0_BLOCK_BYTES))
            {
                let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
                let (lo, hi) = o.split_at_mut(QK / 2);
                for ((l, h), q) in lo.iter_mut().zip(hi.iter_mut()).zip(&b[2..]) {
                    *l = f32::from((q & 0x0f) as i8 - 8) * d;
                    *h = f32::from((q >> 4) as i8 - 8) * d;
                }
            }
        }
    }
    Ok(())
}

/// ggml `quantize_row_q8_0_ref`: `d = amax / 127`, `q = round(x / d)` (half away from zero).
fn quantize_block_q8_0(block: &[f32], out: &mut Vec<u8>) {
    let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    // `as i8` saturates; |x * id| <= 127 up to rounding, as in ggml.
    out.extend(block.iter().map(|v| (v * id).round() as i8 as u8));
}

/// ggml `quantize_row_q4_0_ref`: `d = max / -8` where `max` is the value of largest magnitude
/// (sign kept, first one wins on ties), `q = min(15, trunc(x / d + 8.5))`.
fn quantize_block_q4_0(block: &[f32], out: &mut Vec<u8>) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in block {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    out.extend_from_slice(&f16::from_f32(d).to_le_bytes());
    // ggml truncates with a C `(int8_t)` cast; Rust's `as` also truncates toward zero here.
    let nibble = |x: f32| ((x * id + 8.5) as i8).min(15) as u8;
    let (lo, hi) = block.split_at(QK / 2);
    out.extend(
        lo.iter()
            .zip(hi)
            .map(|(l, h)| nibble(*l) | (nibble(*h) << 4)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl Fn(usize) -> f32) -> Vec<f32> {
        (0..QK).map(f).collect()
    }

    #[test]
    fn q8_0_block_matches_hand_computed_ggml_bytes() {
        // amax = 127 -> d = 1.0 exactly, so q = round(x).
        let values = block(|j| j as f32 * 4.0 - 62.5 + if j == 31 { 65.5 } else { 0.0 });
        assert_eq!(values[31], 127.0);
        let bytes = quantize(TensorDtype::Q8_0, &values).expect("one block");
        assert_eq!(bytes.len(), Q8_0_BLOCK_BYTES);
        assert_eq!(&bytes[..2], &[0x00, 0x3c], "f16 1.0");
        // -62.5 rounds away from zero to -63, -58.5 to -59, ...
        assert_eq!(bytes[2] as i8, -63);
        assert_eq!(bytes[3] as i8, -59);
        assert_eq!(bytes[33] as i8, 127);
    }

    #[test]
    fn q8_0_all_zero_block_has_zero_scale_and_values() {
        let bytes = quantize(TensorDtype::Q8_0, &[0.0; QK]).expect("one block");
        assert_eq!(bytes, vec![0u8; Q8_0_BLOCK_BYTES]);
    }

    #[test]
    fn q4_0_block_matches_hand_computed_ggml_bytes() {
        // Largest magnitude is -8.0 (negative) -> d = 1.0, id = 1.0, q = trunc(x + 8.5) capped at 15.
        let mut values = block(|_| 0.0);
        values[0] = -8.0; // q = 0
        values[1] = 7.0; // q = 15
        values[2] = 7.9; // trunc(16.4) = 16 -> capped 15
        values[3] = -0.6; // trunc(7.9) = 7
        values[16] = 1.0; // q = 9, high nibble of byte 0
        values[17] = -1.4; // trunc(7.1) = 7
        let bytes = quantize(TensorDtype::Q4_0, &values).expect("one block");
        assert_eq!(bytes.len(), Q4_0_BLOCK_BYTES);
        assert_eq!(&bytes[..2], &[0x00, 0x3c], "f16 1.0");
        assert_eq!(bytes[2], 0x90); // lo 0, hi 9
        assert_eq!(bytes[3], 0x7f); // lo 15, hi 7
        assert_eq!(bytes[4], 0x8f); // lo 15, hi 8 (x = 0)
        assert_eq!(bytes[5], 0x87); // lo 7, hi 8
        assert!(bytes[6..].iter().all(|b| *b == 0x88), "zeros quantize to 8");
    }

    #[test]
    fn q4_0_scale_keeps_sign_of_largest_magnitude() {
        let mut values = block(|_| 0.0);
        values[5] = 16.0; // positive max -> d = -2.0
        let bytes = quantize(TensorDtype::Q4_0, &values).expect("one block");
        assert_eq!(f16::from_le_bytes([bytes[0], bytes[1]]).to_f32(), -2.0);
        let mut out = vec![0.0; QK];
        dequantize(TensorDtype::Q4_0, &bytes, &mut out).expect("decodes");
        // 16 * id = -8 -> trunc(0.5) = 0 -> (0 - 8) * -2 = 16.
        assert_eq!(out[5], 16.0);
        assert_eq!(out[0], 0.0);
    }

    #[test]
    fn dequantize_inverts_within_half_a_step() {
        let values = block(|j| ((j * 7919) % 61) as f32 / 10.0 - 3.0);
        for (dtype, steps) in [(TensorDtype::Q8_0, 127.0f32), (TensorDtype::Q4_0, 8.0)] {
            let bytes = quantize(dtype, &values).expect("one block");
            let mut out = vec![0.0; QK];
            dequantize(dtype, &bytes, &mut out).expect("decodes");
            let amax = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // f16 rounding of d adds a little on top of half a step.
            let tolerance = amax / steps * 0.51 + amax * 1e-3;
            for (x, y) in values.iter().zip(&out) {
                assert!((x - y).abs() <= tolerance, "{dtype}: {x} -> {y}");
            }
        }
    }

    #[test]
    fn f16_and_f32_round_trip_exactly_representable_values() {
        let values = block(|j| j as f32 * 0.25 - 4.0);
        for dtype in [TensorDtype::F32, TensorDtype::F16] {
            let bytes = quantize(dtype, &values).expect("encodes");
            let mut out = vec![0.0; QK];
            dequantize(dtype, &bytes, &mut out).expect("decodes");
            assert_eq!(out, values);
        }
        assert_eq!(
            quantize(TensorDtype::F16, &[1.0]).expect("f16"),
            vec![0x00, 0x3c]
        );
    }

    #[test]
    fn partial_block_is_rejected() {
        let err = quantize(TensorDtype::Q8_0, &[1.0; 31]).expect_err("31 values");
        assert_eq!(
            err,
            TensorError::NotBlockAligned {
                dtype: TensorDtype::Q8_0,
                cols: 31
            }
        );
    }

    #[test]
    fn wrong_byte_count_is_rejected_on_dequantize() {
        let mut out = vec![0.0; QK];
        let err = dequantize(TensorDtype::Q4_0, &[0; 17], &mut out).expect_err("17 bytes");
        assert!(matches!(
            err,
            TensorError::ByteLenMismatch {
                expected: 18,
                found: 17,
                ..
            }
        ));
    }
}
