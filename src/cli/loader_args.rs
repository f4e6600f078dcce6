//! Loader flags shared by `stream` and `train`: each is a key of the library's
//! [`LoaderConfig`], set over the config file's value, which is set over the library's
//! default. No default is restated here: `--help` shows the library's ([`annotate_defaults`]).

use clap::Args;
use seqwarm::loader::{BadShardPolicy, LoaderConfig, Mode};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Loader flags, named as the config keys (`--batch-tokens` is `batch_tokens`).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct LoaderArgs {
    /// Mode: truncate, truncate-keep-eos, reshape, repack, pack-greedy, pack-bestfit.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Documents per best-fit window (pack-bestfit).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pack_window: Option<usize>,
    /// Fixed rows per batch.
    #[arg(long, conflicts_with = "batch_tokens")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<usize>,
    /// Token budget per batch: rows = budget / scheduled length.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_tokens: Option<usize>,
    /// Token appended after every document.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_id: Option<i64>,
    /// Padding id.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_id: Option<i64>,
    /// Emit the final partial batch (padded) instead of dropping it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<bool>,
    /// Seed of the row-group order and the document shuffle.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Shuffle documents through a buffer of this many (0 = off).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shuffle_buffer: Option<usize>,
    /// Keep the row groups in file order instead of shuffling them per epoch.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    #[serde(
        rename = "shuffle_units",
        serialize_with = "negated",
        skip_serializing_if = "Option::is_none"
    )]
    pub no_shuffle_units: Option<bool>,
    /// This process's rank.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rank: Option<usize>,
    /// Number of ranks.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// Row groups fetched and decoded at once.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch_concurrency: Option<usize>,
    /// Decoded row groups waiting for the consumer.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetch_queue: Option<usize>,
    /// Epochs (0 = until another limit).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<u64>,
    /// Stop after this many batches.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_steps: Option<u64>,
    /// Stop once this many tokens were emitted.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Reject token ids outside [0, vocab-size).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vocab_size: Option<u64>,
    /// Bad shards: fail or skip.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_error: Option<BadShardPolicy>,
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)] // serde passes fields by reference
fn negated<S: Serializer>(value: &Option<bool>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(!value.unwrap_or(false))
}

impl LoaderArgs {
    /// The flags given, as config keys.
    pub fn keys(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        }
    }
}

/// Appends the library's default to the help of every flag that is a key of
/// [`LoaderConfig`] (or of the default schedule), so that `--help` shows the one set of
/// defaults without restating it.
pub fn annotate_defaults(command: clap::Command) -> clap::Command {
    let mut defaults = match serde_json::to_value(LoaderConfig::default()) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    if let Some(Value::Object(schedule)) = defaults.remove("schedule") {
        defaults.extend(schedule);
    }
    let sizing = seqwarm::loader::BatchSize::default().to_string();
    let ids: Vec<String> = command
        .get_arguments()
        .map(|a| a.get_id().to_string())
        .collect();
    let mut command = command;
    for id in ids {
        let shown = match id.as_str() {
            "batch_rows" | "batch_tokens" => Some(sizing.clone()),
            "no_shuffle_units" => None,
            key => defaults.get(key).and_then(|v| match v {
                Value::Null | Value::Object(_) | Value::Array(_) => None,
                Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            }),
        };
        if let Some(shown) = shown {
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            });
        }
    }
    command
}
