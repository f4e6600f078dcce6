//! Units of training progress and a counter of all three.

use serde::{Deserialize, Serialize};

/// What training progress is counted in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressUnit {
    /// Optimizer steps (emitted batches). Composer and DeepSpeed count these.
    #[default]
    Steps,
    /// Samples (rows) seen.
    Samples,
    /// Tokens seen, padding excluded.
    Tokens,
}

impl ProgressUnit {
    /// The name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steps => "steps",
            Self::Samples => "samples",
            Self::Tokens => "tokens",
        }
    }
}

impl std::fmt::Display for ProgressUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ProgressUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "steps" | "batches" => Ok(Self::Steps),
            "samples" | "rows" => Ok(Self::Samples),
            "tokens" => Ok(Self::Tokens),
            _ => Err(format!(
                "unknown progress unit `{s}`; expected steps, samples or tokens"
            )),
        }
    }
}

/// Training progress counted in every unit at once, so that a schedule in any unit can be
/// evaluated from the same counter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Samples (rows) seen.
    pub samples: u64,
    /// Tokens seen.
    pub tokens: u64,
}

impl Progress {
    /// Records one step of `rows` samples holding `tokens` tokens.
    pub fn advance(&mut self, rows: u64, tokens: u64) {
        // Saturating: no run reaches 2^64, but a hand-made progress must not wrap around.
        self.steps = self.steps.saturating_add(1);
        self.samples = self.samples.saturating_add(rows);
        self.tokens = self.tokens.saturating_add(tokens);
    }

    /// The progress in `unit`.
    pub fn position(&self, unit: ProgressUnit) -> u64 {
        match unit {
            ProgressUnit::Steps => self.steps,
            ProgressUnit::Samples => self.samples,
            ProgressUnit::Tokens => self.tokens,
        }
    }
}
