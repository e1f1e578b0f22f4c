//! Stage 5: the adapter at a storage precision, and the program around it.

use paw_format::{Adapter, LoraPair, TargetModule, TensorData, TensorDtype};

use crate::error::Result;
use crate::train::model::LayerLora;

/// Storage type of a `[rows, cols]` factor: the ggml block types need `cols` to be a multiple
/// of 32 (true of A's input width, of B only for ranks 32, 64, ...); otherwise f16.
fn storage(want: TensorDtype, cols: usize) -> TensorDtype {
    match want {
        TensorDtype::Q8_0 | TensorDtype::Q4_0 if !cols.is_multiple_of(paw_format::quant::QK) => {
            TensorDtype::F16
        }
        d => d,
    }
}

fn encode(t: &candle_core::Tensor, want: TensorDtype) -> Result<TensorData> {
    let (rows, cols) = t.dims2()?;
    let values: Vec<f32> = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    Ok(TensorData::from_f32(
        storage(want, cols),
        [rows as u64, cols as u64],
        &values,
    )?)
}

/// The trained factors of layers `first_layer..` as an adapter stored at `dtype`.
pub(crate) fn adapter(
    lora: &[LayerLora],
    first_layer: usize,
    rank: usize,
    alpha: f64,
    dtype: TensorDtype,
) -> Result<Adapter> {
    let mut pairs = Vec::new();
    for (i, slots) in lora.iter().enumerate() {
        for (slot, module) in slots.iter().zip(TargetModule::ALL) {
            let Some(l) = slot else { continue };
            pairs.push(LoraPair {
                layer: (first_layer + i) as u32,
                module,
                a: encode(l.a.as_tensor(), dtype)?,
                b: encode(l.b.as_tensor(), dtype)?,
            });
        }
    }
    Ok(Adapter {
        rank: rank as u32,
        alpha: alpha as f32,
        pairs,
    })
}
