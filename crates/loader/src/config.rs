//! What the warmup stage does: mode, batch sizing, end-of-document token.

use seqwarm_batcher::PackStrategy;
use seqwarm_schedule::Schedule;
use serde::{Deserialize, Serialize};

use crate::error::{LoaderError, Result};

/// How documents become batches of the scheduled length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Mode {
    /// Composer's pipeline with `truncate = true`: documents concatenated into rows of
    /// `max_seq_length`, then each row cut to the scheduled length (the rest dropped).
    Truncate {
        /// Composer's `preserve_end_of_sequence`.
        #[serde(default)]
        preserve_end_of_sequence: bool,
    },
    /// Composer's pipeline with `truncate = false`: rows of `max_seq_length` re-flowed into
    /// rows of the scheduled length (the tail of each batch dropped).
    Reshape,
    /// Lossless: documents concatenated and cut into rows of exactly the scheduled length;
    /// nothing is dropped, the remainder leads the next batch.
    Repack,
    /// Document-aware packing with `position_ids`, `segment_ids` and boundary-masked labels.
    Pack {
        /// `greedy` or best fit decreasing over `window` documents.
        #[serde(default = "default_strategy", with = "strategy_serde")]
        strategy: PackStrategy,
    },
}

fn default_strategy() -> PackStrategy {
    PackStrategy::Greedy
}

mod strategy_serde {
    use seqwarm_batcher::PackStrategy;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case", tag = "kind")]
    enum Repr {
        Greedy,
        BestFit { window: usize },
    }

    pub fn serialize<S: Serializer>(s: &PackStrategy, ser: S) -> Result<S::Ok, S::Error> {
        match *s {
            PackStrategy::Greedy => Repr::Greedy,
            PackStrategy::BestFitDecreasing { window } => Repr::BestFit { window },
        }
        .serialize(ser)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<PackStrategy, D::Error> {
        Ok(match Repr::deserialize(de)? {
            Repr::Greedy => PackStrategy::Greedy,
            Repr::BestFit { window } => PackStrategy::BestFitDecreasing { window },
        })
    }
}

impl Mode {
    /// Whether this mode first builds rows of the maximum length (Composer's pipeline).
    pub fn is_composer(&self) -> bool {
        matches!(self, Self::Truncate { .. } | Self::Reshape)
    }

    /// The mode's name for logs and tables.
    pub fn name(&self) -> String {
        match self {
            Self::Truncate {
                preserve_end_of_sequence: false,
            } => "truncate".into(),
            Self::Truncate {
                preserve_end_of_sequence: true,
            } => "truncate+eos".into(),
            Self::Reshape => "reshape".into(),
            Self::Repack => "repack".into(),
            Self::Pack {
                strategy: PackStrategy::Greedy,
            } => "pack-greedy".into(),
            Self::Pack {
                strategy: PackStrategy::BestFitDecreasing { window },
            } => format!("pack-bestfit{window}"),
        }
    }
}

/// Rows per batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    /// A fixed number of rows at every length.
    Rows(usize),
    /// A token budget: `rows = budget / seq_len`, so short sequences come in larger batches.
    Tokens(usize),
}

impl BatchSize {
    /// Rows at `seq_len` (at least 1).
    pub fn rows(&self, seq_len: usize) -> usize {
        match *self {
            Self::Rows(r) => r,
            Self::Tokens(budget) => (budget / seq_len.max(1)).max(1),
        }
    }
}

/// The warmup stage's configuration. Build with [`WarmupConfig::new`] and the `with_*`
/// setters; [`WarmupConfig::validate`] runs when a stream is built.
#[derive(Debug, Clone)]
pub struct WarmupConfig {
    pub(crate) schedule: Schedule,
    pub(crate) mode: Mode,
    pub(crate) batch_size: BatchSize,
    pub(crate) eos_id: Option<i64>,
    pub(crate) pad_id: i64,
    pub(crate) keep_last: bool,
    pub(crate) mask_document_boundaries: bool,
    pub(crate) shuffle_buffer: usize,
    pub(crate) shuffle_seed: u64,
}

impl WarmupConfig {
    /// Defaults: lossless `repack`, 8 rows per batch, no EOS token, last partial batch
    /// dropped (and counted), no sample shuffling.
    pub fn new(schedule: Schedule) -> Self {
        Self {
            schedule,
            mode: Mode::Repack,
            batch_size: BatchSize::Rows(8),
            eos_id: None,
            pad_id: 0,
            keep_last: false,
            mask_document_boundaries: true,
            shuffle_buffer: 0,
            shuffle_seed: 0,
        }
    }
    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets the batch sizing.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: BatchSize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// Appends this token after every document (Composer's and GPT-2's EOS convention).
    #[must_use]
    pub fn with_eos_id(mut self, eos: Option<i64>) -> Self {
        self.eos_id = eos;
        self
    }
    /// Padding id for the final partial batch and packed rows.
    #[must_use]
    pub fn with_pad_id(mut self, pad: i64) -> Self {
        self.pad_id = pad;
        self
    }
    /// Emit the final partial batch (padded) instead of dropping it.
    #[must_use]
    pub fn with_keep_last(mut self, keep: bool) -> Self {
        self.keep_last = keep;
        self
    }
    /// Mask labels across document boundaries in `pack` mode.
    #[must_use]
    pub fn with_mask_document_boundaries(mut self, mask: bool) -> Self {
        self.mask_document_boundaries = mask;
        self
    }
    /// Shuffle documents through a buffer of this many (0 = off), seeded by `seed`.
    #[must_use]
    pub fn with_shuffle_buffer(mut self, documents: usize, seed: u64) -> Self {
        self.shuffle_buffer = documents;
        self.shuffle_seed = seed;
        self
    }
    /// Rows taken per step at `seq_len`: for `reshape`, rows of the maximum length (a token
    /// budget then bounds the reshaped batch, `budget / max` input rows, not the input); for
    /// every other mode, rows of the output.
    pub fn rows_at(&self, seq_len: usize) -> usize {
        match (self.mode, self.batch_size) {
            (Mode::Reshape, BatchSize::Tokens(budget)) => {
                let max = usize::try_from(self.schedule.max_len()).unwrap_or(usize::MAX);
                (budget / max.max(1)).max(1)
            }
            (_, sizing) => sizing.rows(seq_len),
        }
    }

    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The batch sizing.
    pub fn batch_size(&self) -> BatchSize {
        self.batch_size
    }

    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<()> {
        let max = usize::try_from(self.schedule.max_len()).map_err(|_| LoaderError::Config {
            field: "schedule.max",
            reason: "does not fit in memory".into(),
        })?;
        match self.batch_size {
            BatchSize::Rows(0) => {
                return Err(LoaderError::Config {
                    field: "batch_size",
                    reason: "rows per batch must be >= 1".into(),
                });
            }
            BatchSize::Tokens(budget) if budget < max => {
                return Err(LoaderError::Config {
                    field: "batch_tokens",
                    reason: format!(
                        "a budget of {budget} tokens cannot hold one row at the maximum length {max}"
                    ),
                });
            }
            _ => {}
        }
        if let Mode::Pack {
            strategy: PackStrategy::BestFitDecreasing { window: 0 },
        } = self.mode
        {
            return Err(LoaderError::Config {
                field: "pack_window",
                reason: "best-fit window must be >= 1 document".into(),
            });
        }
        Ok(())
    }
}
