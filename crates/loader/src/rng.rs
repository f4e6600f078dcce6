//! A small deterministic generator: shard order and shuffling must be pure functions of
//! (seed, epoch), reproducible across machines and versions, so no external RNG crate whose
//! stream might change.

/// SplitMix64 (Steele, Lea and Flood 2014).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SplitMix64(pub u64);

impl SplitMix64 {
    /// A generator for one purpose, seeded from several values.
    pub(crate) fn from_parts(parts: &[u64]) -> Self {
        let mut state = 0x5EE0_AA57_0000_0001u64;
        for &p in parts {
            state = SplitMix64(state ^ p).next_u64();
        }
        Self(state)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n >= 1), by Lemire's multiply-shift (bias < 2^-32 for our sizes).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
