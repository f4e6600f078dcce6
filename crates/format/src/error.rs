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
    /// A raw token file (or its header) that does not hold what it says.
    #[error("{file} at byte {offset}: {reason}")]
    RawTokens {
        /// The file.
        file: String,
        /// The byte offset where the problem is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}
