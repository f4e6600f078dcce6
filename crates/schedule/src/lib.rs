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
//! - `olmo_split`, `olmo_truncate`: OLMo-core's `SequenceLengthSchedulerCallback` (split and
//!   truncate modes), exact to its code.
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

mod build;
mod config;
mod curve;
mod error;
mod progress;
mod schedule;
mod shapes;
mod warning;

pub use config::{
    Constant, DEFAULT_STEP, FixedDiscrete, OLMO_DEFAULT_KEEP_MULTIPLE_OF, OLMO_DEFAULT_MIN,
    OLMO_DEFAULT_WARMUP_STEPS, Olmo, Ramp, RampBuilder, Root, ScheduleConfig, ScheduleKind,
};
pub use error::ScheduleError;
pub use progress::{Progress, ProgressUnit};
pub use schedule::{ChangePoint, ChangePoints, Schedule};
pub use shapes::ShapePolicy;
pub use warning::ScheduleWarning;

#[cfg(test)]
mod tests;
