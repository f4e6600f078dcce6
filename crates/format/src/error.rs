//! The error type of the format crate.

/// Why a shard could not be written or a location expanded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A shard that could not be written.
    #[error("{file}: cannot write shard: {reason}")]
    Write {
        /// The shard's name.
        file: String,
        /// The writer's error.
        reason: String,
    },
    /// A path, directory or glob that cannot be read.
    #[error("{location}: {reason}")]
    Location {
        /// The location given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}
