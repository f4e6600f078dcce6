//! The error type of the loader crate.

use seqwarm_batcher::BatchError;
use seqwarm_schedule::ScheduleError;
use seqwarm_stage::StageError;

/// Why loading failed. Every variant that concerns data names the file, and the row group,
/// column and row where known.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoaderError {
    /// A shard location that cannot be listed or parsed.
    #[error("{location}: {reason}")]
    Location {
        /// The path, glob or URL given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A location that matched no Parquet files.
    #[error(
        "{location}: no Parquet shards found (to make shards from text, JSON Lines or a Parquet \
         text column: `seqwarm preprocess {location} -o SHARDS_DIR`, then read SHARDS_DIR)"
    )]
    NoShards {
        /// The path, glob or URL given.
        location: String,
    },
    /// The object store could not open or read a file.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file.
        file: String,
        /// The store's error.
        #[source]
        source: object_store::Error,
    },
    /// A file that is not valid Parquet (bad magic, truncated, corrupt footer).
    #[error("{file}: not a readable Parquet file: {source}")]
    NotParquet {
        /// The file.
        file: String,
        /// The decoder's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A row group that could not be decoded.
    #[error("{file} row group {row_group}: cannot decode column `{column}`: {source}")]
    Decode {
        /// The file.
        file: String,
        /// The row group.
        row_group: usize,
        /// The column being read.
        column: String,
        /// The decoder's error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A configured column that the file lacks.
    #[error("{file}: no column `{column}` (columns: {available})")]
    MissingColumn {
        /// The file.
        file: String,
        /// The column asked for.
        column: String,
        /// The file's top-level columns.
        available: String,
    },
    /// A column of a type the loader cannot read as tokens.
    #[error("{file}: column `{column}` has type {found}; expected {expected}")]
    ColumnType {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// Its Arrow type.
        found: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A null where a document or token is required.
    #[error("{file} row group {row_group} row {row}: column `{column}` is null")]
    Null {
        /// The file.
        file: String,
        /// The row group.
        row_group: usize,
        /// The row within the row group.
        row: usize,
        /// The column.
        column: String,
    },
    /// A per-token column whose row length differs from the token column's.
    #[error(
        "{file} row group {row_group} row {row}: column `{column}` has {len} values but the tokens have {expected}"
    )]
    LengthMismatch {
        /// The file.
        file: String,
        /// The row group.
        row_group: usize,
        /// The row within the row group.
        row: usize,
        /// The column.
        column: String,
        /// Its length in that row.
        len: usize,
        /// The token count of that row.
        expected: usize,
    },
    /// A token id outside `[0, vocab_size)`.
    #[error(
        "{file} row group {row_group} row {row}: token {token} in column `{column}` is outside the vocabulary [0, {vocab_size})"
    )]
    TokenOutOfRange {
        /// The file.
        file: String,
        /// The row group.
        row_group: usize,
        /// The row within the row group (document for list layouts, token for flat ones).
        row: usize,
        /// The column.
        column: String,
        /// The token id.
        token: i64,
        /// The configured vocabulary size.
        vocab_size: u64,
    },
    /// Bytes that fail their checksum (a Parquet page CRC, or the row-group CRC32 seqwarm
    /// writes): the file is corrupt, by a flipped bit on disk or in transit.
    #[error("{file} row group {row_group}: {place} fails its checksum; the file is corrupt")]
    Checksum {
        /// The file.
        file: String,
        /// The row group.
        row_group: usize,
        /// Which bytes: a page of a column, or the row group's bytes with both CRCs.
        place: String,
    },
    /// The shard cache's directory cannot be used (`cache_dir`), or a download into it does
    /// not match the shard as listed.
    #[error("shard cache {path}: {reason}")]
    Cache {
        /// The cache file or directory.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// Footer metadata that contradicts the file (e.g. document lengths that do not add up).
    #[error("{file}: invalid metadata `{key}`: {reason}")]
    Metadata {
        /// The file.
        file: String,
        /// The metadata key.
        key: &'static str,
        /// What does not add up.
        reason: String,
    },
    /// A shard without rows.
    #[error("{file}: empty shard (no rows)")]
    EmptyShard {
        /// The file.
        file: String,
    },
    /// An invalid loader setting.
    #[error("loader setting `{field}`: {reason}")]
    Config {
        /// The setting.
        field: &'static str,
        /// What is wrong and what would work.
        reason: String,
    },
    /// A setting whose value has the wrong type or is not one of its names.
    #[error("loader setting `{key}`: {reason}")]
    InvalidSetting {
        /// The setting, as spelled in config files.
        key: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A setting that does not exist (a typo, or a key of another command).
    #[error("unknown setting `{key}`; the settings are: {known}")]
    UnknownKey {
        /// The key given.
        key: String,
        /// Every key there is.
        known: String,
    },
    /// A checkpoint that does not match this loader.
    #[error("resume state: {reason}")]
    State {
        /// What does not match.
        reason: String,
    },
    /// A reading task stopped before the end of its reads: it panicked or its runtime shut
    /// down. The batches already emitted are sound; resume from the last checkpoint.
    #[error("the shard reader stopped early: {reason}")]
    ReaderStopped {
        /// What stopped it.
        reason: String,
    },
    /// A local file that cannot be opened or mapped.
    #[error("{file}: cannot read: {source}")]
    LocalIo {
        /// The file.
        file: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A raw token file that does not hold what it says (size, header, ids over the
    /// vocabulary), or a location that cannot be listed.
    #[error(transparent)]
    Format(#[from] seqwarm_format::FormatError),
    /// A batch transform failed.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// The schedule is invalid.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// Any other refusal of the warmup stage (documents that do not fit their offsets).
    #[error(transparent)]
    Stage(StageError),
}

/// The stage's errors, as the loader's own variants where it has one.
impl From<StageError> for LoaderError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Config { field, reason } => Self::Config { field, reason },
            StageError::State { reason } => Self::State { reason },
            StageError::Batch(e) => Self::Batch(e),
            StageError::Schedule(e) => Self::Schedule(e),
            other => Self::Stage(other),
        }
    }
}

/// Shorthand for loader results.
pub type Result<T, E = LoaderError> = std::result::Result<T, E>;

/// The message a caught panic carried, for the error that replaces it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}
