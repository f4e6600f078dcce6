//! [`BatchSize`]: how many rows a batch has.

use serde::{Deserialize, Serialize};

/// Rows per batch: `{ rows = 8 }` or `{ tokens = 32768 }` in a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchSize {
    /// A fixed number of rows at every length (Composer's batch size).
    Rows(usize),
    /// A token budget: `rows = budget / seq_len`, so short sequences come in larger batches
    /// and every step costs about the same.
    Tokens(usize),
}

/// 8 rows per batch.
impl Default for BatchSize {
    fn default() -> Self {
        Self::Rows(8)
    }
}

impl std::fmt::Display for BatchSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rows(r) => write!(f, "{r} rows per batch"),
            Self::Tokens(t) => write!(f, "{t} tokens per batch"),
        }
    }
}
