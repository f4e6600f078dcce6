//! [`OnError`]: what a reader does with input it cannot read.

use serde::{Deserialize, Serialize};

/// What to do with an unreadable shard (the loader) or a bad input document or file (the
/// preprocessor).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop with the error (default).
    #[default]
    Fail,
    /// Skip it, log why, count it, go on.
    Skip,
}
