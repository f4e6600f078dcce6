//! The three variable-sequence-length curricula of OLMo-core 3.0.0 (`VSLNaturalCurriculum`,
//! `VSLGrowP2Curriculum`, `VSLGrowLinearCurriculum`): how many batches each length gets per
//! epoch, and in which order the epoch's batches come.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};
use crate::numpy_random::NumpyRandom;

/// Which curriculum orders the batches of an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Curriculum {
    /// Every batch of every length, shuffled, one of the longest first (to meet an out of
    /// memory at once).
    Natural,
    /// `cycles` cycles; within each, the share of each length follows odds that are powers of
    /// two, growing from short to long (Grow-P2).
    GrowP2 {
        /// Cycles per epoch (OLMo-core's `num_cycles`, default 8).
        cycles: u64,
        /// The same number of batches for every length (drops more data).
        balanced: bool,
    },
    /// As Grow-P2, with odds growing linearly (Grow-Linear).
    GrowLinear {
        /// Cycles per epoch (OLMo-core's `num_cycles`, default 8).
        cycles: u64,
        /// The same number of batches for every length (drops more data).
        balanced: bool,
    },
}

impl Curriculum {
    /// The name used on the command line and in settings.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Natural => "natural",
            Self::GrowP2 { .. } => "grow-p2",
            Self::GrowLinear { .. } => "grow-linear",
        }
    }

    /// Batches per length in an epoch of `global_batch_tokens` tokens per step, from the
    /// pieces per length (shortest first).
    pub fn batches_per_length(
        &self,
        pieces_per_length: &[(u64, u64)],
        global_batch_tokens: u64,
    ) -> Vec<(u64, u64)> {
        let natural = pieces_per_length
            .iter()
            .map(|&(len, pieces)| (len, pieces / (global_batch_tokens / len)));
        match *self {
            Self::Natural => natural.collect(),
            Self::GrowP2 { cycles, balanced } | Self::GrowLinear { cycles, balanced } => {
                let natural: Vec<(u64, u64)> = natural.collect();
                if balanced {
                    let fewest = natural.iter().map(|&(_, b)| b).min().unwrap_or(0);
                    let each = cycles * (fewest / cycles);
                    natural.iter().map(|&(len, _)| (len, each)).collect()
                } else {
                    natural
                        .iter()
                        .map(|&(len, b)| (len, cycles * (b / cycles)))
                        .collect()
                }
            }
        }
    }

    /// The epoch's batch order: global batch indices, numbered by length (shortest first) then
    /// batch, as OLMo-core's `get_batch_indices(batches_per_bucket, seed)` gives them.
    pub fn batch_order(&self, batches_per_length: &[(u64, u64)], seed: u64) -> Result<Vec<u32>> {
        let total: u64 = batches_per_length.iter().map(|&(_, b)| b).sum();
        let longest = batches_per_length.last().map_or(0, |&(_, b)| b);
        if longest == 0 {
            return Err(StageError::Config {
                field: "batch_tokens",
                reason: format!(
                    "no batch of the longest length: the data has too few pieces of it for one \
                     batch per epoch ({total} batches in all, after the curriculum's rounding); \
                     use more data, a smaller batch or a shorter max"
                ),
            });
        }
        let total = u32::try_from(total).map_err(|_| StageError::Config {
            field: "batch_tokens",
            reason: format!("{total} batches per epoch: OLMo-core numbers batches in 32 bits"),
        })?;
        let mut rng = NumpyRandom::new(seed);
        match *self {
            Self::Natural => {
                let mut order: Vec<u32> = (0..total).collect();
                let first = rng.integers(u64::from(total) - longest, u64::from(total)) as usize;
                order.swap(0, first);
                rng.shuffle(&mut order[1..]);
                Ok(order)
            }
            Self::GrowP2 { cycles, .. } => {
                grow_order(batches_per_length, cycles, &mut rng, |e| 1u64 << (e - 1))
            }
            Self::GrowLinear { cycles, .. } => {
                grow_order(batches_per_length, cycles, &mut rng, |e| e)
            }
        }
    }
}

/// OLMo-core's `divide_into_buckets(n, b)`: `n` split into `b` counts, the larger first.
fn divide_into_buckets(mut n: u64, b: u64) -> Vec<u64> {
    let mut counts = Vec::with_capacity(b as usize);
    while (counts.len() as u64) < b {
        let remaining = b - counts.len() as u64;
        let count = n.div_ceil(remaining);
        n -= count;
        counts.push(count);
    }
    counts
}

/// The growth curricula's odds exponent for `bucket` in sub-cycle `subcycle` of `buckets`.
fn odds_exponent(bucket: u64, buckets: u64, subcycle: u64) -> u64 {
    let start = buckets - bucket;
    if start + subcycle <= buckets {
        start + subcycle
    } else {
        start - ((start + subcycle) % buckets)
    }
}

/// `_get_num_bucket_batches_for_cycle`: `batches` of one length split over the sub-cycles of a
/// cycle by the odds, rounded half to even (Python's `round`), the shortfall to the last.
fn subcycle_counts(bucket: u64, buckets: u64, batches: u64, odds: impl Fn(u64) -> u64) -> Vec<u64> {
    let odds: Vec<u64> = (0..buckets)
        .map(|s| odds(odds_exponent(bucket, buckets, s)))
        .collect();
    let divisor: u64 = odds.iter().sum();
    let mut counts: Vec<u64> = odds
        .iter()
        .map(|&o| ((o as f64 / divisor as f64) * batches as f64).round_ties_even() as u64)
        .collect();
    let total: u64 = counts.iter().sum();
    if total < batches {
        *counts.last_mut().expect("at least one bucket") += batches - total;
    }
    counts
}

fn grow_order(
    batches_per_length: &[(u64, u64)],
    cycles: u64,
    rng: &mut NumpyRandom,
    odds: impl Fn(u64) -> u64 + Copy,
) -> Result<Vec<u32>> {
    let buckets = batches_per_length.len() as u64;
    let mut order: Vec<u32> = Vec::new();
    let offsets: Vec<u64> = batches_per_length
        .iter()
        .scan(0u64, |at, &(_, b)| {
            let start = *at;
            *at += b;
            Some(start)
        })
        .collect();
    for cycle in 0..cycles as usize {
        // Per bucket, the global indices of its batches in this cycle, split by sub-cycle.
        let mut per_bucket: Vec<Vec<Vec<u32>>> = Vec::with_capacity(buckets as usize);
        for (bucket, &(len, batches)) in batches_per_length.iter().enumerate() {
            let per_cycle = divide_into_buckets(batches, cycles);
            let first = offsets[bucket] + per_cycle[..cycle].iter().sum::<u64>();
            let this_cycle = per_cycle[cycle];
            let counts = subcycle_counts(bucket as u64, buckets, this_cycle, odds);
            let assigned: u64 = counts.iter().sum();
            if assigned != this_cycle {
                return Err(StageError::Config {
                    field: "curriculum",
                    reason: format!(
                        "OLMo-core 3.0.0 rounds the {this_cycle} batches of length {len} in cycle \
                         {cycle} to {assigned} sub-cycle batches ({counts:?}) and fails its own \
                         assertion; seqwarm refuses the same settings rather than guess: change \
                         the cycles, the batch size or the lengths, or use --balanced"
                    ),
                });
            }
            let mut at = first as u32;
            per_bucket.push(
                counts
                    .iter()
                    .map(|&n| {
                        let chunk: Vec<u32> = (at..at + n as u32).collect();
                        at += n as u32;
                        chunk
                    })
                    .collect(),
            );
        }
        for subcycle in 0..buckets as usize {
            let mut batch: Vec<u32> = per_bucket
                .iter()
                .flat_map(|chunks| chunks[subcycle].iter().copied())
                .collect();
            rng.shuffle(&mut batch);
            order.extend(batch);
        }
    }
    // One of the longest batches first, to meet an out of memory at once.
    let longest_start = offsets.last().copied().unwrap_or(0) as u32;
    if let Some(first) = order.iter().position(|&i| i >= longest_start) {
        order.swap(0, first);
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn olmo_cores_grow_linear_rounding_defect_is_refused() {
        // 11 batches over 3 sub-cycles with odds 3:2:1 round to 6 + 4 + 2 = 12 in OLMo-core.
        assert_eq!(subcycle_counts(0, 3, 11, |e| e), [6, 4, 2]);
        let curriculum = Curriculum::GrowLinear {
            cycles: 1,
            balanced: false,
        };
        let error = curriculum
            .batch_order(&[(128, 11), (256, 11), (512, 11)], 0)
            .unwrap_err();
        assert!(error.to_string().contains("assertion"), "{error}");
    }

    #[test]
    fn divide_into_buckets_gives_the_larger_first() {
        assert_eq!(divide_into_buckets(10, 4), [3, 3, 2, 2]);
        assert_eq!(divide_into_buckets(3, 4), [1, 1, 1, 0]);
    }

    #[test]
    fn every_batch_appears_once_and_a_longest_comes_first() {
        let lengths = [(64, 40), (128, 24), (256, 16), (512, 8)];
        for curriculum in [
            Curriculum::Natural,
            Curriculum::GrowP2 {
                cycles: 4,
                balanced: false,
            },
            Curriculum::GrowLinear {
                cycles: 2,
                balanced: false,
            },
        ] {
            let per_length = curriculum.batches_per_length(&lengths, 512);
            let mut order = curriculum.batch_order(&per_length, 3).unwrap();
            let total: u64 = per_length.iter().map(|&(_, b)| b).sum();
            let longest_start = (total - per_length[3].1) as u32;
            assert!(order[0] >= longest_start, "{curriculum:?}");
            order.sort_unstable();
            assert_eq!(
                order,
                (0..total as u32).collect::<Vec<_>>(),
                "{curriculum:?}"
            );
        }
    }

    #[test]
    fn no_batch_of_the_longest_length_is_an_error() {
        let error = Curriculum::Natural
            .batch_order(&[(64, 3), (128, 0)], 0)
            .unwrap_err();
        assert!(error.to_string().contains("longest"), "{error}");
    }
}
