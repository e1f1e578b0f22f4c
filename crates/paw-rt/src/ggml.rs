//! Building candle `QTensor`s from raw ggml block bytes.

use std::borrow::Cow;

use candle_core::quantized::{GgmlDType, QStorage, QTensor};
use candle_core::Device;

use crate::error::Result;

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
