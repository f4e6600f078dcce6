//! The error type of the preprocess crate.

/// Why preprocessing failed. Every variant names the file (and line or row where known).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// A bad input document or file: `location` is `file`, `file:line` or `file: row N`.
    #[error("{location}: {reason}")]
    Input {
        /// Where.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// No input files at all.
    #[error("no input files matched {inputs}")]
    NoInputs {
        /// The inputs given.
        inputs: String,
    },
    /// A file that could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// An invalid setting.
    #[error("setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
    /// An output directory holding another run's shards, or manifests that do not belong
    /// together.
    #[error("{path}: {reason}")]
    Mismatch {
        /// The directory or manifest.
        path: String,
        /// What differs.
        reason: String,
    },
    /// A shard could not be written.
    #[error(transparent)]
    Format(#[from] seqwarm_format::FormatError),
}

/// Shorthand for preprocess results.
pub type Result<T, E = PreprocessError> = std::result::Result<T, E>;

/// An I/O error at `path`, as a closure for `map_err`.
pub(crate) fn io_at(path: &std::path::Path) -> impl Fn(std::io::Error) -> PreprocessError + '_ {
    move |source| PreprocessError::Io {
        path: path.display().to_string(),
        source,
    }
}
