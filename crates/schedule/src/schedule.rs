//! [`Schedule`]: a checked schedule, progress in, length out.

use crate::config::{ScheduleConfig, ScheduleKind};
use crate::curve::{Curve, next_change};
use crate::error::ScheduleError;
use crate::progress::{Progress, ProgressUnit};
use crate::shapes::AllowedLengths;
use crate::warning::ScheduleWarning;

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
/// Built by [`ScheduleConfig::build`]. Evaluation is O(1) (O(log n) for `fixed_discrete`, and
/// O(log K) more with a shape policy of K lengths); iterating change points is
/// O(changes · log(total)).
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    config: ScheduleConfig,
    curve: Curve,
    /// The shape policy's lengths, when the config has one.
    allowed: Option<AllowedLengths>,
    warnings: Vec<ScheduleWarning>,
}

impl Schedule {
    pub(crate) fn from_parts(
        config: ScheduleConfig,
        curve: Curve,
        allowed: Option<AllowedLengths>,
        warnings: Vec<ScheduleWarning>,
    ) -> Self {
        Self {
            config,
            curve,
            allowed,
            warnings,
        }
    }

    /// The same schedule without its shape policy: every length as the kind computes it
    /// (what snapping to the policy's lengths is measured against).
    #[must_use]
    pub fn without_shapes(&self) -> Schedule {
        Schedule {
            config: self.config.clone().with_shapes(None),
            curve: self.curve.clone(),
            allowed: None,
            warnings: self.warnings.clone(),
        }
    }

    /// The lengths the shape policy allows, ascending; `None` without a policy (any length
    /// the kind computes).
    pub fn allowed_lengths(&self) -> Option<&[u64]> {
        self.allowed.as_ref().map(AllowedLengths::as_slice)
    }

    /// The config this schedule was built from.
    pub fn config(&self) -> &ScheduleConfig {
        &self.config
    }

    /// The schedule's family.
    pub fn kind(&self) -> ScheduleKind {
        self.config.kind()
    }

    /// The unit progress is measured in.
    pub fn unit(&self) -> ProgressUnit {
        self.config.unit()
    }

    /// Length of training, when the config gave one.
    pub fn total(&self) -> Option<u64> {
        self.config.total()
    }

    /// Legal but suspicious settings found while building.
    pub fn warnings(&self) -> &[ScheduleWarning] {
        &self.warnings
    }

    /// The sequence length at `position` (in [`Schedule::unit`]): 1 <= len <= max.
    pub fn seq_len_at(&self, position: u64) -> u64 {
        let len = self.curve.len_at(position);
        match &self.allowed {
            Some(allowed) => allowed.snap(len),
            None => len,
        }
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
        // A policy always allows the curve's final length.
        self.curve.final_len()
    }

    /// The length at the start of training.
    pub fn min_len(&self) -> u64 {
        self.seq_len_at(0)
    }

    /// The first position from which the length stays at [`Schedule::max_len`].
    pub fn warmup_end(&self) -> u64 {
        self.change_points().last().map_or(0, |c| c.position)
    }

    /// Every point where the length changes, starting with position 0.
    pub fn change_points(&self) -> ChangePoints<'_> {
        ChangePoints {
            schedule: self,
            next: Some(0),
        }
    }
}

impl From<Schedule> for ScheduleConfig {
    fn from(schedule: Schedule) -> Self {
        schedule.config
    }
}

impl From<&Schedule> for ScheduleConfig {
    fn from(schedule: &Schedule) -> Self {
        schedule.config.clone()
    }
}

/// Iterator over a schedule's [`ChangePoint`]s; see [`Schedule::change_points`].
#[derive(Debug, Clone)]
pub struct ChangePoints<'a> {
    schedule: &'a Schedule,
    next: Option<u64>,
}

impl Iterator for ChangePoints<'_> {
    type Item = ChangePoint;
    fn next(&mut self) -> Option<ChangePoint> {
        let position = self.next?;
        let schedule = self.schedule;
        self.next = next_change(|p| schedule.seq_len_at(p), schedule.max_len(), position);
        Some(ChangePoint {
            position,
            seq_len: schedule.seq_len_at(position),
        })
    }
}
