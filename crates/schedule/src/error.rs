//! The error type of the schedule crate.

/// Why a schedule configuration was rejected.
///
/// Every variant names the offending field and value so that a user can fix a config file
/// without reading the source. Missing and unknown fields in a config file are reported by
/// serde when it is read (each kind's fields are checked there).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ScheduleError {
    /// A field has a value outside its allowed range.
    #[error("schedule field `{field}` = {value} is invalid: {reason}")]
    InvalidField {
        /// The config field, as spelled in TOML/JSON.
        field: &'static str,
        /// The rejected value, rendered.
        value: String,
        /// What is wrong and what would work.
        reason: String,
    },
    /// Composer's `SeqLengthWarmup` would divide by zero for this configuration.
    #[error("Composer's SeqLengthWarmup divides by zero here: {reason}")]
    ComposerDivisionByZero {
        /// Which quotient is zero and what would work instead.
        reason: String,
    },
    /// A progress value was given in a unit other than the schedule's.
    #[error("schedule is measured in {expected}, but progress was given in {given}")]
    UnitMismatch {
        /// The schedule's unit.
        expected: crate::ProgressUnit,
        /// The unit of the progress value given.
        given: crate::ProgressUnit,
    },
}
