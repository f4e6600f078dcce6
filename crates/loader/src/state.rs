//! [`LoaderState`]: a loader's checkpoint. Opaque and versioned: its fields are private, so
//! the loader's internals can change without breaking the API, and a checkpoint of another
//! version, another data set or other settings is a typed error, not a silent misread.

use seqwarm_stage::{MergedState, MixturePlanState, PlanCheckpoint, PlanState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{LoaderError, Result};
use crate::source::ShardFile;

/// What a [`LoaderState`] says it is, in its `format` field.
pub const STATE_FORMAT: &str = "seqwarm-loader-state";
/// The version of [`LoaderState`] this build writes. Version 3 states carry a checksum, which
/// reading requires; version 2 states (before it) are still read, field by field; version 1 was
/// the format before the stage became its own crate, and its states cannot be resumed.
pub const STATE_VERSION: u32 = 3;

/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 2;

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

/// The settings keys that say which rank a state is of, and of how many: left out of a merged
/// state's settings, which any number of ranks resumes.
const RANK_KEYS: [&str; 2] = ["rank", "world_size"];

/// Everything after the format and version: one rank's plan, the merged plans of all ranks,
/// or a mixture's plan (exactly one of the three).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    /// The settings that decide the emitted batches (without the rank keys when merged).
    settings: Value,
    data: DataIdentity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plan: Option<PlanState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    merged: Option<MergedState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mixture: Option<MixturePlanState>,
}

impl Body {
    /// Settings and data without a plan yet.
    fn of(settings: Value, data: DataIdentity) -> Self {
        Self {
            settings,
            data,
            plan: None,
            merged: None,
            mixture: None,
        }
    }
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
    /// SHA-256 (hex) of the body's JSON: an edited or damaged state (a position moved within
    /// range, `finished` set, a counter changed) is refused instead of resuming somewhere else.
    /// States written before it existed have none and are still read.
    checksum: String,
    #[serde(flatten)]
    body: Body,
}

impl LoaderState {
    /// The state of a loader of `identity` whose plan is at `checkpoint`.
    pub(crate) fn new(identity: &Identity, checkpoint: PlanCheckpoint) -> Self {
        let body = Body::of(identity.settings.clone(), identity.data.clone());
        Self::with_body(match checkpoint {
            PlanCheckpoint::Epochs(plan) => Body {
                plan: Some(plan),
                ..body
            },
            PlanCheckpoint::Mixture(mixture) => Body {
                mixture: Some(mixture),
                ..body
            },
        })
    }

    fn with_body(body: Body) -> Self {
        Self {
            format: STATE_FORMAT.into(),
            version: STATE_VERSION,
            checksum: body_checksum(&body),
            body,
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
        let version = match value.get("version").and_then(Value::as_u64) {
            Some(v) if (u64::from(OLDEST_VERSION)..=u64::from(STATE_VERSION)).contains(&v) => v,
            v => {
                return Err(LoaderError::State {
                    reason: format!(
                        "version {} (this build reads versions {OLDEST_VERSION} to \
                         {STATE_VERSION})",
                        v.map_or_else(|| "missing".into(), |v| v.to_string())
                    ),
                });
            }
        };
        let Value::Object(mut map) = value else {
            return Err(LoaderError::State {
                reason: "not a table".into(),
            });
        };
        map.remove("format");
        map.remove("version");
        let recorded = match map.remove("checksum") {
            None if version >= 3 => {
                return Err(LoaderError::State {
                    reason: format!(
                        "a version {version} state without its `checksum` (removed by hand?)"
                    ),
                });
            }
            None => None,
            Some(Value::String(sum)) => Some(sum),
            Some(other) => {
                return Err(LoaderError::State {
                    reason: format!("`checksum` is {other}, not a SHA-256 hex string"),
                });
            }
        };
        let body: Body =
            serde_json::from_value(Value::Object(map)).map_err(|e| LoaderError::State {
                reason: format!("unreadable: {e}"),
            })?;
        if let Some(recorded) = recorded {
            let computed = body_checksum(&body);
            if recorded != computed {
                return Err(LoaderError::State {
                    reason: format!(
                        "its checksum does not match its contents (recorded {}, computed {}): \
                         the state was edited or damaged after it was written; resume from an \
                         intact checkpoint",
                        &recorded[..recorded.len().min(12)],
                        &computed[..12]
                    ),
                });
            }
        } else {
            tracing::warn!(
                "a version {version} loader state (written before seqwarm recorded a checksum): \
                 read without an integrity check"
            );
        }
        let parts = [
            body.plan.is_some(),
            body.merged.is_some(),
            body.mixture.is_some(),
        ];
        if parts.iter().filter(|&&p| p).count() != 1 {
            return Err(LoaderError::State {
                reason: "a state holds one rank's `plan`, the `merged` plans of all ranks, or a \
                         `mixture`'s plan"
                    .into(),
            });
        }
        Ok(Self::with_body(body))
    }

    /// The state as JSON text.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| LoaderError::State {
            reason: format!("cannot serialize: {e}"),
        })
    }

    /// Combines the states that every rank of one run took at the same step (one state per
    /// rank, in any order) into one that any number of ranks resumes from
    /// ([`crate::LoaderBuilder::with_state`] with the new rank and number of ranks): elastic
    /// resume. Every token of the epoch is emitted once or counted as dropped across the
    /// change; what the old ranks held and the rest of the epoch are dealt to the new ranks by
    /// load (`docs/loader.md`, "Elastic resume"). States of different runs, data, settings,
    /// steps or epochs are refused by name.
    ///
    /// ```no_run
    /// # async fn f(paths: Vec<std::path::PathBuf>, config: seqwarm_loader::WarmupConfig) -> seqwarm_loader::Result<()> {
    /// use seqwarm_loader::{LoaderBuilder, LoaderState};
    ///
    /// let states = paths
    ///     .iter()
    ///     .map(|p| LoaderState::from_json(&std::fs::read_to_string(p).unwrap()))
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// let merged = LoaderState::merge(&states)?; // e.g. 8 ranks' states
    /// let loader = LoaderBuilder::new(["shards/"], config)
    ///     .with_rank(1, 4) // rank 1 of 4 from now on
    ///     .with_state(merged)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn merge(states: &[LoaderState]) -> Result<LoaderState> {
        let refuse = |reason: String| Err(LoaderError::State { reason });
        let Some(first) = states.first() else {
            return refuse("no states to merge".into());
        };
        let world = states.len();
        let shared = without_rank(&first.body.settings);
        let mut plans: Vec<Option<&PlanState>> = vec![None; world];
        for (i, state) in states.iter().enumerate() {
            if state.body.mixture.is_some() {
                return refuse(format!(
                    "state {i} is a mixture's: a mixture resumes on the same number of ranks \
                     (elastic resume of mixtures is not supported)"
                ));
            }
            let Some(plan) = &state.body.plan else {
                return refuse(format!(
                    "state {i} is merged already: resume it on the new ranks, then merge their states"
                ));
            };
            let key = |k: &str| state.body.settings.get(k).and_then(Value::as_u64);
            let (Some(rank), Some(of)) = (key("rank"), key("world_size")) else {
                return refuse(format!("state {i} does not say its rank"));
            };
            if of != world as u64 {
                return refuse(format!(
                    "state {i} is rank {rank} of {of}, but {world} states were given: give the state of \
                     every rank, once"
                ));
            }
            let Some(slot) = usize::try_from(rank).ok().and_then(|r| plans.get_mut(r)) else {
                return refuse(format!(
                    "state {i} is of rank {rank}, not one of 0..{world}"
                ));
            };
            if slot.is_some() {
                return refuse(format!("two states of rank {rank}"));
            }
            *slot = Some(plan);
            let settings = without_rank(&state.body.settings);
            if settings != shared {
                return refuse(format!(
                    "state {i}'s settings differ from state 0's: {}",
                    differences(&shared, &settings)
                ));
            }
            if state.body.data != first.body.data {
                return refuse(format!(
                    "state {i} was taken on other shards: {}, state 0 on {}",
                    state.body.data, first.body.data
                ));
            }
        }
        let plans: Vec<PlanState> = plans.into_iter().flatten().cloned().collect();
        Ok(Self::with_body(Body {
            merged: Some(MergedState::merge(&plans)?),
            ..Body::of(shared, first.body.data.clone())
        }))
    }

    /// The epoch of the next unread document (0 for a mixture, whose sources count their own).
    pub fn epoch(&self) -> u64 {
        match (&self.body.plan, &self.body.merged) {
            (Some(plan), _) => plan.epoch(),
            (None, Some(merged)) => merged.epoch(),
            (None, None) => 0,
        }
    }

    /// Batches emitted up to this state (by each rank).
    pub fn step(&self) -> u64 {
        match (&self.body.plan, &self.body.merged, &self.body.mixture) {
            (Some(plan), _, _) => plan.core().progress().steps,
            (None, Some(merged), _) => merged.step(),
            (None, None, Some(mixture)) => mixture.step(),
            (None, None, None) => 0,
        }
    }

    /// The schedule's length of training (its `total`) that the checkpoint was taken with.
    /// When the length is worked out from the data (`seqwarm stream` without `--total`), it
    /// depends on the number of ranks; a resume, elastic or not, takes it from here, so that
    /// the schedule keeps its meaning across the change.
    pub fn schedule_total(&self) -> Option<u64> {
        self.body.settings.get("schedule")?.get("total")?.as_u64()
    }

    /// Whether the stream had ended (a resume emits nothing).
    pub fn is_done(&self) -> bool {
        self.body.plan.as_ref().is_some_and(PlanState::is_done)
    }

    /// For a merged state ([`LoaderState::merge`]), the number of ranks whose states it
    /// combines.
    pub fn merged_ranks(&self) -> Option<usize> {
        self.body.merged.as_ref().map(MergedState::world_size)
    }

    pub(crate) fn plan(&self) -> Option<&PlanState> {
        self.body.plan.as_ref()
    }

    pub(crate) fn merged(&self) -> Option<&MergedState> {
        self.body.merged.as_ref()
    }

    pub(crate) fn mixture(&self) -> Option<&MixturePlanState> {
        self.body.mixture.as_ref()
    }

    /// Refuses a state holding a token id outside `[0, vocab_size)` (carried, or in a shuffle
    /// buffer): a resume emits those without reading them again, so the check the read path
    /// makes on every id must be made here.
    fn check_vocabulary(&self, vocab_size: Option<u64>) -> Result<()> {
        let ids: Box<dyn Iterator<Item = i64> + '_> =
            match (&self.body.plan, &self.body.merged, &self.body.mixture) {
                (Some(plan), _, _) => Box::new(plan.token_ids()),
                (None, Some(merged), _) => Box::new(merged.token_ids()),
                (None, None, Some(mixture)) => Box::new(mixture.token_ids()),
                (None, None, None) => Box::new(std::iter::empty()),
            };
        let outside =
            |id: i64| u64::try_from(id).map_or(true, |id| vocab_size.is_some_and(|v| id >= v));
        if let Some(id) = ids.into_iter().find(|&id| outside(id)) {
            let range = vocab_size.map_or_else(
                || "ids are >= 0".to_string(),
                |v| format!("the vocabulary is [0, {v})"),
            );
            return Err(LoaderError::State {
                reason: format!("it holds token id {id} to emit, and {range} (edited by hand?)"),
            });
        }
        Ok(())
    }

    /// Checks that this state fits a loader of `identity`: its settings (a merged state's
    /// without the rank keys, which it leaves to the resuming ranks), its data, and the token
    /// ids it holds against `vocab_size`.
    pub(crate) fn check(&self, identity: &Identity, vocab_size: Option<u64>) -> Result<()> {
        let Identity { settings, data } = identity;
        let settings = if self.body.merged.is_some() {
            &without_rank(settings)
        } else {
            settings
        };
        if self.body.settings != *settings {
            let mut reason = format!(
                "settings differ from the checkpoint's: {}",
                differences(&self.body.settings, settings)
            );
            if self.body.settings.get("world_size") != settings.get("world_size")
                && without_rank(&self.body.settings) == without_rank(settings)
                && self.body.mixture.is_none()
            {
                reason.push_str(
                    "; to resume on another number of ranks, merge the states of every rank \
                     first (`LoaderState::merge`, `seqwarm merge-states`)",
                );
            }
            if self.body.settings.get("eos_id_in_data") != settings.get("eos_id_in_data") {
                reason.push_str(
                    "; the checkpoint was taken when seqwarm appended eos_id after documents \
                     that already end with it (two EOS at every boundary), which it no longer \
                     does: its batches cannot continue exactly. Start afresh, or read the shards \
                     without their manifest.json to continue as then",
                );
            }
            return Err(LoaderError::State { reason });
        }
        if self.body.data != *data {
            return Err(LoaderError::State {
                reason: format!(
                    "the shards differ from the checkpoint's: it was taken on {}, these are {}",
                    self.body.data, data
                ),
            });
        }
        self.check_vocabulary(vocab_size)
    }
}

impl TryFrom<Value> for LoaderState {
    type Error = LoaderError;
    fn try_from(value: Value) -> Result<Self> {
        Self::from_value(value)
    }
}

/// SHA-256 (hex) of a body's JSON with every object's keys sorted: a state that went through
/// other hands (Python dicts, a `StatefulDataLoader`, a JSON tool) may come back with its
/// tables' keys in another order, which changes nothing it says. Numbers round-trip, so the sum
/// is checked by recomputing it.
fn body_checksum(body: &Body) -> String {
    fn sorted(value: Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut entries: Vec<(String, Value)> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
            other => other,
        }
    }
    let canonical = serde_json::to_value(body).map(sorted).unwrap_or_default();
    let text = serde_json::to_vec(&canonical).unwrap_or_default();
    Sha256::digest(&text)
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// Settings without the keys that say which rank a state is of.
fn without_rank(settings: &Value) -> Value {
    let mut settings = settings.clone();
    if let Value::Object(map) = &mut settings {
        for key in RANK_KEYS {
            map.remove(key);
        }
    }
    settings
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
                .contains("version 1 (this build reads versions 2 to 3)"),
            "{err}"
        );
        let err = serde_json::from_str::<LoaderState>(
            r#"{"format": "seqwarm-loader-state", "version": 4}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("version 4"), "{err}");
    }

    fn a_state() -> LoaderState {
        let identity = Identity {
            // Floats of 17 significant digits (a duration from TOML or a flag): they must read
            // back as written, or an untouched state fails its checksum.
            settings: serde_json::json!({"seed": 1, "mode": "repack", "rank": 0, "world_size": 1,
                "schedule": {"duration": 0.1 + 0.2, "other": [1.0 / 3.0, 2.0 / 7.0, 0.123_456_789_012_345_68]}}),
            data: DataIdentity::of(std::iter::empty()),
        };
        let merged: Value = serde_json::json!({
            "epoch": 0, "step_in_epoch": 3, "positions": [[1, 0]], "cores": []
        });
        LoaderState::with_body(Body {
            merged: Some(serde_json::from_value(merged).unwrap()),
            ..Body::of(identity.settings, identity.data)
        })
    }

    #[test]
    fn an_edited_state_fails_its_checksum_and_an_intact_one_reads_back_equal() {
        let state = a_state();
        let text = state.to_json().unwrap();
        assert!(text.contains("\"checksum\""), "{text}");
        assert_eq!(LoaderState::from_json(&text).unwrap(), state);
        // A position moved within range: still well-formed, no longer what was written.
        let edited = text.replace("[[1,0]]", "[[2,0]]");
        assert_ne!(edited, text);
        let err = LoaderState::from_json(&edited).unwrap_err().to_string();
        assert!(err.contains("checksum does not match"), "{err}");
        // The same state with its tables' keys in another order (as a Python dict may give it
        // back) is the same state.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        let settings = value["settings"].as_object().unwrap().clone();
        let mut reversed = serde_json::Map::new();
        for (k, v) in settings.into_iter().rev() {
            reversed.insert(k, v);
        }
        value["settings"] = Value::Object(reversed);
        let reordered = serde_json::to_string(&value).unwrap();
        assert_ne!(reordered, text);
        assert_eq!(LoaderState::from_json(&reordered).unwrap().body, state.body);
        // Removing the checksum does not switch the check off: version 3 requires it.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value.as_object_mut().unwrap().remove("checksum");
        let err = LoaderState::from_value(value.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("without its `checksum`"), "{err}");
        // A version 2 state (before the checksum) is still read.
        value["version"] = Value::from(2);
        let old = LoaderState::from_value(value).unwrap();
        assert_eq!(old.body, state.body);
        // A checksum of the wrong type is named.
        let mut value: Value = serde_json::from_str(&text).unwrap();
        value["checksum"] = Value::from(7);
        let err = LoaderState::from_value(value).unwrap_err().to_string();
        assert!(err.contains("`checksum`"), "{err}");
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
