//! Why `matmul.rs` pads Q8_0 rows: candle's Q8_0 matmul speed with the Qwen2.5-0.5B hidden
//! width (896 columns, scalar-per-pair fallback) against the same weight padded to 1024 columns
//! (tiled int8 kernels on CPUs with AVX512-VNNI / AVX-VNNI). Alternates the two shapes.
//!
//! `cargo run -p paw-rt --release --example q8_tiles [ROUNDS]`
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::time::Instant;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};

fn main() {
    let rounds: usize = std::env::args().nth(1).map_or(3, |r| r.parse().unwrap());
    let dev = Device::Cpu;
    // (output rows, input rows): an MLP up-projection at prefill size and at decode size.
    for (n, m) in [(4864usize, 400usize), (4864, 1)] {
        let mut gmacs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        let cases: Vec<(usize, QMatMul, Tensor)> = [896usize, 1024]
            .iter()
            .map(|&k| {
                let w = Tensor::randn(0f32, 1.0, (n, k), &dev).unwrap();
                let q = QTensor::quantize(&w, GgmlDType::Q8_0).unwrap();
                let x = Tensor::randn(0f32, 1.0, (m, k), &dev).unwrap();
                (k, QMatMul::from_qtensor(q).unwrap(), x)
            })
            .collect();
        for _ in 0..rounds {
            for (slot, (k, q, x)) in cases.iter().enumerate() {
                q.forward(x).unwrap(); // warm-up (first use also repacks the weight)
                let reps = if m == 1 { 50 } else { 5 };
                let t = Instant::now();
                for _ in 0..reps {
                    q.forward(x).unwrap();
                }
                let secs = t.elapsed().as_secs_f64() / reps as f64;
                gmacs[slot].push((n * m * k) as f64 / secs / 1e9);
            }
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (a, b) = (median(&mut gmacs[0]), median(&mut gmacs[1]));
        println!(
            "[{m} x 896] x [896 x {n}] Q8_0: {a:.1} GMAC/s; padded to 1024 columns: {b:.1} GMAC/s \
             ({:.2}x per useful MAC)",
            b * 896.0 / 1024.0 / a
        );
    }
}
