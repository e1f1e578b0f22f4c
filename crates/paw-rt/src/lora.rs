//! LoRA adapters applied unmerged on top of the quantized base: `y = W·x + s·B·(A·x)` with
//! `s = alpha / rank`. F32/F16 factors run as dense f32 matmuls; Q8_0/Q4_0 factors stay in ggml
//! block form and run through candle's quantized matmul.

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use paw_format::{Adapter, TargetModule, TensorData, TensorDtype};

use crate::error::{Error, Result};
use crate::ggml::qtensor_from_bytes;
use crate::gguf::ModelConfig;

/// Number of projection kinds a pair can target (q, k, v, o, gate, up, down).
pub(crate) const N_MODULES: usize = TargetModule::ALL.len();

/// One low-rank update: `scale · B · (A · x)`.
#[derive(Debug, Clone)]
pub(crate) struct LoraLinear {
    a: QMatMul,
    b: QMatMul,
    scale: f64,
}

/// A low-rank update of one projection, applied unmerged: `y += delta(x)`. Implemented by a
/// program's stored adapter here and by the trainer's variables (`crate::train`).
pub trait LoraDelta {
    /// `x` is `[.., in]`; returns `[.., out]`.
    fn delta(&self, x: &Tensor) -> Result<Tensor>;
}

impl LoraDelta for LoraLinear {
    /// `scale · (x · Aᵀ) · Bᵀ`.
    fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.a.forward(x)?;
        Ok((self.b.forward(&h)? * self.scale)?)
    }
}

/// All LoRA updates of one adapter, indexed `[layer][module]`.
#[derive(Debug, Clone)]
pub(crate) struct LoraWeights {
    pub(crate) layers: Vec<[Option<LoraLinear>; N_MODULES]>,
}

impl LoraWeights {
    pub(crate) fn from_adapter(
        adapter: &Adapter,
        cfg: &ModelConfig,
        ffn: usize,
        device: &Device,
    ) -> Result<Self> {
        // A rank above the model's width adds nothing a full-rank update would not.
        if adapter.rank == 0 || adapter.rank as usize > cfg.hidden || !adapter.alpha.is_finite() {
            return Err(Error::LoraHyper {
                rank: adapter.rank,
                alpha: adapter.alpha,
            });
        }
        let rank = adapter.rank as u64;
        let scale = f64::from(adapter.alpha) / rank as f64;
        let mut layers: Vec<[Option<LoraLinear>; N_MODULES]> =
            (0..cfg.n_layers).map(|_| Default::default()).collect();
        for pair in &adapter.pairs {
            let slot = layers
                .get_mut(pair.layer as usize)
                .ok_or(Error::LoraLayer {
                    layer: pair.layer,
                    n_layers: cfg.n_layers,
                })?;
            let [fan_in, fan_out] = cfg.projection_dims(ffn, pair.module);
            let name = pair.module.as_str();
            let a = load_factor(&pair.a, [rank, fan_in as u64], pair.layer, name, device)?;
            let b = load_factor(&pair.b, [fan_out as u64, rank], pair.layer, name, device)?;
            slot[pair.module.index()] = Some(LoraLinear { a, b, scale });
        }
        Ok(Self { layers })
    }
}

fn load_factor(
    t: &TensorData,
    expected: [u64; 2],
    layer: u32,
    module: &'static str,
    device: &Device,
) -> Result<QMatMul> {
    // F32/F16 factors become dense f32 tensors inside QMatMul; block formats stay quantized.
    Ok(QMatMul::from_qtensor(checked_qtensor(
        t, expected, layer, module, device,
    )?)?)
}

/// Validates a factor's shape and byte length, then converts it to a candle `QTensor`
/// `[rows, cols]` holding the same ggml data.
fn checked_qtensor(
    t: &TensorData,
    expected: [u64; 2],
    layer: u32,
    module: &'static str,
    device: &Device,
) -> Result<QTensor> {
    if t.shape != expected {
        return Err(Error::LoraShape {
            layer,
            module,
            got: t.shape,
            expected,
        });
    }
    let [rows, cols] = [expected[0] as usize, expected[1] as usize];
    let n = rows * cols;
    let expected_bytes = match t.dtype {
        TensorDtype::F32 => n * 4,
        TensorDtype::F16 => n * 2,
        TensorDtype::Q8_0 => n / 32 * GgmlDType::Q8_0.type_size(),
        TensorDtype::Q4_0 => n / 32 * GgmlDType::Q4_0.type_size(),
    };
    let blocked = matches!(t.dtype, TensorDtype::Q8_0 | TensorDtype::Q4_0);
    if t.bytes.len() != expected_bytes || (blocked && cols % 32 != 0) {
        return Err(Error::LoraBytes {
            layer,
            module,
            got: t.bytes.len(),
            expected: expected_bytes,
        });
    }
    if !all_finite(t) {
        return Err(Error::LoraNonFinite { layer, module });
    }
    match t.dtype {
        TensorDtype::F32 => {
            let v: Vec<f32> = t
                .bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let dense = Tensor::from_vec(v, (rows, cols), device)?;
            Ok(QTensor::quantize(&dense, GgmlDType::F32)?)
        }
        TensorDtype::F16 => {
            // f16 -> f32 -> f16 is exact, so this keeps the stored values bit for bit.
            let v: Vec<f32> = t
                .bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect();
            let dense = Tensor::from_vec(v, (rows, cols), device)?;
            Ok(QTensor::quantize(&dense, GgmlDType::F16)?)
        }
        TensorDtype::Q8_0 | TensorDtype::Q4_0 => {
            let ggml = if t.dtype == TensorDtype::Q8_0 {
                GgmlDType::Q8_0
            } else {
                GgmlDType::Q4_0
            };
            qtensor_from_bytes(&t.bytes, ggml, (rows, cols), device)
        }
    }
}

/// Whether every value of a factor is finite (for block formats: every block's f16 scale; the
/// quantized values are small integers).
fn all_finite(t: &TensorData) -> bool {
    let f16_finite = |c: &[u8]| half::f16::from_le_bytes([c[0], c[1]]).is_finite();
    match t.dtype {
        TensorDtype::F32 => t
            .bytes
            .chunks_exact(4)
            .all(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]).is_finite()),
        TensorDtype::F16 => t.bytes.chunks_exact(2).all(f16_finite),
        TensorDtype::Q8_0 => t
            .bytes
            .chunks_exact(GgmlDType::Q8_0.type_size())
            .all(f16_finite),
        TensorDtype::Q4_0 => t
            .bytes
            .chunks_exact(GgmlDType::Q4_0.type_size())
            .all(f16_finite),
    }
}
