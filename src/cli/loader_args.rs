//! Loader flags shared by `stream` and `train`: each is a key of the library's
//! [`LoaderConfig`], set over the config file's value, which is set over the library's
//! default. No default is restated here: `--help` shows the library's ([`annotate_defaults`]).

use crate::loader::{EpochBoundary, LoaderConfig, Mode, OnError};
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};

use super::flags::{annotate, given, named, table};

/// Loader flags, named as the config keys (`--batch-tokens` is `batch_tokens`).
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct LoaderArgs {
    /// Mode: truncate, truncate-keep-eos, reshape, repack, pack-greedy, pack-bestfit, or
    /// decompose (dataset decomposition over raw token files, `stream` only).
    #[arg(long, value_parser = mode_flag)]
    pub mode: Option<ModeFlag>,
    /// Documents per best-fit window (pack-bestfit).
    #[arg(long)]
    pub pack_window: Option<usize>,
    /// At most this many document segments per packed row (pack modes), so that cu_seqlens
    /// has a small size fixed by the batch's shape.
    #[arg(long)]
    pub max_segments_per_row: Option<usize>,
    /// The fields of packed rows, comma-separated (pack modes; default all): input_ids,
    /// attention_mask, labels, position_ids, segment_ids. Each left out is one write of the
    /// batch less.
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub pack_fields: Option<Vec<String>>,
    /// Fixed rows per batch.
    #[arg(long, conflicts_with = "batch_tokens")]
    pub batch_rows: Option<usize>,
    /// Token budget per batch: rows = budget / scheduled length.
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Token appended after every document. Not needed on `seqwarm preprocess` output, whose
    /// documents end with the EOS its manifest names (the same id is then not appended again;
    /// another id is refused).
    #[arg(long)]
    pub eos_id: Option<i64>,
    /// Padding id.
    #[arg(long)]
    pub pad_id: Option<i64>,
    /// Emit the final partial batch instead of dropping it: padded (`--keep-last`), or
    /// `--keep-last full-rows`, Composer's drop_last=False over group_texts (the complete
    /// rows only; Composer's modes).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "HOW")]
    pub keep_last: Option<crate::loader::LastBatch>,
    /// Seed of the row-group order and the document shuffle.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shuffle documents through a buffer of this many (0 = off).
    #[arg(long)]
    pub shuffle_buffer: Option<usize>,
    /// Keep the row groups in file order instead of shuffling them per epoch.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_shuffle_units: Option<bool>,
    /// This process's rank.
    #[arg(long)]
    pub rank: Option<usize>,
    /// Number of ranks.
    #[arg(long)]
    pub world_size: Option<usize>,
    /// Row groups fetched and decoded at once.
    #[arg(long)]
    pub prefetch_concurrency: Option<usize>,
    /// Decoded row groups waiting for the consumer.
    #[arg(long)]
    pub prefetch_queue: Option<usize>,
    /// Row groups fetched at once from an object store at the most (each request waits a
    /// round trip).
    #[arg(long)]
    pub remote_prefetch_concurrency: Option<usize>,
    /// Bytes of row groups read ahead from an object store at the most (fetched and not yet
    /// queued for the stage): how many are in flight follows from their sizes.
    #[arg(long)]
    pub remote_prefetch_bytes: Option<u64>,
    /// Epochs (0 = until another limit).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// One rank's leftover tokens at an epoch's end: carry (lead the next epoch) or restart
    /// (drop them, or emit them padded with --keep-last, and replay the data afresh as
    /// Composer does). Default: restart in the Composer modes, carry in the others.
    #[arg(long, value_parser = named::<EpochBoundary>)]
    pub epoch_boundary: Option<EpochBoundary>,
    /// Stop after this many batches.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop once this many tokens were emitted.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Reject token ids outside [0, vocab-size).
    #[arg(long)]
    pub vocab_size: Option<u64>,
    /// Bad shards: fail or skip.
    #[arg(long, value_parser = named::<OnError>)]
    pub on_error: Option<OnError>,
    /// Read per-token labels from this list column (rows layout; `labels` when given bare),
    /// moved with the tokens.
    #[arg(long, num_args = 0..=1, default_missing_value = "labels")]
    #[serde(skip)]
    pub labels: Option<String>,
    /// Drop the positions this list column masks with 0 (rows layout; `attention_mask` when
    /// given bare): padding stored in the rows is then never trained on.
    #[arg(long, num_args = 0..=1, default_missing_value = "attention_mask")]
    #[serde(skip)]
    pub attention_mask: Option<String>,
    /// Do not check row groups against the CRC32 in their footer (a page that carries a
    /// Parquet CRC is still checked; seqwarm's own shards carry none, so their bytes are then
    /// unchecked).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_verify_checksums: Option<bool>,
    /// Read local row groups into buffers instead of mapping the shard files into memory
    /// (slower; a shard truncated by another process mid-run is then always an error, never a
    /// `SIGBUS`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_memory_map: Option<bool>,
    /// Keep remote (object-store) shards in this directory once downloaded, so that later
    /// epochs and later runs read them locally; processes on one machine may share it.
    #[arg(long)]
    pub cache_dir: Option<std::path::PathBuf>,
    /// The most bytes of shards the cache directory holds (least recently used ones are
    /// removed first; default: no limit).
    #[arg(long, requires = "cache_dir")]
    pub cache_limit: Option<u64>,
    /// A source of a weighted mixture, instead of shard locations: `NAME=WEIGHT:SHARDS`
    /// (locations separated by commas), once per source; `[[sources]]` tables in a config
    /// file say the same, with a layout of their own if need be.
    #[arg(long = "source", value_name = "NAME=WEIGHT:SHARDS", value_parser = source_table)]
    #[serde(skip)]
    pub sources: Vec<Value>,
}

/// `--mode`: one of the warmup stage's modes, or a plan of its own over raw token files
/// (dataset decomposition, fixed-length chunks) rather than a way to shape rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeFlag {
    /// A mode of the warmup stage (the `mode` key).
    Stage(Mode),
    /// `decompose`: OLMo-core's variable-sequence-length curricula.
    Decompose,
    /// `chunk`: OLMo-core's fixed-length instances, with its batch-size schedule.
    Chunk,
}

impl Serialize for ModeFlag {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Stage(mode) => mode.serialize(serializer),
            Self::Decompose => serializer.serialize_str("decompose"),
            Self::Chunk => serializer.serialize_str("chunk"),
        }
    }
}

fn mode_flag(value: &str) -> Result<ModeFlag, String> {
    match value {
        "decompose" => return Ok(ModeFlag::Decompose),
        "chunk" => return Ok(ModeFlag::Chunk),
        _ => {}
    }
    named::<Mode>(value)
        .map(ModeFlag::Stage)
        .map_err(|e| format!("{e}, `decompose` or `chunk`"))
}

/// `NAME=WEIGHT:SHARDS` as a `sources` table.
fn source_table(flag: &str) -> Result<Value, String> {
    let bad = || format!("{flag:?}: expected NAME=WEIGHT:SHARDS (e.g. web=0.7:data/web/)");
    let (name, rest) = flag.split_once('=').ok_or_else(bad)?;
    let (weight, shards) = rest.split_once(':').ok_or_else(bad)?;
    let weight: f64 = weight.trim().parse().map_err(|_| bad())?;
    let shards: Vec<&str> = shards.split(',').filter(|s| !s.is_empty()).collect();
    if name.is_empty() || shards.is_empty() {
        return Err(bad());
    }
    Ok(serde_json::json!({"name": name, "weight": weight, "shards": shards}))
}

impl LoaderArgs {
    /// The flags given, as config keys (`--no-shuffle-units` is `shuffle_units = false`,
    /// `--no-verify-checksums` is `verify_checksums = false`, `--no-memory-map` is
    /// `memory_map = false`).
    pub fn keys(&self) -> Map<String, Value> {
        let mut keys = given(self);
        if !self.sources.is_empty() {
            keys.insert("sources".into(), Value::Array(self.sources.clone()));
        }
        for (flag, key) in [
            ("no_shuffle_units", "shuffle_units"),
            ("no_verify_checksums", "verify_checksums"),
            ("no_memory_map", "memory_map"),
        ] {
            if let Some(Value::Bool(no)) = keys.remove(flag) {
                keys.insert(key.into(), Value::Bool(!no));
            }
        }
        keys
    }

    /// `file`'s loader keys with the flags set over them. A sizing flag replaces the file's
    /// sizing in whichever spelling it has (`batch_size`, `batch_rows`, `batch_tokens`): the
    /// flag wins, as every flag does, instead of the two being refused as given twice.
    pub fn over(&self, file: &Map<String, Value>) -> Map<String, Value> {
        let flags = self.keys();
        let mut keys = file.clone();
        // Column flags set keys of the file's `layout` table, keeping the rest of it.
        for (key, column) in [
            ("labels", &self.labels),
            ("attention_mask", &self.attention_mask),
        ] {
            if let Some(column) = column {
                let layout = keys
                    .entry("layout")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(layout) = layout {
                    layout.insert(key.into(), Value::String(column.clone()));
                }
            }
        }
        if flags.contains_key("batch_rows") || flags.contains_key("batch_tokens") {
            for sizing in ["batch_size", "batch_rows", "batch_tokens"] {
                keys.remove(sizing);
            }
        }
        keys.extend(flags);
        keys
    }
}

/// Appends the library's default to the help of every flag that is a key of
/// [`LoaderConfig`].
pub fn annotate_defaults(command: clap::Command) -> clap::Command {
    let defaults = table(&LoaderConfig::default());
    let sizing = crate::loader::BatchSize::default().to_string();
    annotate(command, &defaults, |id| {
        matches!(id, "batch_rows" | "batch_tokens").then(|| sizing.clone())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_sizing_flag_replaces_the_files_sizing_in_any_spelling() {
        let flags = LoaderArgs {
            batch_rows: Some(4),
            ..LoaderArgs::default()
        };
        for file in [
            json!({"batch_tokens": 4096, "seed": 3}),
            json!({"batch_size": {"tokens": 4096}, "seed": 3}),
        ] {
            let Value::Object(file) = file else {
                unreachable!()
            };
            let keys = flags.over(&file);
            assert_eq!(
                Value::Object(keys.clone()),
                json!({"batch_rows": 4, "seed": 3})
            );
            let config = LoaderConfig::from_value(Value::Object(keys)).unwrap();
            assert_eq!(
                config.warmup().batch_size(),
                crate::loader::BatchSize::Rows(4)
            );
        }
    }
}
