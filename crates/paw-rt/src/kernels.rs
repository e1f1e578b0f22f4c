//! The quantized matmul kernels paw-rt runs itself: weights in ggml's Q8_0 or Q5_0 blocks,
//! held once, multiplied by activations quantized to 8 bits per block of 32.
//!
//! Why here and not in candle: candle 0.11 multiplies Q5_0 with a scalar dot product, and its
//! fast Q8_0 path keeps a repacked copy of every weight beside the original and needs rows that
//! are whole 256-column tiles (Qwen2.5-0.5B's are 896).
//!
//! Two layouts, chosen once per machine (so a row's arithmetic never depends on the batch):
//! where the CPU has AVX512-VNNI, each matrix is packed at load into 16-row tiles ([`tiles`],
//! the file's blocks are then dropped); elsewhere it stays in the file's row-major blocks and
//! runs on AVX2 (or scalar) dot products.
//!
//! This is the only module of the workspace with `unsafe` code: the AVX2 and AVX512
//! intrinsics and the disjoint writes of the worker threads into one output buffer. Every SIMD
//! routine has a scalar twin ([`scalar`]) that the tests compare it with on random blocks.

use std::cell::RefCell;

use half::f16;

/// Weights per block (both formats).
pub(crate) const BLOCK: usize = 32;

/// A ggml block format this module multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockFormat {
    /// f16 scale, 32 signed bytes.
    Q8_0,
    /// f16 scale, 32 high bits, 16 bytes of low nibbles: `q = (nibble | high << 4) - 16`.
    Q5_0,
}

impl BlockFormat {
    pub(crate) fn block_bytes(self) -> usize {
        match self {
            Self::Q8_0 => 34,
            Self::Q5_0 => 22,
        }
    }
}

/// Rows `[m, k]` of activations quantized per block of 32: `x ≈ scale · q`.
#[derive(Debug)]
pub(crate) struct QuantizedActivations {
    m: usize,
    blocks: usize,
    quants: Vec<i8>,
    scales: Vec<f32>,
    /// Per block, `Σ q`: the VNNI kernel's unsigned weights (`q + offset`) add `offset · Σ q`,
    /// which it subtracts.
    sums: Vec<i32>,
}

impl QuantizedActivations {
    /// Quantizes `x` (`m` rows of `k` values, `k` a multiple of [`BLOCK`]): each block's scale
    /// is its largest magnitude / 127, values rounded to nearest.
    pub(crate) fn new(x: &[f32], m: usize, k: usize) -> Self {
        debug_assert!(k.is_multiple_of(BLOCK) && x.len() == m * k);
        let blocks = k / BLOCK;
        let mut quants = vec![0i8; m * k];
        let mut scales = vec![0f32; m * blocks];
        let mut sums = vec![0i32; m * blocks];
        for (((xb, qb), s), sum) in x
            .chunks_exact(BLOCK)
            .zip(quants.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
            .zip(sums.iter_mut())
        {
            let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            *s = d;
            if d > 0.0 {
                let inv = 1.0 / d;
                for (q, v) in qb.iter_mut().zip(xb) {
                    *q = (v * inv).round() as i8;
                }
            }
            *sum = qb.iter().map(|&q| i32::from(q)).sum();
        }
        Self {
            m,
            blocks,
            quants,
            scales,
            sums,
        }
    }

    fn row(&self, i: usize) -> (&[i8], &[f32]) {
        (
            &self.quants[i * self.blocks * BLOCK..(i + 1) * self.blocks * BLOCK],
            &self.scales[i * self.blocks..(i + 1) * self.blocks],
        )
    }
}

/// A weight matrix `[n, k]` of Q8_0 or Q5_0 blocks, held once: as 16-row tiles for the VNNI
/// kernel where the CPU has it, otherwise exactly as the GGUF file stores it.
#[derive(Debug)]
pub(crate) struct BlockMatrix {
    format: BlockFormat,
    n: usize,
    k: usize,
    storage: Storage,
}

#[derive(Debug)]
enum Storage {
    /// ggml's row-major blocks (AVX2 and scalar kernels).
    Rows(Vec<u8>),
    /// [`TILE_ROWS`]-row tiles, see [`tiles`].
    Tiles(Vec<u8>),
}

impl BlockMatrix {
    /// `None` unless `k` is a whole number of blocks and `bytes` holds exactly `n` such rows.
    pub(crate) fn new(format: BlockFormat, n: usize, k: usize, bytes: &[u8]) -> Option<Self> {
        Self::for_kernel(format, n, k, bytes, vnni_available())
    }

    /// As [`Self::new`], laid out for the VNNI kernel or not (`vnni` only where it runs).
    fn for_kernel(
        format: BlockFormat,
        n: usize,
        k: usize,
        bytes: &[u8],
        vnni: bool,
    ) -> Option<Self> {
        let row = (k.is_multiple_of(BLOCK) && k > 0).then(|| k / BLOCK * format.block_bytes())?;
        if n.checked_mul(row)? != bytes.len() {
            return None;
        }
        let storage = if vnni {
            Storage::Tiles(tiles::pack(format, n, k, bytes))
        } else {
            Storage::Rows(bytes.to_vec())
        };
        Some(Self {
            format,
            n,
            k,
            storage,
        })
    }

    pub(crate) fn rows(&self) -> usize {
        self.n
    }

    pub(crate) fn cols(&self) -> usize {
        self.k
    }

    /// Row `r` as f32 values (an embedding lookup).
    pub(crate) fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        let blocks = self.k / BLOCK;
        let mut quants = vec![0i8; self.k];
        let mut scales = vec![0f32; blocks];
        match &self.storage {
            Storage::Rows(bytes) => {
                let len = blocks * self.format.block_bytes();
                scalar::unpack_row(
                    self.format,
                    &bytes[r * len..(r + 1) * len],
                    &mut quants,
                    &mut scales,
                );
            }
            Storage::Tiles(data) => {
                tiles::unpack_row(self.format, data, blocks, r, &mut quants, &mut scales)
            }
        }
        for ((o, q), s) in out
            .chunks_exact_mut(BLOCK)
            .zip(quants.chunks_exact(BLOCK))
            .zip(&scales)
        {
            for (o, &q) in o.iter_mut().zip(q) {
                *o = f32::from(q) * s;
            }
        }
    }

    /// `out[i·n + r] = Σ_j w[r, j] · x[i, j]` for every activation row `i` and weight row `r`,
    /// on candle's worker threads. Each output value is computed the same way whatever `m` and
    /// the thread count are, so batched rows equal single ones bit for bit.
    pub(crate) fn matmul(&self, x: &QuantizedActivations, out: &mut [f32]) {
        assert_eq!(x.blocks * BLOCK, self.k, "activation width");
        assert_eq!(out.len(), x.m * self.n, "output size");
        let dst = SharedOut(out.as_mut_ptr());
        match &self.storage {
            Storage::Tiles(data) => self.matmul_tiles(data, x, &dst),
            Storage::Rows(bytes) => self.matmul_rows(bytes, x, &dst),
        }
    }

    /// The VNNI kernel, one tile of [`TILE_ROWS`] weight rows per work item.
    fn matmul_tiles(&self, data: &[u8], x: &QuantizedActivations, dst: &SharedOut) {
        let blocks = self.k / BLOCK;
        let offset = tiles::offset(self.format);
        let per_tile = blocks * tiles::BLOCK_BYTES;
        candle_core::utils::barrier_pool().execute_chunked(self.n.div_ceil(TILE_ROWS), |ts| {
            for t in ts {
                let tile = &data[t * per_tile..(t + 1) * per_tile];
                let rows = t * TILE_ROWS..(t * TILE_ROWS + TILE_ROWS).min(self.n);
                for i0 in (0..x.m).step_by(vnni::ACT_ROWS) {
                    let acts = i0..(i0 + vnni::ACT_ROWS).min(x.m);
                    let got = vnni::tile_dot(tile, blocks, offset, x, acts.clone());
                    for (i, lanes) in acts.zip(got) {
                        for (r, v) in rows.clone().zip(lanes) {
                            // SAFETY: `i < m` and `r < n`, so the index is inside `out`; the
                            // pool hands every tile to exactly one worker, so no two threads
                            // write the same element, and `execute_chunked` returns only after
                            // all finished.
                            unsafe { dst.write(i * self.n + r, v) };
                        }
                    }
                }
            }
        });
    }

    /// The AVX2 or scalar kernels over the file's blocks, one weight row per work item (Q5_0
    /// rows unpacked to signed bytes first, Q8_0 rows read in place).
    fn matmul_rows(&self, bytes: &[u8], x: &QuantizedActivations, dst: &SharedOut) {
        let blocks = self.k / BLOCK;
        let simd = simd_available();
        let unpacked = self.format == BlockFormat::Q5_0;
        let len = blocks * self.format.block_bytes();
        candle_core::utils::barrier_pool().execute_chunked(self.n, |rows| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let (quants, scales) = &mut *scratch;
                quants.resize(self.k, 0);
                scales.resize(blocks, 0.0);
                for r in rows {
                    let w = &bytes[r * len..(r + 1) * len];
                    if unpacked && simd {
                        simd::unpack_q5_0_row(w, quants, scales);
                    } else if unpacked {
                        scalar::unpack_row(self.format, w, quants, scales);
                    }
                    for i in 0..x.m {
                        let (xq, xs) = x.row(i);
                        let v = match (unpacked, simd) {
                            (true, true) => simd::dot_unpacked(quants, scales, xq, xs),
                            (true, false) => scalar::dot_unpacked(quants, scales, xq, xs),
                            (false, true) => simd::dot_q8_0(w, xq, xs),
                            (false, false) => scalar::dot_q8_0(w, xq, xs),
                        };
                        // SAFETY: `i < m` and `r < n`; one worker per `r` (as in
                        // `matmul_tiles`).
                        unsafe { dst.write(i * self.n + r, v) };
                    }
                }
            });
        });
    }
}

/// Weight rows per tile of the VNNI kernel: one per 32-bit lane of a 512-bit vector.
const TILE_ROWS: usize = 16;

/// The VNNI layout. Per tile of [`TILE_ROWS`] rows, per block of 32 columns, [`BLOCK_BYTES`]
/// bytes: the 16 rows' f16 scales, then for each group `g` of 4 columns the 16 rows' 4 weights
/// as unsigned bytes `q + offset` (row-major inside the group). One 512-bit load is then 4
/// columns of 16 rows, which `vpdpbusd` multiplies by 4 broadcast activation bytes. Rows past
/// `n` in the last tile are zero. Same size as Q8_0 (34 bytes per 32 weights).
mod tiles {
    use half::f16;

    use super::{scalar, BlockFormat, BLOCK, TILE_ROWS};

    pub(super) const BLOCK_BYTES: usize = TILE_ROWS * 2 + TILE_ROWS * BLOCK;

    pub(super) fn offset(format: BlockFormat) -> i32 {
        match format {
            BlockFormat::Q8_0 => 128,
            BlockFormat::Q5_0 => 16,
        }
    }

    pub(super) fn pack(format: BlockFormat, n: usize, k: usize, bytes: &[u8]) -> Vec<u8> {
        let blocks = k / BLOCK;
        let row_len = blocks * format.block_bytes();
        let offset = offset(format);
        let mut out = vec![0u8; n.div_ceil(TILE_ROWS) * blocks * BLOCK_BYTES];
        let (mut quants, mut scales) = (vec![0i8; k], vec![0f32; blocks]);
        for r in 0..n {
            scalar::unpack_row(
                format,
                &bytes[r * row_len..(r + 1) * row_len],
                &mut quants,
                &mut scales,
            );
            let (t, lane) = (r / TILE_ROWS, r % TILE_ROWS);
            for b in 0..blocks {
                let at = (t * blocks + b) * BLOCK_BYTES;
                let d = f16::from_f32(scales[b]).to_bits().to_le_bytes();
                out[at + 2 * lane..at + 2 * lane + 2].copy_from_slice(&d);
                for g in 0..BLOCK / 4 {
                    let dst = at + TILE_ROWS * 2 + (g * TILE_ROWS + lane) * 4;
                    for j in 0..4 {
                        out[dst + j] = (i32::from(quants[b * BLOCK + g * 4 + j]) + offset) as u8;
                    }
                }
            }
        }
        out
    }

    pub(super) fn unpack_row(
        format: BlockFormat,
        data: &[u8],
        blocks: usize,
        r: usize,
        quants: &mut [i8],
        scales: &mut [f32],
    ) {
        let offset = offset(format);
        let (t, lane) = (r / TILE_ROWS, r % TILE_ROWS);
        for b in 0..blocks {
            let at = (t * blocks + b) * BLOCK_BYTES;
            scales[b] = f16::from_bits(u16::from_le_bytes([
                data[at + 2 * lane],
                data[at + 2 * lane + 1],
            ]))
            .to_f32();
            for g in 0..BLOCK / 4 {
                let src = at + TILE_ROWS * 2 + (g * TILE_ROWS + lane) * 4;
                for j in 0..4 {
                    quants[b * BLOCK + g * 4 + j] = (i32::from(data[src + j]) - offset) as i8;
                }
            }
        }
    }
}

thread_local! {
    /// A worker's unpacked weight row (quants, block scales), reused across calls.
    static SCRATCH: RefCell<(Vec<i8>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// The output pointer shared by the workers of one [`BlockMatrix::matmul`].
struct SharedOut(*mut f32);
// SAFETY: workers write disjoint elements (see `matmul`) and the buffer outlives the call.
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// # Safety
    /// `index` is inside the buffer and no other thread touches that element.
    unsafe fn write(&self, index: usize, value: f32) {
        // SAFETY: as the caller promises.
        unsafe { self.0.add(index).write(value) }
    }
}

/// Whether the AVX2 routines can run here (checked once by std, cheaply after that).
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the AVX512-VNNI kernel can run here.
fn vnni_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn scale_of(block: &[u8]) -> f32 {
    f16::from_bits(u16::from_le_bytes([block[0], block[1]])).to_f32()
}

/// The reference implementations: plain Rust, one block at a time. Integer dot products are
/// exact; the scaled block sums are added in block order.
pub(crate) mod scalar {
    use super::{scale_of, BlockFormat, BLOCK};

    /// Weights of one row as signed values and one scale per block.
    pub(crate) fn unpack_row(format: BlockFormat, w: &[u8], quants: &mut [i8], scales: &mut [f32]) {
        let bb = format.block_bytes();
        for ((block, q), s) in w
            .chunks_exact(bb)
            .zip(quants.chunks_exact_mut(BLOCK))
            .zip(scales.iter_mut())
        {
            *s = scale_of(block);
            match format {
                BlockFormat::Q8_0 => {
                    for (q, &b) in q.iter_mut().zip(&block[2..]) {
                        *q = b as i8;
                    }
                }
                BlockFormat::Q5_0 => {
                    let qh = u32::from_le_bytes([block[2], block[3], block[4], block[5]]);
                    for (j, &byte) in block[6..22].iter().enumerate() {
                        let lo = (byte & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                        let hi = (byte >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                        q[j] = lo as i8 - 16;
                        q[j + BLOCK / 2] = hi as i8 - 16;
                    }
                }
            }
        }
    }

    pub(crate) fn dot_unpacked(wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (b, (w, x)) in wq
            .chunks_exact(BLOCK)
            .zip(xq.chunks_exact(BLOCK))
            .enumerate()
        {
            let dot: i32 = w
                .iter()
                .zip(x)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            sum += dot as f32 * (ws[b] * xs[b]);
        }
        sum
    }

    pub(crate) fn dot_q8_0(w: &[u8], xq: &[i8], xs: &[f32]) -> f32 {
        let mut sum = 0f32;
        for (b, (block, x)) in w.chunks_exact(34).zip(xq.chunks_exact(BLOCK)).enumerate() {
            let dot: i32 = block[2..]
                .iter()
                .zip(x)
                .map(|(&a, &b)| i32::from(a as i8) * i32::from(b))
                .sum();
            sum += dot as f32 * (scale_of(block) * xs[b]);
        }
        sum
    }
}

/// AVX2 + FMA versions of [`scalar`]'s routines; callers check [`simd_available`] first.
#[cfg(target_arch = "x86_64")]
mod simd {
    use std::arch::x86_64::*;

    use super::{scale_of, BLOCK};

    /// Signed values `q` in [-16, 15].
    pub(super) fn unpack_q5_0_row(w: &[u8], quants: &mut [i8], scales: &mut [f32]) {
        assert!(w.len() / 22 == scales.len() && quants.len() == scales.len() * BLOCK);
        // SAFETY: callers check AVX2 (`simd_available`); lengths are checked above.
        unsafe { unpack_q5_0_row_avx2(w, quants, scales) }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn unpack_q5_0_row_avx2(w: &[u8], quants: &mut [i8], scales: &mut [f32]) {
        // Lane j of a block takes bit j of the 32 high bits: byte j/8 of them, bit j%8.
        let byte_of_lane = _mm256_setr_epi8(
            0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, //
            2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
        );
        let bit_of_lane = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let low4 = _mm_set1_epi8(0x0F);
        let high_bit = _mm256_set1_epi8(0x10);
        let offset = _mm256_set1_epi8(16);
        for (b, block) in w.chunks_exact(22).enumerate() {
            scales[b] = scale_of(block);
            let qh = i32::from_le_bytes([block[2], block[3], block[4], block[5]]);
            // SAFETY: `block` has 22 bytes, so bytes 6..22 are in bounds; `quants` holds a
            // 32-byte slot for every block (checked by the caller).
            let nibbles = _mm_loadu_si128(block.as_ptr().add(6).cast());
            let lo = _mm_and_si128(nibbles, low4);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(nibbles), low4);
            let q4 = _mm256_set_m128i(hi, lo);
            let spread = _mm256_shuffle_epi8(_mm256_set1_epi32(qh), byte_of_lane);
            let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_lane), bit_of_lane);
            let q5 = _mm256_or_si256(q4, _mm256_and_si256(set, high_bit));
            let q = _mm256_sub_epi8(q5, offset);
            _mm256_storeu_si256(quants.as_mut_ptr().add(b * BLOCK).cast(), q);
        }
    }

    pub(super) fn dot_unpacked(wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32]) -> f32 {
        assert!(wq.len() == xq.len() && ws.len() == xs.len() && wq.len() == ws.len() * BLOCK);
        // SAFETY: callers check AVX2 + FMA; lengths are checked above.
        unsafe {
            dot_blocks(
                ws.len(),
                |b| (_mm256_loadu_si256(wq.as_ptr().add(b * BLOCK).cast()), ws[b]),
                xq,
                xs,
            )
        }
    }

    pub(super) fn dot_q8_0(w: &[u8], xq: &[i8], xs: &[f32]) -> f32 {
        assert!(w.len() == xs.len() * 34 && xq.len() == xs.len() * BLOCK);
        // SAFETY: callers check AVX2 + FMA; lengths are checked above.
        unsafe {
            dot_blocks(
                xs.len(),
                |b| {
                    let block = &w[b * 34..b * 34 + 34];
                    (
                        _mm256_loadu_si256(block.as_ptr().add(2).cast()),
                        scale_of(block),
                    )
                },
                xq,
                xs,
            )
        }
    }

    /// `Σ_b scale_w(b) · xs[b] · (w_b · x_b)` over `blocks` blocks, `weight(b)` giving block
    /// `b`'s 32 signed weights and scale. Signed bytes times signed bytes, with AVX2's
    /// unsigned-by-signed multiply: |w| times x carrying w's sign.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot_blocks(
        blocks: usize,
        weight: impl Fn(usize) -> (__m256i, f32),
        xq: &[i8],
        xs: &[f32],
    ) -> f32 {
        let ones = _mm256_set1_epi16(1);
        let mut acc = _mm256_setzero_ps();
        for (b, &x_scale) in xs.iter().enumerate().take(blocks) {
            let (w, ws) = weight(b);
            // SAFETY: the callers checked `xq` has `blocks` blocks.
            let x = _mm256_loadu_si256(xq.as_ptr().add(b * BLOCK).cast());
            let pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
            let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
            acc = _mm256_fmadd_ps(sums, _mm256_set1_ps(ws * x_scale), acc);
        }
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_movehdup_ps(quad));
        _mm_cvtss_f32(one)
    }
}

/// The AVX512-VNNI kernel over [`tiles`]: the 16 lanes of a vector are 16 weight rows, so a
/// block of 32 columns takes 8 `vpdpbusd` (4 columns each) per activation row, then one scale
/// step. Unsigned weights `q + offset` times signed activations; `offset · Σ x_q` is subtracted
/// in integers, so each block's dot product is exact before scaling. Callers check
/// [`vnni_available`] first.
#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{tiles, QuantizedActivations, BLOCK, TILE_ROWS};

    /// Activation rows a tile is multiplied with at once (each weight load serves them all).
    pub(super) const ACT_ROWS: usize = 4;

    /// Lanes `[i][r]`: tile row `r` times activation row `acts.start + i` (unused rows 0).
    pub(super) fn tile_dot(
        tile: &[u8],
        blocks: usize,
        offset: i32,
        x: &QuantizedActivations,
        acts: Range<usize>,
    ) -> [[f32; TILE_ROWS]; ACT_ROWS] {
        assert!(tile.len() == blocks * tiles::BLOCK_BYTES && x.blocks == blocks);
        assert!(acts.len() <= ACT_ROWS && acts.end <= x.m);
        // SAFETY: callers check AVX512F/BW/VNNI; reads stay inside `tile` (asserted length)
        // and inside activation rows `acts` (asserted in range).
        unsafe { tile_dot_avx512(tile, blocks, offset, x, acts) }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile_dot_avx512(
        tile: &[u8],
        blocks: usize,
        offset: i32,
        x: &QuantizedActivations,
        acts: Range<usize>,
    ) -> [[f32; TILE_ROWS]; ACT_ROWS] {
        let rows = acts.len();
        let mut acc = [_mm512_setzero_ps(); ACT_ROWS];
        for b in 0..blocks {
            let base = tile.as_ptr().add(b * tiles::BLOCK_BYTES);
            let mut dots = [_mm512_setzero_si512(); ACT_ROWS];
            for g in 0..BLOCK / 4 {
                let w = _mm512_loadu_si512(base.add(TILE_ROWS * 2 + g * 64).cast());
                for (i, dot) in dots.iter_mut().enumerate().take(rows) {
                    let xq = x
                        .quants
                        .as_ptr()
                        .add((acts.start + i) * x.blocks * BLOCK + b * BLOCK + g * 4);
                    let xv = _mm512_set1_epi32(std::ptr::read_unaligned(xq.cast::<i32>()));
                    *dot = _mm512_dpbusd_epi32(*dot, w, xv);
                }
            }
            let ws = _mm512_cvtph_ps(_mm256_loadu_si256(base.cast()));
            for (i, (acc, dot)) in acc.iter_mut().zip(dots).enumerate().take(rows) {
                let at = (acts.start + i) * x.blocks + b;
                let exact = _mm512_sub_epi32(dot, _mm512_set1_epi32(offset * x.sums[at]));
                let scale = _mm512_mul_ps(ws, _mm512_set1_ps(x.scales[at]));
                *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), scale, *acc);
            }
        }
        let mut out = [[0f32; TILE_ROWS]; ACT_ROWS];
        for (o, a) in out.iter_mut().zip(acc).take(rows) {
            _mm512_storeu_ps(o.as_mut_ptr(), a);
        }
        out
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod vnni {
    use super::{QuantizedActivations, TILE_ROWS};

    pub(super) const ACT_ROWS: usize = 4;

    pub(super) fn tile_dot(
        _: &[u8],
        _: usize,
        _: i32,
        _: &QuantizedActivations,
        _: std::ops::Range<usize>,
    ) -> [[f32; TILE_ROWS]; ACT_ROWS] {
        unreachable!("vnni_available is false off x86_64")
    }
}

/// Stand-ins so the dispatch compiles where AVX2 does not exist; never called there.
#[cfg(not(target_arch = "x86_64"))]
mod simd {
    pub(super) fn unpack_q5_0_row(w: &[u8], quants: &mut [i8], scales: &mut [f32]) {
        super::scalar::unpack_row(super::BlockFormat::Q5_0, w, quants, scales)
    }
    pub(super) fn dot_unpacked(wq: &[i8], ws: &[f32], xq: &[i8], xs: &[f32]) -> f32 {
        super::scalar::dot_unpacked(wq, ws, xq, xs)
    }
    pub(super) fn dot_q8_0(w: &[u8], xq: &[i8], xs: &[f32]) -> f32 {
        super::scalar::dot_q8_0(w, xq, xs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    /// Random blocks of `format`, `rows` rows of `blocks` blocks, with ordinary scales.
    fn random_blocks(format: BlockFormat, rows: usize, blocks: usize, seed: u64) -> Vec<u8> {
        let mut rng = SplitMix64::new(seed);
        let mut out = Vec::new();
        for _ in 0..rows * blocks {
            let d = f16::from_f32(0.001 + (rng.next_u64() % 1000) as f32 / 50_000.0);
            out.extend_from_slice(&d.to_bits().to_le_bytes());
            for _ in 2..format.block_bytes() {
                out.push(rng.next_u64() as u8);
            }
        }
        out
    }

    fn random_activations(m: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64::new(seed);
        (0..m * k)
            .map(|_| (rng.next_u64() % 20_001) as f32 / 10_000.0 - 1.0)
            .collect()
    }

    #[test]
    fn simd_unpack_equals_scalar_on_random_q5_0_blocks() {
        if !simd_available() {
            return;
        }
        let blocks = 64;
        let w = random_blocks(BlockFormat::Q5_0, 1, blocks, 1);
        let (mut q1, mut s1) = (vec![0i8; blocks * BLOCK], vec![0f32; blocks]);
        let (mut q2, mut s2) = (q1.clone(), s1.clone());
        scalar::unpack_row(BlockFormat::Q5_0, &w, &mut q1, &mut s1);
        simd::unpack_q5_0_row(&w, &mut q2, &mut s2);
        assert_eq!(q1, q2);
        assert_eq!(s1, s2);
        assert!(q1.iter().all(|&q| (-16..=15).contains(&q)));
    }

    /// The scalar Q5_0 unpacking agrees with candle's dequantization (ggml's definition).
    #[test]
    fn scalar_q5_0_unpack_matches_candle() -> crate::Result<()> {
        let dev = candle_core::Device::Cpu;
        let blocks = 8;
        let w = random_blocks(BlockFormat::Q5_0, 1, blocks, 2);
        let t = crate::ggml::qtensor_from_bytes(
            &w,
            candle_core::quantized::GgmlDType::Q5_0,
            (1, blocks * BLOCK),
            &dev,
        )?;
        let want: Vec<f32> = t.dequantize(&dev)?.flatten_all()?.to_vec1()?;
        let m = BlockMatrix::new(BlockFormat::Q5_0, 1, blocks * BLOCK, &w).expect("shape");
        let mut got = vec![0f32; blocks * BLOCK];
        m.dequantize_row(0, &mut got);
        assert_eq!(got, want);
        Ok(())
    }

    /// SIMD dot products equal the scalar ones up to float summation order, on random blocks.
    #[test]
    fn simd_dots_match_scalar_on_random_blocks() {
        if !simd_available() {
            return;
        }
        for (seed, blocks) in [(3u64, 1usize), (4, 28), (5, 152)] {
            let k = blocks * BLOCK;
            let x = QuantizedActivations::new(&random_activations(1, k, seed), 1, k);
            let (xq, xs) = x.row(0);
            let w8 = random_blocks(BlockFormat::Q8_0, 1, blocks, seed + 10);
            let (a, b) = (scalar::dot_q8_0(&w8, xq, xs), simd::dot_q8_0(&w8, xq, xs));
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "q8_0 {a} vs {b}");
            let w5 = random_blocks(BlockFormat::Q5_0, 1, blocks, seed + 20);
            let (mut q, mut s) = (vec![0i8; k], vec![0f32; blocks]);
            scalar::unpack_row(BlockFormat::Q5_0, &w5, &mut q, &mut s);
            let (a, b) = (
                scalar::dot_unpacked(&q, &s, xq, xs),
                simd::dot_unpacked(&q, &s, xq, xs),
            );
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "q5_0 {a} vs {b}");
        }
    }

    /// The threaded matmul equals a plain f32 product of the dequantized weights up to the
    /// activations' 8-bit rounding, and batching rows changes no value.
    #[test]
    fn matmul_matches_dequantized_product_and_batches_exactly() {
        for format in [BlockFormat::Q8_0, BlockFormat::Q5_0] {
            let (n, k, m) = (37, 96, 5);
            let w = BlockMatrix::new(format, n, k, &random_blocks(format, n, k / BLOCK, 7))
                .expect("shape");
            let xf = random_activations(m, k, 8);
            let x = QuantizedActivations::new(&xf, m, k);
            let mut out = vec![0f32; m * n];
            w.matmul(&x, &mut out);
            let mut row = vec![0f32; k];
            for r in 0..n {
                w.dequantize_row(r, &mut row);
                for i in 0..m {
                    let want: f32 = row
                        .iter()
                        .zip(&xf[i * k..(i + 1) * k])
                        .map(|(a, b)| a * b)
                        .sum();
                    let scale: f32 = row.iter().map(|v| v.abs()).sum::<f32>() / 100.0;
                    let got = out[i * n + r];
                    assert!(
                        (got - want).abs() <= scale.max(1e-3),
                        "{format:?} ({i},{r}): {got} vs {want}"
                    );
                }
            }
            for i in 0..m {
                let one = QuantizedActivations::new(&xf[i * k..(i + 1) * k], 1, k);
                let mut single = vec![0f32; n];
                w.matmul(&one, &mut single);
                assert_eq!(single[..], out[i * n..(i + 1) * n], "{format:?} row {i}");
            }
        }
    }

    /// The VNNI kernel equals the AVX2/scalar path up to float summation order, on shapes with
    /// a partial tile (n = 37), a partial group of activation rows (m = 5) and several widths,
    /// and both layouts dequantize every row to the same values.
    #[test]
    fn vnni_matmul_matches_the_other_kernels() {
        if !vnni_available() {
            return;
        }
        for format in [BlockFormat::Q8_0, BlockFormat::Q5_0] {
            for (seed, blocks) in [(1u64, 1usize), (2, 3), (3, 17), (4, 28), (5, 152)] {
                let (n, m, k) = (37, 5, blocks * BLOCK);
                let bytes = random_blocks(format, n, blocks, seed);
                let tiled = BlockMatrix::for_kernel(format, n, k, &bytes, true).expect("shape");
                let rows = BlockMatrix::for_kernel(format, n, k, &bytes, false).expect("shape");
                let xf = random_activations(m, k, seed + 100);
                let x = QuantizedActivations::new(&xf, m, k);
                let (mut a, mut b) = (vec![0f32; m * n], vec![0f32; m * n]);
                tiled.matmul(&x, &mut a);
                rows.matmul(&x, &mut b);
                let (mut ra, mut rb) = (vec![0f32; k], vec![0f32; k]);
                for r in 0..n {
                    tiled.dequantize_row(r, &mut ra);
                    rows.dequantize_row(r, &mut rb);
                    assert_eq!(ra, rb, "{format:?} row {r}");
                }
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-4 * y.abs().max(1.0),
                        "{format:?} {blocks}: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn shapes_that_do_not_fit_are_refused() {
        assert!(BlockMatrix::new(BlockFormat::Q8_0, 2, 32, &[0; 68]).is_some());
        assert!(BlockMatrix::new(BlockFormat::Q8_0, 2, 32, &[0; 67]).is_none());
        assert!(BlockMatrix::new(BlockFormat::Q5_0, 1, 48, &[0; 33]).is_none());
        assert!(BlockMatrix::new(BlockFormat::Q5_0, usize::MAX, 32, &[0; 22]).is_none());
    }
}
