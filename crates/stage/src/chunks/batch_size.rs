//! OLMo-core's `BatchSizeSchedulerCallback`: the global batch size changes at points of
//! training, by integer factors, and the learning rate scales by `sqrt(new / old)`.

use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};

/// The unit of a schedule's points (OLMo-core's `DurationUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DurationUnit {
    /// Optimizer steps taken: a point is due once `steps >= at`.
    Steps,
    /// Tokens trained on, all ranks together (OLMo-core's `global_train_tokens_seen`): due
    /// once `tokens >= at`.
    Tokens,
    /// Epochs: due once the (1-based) epoch is over `at`, that is from epoch `at + 1` on.
    Epochs,
}

impl DurationUnit {
    /// Whether a point at `at` is due (OLMo-core's `Duration.due`).
    fn due(self, at: u64, step: u64, tokens: u64, epoch: u64) -> bool {
        match self {
            Self::Steps => step >= at,
            Self::Tokens => tokens >= at,
            Self::Epochs => epoch > at,
        }
    }
}

impl std::str::FromStr for DurationUnit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "steps" | "step" => Ok(Self::Steps),
            "tokens" | "token" => Ok(Self::Tokens),
            "epochs" | "epoch" => Ok(Self::Epochs),
            other => Err(format!("unit {other:?} is not steps, tokens or epochs")),
        }
    }
}

/// Global batch sizes (tokens, all ranks) and when each applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, try_from = "ScheduleTable")]
pub struct BatchSizeSchedule {
    unit: DurationUnit,
    /// `(at, global batch tokens)`, the first at 0, `at` rising.
    points: Vec<(u64, u64)>,
}

/// A schedule as written in a settings file, checked by [`BatchSizeSchedule::new`] when read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleTable {
    unit: DurationUnit,
    points: Vec<(u64, u64)>,
}

impl TryFrom<ScheduleTable> for BatchSizeSchedule {
    type Error = StageError;

    fn try_from(table: ScheduleTable) -> Result<Self> {
        Self::new(table.unit, table.points)
    }
}

impl BatchSizeSchedule {
    /// A schedule, checked as OLMo-core's callback checks it: it starts at 0, its points rise,
    /// and each size is a whole multiple or divisor of the one before (never the same).
    pub fn new(unit: DurationUnit, points: Vec<(u64, u64)>) -> Result<Self> {
        let refuse = |reason: String| {
            Err(StageError::Config {
                field: "batch_schedule",
                reason,
            })
        };
        let Some(&(first_at, _)) = points.first() else {
            return refuse("give at least one point `at:global_batch_tokens`".into());
        };
        if first_at != 0 {
            return refuse(format!(
                "the schedule must start at 0 (its first point is at {first_at}), as OLMo-core's"
            ));
        }
        if let Some(&(_, size)) = points.iter().find(|&&(_, size)| size == 0) {
            return refuse(format!("a batch of {size} tokens"));
        }
        for pair in points.windows(2) {
            let ((at, size), (next_at, next)) = (pair[0], pair[1]);
            if next_at <= at {
                return refuse(format!(
                    "point {next_at} does not come after point {at}: the points must rise"
                ));
            }
            if next == size {
                return refuse(format!(
                    "{size} twice in a row: each point must change the size"
                ));
            }
            if !next.max(size).is_multiple_of(next.min(size)) {
                return refuse(format!(
                    "{size} -> {next}: the batch size can only change by an integer factor"
                ));
            }
        }
        Ok(Self { unit, points })
    }

    /// The unit of the points.
    pub fn unit(&self) -> DurationUnit {
        self.unit
    }

    /// The points, `(at, global batch tokens)`.
    pub fn points(&self) -> &[(u64, u64)] {
        &self.points
    }

    /// The size of the latest point due at this position, if any is due.
    pub(crate) fn due_size(&self, step: u64, tokens: u64, epoch: u64) -> Option<u64> {
        self.points
            .iter()
            .rev()
            .find(|&&(at, _)| self.unit.due(at, step, tokens, epoch))
            .map(|&(_, size)| size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_olmo_core_refuses() {
        let steps = DurationUnit::Steps;
        assert!(BatchSizeSchedule::new(steps, vec![]).is_err());
        assert!(BatchSizeSchedule::new(steps, vec![(5, 8)]).is_err());
        assert!(BatchSizeSchedule::new(steps, vec![(0, 8), (0, 16)]).is_err());
        assert!(BatchSizeSchedule::new(steps, vec![(0, 8), (4, 12)]).is_err());
        assert!(BatchSizeSchedule::new(steps, vec![(0, 8), (4, 8)]).is_err());
        assert!(BatchSizeSchedule::new(steps, vec![(0, 0)]).is_err());
        let ok = BatchSizeSchedule::new(steps, vec![(0, 8), (4, 32), (9, 16)]).unwrap();
        assert_eq!(ok.due_size(0, 0, 1), Some(8));
        assert_eq!(ok.due_size(8, 0, 1), Some(32));
        assert_eq!(ok.due_size(9, 0, 1), Some(16));
    }

    #[test]
    fn units_are_due_as_olmo_core_counts_them() {
        let tokens = BatchSizeSchedule::new(DurationUnit::Tokens, vec![(0, 8), (100, 16)]).unwrap();
        assert_eq!(tokens.due_size(50, 99, 1), Some(8));
        assert_eq!(tokens.due_size(0, 100, 1), Some(16));
        let epochs = BatchSizeSchedule::new(DurationUnit::Epochs, vec![(0, 8), (1, 16)]).unwrap();
        assert_eq!(epochs.due_size(50, 0, 1), Some(8));
        assert_eq!(epochs.due_size(0, 0, 2), Some(16));
        assert_eq!("tokens".parse::<DurationUnit>(), Ok(DurationUnit::Tokens));
        assert!("minutes".parse::<DurationUnit>().is_err());
    }

    #[test]
    fn a_schedule_read_from_settings_is_checked() {
        let bad = r#"{"unit": "steps", "points": [[5, 8]]}"#;
        let error = serde_json::from_str::<BatchSizeSchedule>(bad).unwrap_err();
        assert!(error.to_string().contains("must start at 0"), "{error}");
        let good = r#"{"unit": "tokens", "points": [[0, 8], [100, 16]]}"#;
        let schedule: BatchSizeSchedule = serde_json::from_str(good).unwrap();
        assert_eq!(schedule.points(), &[(0, 8), (100, 16)]);
    }
}
