//! Sequence Length Warmup schedules: training progress in, sequence length out.
//!
//! A sequence-length warmup trains on short sequences first and grows them to the full length
//! over the first part of training. This crate is the pure core that decides the length: no
//! I/O, no async, no allocation on the hot path.
//!
//! Schedules ([`ScheduleKind`]):
//! - `linear`: seqwarm's own stepped ramp; reaches `max` exactly when the warmup ends and only
//!   yields `min`, `max` or multiples of `step`.
//! - `composer`: MosaicML Composer's `SeqLengthWarmup`, bit-exact including its quirks.
//! - `fixed_linear`, `fixed_root`, `fixed_discrete`: DeepSpeed's curriculum schedules,
//!   bit-exact.
//! - `constant`: the no-warmup baseline.
//!
//! ```
//! use seqwarm_schedule::ScheduleConfig;
//!
//! // 30% of 10 000 steps ramping from 64 to 1024 tokens in steps of 64.
//! let schedule = ScheduleConfig::linear(64, 1024, 0.3, 10_000).with_step(64).build()?;
//! assert_eq!(schedule.seq_len_at(0), 64);
//! assert_eq!(schedule.seq_len_at(1_500), 512);
//! assert_eq!(schedule.seq_len_at(3_000), 1024);
//!
//! // Change points cost O(changes), whatever the length of training.
//! let changes: Vec<_> = schedule.change_points().collect();
//! assert_eq!(changes.first().map(|c| (c.position, c.seq_len)), Some((0, 64)));
//! assert_eq!(changes.last().map(|c| (c.position, c.seq_len)), Some((3_000, 1024)));
//! # Ok::<(), seqwarm_schedule::ScheduleError>(())
//! ```

#![forbid(unsafe_code)]

mod config;
mod curve;
mod error;
mod progress;

pub use config::{DEFAULT_STEP, ScheduleConfig, ScheduleKind};
pub use error::ScheduleError;
pub use progress::{Progress, ProgressUnit};

use curve::Curve;

/// Something legal but probably unintended in a schedule config.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScheduleWarning {
    /// `step` is not a multiple of 8, so most lengths miss tensor-core tile sizes. Composer and
    /// DeepSpeed allow it; so does seqwarm, with this warning.
    StepNotMultipleOf8 {
        /// The configured step.
        step: u64,
    },
    /// Composer's schedule with `max - min` not a multiple of `step`: it never yields a length
    /// between the last whole step and `max`, and jumps to `max` one update late.
    ComposerStepDoesNotDivideRange {
        /// The configured min.
        min: u64,
        /// The configured max.
        max: u64,
        /// The configured step.
        step: u64,
    },
    /// The schedule first reaches its final length at or after the end of training.
    MaxNotReachedInTraining {
        /// Length of training.
        total: u64,
        /// Where the final length is first reached, if ever.
        reached_at: Option<u64>,
    },
}

impl std::fmt::Display for ScheduleWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::StepNotMultipleOf8 { step } => write!(
                f,
                "step = {step} is not a multiple of 8: lengths will not align to tensor-core tiles"
            ),
            Self::ComposerStepDoesNotDivideRange { min, max, step } => write!(
                f,
                "max - min = {max} - {min} is not a multiple of step = {step}: Composer's \
                 schedule skips to max one update late"
            ),
            Self::MaxNotReachedInTraining { total, reached_at } => match reached_at {
                Some(at) => write!(
                    f,
                    "the final length is first reached at {at}, not before the end of training ({total})"
                ),
                None => write!(
                    f,
                    "the final length is never reached (training length {total})"
                ),
            },
        }
    }
}

/// A point where the scheduled length changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangePoint {
    /// Progress (in the schedule's unit) from which `seq_len` applies.
    pub position: u64,
    /// The length from `position` until the next change point.
    pub seq_len: u64,
}

/// A validated schedule: maps progress to a sequence length.
///
/// Built by [`ScheduleConfig::build`]. Evaluation is O(1) (O(log n) for `fixed_discrete`);
/// iterating change points is O(changes · log(total)).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    config: ScheduleConfig,
    curve: Curve,
    warnings: Vec<ScheduleWarning>,
}

impl Schedule {
    pub(crate) fn from_parts(
        config: ScheduleConfig,
        curve: Curve,
        warnings: Vec<ScheduleWarning>,
    ) -> Self {
        Self {
            config,
            curve,
            warnings,
        }
    }

    /// The config this schedule was built from.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// The schedule's family.
    pub fn kind(&self) -> ScheduleKind {
        self.config.kind
    }

    /// The unit progress is measured in.
    pub fn unit(&self) -> ProgressUnit {
        self.config.unit
    }

    /// Length of training, when the config gave one.
    pub fn total(&self) -> Option<u64> {
        self.config.total
    }

    /// Legal but suspicious settings found while building.
    pub fn warnings(&self) -> &[ScheduleWarning] {
        &self.warnings
    }

    /// The sequence length at `position` (in [`Schedule::unit`]): 1 <= len <= max.
    pub fn seq_len_at(&self, position: u64) -> u64 {
        self.curve.len_at(position)
    }

    /// The sequence length at `progress`, read in this schedule's unit.
    pub fn seq_len(&self, progress: &Progress) -> u64 {
        self.seq_len_at(progress.position(self.unit()))
    }

    /// The sequence length at `position` given in `unit`; errors when `unit` is not the
    /// schedule's.
    pub fn seq_len_in(&self, position: u64, unit: ProgressUnit) -> Result<u64, ScheduleError> {
        if unit == self.unit() {
            Ok(self.seq_len_at(position))
        } else {
            Err(ScheduleError::UnitMismatch {
                expected: self.unit(),
                given: unit,
            })
        }
    }

    /// The longest length this schedule ever yields (the length to pre-allocate for).
    pub fn max_len(&self) -> u64 {
        self.curve.final_len()
    }

    /// The length at the start of training.
    pub fn min_len(&self) -> u64 {
        self.curve.first_len()
    }

    /// The first position from which the length stays at [`Schedule::max_len`].
    pub fn warmup_end(&self) -> u64 {
        self.change_points().last().map_or(0, |c| c.position)
    }

    /// Every point where the length changes, starting with position 0.
    pub fn change_points(&self) -> ChangePoints<'_> {
        ChangePoints {
            curve: &self.curve,
            next: Some(0),
        }
    }
}

/// Iterator over a schedule's [`ChangePoint`]s; see [`Schedule::change_points`].
#[derive(Debug, Clone)]
pub struct ChangePoints<'a> {
    curve: &'a Curve,
    next: Option<u64>,
}

impl Iterator for ChangePoints<'_> {
    type Item = ChangePoint;
    fn next(&mut self) -> Option<ChangePoint> {
        let position = self.next?;
        self.next = self.curve.next_change(position);
        Some(ChangePoint {
            position,
            seq_len: self.curve.len_at(position),
        })
    }
}

#[cfg(test)]
mod tests;
