//! SplitMix64 (Steele, Lea and Flood 2014): the deterministic generator behind the shard order
//! and the document shuffle. Those must be pure functions of (seed, epoch), reproducible across
//! machines and versions, so no external RNG crate whose stream might change. Re-exported so
//! that data generators (the demo corpus, examples) draw from the same, documented stream.

/// A SplitMix64 generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The state, for a checkpoint ([`SplitMix64::new`] of it continues the stream).
    pub(crate) fn state(self) -> u64 {
        self.0
    }

    /// A generator for one purpose, seeded from several values.
    pub fn from_parts(parts: &[u64]) -> Self {
        let mut state = 0x5EE0_AA57_0000_0001u64;
        for &p in parts {
            state = SplitMix64(state ^ p).next_u64();
        }
        Self(state)
    }

    /// The next 64 random bits.
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

    /// Uniform in `0..n` (n >= 1), by Lemire's multiply-shift (bias < 2^-32 for our sizes).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SplitMix64;

    #[test]
    fn the_stream_is_the_published_one() {
        // SplitMix64 seeded with 0: the reference implementation's first outputs.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        let mut order: Vec<u32> = (0..10).collect();
        SplitMix64::from_parts(&[1, 2]).shuffle(&mut order);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_ne!(order, sorted);
    }
}
