//! NumPy's `np.random.Generator(np.random.PCG64(seed))`, bit for bit, for the draws OLMo-core's
//! decomposition curricula and its fixed-length loader make: `integers(low, high)`, `shuffle` and `permutation` of a 1-D
//! array. OLMo-core's batch order is a function of these streams, so matching it batch for
//! batch means matching NumPy's seeding (`SeedSequence`), its PCG64 (XSL-RR 128/64) and its
//! bounded draws (Lemire's method, unmasked, with PCG64's buffered 32-bit half-words).

/// The 128-bit LCG multiplier of PCG64 (`PCG_DEFAULT_MULTIPLIER_128`).
const PCG_MULTIPLIER: u128 = 0x2360_ED05_1FC6_5DA4_4385_DF64_9FCC_F645;

// SeedSequence's hashing constants (numpy/random/bit_generator.pyx).
const INIT_A: u32 = 0x43b0_d7e5;
const MULT_A: u32 = 0x931e_8875;
const INIT_B: u32 = 0x8b51_f9dd;
const MULT_B: u32 = 0x58f3_8ded;
const MIX_MULT_L: u32 = 0xca01_f9dd;
const MIX_MULT_R: u32 = 0x4973_f715;
const XSHIFT: u32 = 16;
const POOL_SIZE: usize = 4;

/// `np.random.Generator(np.random.PCG64(seed))` for a non-negative integer seed.
#[derive(Debug, Clone)]
pub(crate) struct NumpyRandom {
    state: u128,
    increment: u128,
    /// PCG64 hands out 32-bit draws in halves of one 64-bit draw: the upper half waits here.
    spare_u32: Option<u32>,
}

impl NumpyRandom {
    /// Seeded as `PCG64(seed)` is: `SeedSequence(seed).generate_state(4, uint64)` gives the
    /// initial state (words 0-1) and stream (words 2-3).
    pub(crate) fn new(seed: u64) -> Self {
        let words = seed_sequence_state(seed);
        let state = (u128::from(words[0]) << 64) | u128::from(words[1]);
        let stream = (u128::from(words[2]) << 64) | u128::from(words[3]);
        let mut rng = Self {
            state: 0,
            increment: (stream << 1) | 1,
            spare_u32: None,
        };
        rng.step();
        rng.state = rng.state.wrapping_add(state);
        rng.step();
        rng
    }

    fn step(&mut self) {
        self.state = self
            .state
            .wrapping_mul(PCG_MULTIPLIER)
            .wrapping_add(self.increment);
    }

    /// The next 64 bits (`pcg64_next64`: step, then XSL-RR output).
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.step();
        let folded = ((self.state >> 64) as u64) ^ (self.state as u64);
        folded.rotate_right((self.state >> 122) as u32)
    }

    /// The next 32 bits: the low half of a fresh 64-bit draw, or the upper half kept from the
    /// previous one.
    fn next_u32(&mut self) -> u32 {
        if let Some(spare) = self.spare_u32.take() {
            return spare;
        }
        let next = self.next_u64();
        self.spare_u32 = Some((next >> 32) as u32);
        next as u32
    }

    /// Uniform in `[0, range]` (NumPy's `random_bounded_uint64`, unmasked: Lemire's method on
    /// 32 bits while the range fits, else on 64).
    fn bounded(&mut self, range: u64) -> u64 {
        if range == 0 {
            0
        } else if let Ok(range) = u32::try_from(range) {
            if range == u32::MAX {
                return u64::from(self.next_u32());
            }
            let exclusive = range + 1;
            let mut product = u64::from(self.next_u32()) * u64::from(exclusive);
            let mut leftover = product as u32;
            if leftover < exclusive {
                let threshold = (u32::MAX - range) % exclusive;
                while leftover < threshold {
                    product = u64::from(self.next_u32()) * u64::from(exclusive);
                    leftover = product as u32;
                }
            }
            product >> 32
        } else {
            if range == u64::MAX {
                return self.next_u64();
            }
            let exclusive = range + 1;
            let mut product = u128::from(self.next_u64()) * u128::from(exclusive);
            let mut leftover = product as u64;
            if leftover < exclusive {
                let threshold = (u64::MAX - range) % exclusive;
                while leftover < threshold {
                    product = u128::from(self.next_u64()) * u128::from(exclusive);
                    leftover = product as u64;
                }
            }
            (product >> 64) as u64
        }
    }

    /// `integers(low, high)`: uniform in `[low, high)`; `low < high`.
    pub(crate) fn integers(&mut self, low: u64, high: u64) -> u64 {
        debug_assert!(low < high, "integers({low}, {high}) has an empty range");
        low + self.bounded(high - low - 1)
    }

    /// Uniform in `[0, max]` by masked rejection (NumPy's `random_interval`, which `shuffle`
    /// draws with, unlike `integers`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let value = if u32::try_from(max).is_ok() {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }

    /// `shuffle(x)` (and `permutation(x)`) of a 1-D array: Fisher-Yates from the end.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }
}

/// `SeedSequence(seed).generate_state(4, np.uint64)`.
fn seed_sequence_state(seed: u64) -> [u64; 4] {
    // The entropy as 32-bit words, least significant first (0 is one word, 0).
    let entropy: Vec<u32> = if seed >> 32 == 0 {
        vec![seed as u32]
    } else {
        vec![seed as u32, (seed >> 32) as u32]
    };
    let mut hash_a = INIT_A;
    let mut hashmix = |value: u32| {
        let mut value = value ^ hash_a;
        hash_a = hash_a.wrapping_mul(MULT_A);
        value = value.wrapping_mul(hash_a);
        value ^ (value >> XSHIFT)
    };
    let mix = |x: u32, y: u32| {
        let result = MIX_MULT_L
            .wrapping_mul(x)
            .wrapping_sub(MIX_MULT_R.wrapping_mul(y));
        result ^ (result >> XSHIFT)
    };
    let mut pool = [0u32; POOL_SIZE];
    for (i, slot) in pool.iter_mut().enumerate() {
        *slot = hashmix(entropy.get(i).copied().unwrap_or(0));
    }
    for source in 0..POOL_SIZE {
        for destination in 0..POOL_SIZE {
            if source != destination {
                let hashed = hashmix(pool[source]);
                pool[destination] = mix(pool[destination], hashed);
            }
        }
    }
    // At most two entropy words, so none is left beyond the pool.
    let mut hash_b = INIT_B;
    let mut words = [0u32; 8];
    for (i, word) in words.iter_mut().enumerate() {
        let mut value = pool[i % POOL_SIZE] ^ hash_b;
        hash_b = hash_b.wrapping_mul(MULT_B);
        value = value.wrapping_mul(hash_b);
        *word = value ^ (value >> XSHIFT);
    }
    std::array::from_fn(|i| u64::from(words[2 * i]) | (u64::from(words[2 * i + 1]) << 32))
}

#[cfg(test)]
#[allow(clippy::unreadable_literal)] // NumPy's outputs, as it prints them
mod tests {
    use super::NumpyRandom;

    /// NumPy 2.x's own outputs (`np.random.Generator(np.random.PCG64(seed))`):
    /// `bit_generator.random_raw(3)`; `integers` over ranges that take every branch of the
    /// bounded draw; `shuffle(np.arange(12))` then `permutation(np.arange(7))`.
    #[allow(clippy::type_complexity)]
    const NUMPY: [(u64, [u64; 3], [u64; 6], [u32; 12], [u32; 7]); 5] = [
        (
            0,
            [0xa30febcfd9c2825f, 0x4510bdf882d9d721, 0xa7d3da94ecde8b8],
            [8, 5, 2317450298, 636, 1322117307, 152440531369162766],
            [9, 2, 7, 4, 5, 11, 0, 3, 6, 10, 8, 1],
            [2, 1, 3, 6, 0, 5, 4],
        ),
        (
            1,
            [0x8306bdf37922e4ff, 0xf35196bbc152a866, 0x24e7a4f608ec18cd],
            [4, 5, 8164420988, 511, 149690576, 8749746783503398889],
            [8, 11, 4, 7, 5, 0, 1, 9, 2, 10, 6, 3],
            [1, 0, 3, 5, 6, 4, 2],
        ),
        (
            7,
            [0xa00641a9f1e54a8b, 0xe5afcdbcaf266a95, 0xc693565f940af962],
            [9, 5, 7707007875, 625, 2483747173, 2077169698657866657],
            [4, 6, 10, 0, 1, 3, 8, 7, 2, 5, 9, 11],
            [4, 2, 0, 3, 6, 1, 5],
        ),
        (
            2024,
            [0xad0348563dd4cae8, 0x36dde2a417a3d0d9, 0x4f383f90515160e1],
            [2, 5, 1841022358, 675, 1364287716, 7373773241406430706],
            [5, 7, 10, 2, 3, 11, 0, 1, 4, 9, 6, 8],
            [3, 1, 5, 2, 6, 4, 0],
        ),
        (
            (1 << 40) + 3,
            [0xc60e533fbbb0872c, 0xfef0825f71d66341, 0x792240db6171ac88],
            [7, 5, 8554349759, 773, 1634839691, 598142059322100384],
            [2, 4, 10, 9, 6, 5, 3, 7, 11, 0, 8, 1],
            [0, 2, 4, 3, 6, 1, 5],
        ),
    ];

    #[test]
    fn every_draw_matches_numpy() {
        let ranges = [
            (0, 10),
            (5, 6),
            (100, 1 << 33),
            (0, 1000),
            (3, (1 << 32) + 3),
            (0, 1 << 63),
        ];
        for (seed, raw, integers, shuffled, permuted) in NUMPY {
            let mut rng = NumpyRandom::new(seed);
            let drawn: Vec<u64> = (0..3).map(|_| rng.next_u64()).collect();
            assert_eq!(drawn, raw, "raw draws, seed {seed}");
            let mut rng = NumpyRandom::new(seed);
            let drawn: Vec<u64> = ranges.iter().map(|&(l, h)| rng.integers(l, h)).collect();
            assert_eq!(drawn, integers, "integers, seed {seed}");
            let mut rng = NumpyRandom::new(seed);
            let mut items: Vec<u32> = (0..12).collect();
            rng.shuffle(&mut items);
            assert_eq!(items, shuffled, "shuffle, seed {seed}");
            let mut items: Vec<u32> = (0..7).collect();
            rng.shuffle(&mut items);
            assert_eq!(items, permuted, "permutation, seed {seed}");
        }
    }
}
