//! [`LastBatch`]: what the stage does with the tokens left when its input ends, too few for a
//! whole batch (the `keep_last` setting).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What becomes of the tokens left at the end (of a run, or of an epoch that restarts the
/// stage), fewer than a whole batch of the shape then scheduled. Whatever is not emitted is
/// dropped and counted ([`crate::Stats::tokens_dropped`]).
///
/// In settings it is `keep_last`: `false`, `true`, or `"full-rows"` (also `"drop"` and
/// `"padded"`); `false` and `true` are written as before, so checkpoints of either still
/// resume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LastBatch {
    /// Dropped (`drop_last=True`, and Hugging Face's `group_texts` remainder).
    #[default]
    Drop,
    /// Emitted as a final batch of fewer rows, the last row padded with the padding id.
    Padded,
    /// Composer's `drop_last=False` over Hugging Face's `group_texts`: the rows of the maximum
    /// length that are complete are emitted as a final batch of fewer rows (cut as every
    /// batch), and the tokens after the last complete row are dropped, as `group_texts`
    /// drops its remainder. Composer's modes (`truncate`, `truncate-keep-eos`, `reshape`)
    /// only: the others have no rows of the maximum length to complete.
    FullRows,
}

impl LastBatch {
    /// The name in settings (`"drop"`, `"padded"`, `"full-rows"`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Drop => "drop",
            Self::Padded => "padded",
            Self::FullRows => "full-rows",
        }
    }

    /// Whether anything of the remainder is emitted.
    pub fn keeps(self) -> bool {
        self != Self::Drop
    }
}

impl Serialize for LastBatch {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Drop => serializer.serialize_bool(false),
            Self::Padded => serializer.serialize_bool(true),
            Self::FullRows => serializer.serialize_str(self.name()),
        }
    }
}

impl<'de> Deserialize<'de> for LastBatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Flag(bool),
            Name(String),
        }
        match Given::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom(
                "expected true, false, or one of \"drop\", \"padded\", \"full-rows\"",
            )
        })? {
            Given::Flag(keep) => Ok(keep.into()),
            Given::Name(name) => name.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl std::str::FromStr for LastBatch {
    type Err = String;

    /// `true`, `false`, `drop`, `padded` or `full-rows` (a command line's spelling).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "false" | "drop" => Ok(Self::Drop),
            "true" | "padded" => Ok(Self::Padded),
            "full-rows" => Ok(Self::FullRows),
            other => Err(format!(
                "`{other}`: expected true, false, drop, padded or full-rows"
            )),
        }
    }
}

impl From<bool> for LastBatch {
    fn from(keep: bool) -> Self {
        if keep { Self::Padded } else { Self::Drop }
    }
}

impl std::fmt::Display for LastBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::LastBatch;

    #[test]
    fn booleans_read_and_write_as_before_and_names_read() {
        for (text, value) in [
            ("false", LastBatch::Drop),
            ("true", LastBatch::Padded),
            ("\"drop\"", LastBatch::Drop),
            ("\"padded\"", LastBatch::Padded),
            ("\"full-rows\"", LastBatch::FullRows),
        ] {
            assert_eq!(
                serde_json::from_str::<LastBatch>(text).unwrap(),
                value,
                "{text}"
            );
        }
        assert_eq!(serde_json::to_string(&LastBatch::Drop).unwrap(), "false");
        assert_eq!(serde_json::to_string(&LastBatch::Padded).unwrap(), "true");
        assert_eq!(
            serde_json::to_string(&LastBatch::FullRows).unwrap(),
            "\"full-rows\""
        );
        let err = serde_json::from_str::<LastBatch>("\"some\"").unwrap_err();
        assert!(err.to_string().contains("full-rows"), "{err}");
        assert!(serde_json::from_str::<LastBatch>("3").is_err());
    }
}
