//! A decomposition run: the piece index, a curriculum and the batch size give, per epoch and
//! step, one length and the pieces of this rank's rows (OLMo-core's `NumpyVSLDataLoader`).

use serde::{Deserialize, Serialize};

use super::curriculum::Curriculum;
use super::pieces::PieceIndex;
use crate::error::{Result, StageError};
use crate::numpy_random::NumpyRandom;

/// The settings of a decomposition run (the piece lengths are the index's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeConfig {
    /// The curriculum.
    pub curriculum: Curriculum,
    /// Tokens per step on each rank (OLMo-core's `global_batch_size / dp_world_size`).
    pub batch_tokens: u64,
    /// The seed (OLMo-core's data loader `seed`).
    pub seed: u64,
    /// This rank.
    pub rank: u64,
    /// Data-parallel ranks.
    pub world_size: u64,
}

impl DecomposeConfig {
    /// Checks the settings that need no data, for pieces up to `max` tokens, and gives the
    /// global batch (all ranks' tokens per step): a rank below the world size, a batch of
    /// whole rows of every length on every rank (a multiple of `max`, which OLMo-core needs
    /// for its batch check), at least one cycle.
    pub fn global_batch_tokens(&self, max: u64) -> Result<u64> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(StageError::Config {
                field: "rank",
                reason: format!(
                    "must be below world_size ({}), got {}",
                    self.world_size, self.rank
                ),
            });
        }
        if self.batch_tokens == 0 || !self.batch_tokens.is_multiple_of(max) {
            return Err(StageError::Config {
                field: "batch_tokens",
                reason: format!(
                    "must be a positive multiple of max ({}) so that every step fills each \
                     rank's batch with whole rows, got {}",
                    max, self.batch_tokens
                ),
            });
        }
        if let Curriculum::GrowP2 { cycles: 0, .. } | Curriculum::GrowLinear { cycles: 0, .. } =
            self.curriculum
        {
            return Err(StageError::Config {
                field: "cycles",
                reason: "must be at least 1".into(),
            });
        }
        self.batch_tokens
            .checked_mul(self.world_size)
            .ok_or_else(|| StageError::Config {
                field: "batch_tokens",
                reason: "batch_tokens x world_size overflows".into(),
            })
    }
}

/// A decomposition run over one piece index.
#[derive(Debug, Clone)]
pub struct Decomposition {
    index: PieceIndex,
    config: DecomposeConfig,
    batches_per_length: Vec<(u64, u64)>,
    /// Per length (shortest first), the piece ids ascending; each epoch shuffles a copy.
    buckets: Vec<Vec<u32>>,
}

impl Decomposition {
    /// Checks the settings ([`DecomposeConfig::global_batch_tokens`]) against the index, and
    /// that every epoch has a batch.
    pub fn new(index: PieceIndex, config: DecomposeConfig) -> Result<Self> {
        let global = config.global_batch_tokens(index.max())?;
        let batches_per_length = config
            .curriculum
            .batches_per_length(&index.pieces_per_length(), global);
        // Refuse up front what would fail at the first epoch: only the batch counts decide it.
        config
            .curriculum
            .batch_order(&batches_per_length, config.seed)?;
        let buckets = index.buckets();
        Ok(Self {
            index,
            config,
            batches_per_length,
            buckets,
        })
    }

    /// The piece index.
    pub fn index(&self) -> &PieceIndex {
        &self.index
    }

    /// The settings.
    pub fn config(&self) -> &DecomposeConfig {
        &self.config
    }

    /// Batches per length in every epoch, shortest first.
    pub fn batches_per_length(&self) -> &[(u64, u64)] {
        &self.batches_per_length
    }

    /// Steps in every epoch (the same on every rank).
    pub fn steps_per_epoch(&self) -> u64 {
        self.batches_per_length.iter().map(|&(_, b)| b).sum()
    }

    /// Tokens of each epoch no rank's batch uses: dropped by the decomposition's minimum or
    /// after a file's last EOS, or left over when a length's pieces do not fill a last batch.
    pub fn tokens_unused_per_epoch(&self) -> u64 {
        let used: u64 = self
            .batches_per_length
            .iter()
            .map(|&(_, b)| b * self.config.batch_tokens * self.config.world_size)
            .sum();
        let kept: u64 = self
            .index
            .pieces_per_length()
            .iter()
            .map(|&(len, n)| len * n)
            .sum();
        self.index.tokens_dropped() + kept - used
    }

    /// Epoch `epoch` (0-based; OLMo-core counts it `epoch + 1`): its batch order and its
    /// shuffled pieces of each length.
    pub fn epoch(&self, epoch: u64) -> Result<DecomposedEpoch> {
        let olmo_epoch = epoch + 1;
        let seed = self.config.seed.wrapping_add(olmo_epoch);
        let order = self
            .config
            .curriculum
            .batch_order(&self.batches_per_length, seed)?;
        let pieces = self
            .index
            .lengths()
            .zip(&self.buckets)
            .map(|(len, bucket)| {
                let mut ids = bucket.clone();
                NumpyRandom::new(seed.wrapping_add(len)).shuffle(&mut ids);
                ids
            })
            .collect();
        Ok(DecomposedEpoch {
            epoch,
            order,
            batches_per_length: self.batches_per_length.clone(),
            pieces,
            global_batch_tokens: self.config.batch_tokens * self.config.world_size,
            rank: self.config.rank,
            world_size: self.config.world_size,
        })
    }
}

/// One epoch of a [`Decomposition`].
#[derive(Debug, Clone)]
pub struct DecomposedEpoch {
    epoch: u64,
    order: Vec<u32>,
    batches_per_length: Vec<(u64, u64)>,
    /// Per length (shortest first): the piece ids in this epoch's order.
    pieces: Vec<Vec<u32>>,
    global_batch_tokens: u64,
    rank: u64,
    world_size: u64,
}

/// One step of this rank: every row is one piece of `length` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecomposedStep<'a> {
    /// The row length.
    pub length: u64,
    /// The pieces, one per row, in row order.
    pub pieces: &'a [u32],
}

impl DecomposedEpoch {
    /// The epoch (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Steps in this epoch.
    pub fn steps(&self) -> u64 {
        self.order.len() as u64
    }

    /// Step `step` of this epoch on this rank: the global batch's length, and this rank's
    /// contiguous block of its pieces; `None` past the end.
    pub fn step(&self, step: u64) -> Option<DecomposedStep<'_>> {
        let mut batch = u64::from(*self.order.get(usize::try_from(step).ok()?)?);
        for (bucket, &(length, batches)) in self.batches_per_length.iter().enumerate() {
            if batch < batches {
                let per_batch = self.global_batch_tokens / length;
                let per_rank = per_batch / self.world_size;
                let start = (batch * per_batch + self.rank * per_rank) as usize;
                return Some(DecomposedStep {
                    length,
                    pieces: &self.pieces[bucket][start..start + per_rank as usize],
                });
            }
            batch -= batches;
        }
        unreachable!("the order holds only batch indices below the epoch's total")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn index(lengths: &[u64]) -> PieceIndex {
        let mut ends = Vec::new();
        let mut at = 0;
        for len in lengths {
            at += len;
            ends.push(at);
        }
        let mut index = PieceIndex::new(16, 128).unwrap();
        index.push_file(&ends, at).unwrap();
        index
    }

    fn config(curriculum: Curriculum, rank: u64, world_size: u64) -> DecomposeConfig {
        DecomposeConfig {
            curriculum,
            batch_tokens: 256,
            seed: 5,
            rank,
            world_size,
        }
    }

    #[test]
    fn a_batch_that_is_not_whole_rows_is_refused() {
        let mut bad = config(Curriculum::Natural, 0, 1);
        bad.batch_tokens = 200;
        let error = Decomposition::new(index(&[1000; 50]), bad).unwrap_err();
        assert!(error.to_string().contains("multiple of max"), "{error}");
    }

    proptest! {
        /// Over the ranks of one epoch, every piece is in at most one row, every row of a step
        /// has the step's length, and each rank gets the same tokens per step.
        #[test]
        fn ranks_share_each_piece_at_most_once(
            lengths in proptest::collection::vec(1u64..700, 60..200),
            world in 1u64..4,
            curriculum in prop_oneof![
                Just(Curriculum::Natural),
                (1u64..4, any::<bool>()).prop_map(|(cycles, balanced)| Curriculum::GrowP2 { cycles, balanced }),
            ],
        ) {
            let index = index(&lengths);
            let Ok(first) = Decomposition::new(index.clone(), config(curriculum, 0, world)) else {
                return Ok(()); // too little data for a batch of every length
            };
            let mut seen = vec![false; index.len()];
            for rank in 0..world {
                let run = Decomposition::new(index.clone(), config(curriculum, rank, world)).unwrap();
                prop_assert_eq!(run.steps_per_epoch(), first.steps_per_epoch());
                let epoch = run.epoch(1).unwrap();
                for s in 0..epoch.steps() {
                    let step = epoch.step(s).unwrap();
                    prop_assert_eq!(step.length * step.pieces.len() as u64, 256);
                    for &p in step.pieces {
                        prop_assert_eq!(index.piece(p).2, step.length);
                        prop_assert!(!seen[p as usize], "piece {} twice", p);
                        seen[p as usize] = true;
                    }
                }
            }
        }
    }
}
