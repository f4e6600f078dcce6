//! [`LoaderConfig`]: every setting of a loader in one flat table, each with the library's
//! default: the home that the builder, the CLI's flags and config files, and the Python
//! keyword arguments all write into.

use seqwarm_batcher::{DType, PackFields};
use seqwarm_stage::{EpochConfig, WarmupConfig};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{LoaderError, Result};
use crate::layout::ShardLayout;
use crate::prefetch::Prefetch;
use crate::retry::RetryPolicy;
use seqwarm_format::OnError;

/// Every setting of a loader: the warmup stage's ([`WarmupConfig`]: schedule, mode, batch
/// sizing, EOS, ...), the epoch plan's ([`EpochConfig`]: seed, ranks, epochs, limits) and
/// reading's (layout, prefetch, vocabulary check, bad-shard policy, retries, dtype).
///
/// One flat table in files and keyword arguments; read one with [`LoaderConfig::from_value`],
/// which rejects unknown keys by name.
///
/// ```
/// use seqwarm_loader::LoaderConfig;
///
/// let config = LoaderConfig::from_value(serde_json::json!({
///     "mode": "reshape",
///     "batch_tokens": 65536,
///     "seed": 7,
///     "schedule": {"kind": "composer", "min": 64, "max": 1024, "step": 64, "duration": 0.3, "total": 10000},
/// }))?;
/// assert_eq!(config.warmup().mode().name(), "reshape");
/// assert_eq!(config.epochs().seed(), 7);
/// let typo = LoaderConfig::from_value(serde_json::json!({"batch_tokenz": 64}));
/// assert!(typo.unwrap_err().to_string().contains("`batch_tokenz`"));
/// # Ok::<(), seqwarm_loader::LoaderError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoaderConfig {
    #[serde(flatten)]
    pub(crate) warmup: WarmupConfig,
    #[serde(flatten)]
    pub(crate) epochs: EpochConfig,
    pub(crate) layout: ShardLayout,
    #[serde(flatten)]
    pub(crate) prefetch: Prefetch,
    pub(crate) vocab_size: Option<u64>,
    pub(crate) on_error: OnError,
    pub(crate) retry: RetryPolicy,
    pub(crate) dtype: DType,
    pub(crate) io_threads: usize,
    pub(crate) verify_checksums: bool,
    pub(crate) memory_map: bool,
    pub(crate) cache_dir: Option<std::path::PathBuf>,
    pub(crate) cache_limit: Option<u64>,
    pub(crate) sources: Vec<SourceConfig>,
    pub(crate) weight_changes: Vec<WeightChangeConfig>,
}

/// One source of a weighted mixture (`[[sources]]` in a config file): its own shards, weight
/// and, optionally, layout (`docs/loader.md`, "Mixtures").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Its name, in statistics, checkpoints and weight changes.
    pub name: String,
    /// Its shard locations (files, directories, globs, URLs).
    pub shards: Vec<String>,
    /// Its share of the tokens, relative to the other sources' weights.
    pub weight: f64,
    /// Its layout, when it differs from the loader's `layout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<ShardLayout>,
}

/// New weights from a step or a token count on (`[[weight_changes]]`: `step` or `tokens`, and
/// `weights = { name = w }`, one weight for every source), for data annealing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightChangeConfig {
    /// The first step (batch) the weights apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Or: the weights apply from the first batch that begins with at least this many tokens
    /// emitted (this rank's count, as a schedule in tokens counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Every source's weight, by name.
    pub weights: std::collections::BTreeMap<String, f64>,
}

impl WeightChangeConfig {
    /// When it takes effect: its `step` or its `tokens`, exactly one of them.
    pub fn at(&self) -> Result<seqwarm_stage::ChangeAt> {
        match (self.step, self.tokens) {
            (Some(step), None) => Ok(seqwarm_stage::ChangeAt::Step(step)),
            (None, Some(tokens)) => Ok(seqwarm_stage::ChangeAt::Tokens(tokens)),
            _ => Err(invalid(
                "weight_changes",
                "each change needs `step` or `tokens`, one of them".into(),
            )),
        }
    }
}

/// The stage's and the plan's defaults, the default layout and prefetch, no vocabulary check,
/// failing on bad shards, default retries, `i32` tokens, one I/O thread, checksums verified,
/// local shards memory-mapped, remote shards not cached on disk.
impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            warmup: WarmupConfig::default(),
            epochs: EpochConfig::default(),
            layout: ShardLayout::default(),
            prefetch: Prefetch::default(),
            vocab_size: None,
            on_error: OnError::default(),
            retry: RetryPolicy::default(),
            dtype: DType::I32,
            io_threads: 1,
            verify_checksums: true,
            memory_map: true,
            cache_dir: None,
            cache_limit: None,
            sources: Vec::new(),
            weight_changes: Vec::new(),
        }
    }
}

/// Row groups read ahead (in flight, and waiting) at the most: far more than any machine's
/// memory holds at about 4 MiB each, so a larger value is a mistake, not a setting.
pub(crate) const MAX_PREFETCH: usize = 4096;
/// The object-store read-ahead's byte budget: at least 1 MiB (below that it would hold fewer
/// than two small row groups' worth), at most 1 TiB (more is a unit mistake, not a setting).
const MIN_REMOTE_PREFETCH_BYTES: u64 = 1 << 20;
const MAX_REMOTE_PREFETCH_BYTES: u64 = 1 << 40;
/// Threads of the I/O runtime at the most.
pub(crate) const MAX_IO_THREADS: usize = 1024;

/// Keys that change the batches a loader emits are in a checkpoint's fingerprint; these do
/// not (limits, reading ahead, retries, checks), so a resumed run may change them.
const NOT_IN_FINGERPRINT: [&str; 14] = [
    "epochs",
    "max_steps",
    "max_tokens",
    "vocab_size",
    "prefetch_concurrency",
    "prefetch_queue",
    "remote_prefetch_concurrency",
    "remote_prefetch_bytes",
    "retry",
    "io_threads",
    "verify_checksums",
    "memory_map",
    "cache_dir",
    "cache_limit",
];

impl LoaderConfig {
    /// The defaults with this warmup stage.
    pub fn new(warmup: WarmupConfig) -> Self {
        Self {
            warmup,
            ..Self::default()
        }
    }

    /// Reads a config from a JSON value (a parsed TOML or JSON file, or keyword arguments):
    /// every key optional, unknown keys an error naming them. `batch_rows = N` and
    /// `batch_tokens = N` are accepted for `batch_size = { rows = N }` / `{ tokens = N }`.
    pub fn from_value(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            return Err(invalid("config", "expected a table of settings".into()));
        };
        batch_size_shorthand(&mut map)?;
        let known = match serde_json::to_value(Self::default()) {
            Ok(Value::Object(defaults)) => defaults,
            _ => Map::new(),
        };
        if let Some(key) = map.keys().find(|k| !known.contains_key(k.as_str())) {
            let mut names: Vec<&str> = known.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(LoaderError::UnknownKey {
                key: key.clone(),
                known: names.join(", "),
            });
        }
        serde_json::from_value(Value::Object(map.clone())).map_err(|whole| {
            // Name the setting: the first key that fails on its own (serde's message names
            // only the value: "unknown variant `foo`").
            map.into_iter()
                .find_map(|(key, value)| {
                    let alone = Value::Object(Map::from_iter([(key.clone(), value)]));
                    serde_json::from_value::<Self>(alone).err().map(|e| {
                        LoaderError::InvalidSetting {
                            key,
                            reason: e.to_string(),
                        }
                    })
                })
                .unwrap_or_else(|| invalid("config", whole.to_string()))
        })
    }

    /// The same settings with another schedule.
    #[must_use]
    pub fn with_schedule(mut self, schedule: impl Into<seqwarm_schedule::ScheduleConfig>) -> Self {
        self.warmup = self.warmup.with_schedule(schedule);
        self
    }

    /// The warmup stage's settings.
    pub fn warmup(&self) -> &WarmupConfig {
        &self.warmup
    }
    /// The epoch plan's settings.
    pub fn epochs(&self) -> &EpochConfig {
        &self.epochs
    }
    /// The shard layout.
    pub fn layout(&self) -> &ShardLayout {
        &self.layout
    }
    /// Read-ahead.
    pub fn prefetch(&self) -> Prefetch {
        self.prefetch
    }
    /// The threads of an I/O runtime the loader starts.
    pub fn io_threads(&self) -> usize {
        self.io_threads
    }
    /// Whether row groups are checked against the CRC32 in their footer.
    pub fn verify_checksums(&self) -> bool {
        self.verify_checksums
    }
    /// Whether local row groups are read through a memory map (the default) rather than
    /// positioned reads into owned buffers (see `docs/reliability.md`).
    pub fn memory_map(&self) -> bool {
        self.memory_map
    }
    /// Where remote shards are kept once downloaded, if anywhere (`docs/loader.md`, "The
    /// shard cache").
    pub fn cache_dir(&self) -> Option<&std::path::Path> {
        self.cache_dir.as_deref()
    }
    /// The most bytes of shards the cache holds (`None`: no limit).
    pub fn cache_limit(&self) -> Option<u64> {
        self.cache_limit
    }
    /// The sources of a weighted mixture (none: the shards given to the builder).
    pub fn sources(&self) -> &[SourceConfig] {
        &self.sources
    }

    /// The mixture the sources and weight changes describe, checked; `None` without sources.
    pub fn mixture(&self) -> Result<Option<seqwarm_stage::MixtureConfig>> {
        if self.sources.is_empty() {
            if !self.weight_changes.is_empty() {
                return Err(invalid(
                    "weight_changes",
                    "given without `sources`, the weights they change".into(),
                ));
            }
            return Ok(None);
        }
        let names: Vec<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
        let mut changes = Vec::new();
        for change in &self.weight_changes {
            let at = change.at()?;
            if let Some(unknown) = change.weights.keys().find(|k| !names.contains(&k.as_str())) {
                return Err(invalid(
                    "weight_changes",
                    format!(
                        "at {at}: no source `{unknown}` (the sources: {})",
                        names.join(", ")
                    ),
                ));
            }
            let weights = names
                .iter()
                .map(|name| {
                    change.weights.get(*name).copied().ok_or_else(|| {
                        invalid(
                            "weight_changes",
                            format!("at {at}: no weight for source `{name}`"),
                        )
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
            changes.push(seqwarm_stage::WeightChange { at, weights });
        }
        let mixture = seqwarm_stage::MixtureConfig {
            sources: self
                .sources
                .iter()
                .map(|s| seqwarm_stage::MixtureSource {
                    name: s.name.clone(),
                    weight: s.weight,
                })
                .collect(),
            changes,
        };
        mixture.build().map_err(|e| match e {
            // The stage's name for them; the setting is `weight_changes`.
            seqwarm_stage::StageError::Config {
                field: "changes",
                reason,
            } => invalid("weight_changes", reason),
            other => other.into(),
        })?;
        if let Some(empty) = self.sources.iter().find(|s| s.shards.is_empty()) {
            return Err(invalid(
                "sources",
                format!("source `{}` has no shard locations", empty.name),
            ));
        }
        Ok(Some(mixture))
    }

    /// The vocabulary token ids are checked against, if any.
    pub fn vocab_size(&self) -> Option<u64> {
        self.vocab_size
    }
    /// What happens to unreadable shards.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// Checks every setting as [`crate::LoaderBuilder::build`] does before it reads a shard
    /// (the ranks against the data are checked once the shards are listed).
    pub fn validate(&self) -> Result<()> {
        self.check()?;
        self.warmup.build()?;
        self.epochs.validate()?;
        Ok(())
    }

    /// Checks the reading settings' ranges, and the stage's special ids against the
    /// vocabulary (the stage checks the rest when it is built).
    pub(crate) fn check(&self) -> Result<()> {
        let ranges = [
            (
                "prefetch_concurrency",
                self.prefetch.concurrency,
                MAX_PREFETCH,
            ),
            ("prefetch_queue", self.prefetch.queue, MAX_PREFETCH),
            (
                "remote_prefetch_concurrency",
                self.prefetch.remote_concurrency,
                MAX_PREFETCH,
            ),
            ("io_threads", self.io_threads, MAX_IO_THREADS),
        ];
        if !(MIN_REMOTE_PREFETCH_BYTES..=MAX_REMOTE_PREFETCH_BYTES)
            .contains(&self.prefetch.remote_bytes)
        {
            return Err(invalid(
                "remote_prefetch_bytes",
                format!(
                    "{} is not in {MIN_REMOTE_PREFETCH_BYTES}..={MAX_REMOTE_PREFETCH_BYTES} \
                     (1 MiB to 1 TiB)",
                    self.prefetch.remote_bytes
                ),
            ));
        }
        for (field, value, most) in ranges {
            if !(1..=most).contains(&value) {
                return Err(invalid(field, format!("{value} is not in 1..={most}")));
            }
        }
        self.mixture()?;
        if self.cache_limit.is_some() && self.cache_dir.is_none() {
            return Err(invalid(
                "cache_limit",
                "given without `cache_dir`, the directory it limits".into(),
            ));
        }
        if let Some(vocab) = self.vocab_size {
            let ids = [
                ("eos_id", self.warmup.eos_id()),
                ("pad_id", Some(self.warmup.pad_id())),
            ];
            for (field, id) in ids {
                if let Some(id) = id.filter(|&id| u64::try_from(id).is_ok_and(|id| id >= vocab)) {
                    return Err(invalid(
                        field,
                        format!("{id} is outside the vocabulary [0, {vocab})"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings that decide the emitted batches, as recorded in a checkpoint.
    pub(crate) fn fingerprint(&self) -> Result<Value> {
        let mut value = serde_json::to_value(self).map_err(|e| invalid("config", e.to_string()))?;
        if let Value::Object(map) = &mut value {
            for key in NOT_IN_FINGERPRINT {
                map.remove(key);
            }
            // Without a segment limit, as the states before the limit existed.
            if map.get("max_segments_per_row").is_some_and(Value::is_null) {
                map.remove("max_segments_per_row");
            }
            // Every packed field, as the states before the choice existed.
            if self.warmup.pack_fields() == PackFields::ALL {
                map.remove("pack_fields");
            }
            // Without a mixture, as the states before mixtures were written (they resume); with
            // one, the sources without their locations (the data identity names the files, so
            // the same data mounted elsewhere resumes).
            for key in ["sources", "weight_changes"] {
                if map
                    .get(key)
                    .is_some_and(|v| v.as_array().is_some_and(Vec::is_empty))
                {
                    map.remove(key);
                }
            }
            if let Some(Value::Array(sources)) = map.get_mut("sources") {
                for source in sources {
                    if let Value::Object(source) = source {
                        source.remove("shards");
                    }
                }
            }
        }
        Ok(value)
    }
}

fn invalid(field: &'static str, reason: String) -> LoaderError {
    LoaderError::Config { field, reason }
}

/// `batch_rows = N` / `batch_tokens = N` as `batch_size`.
fn batch_size_shorthand(map: &mut Map<String, Value>) -> Result<()> {
    let rows = map.remove("batch_rows");
    let tokens = map.remove("batch_tokens");
    let size = match (rows, tokens) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "batch_size",
                "give batch_rows or batch_tokens, not both".into(),
            ));
        }
        (Some(rows), None) => serde_json::json!({ "rows": rows }),
        (None, Some(tokens)) => serde_json::json!({ "tokens": tokens }),
        (None, None) => return Ok(()),
    };
    if map.insert("batch_size".into(), size).is_some() {
        return Err(invalid(
            "batch_size",
            "give batch_size or its shorthand batch_rows / batch_tokens, not both".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::LoaderConfig;

    #[test]
    fn every_key_has_a_default_and_unknown_keys_are_named() {
        let defaults = serde_json::to_value(LoaderConfig::default()).unwrap();
        assert_eq!(
            LoaderConfig::from_value(json!({})).unwrap(),
            LoaderConfig::default()
        );
        // Every key the defaults serialize reads back.
        assert_eq!(
            LoaderConfig::from_value(defaults.clone()).unwrap(),
            LoaderConfig::default()
        );
        for key in [
            "mode",
            "batch_size",
            "seed",
            "world_size",
            "prefetch_queue",
            "on_error",
            "schedule",
        ] {
            assert!(defaults.get(key).is_some(), "no key {key} in {defaults}");
        }
        let err = LoaderConfig::from_value(json!({"batch-tokens": 64})).unwrap_err();
        assert!(err.to_string().contains("`batch-tokens`"), "{err}");
        let err =
            LoaderConfig::from_value(json!({"batch_rows": 8, "batch_tokens": 64})).unwrap_err();
        assert!(err.to_string().contains("not both"), "{err}");
        // Nested tables are strict too.
        let err =
            LoaderConfig::from_value(json!({"schedule": {"kind": "constant", "max": 8, "min": 1}}))
                .unwrap_err();
        assert!(err.to_string().contains("unknown field `min`"), "{err}");
    }

    #[test]
    fn the_remote_read_ahead_is_bounded_in_bytes() {
        assert_eq!(LoaderConfig::default().prefetch().remote_bytes, 64 << 20);
        for bytes in [0u64, (1 << 20) - 1, (1 << 40) + 1] {
            let config =
                LoaderConfig::from_value(json!({ "remote_prefetch_bytes": bytes })).unwrap();
            let err = config.check().unwrap_err().to_string();
            assert!(
                err.contains("remote_prefetch_bytes") && err.contains(&bytes.to_string()),
                "{err}"
            );
        }
        for bytes in [1u64 << 20, 1 << 40] {
            let config =
                LoaderConfig::from_value(json!({ "remote_prefetch_bytes": bytes })).unwrap();
            config.check().unwrap();
        }
    }

    #[test]
    fn the_fingerprint_leaves_out_what_a_resume_may_change() {
        let a = LoaderConfig::from_value(
            json!({"max_steps": 5, "prefetch_queue": 9, "remote_prefetch_bytes": 1 << 30}),
        )
        .unwrap();
        let b = LoaderConfig::default();
        assert_eq!(a.fingerprint().unwrap(), b.fingerprint().unwrap());
        let c = LoaderConfig::from_value(json!({"seed": 5})).unwrap();
        assert_ne!(c.fingerprint().unwrap(), b.fingerprint().unwrap());
        // Without a mixture, the keys states written before mixtures lack are left out; with
        // one, the sources' locations are (their files are the data identity's).
        let plain = b.fingerprint().unwrap();
        assert!(plain.get("sources").is_none() && plain.get("weight_changes").is_none());
        let at = |dir: &str| {
            LoaderConfig::from_value(json!({
                "sources": [{"name": "a", "shards": [dir], "weight": 1.0}],
            }))
            .unwrap()
            .fingerprint()
            .unwrap()
        };
        assert_eq!(at("/mnt/one/a"), at("/mnt/two/a"));
        assert_eq!(at("/x")["sources"][0]["name"], "a");
        // No segment limit and no shape policy: the keys states written before them lack are
        // left out; either one set changes the batches, so it is in.
        assert!(plain.get("max_segments_per_row").is_none());
        assert!(plain["schedule"].get("shapes").is_none());
        let limited =
            LoaderConfig::from_value(json!({"mode": "pack-greedy", "max_segments_per_row": 4}))
                .unwrap()
                .fingerprint()
                .unwrap();
        assert_eq!(limited["max_segments_per_row"], 4);
        let shaped = LoaderConfig::from_value(json!({"schedule": {
            "kind": "linear", "min": 8, "max": 64, "duration": 0.5, "total": 100, "shapes": {"even": 4},
        }}))
        .unwrap()
        .fingerprint()
        .unwrap();
        assert_eq!(shaped["schedule"]["shapes"], json!({"even": 4}));
    }
}
