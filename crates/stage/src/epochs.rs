//! [`EpochConfig`]: which units are read, in which order, and when the stream ends.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};

/// Which units are read, in which order, and when the stream ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EpochConfig {
    seed: u64,
    shuffle_units: bool,
    rank: usize,
    world_size: usize,
    epochs: u64,
    max_steps: Option<u64>,
    max_tokens: Option<u64>,
}

/// Seed 0, the unit order shuffled every epoch, rank 0 of 1, one epoch, no step or token
/// limit.
impl Default for EpochConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            shuffle_units: true,
            rank: 0,
            world_size: 1,
            epochs: 1,
            max_steps: None,
            max_tokens: None,
        }
    }
}

impl EpochConfig {
    /// Seed of the unit order.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Shuffle the unit order each epoch (default true); false keeps the units' own order.
    #[must_use]
    pub fn with_shuffle_units(mut self, shuffle: bool) -> Self {
        self.shuffle_units = shuffle;
        self
    }
    /// This process's rank and the number of ranks.
    #[must_use]
    pub fn with_rank(mut self, rank: usize, world_size: usize) -> Self {
        self.rank = rank;
        self.world_size = world_size;
        self
    }
    /// Epochs to run; 0 runs until another limit.
    #[must_use]
    pub fn with_epochs(mut self, epochs: u64) -> Self {
        self.epochs = epochs;
        self
    }
    /// Stop after this many batches in total.
    #[must_use]
    pub fn with_max_steps(mut self, steps: Option<u64>) -> Self {
        self.max_steps = steps;
        self
    }
    /// Stop once this many tokens have been emitted in total.
    #[must_use]
    pub fn with_max_tokens(mut self, tokens: Option<u64>) -> Self {
        self.max_tokens = tokens;
        self
    }

    /// Seed of the unit order.
    pub fn seed(&self) -> u64 {
        self.seed
    }
    /// Whether the unit order is shuffled each epoch.
    pub fn shuffle_units(&self) -> bool {
        self.shuffle_units
    }
    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }
    /// Epochs to run (0 = until another limit).
    pub fn epochs(&self) -> u64 {
        self.epochs
    }
    /// The step limit, if any.
    pub fn max_steps(&self) -> Option<u64> {
        self.max_steps
    }
    /// The token limit, if any.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    pub(crate) fn check(&self, units: usize) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(StageError::Config {
                field: "rank",
                reason: format!("rank {} is not in 0..{}", self.rank, self.world_size),
            });
        }
        if units == 0 {
            return Err(StageError::Config {
                field: "shards",
                reason: "no readable row groups".into(),
            });
        }
        if self.world_size > units {
            return Err(StageError::Config {
                field: "world_size",
                reason: format!(
                    "{} ranks but only {units} row groups: every rank needs at least one \
                     (write smaller row groups, or use fewer ranks)",
                    self.world_size
                ),
            });
        }
        Ok(())
    }
}
