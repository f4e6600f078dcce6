//! [`EpochConfig`]: which units are read, in which order, and when the stream ends.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};
use crate::mode::Mode;

/// What a single rank does with the tokens left at the end of an epoch. (With several ranks
/// every epoch ends at the same batch on each, and what is left is dropped: `docs/loader.md`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpochBoundary {
    /// They lead the next epoch: epochs flow into each other and no token is lost between
    /// them.
    Carry,
    /// Every epoch starts afresh, as a data loader that replays its dataset does (Composer's
    /// with a fixed set of rows): what is left at an epoch's end is dropped, or emitted padded
    /// with `keep_last`, exactly as at the end of a run.
    Restart,
}

impl EpochBoundary {
    /// The boundary when none is set: `Restart` in Composer's modes, whose rows then match
    /// Composer's in every epoch and not only the first; `Carry` in the others, which exist to
    /// lose no token.
    pub fn default_for(mode: Mode) -> Self {
        if mode.is_composer() {
            Self::Restart
        } else {
            Self::Carry
        }
    }
}

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
    epoch_boundary: Option<EpochBoundary>,
}

/// Seed 0, the unit order shuffled every epoch, rank 0 of 1, one epoch, no step or token
/// limit, the mode's epoch boundary ([`EpochBoundary::default_for`]).
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
            epoch_boundary: None,
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

    /// What a single rank does with the tokens left at an epoch's end; `None` for the mode's
    /// default ([`EpochBoundary::default_for`]).
    #[must_use]
    pub fn with_epoch_boundary(mut self, boundary: Option<EpochBoundary>) -> Self {
        self.epoch_boundary = boundary;
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
    /// Whether `progress` has reached the step or token limit.
    pub fn limits_reached(&self, progress: &seqwarm_schedule::Progress) -> bool {
        self.max_steps.is_some_and(|m| progress.steps >= m)
            || self.max_tokens.is_some_and(|m| progress.tokens >= m)
    }
    /// The epoch boundary set, if any (`None`: the mode's default).
    pub fn epoch_boundary(&self) -> Option<EpochBoundary> {
        self.epoch_boundary
    }
    /// The epoch boundary in effect under `mode`.
    pub fn epoch_boundary_for(&self, mode: Mode) -> EpochBoundary {
        self.epoch_boundary
            .unwrap_or_else(|| EpochBoundary::default_for(mode))
    }

    /// Checks what can be checked before the data is known: the rank is one of the ranks.
    pub fn validate(&self) -> Result<()> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(StageError::Config {
                field: "rank",
                reason: format!("rank {} is not in 0..{}", self.rank, self.world_size),
            });
        }
        Ok(())
    }

    pub(crate) fn check(&self, units: usize) -> Result<()> {
        self.validate()?;
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
