//! [`ScheduleWarning`]: settings that are legal but probably not what was meant.

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
