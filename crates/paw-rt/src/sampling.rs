//! Next-token selection: greedy argmax, or temperature + nucleus sampling from an explicit seed.

use crate::rng::SplitMix64;

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
