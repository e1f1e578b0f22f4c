//! The one seeded PRNG of paw (SplitMix64): sampling in the runtime, LoRA initialisation and
//! batch order in the compiler. No global state, identical on every platform, so the same seed
//! gives the same bytes; compiled program ids depend on these exact sequences.

/// Small deterministic PRNG (SplitMix64); each user owns one, so there is no global state.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// The stream that starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The stream of one input: `seed` mixed with a hash of the input's token ids.
    pub fn for_input(seed: u64, input_ids: &[u32]) -> Self {
        let mut h = blake3::Hasher::new();
        for id in input_ids {
            h.update(&id.to_le_bytes());
        }
        let mut first = [0u8; 8];
        first.copy_from_slice(&h.finalize().as_bytes()[..8]);
        Self(seed ^ u64::from_le_bytes(first))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[-scale, scale)`, from the top 24 bits.
    pub fn next_f32_symmetric(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (unit * 2.0 - 1.0) * scale
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sequence() {
        // Reference values of SplitMix64 from seed 0 (Vigna's splitmix64.c).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(r.next_u64(), 0x06C4_5D18_8009_454F);
    }

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
