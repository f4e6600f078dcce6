//! [`Interleave`]: one of several streams whose batches are taken in turn, as PyTorch's
//! `DataLoader` takes them from its worker processes. Each stream reads its own share of the
//! data (the loader makes each a rank), while the schedule follows the interleaved order: the
//! `k`-th batch of stream `index` of `count` is step `k * count + index` of the whole.

use seqwarm_schedule::Progress;
use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};

/// This stream's place among `count` interleaved streams (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interleave {
    /// This stream's position in the turn, `0..count`.
    pub index: u64,
    /// Streams taken in turn (at least 1).
    pub count: u64,
}

impl Interleave {
    /// Stream `index` of `count`.
    pub fn new(index: u64, count: u64) -> Self {
        Self { index, count }
    }

    pub(crate) fn check(self) -> Result<Self> {
        if self.count == 0 || self.index >= self.count {
            return Err(StageError::Config {
                field: "interleave",
                reason: format!(
                    "index {} of {} streams: the index must be below the count, and the count >= 1",
                    self.index, self.count
                ),
            });
        }
        Ok(self)
    }

    /// The step of the whole that this stream's `step`-th batch is.
    pub fn step(self, step: u64) -> u64 {
        step.saturating_mul(self.count).saturating_add(self.index)
    }

    /// The progress of the whole when this stream has made `own`: steps exactly; samples and
    /// tokens estimated as `count` times this stream's own (the streams' batches differ by a
    /// partial row at most in the lossless modes, not at all in the cutting ones).
    pub fn progress(self, own: &Progress) -> Progress {
        Progress {
            steps: self.step(own.steps),
            samples: own.samples.saturating_mul(self.count),
            tokens: own.tokens.saturating_mul(self.count),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_of_interleaved_streams_cover_every_step_once() {
        let mut seen: Vec<u64> = (0..3)
            .flat_map(|i| (0..5).map(move |k| Interleave::new(i, 3).step(k)))
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..15).collect::<Vec<_>>());
    }

    #[test]
    fn an_index_outside_the_count_is_refused() {
        assert!(Interleave::new(2, 2).check().is_err());
        assert!(Interleave::new(0, 0).check().is_err());
        assert!(Interleave::new(1, 2).check().is_ok());
    }

    #[test]
    fn progress_of_the_whole_counts_steps_exactly() {
        let own = Progress {
            steps: 4,
            samples: 32,
            tokens: 1000,
        };
        let whole = Interleave::new(1, 4).progress(&own);
        assert_eq!((whole.steps, whole.samples, whole.tokens), (17, 128, 4000));
    }
}
