//! The error type of the stage crate.

use seqwarm_batcher::BatchError;
use seqwarm_schedule::ScheduleError;

/// Why the warmup stage refused a setting, an input or a checkpoint.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// An invalid setting, or settings that contradict each other.
    #[error("setting `{field}`: {reason}")]
    Config {
        /// The setting, as spelled in config files.
        field: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
    /// Documents whose offsets or labels do not fit their tokens.
    #[error("invalid documents: {reason}")]
    Documents {
        /// What does not fit.
        reason: String,
    },
    /// A checkpoint that does not fit this stage.
    #[error("resume state: {reason}")]
    State {
        /// What does not fit.
        reason: String,
    },
    /// The input stream of a `WarmupStream` (feature `futures`) failed.
    #[error("input stream: {0}")]
    Input(#[source] std::sync::Arc<dyn std::error::Error + Send + Sync>),
    /// A batch transform failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The schedule is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// Shorthand for stage results.
pub type Result<T, E = StageError> = std::result::Result<T, E>;
