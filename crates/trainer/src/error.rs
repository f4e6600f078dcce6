//! The error type of the trainer crate.

use seqwarm_loader::LoaderError;

/// Why training failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainerError {
    /// A configuration value that cannot work; names the field.
    #[error("invalid trainer config `{field}`: {reason}")]
    Config {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A batch that cannot become a model input; names the step and the field.
    #[error("step {step}: batch field `{field}`: {reason}")]
    Batch {
        /// The loader step of the batch.
        step: u64,
        /// The batch field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// libtorch refused an operation (shape mismatch, out-of-range token id, out of memory).
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// The loader failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// A run-directory or checkpoint file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint that does not match the model or cannot be parsed.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The allocator-statistics shim reported a C++ exception.
    #[error("memory statistics: {0}")]
    Memory(String),
}

/// Shorthand for this crate's results.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

/// Attaches what was being done to a libtorch error.
pub(crate) trait TorchContext<T> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> TorchContext<T> for std::result::Result<T, tch::TchError> {
    fn context(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| TrainerError::Torch {
            context: context(),
            source,
        })
    }
}

pub(crate) fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> TrainerError {
    let path = path.display().to_string();
    move |source| TrainerError::Io { path, source }
}
