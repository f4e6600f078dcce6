//! [`LoaderState`]: a loader's checkpoint. Opaque and versioned: its fields are private, so
//! the loader's internals can change without breaking the API, and a checkpoint of another
//! version, another data set or other settings is a typed error, not a silent misread.

use seqwarm_stage::PlanState;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{LoaderError, Result};
use crate::source::ShardFile;

/// What a [`LoaderState`] says it is, in its `format` field.
pub const STATE_FORMAT: &str = "seqwarm-loader-state";
/// The version of [`LoaderState`] this build writes and reads. Version 1 was the format before
/// the stage became its own crate; its states cannot be resumed.
pub const STATE_VERSION: u32 = 2;

/// Which data a checkpoint was taken on: the shard files' names and sizes, in catalog order
/// (names, not paths, so that a data set mounted elsewhere still resumes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DataIdentity {
    shards: u64,
    bytes: u64,
    digest: String,
}

impl DataIdentity {
    pub(crate) fn of<'a>(files: impl Iterator<Item = &'a ShardFile>) -> Self {
        let mut hash = Sha256::new();
        let (mut shards, mut bytes) = (0u64, 0u64);
        for file in files {
            shards += 1;
            bytes += file.size;
            hash.update(file.name().as_bytes());
            hash.update([0]);
            hash.update(file.size.to_le_bytes());
        }
        let digest = hash.finalize().iter().fold(String::new(), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        });
        Self {
            shards,
            bytes,
            digest,
        }
    }
}

impl std::fmt::Display for DataIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} shards, {} bytes (digest {})",
            self.shards,
            self.bytes,
            &self.digest[..self.digest.len().min(12)]
        )
    }
}

/// What a checkpoint must match to be resumed: the settings that decide the emitted batches,
/// and the data set.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Identity {
    pub settings: Value,
    pub data: DataIdentity,
}

/// Everything after the format and version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The settings that decide the emitted batches.
    settings: Value,
    data: DataIdentity,
    plan: PlanState,
}

/// A checkpoint of a [`crate::Loader`] at a batch boundary. Serialize it (serde; JSON in
/// practice) with the model's checkpoint; a loader built with
/// [`crate::LoaderBuilder::with_state`] continues with byte-identical batches.
///
/// Deserializing checks the format and version first, so a checkpoint of another version is
/// reported as such; [`LoaderState::from_json`] gives that as a [`LoaderError::State`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value")]
pub struct LoaderState {
    format: String,
    version: u32,
    #[serde(flatten)]
    body: Body,
}

impl LoaderState {
    pub(crate) fn new(identity: &Identity, plan: PlanState) -> Self {
        Self {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            body: Body {
                settings: identity.settings.clone(),
                data: identity.data.clone(),
                plan,
            },
        }
    }

    /// Reads a state from JSON text.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text).map_err(|e| LoaderError::State {
            reason: format!("not JSON: {e}"),
        })?;
        Self::from_value(value)
    }

    /// Reads a state from a JSON value.
    pub fn from_value(value: Value) -> Result<Self> {
        let format = value.get("format").and_then(Value::as_str);
        if format != Some(STATE_FORMAT) {
            return Err(LoaderError::State {
                reason: format!(
                    "not a seqwarm loader state (format {format:?}, expected {STATE_FORMAT:?})"
                ),
            });
        }
        match value.get("version").and_then(Value::as_u64) {
            Some(v) if v == u64::from(STATE_VERSION) => {}
            v => {
                return Err(LoaderError::State {
                    reason: format!(
                        "version {} (this build reads version {STATE_VERSION})",
                        v.map_or_else(|| "missing".into(), |v| v.to_string())
                    ),
                });
            }
        }
        let Value::Object(mut map) = value else {
            return Err(LoaderError::State {
                reason: "not a table".into(),
            });
        };
        map.remove("format");
        map.remove("version");
        let body: Body =
            serde_json::from_value(Value::Object(map)).map_err(|e| LoaderError::State {
                reason: format!("unreadable: {e}"),
            })?;
        Ok(Self {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            body,
        })
    }

    /// The state as JSON text.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| LoaderError::State {
            reason: format!("cannot serialize: {e}"),
        })
    }

    /// The epoch of the next unread document.
    pub fn epoch(&self) -> u64 {
        self.body.plan.epoch()
    }

    /// Batches emitted up to this state.
    pub fn step(&self) -> u64 {
        self.body.plan.core().progress().steps
    }

    /// Whether the stream had ended (a resume emits nothing).
    pub fn is_done(&self) -> bool {
        self.body.plan.is_done()
    }

    pub(crate) fn plan(&self) -> &PlanState {
        &self.body.plan
    }

    /// Checks that this state fits a loader of `identity`.
    pub(crate) fn check(&self, identity: &Identity) -> Result<()> {
        let Identity { settings, data } = identity;
        if self.body.settings != *settings {
            return Err(LoaderError::State {
                reason: format!(
                    "settings differ from the checkpoint's: {}",
                    differences(&self.body.settings, settings)
                ),
            });
        }
        if self.body.data != *data {
            return Err(LoaderError::State {
                reason: format!(
                    "the shards differ from the checkpoint's: it was taken on {}, these are {}",
                    self.body.data, data
                ),
            });
        }
        Ok(())
    }
}

impl TryFrom<Value> for LoaderState {
    type Error = LoaderError;
    fn try_from(value: Value) -> Result<Self> {
        Self::from_value(value)
    }
}

/// The keys whose values differ, with both values.
fn differences(then: &Value, now: &Value) -> String {
    let empty = serde_json::Map::new();
    let (a, b) = (
        then.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            let show = |v: Option<&Value>| v.map_or_else(|| "absent".into(), Value::to_string);
            format!("`{k}` was {} and is now {}", show(a.get(k)), show(b.get(k)))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_formats_and_versions_are_refused_by_name() {
        let err = LoaderState::from_json(r#"{"version": 1, "fingerprint": "{}"}"#).unwrap_err();
        assert!(
            err.to_string().contains("not a seqwarm loader state"),
            "{err}"
        );
        let err = LoaderState::from_json(r#"{"format": "seqwarm-loader-state", "version": 1}"#)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("version 1 (this build reads version 2)"),
            "{err}"
        );
        let err = serde_json::from_str::<LoaderState>(
            r#"{"format": "seqwarm-loader-state", "version": 3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("version 3"), "{err}");
    }

    #[test]
    fn differences_name_each_setting() {
        let then = serde_json::json!({"seed": 1, "mode": "repack"});
        let now = serde_json::json!({"seed": 2, "mode": "repack", "rank": 0});
        assert_eq!(
            differences(&then, &now),
            "`rank` was absent and is now 0; `seed` was 1 and is now 2"
        );
    }
}
