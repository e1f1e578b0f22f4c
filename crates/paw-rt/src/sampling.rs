//! Next-token selection: greedy argmax, or temperature + nucleus sampling from an explicit seed.

/// Small deterministic PRNG (SplitMix64); each call owns one, so there is no global state.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream of one input: `seed` mixed with a hash of the input's token ids.
    pub(crate) fn for_input(seed: u64, input_ids: &[u32]) -> Self {
        let mut h = blake3::Hasher::new();
        for id in input_ids {
            h.update(&id.to_le_bytes());
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.finalize().as_bytes()[..8]);
        Self(seed ^ u64::from_le_bytes(first))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampler {
    pub temperature: f32,
    pub top_p: f32,
}

impl Sampler {
    pub(crate) fn pick(&self, logits: &[f32], rng: &mut SplitMix64) -> u32 {
        if self.temperature <= 0.0 {
            return argmax(logits);
        }
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                (
                    i as u32,
                    (f64::from(l - max) / f64::from(self.temperature)).exp(),
                )
            })
            .collect();
        // Ties broken by id so that the order (and the draw) is deterministic.
        probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let total: f64 = probs.iter().map(|p| p.1).sum();
        let mut kept = 0.0;
        let mut n = 0;
        for (_, p) in &probs {
            kept += p;
            n += 1;
            if kept >= f64::from(self.top_p) * total {
                break;
            }
        }
        let mut r = rng.next_f64() * kept;
        for (id, p) in &probs[..n] {
            if r < *p {
                return *id;
            }
            r -= p;
        }
        probs[n - 1].0
    }
}

/// Index of the largest logit; the lowest index wins ties.
pub(crate) fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_input_gets_its_own_stream() {
        let draw = |seed, ids: &[u32]| {
            let mut r = SplitMix64::for_input(seed, ids);
            [r.next_u64(), r.next_u64()]
        };
        assert_eq!(draw(7, &[1, 2, 3]), draw(7, &[1, 2, 3]));
        assert_ne!(draw(7, &[1, 2, 3]), draw(7, &[1, 2, 4]));
        assert_ne!(draw(7, &[1, 2, 3]), draw(8, &[1, 2, 3]));
    }
}
