//! The manifest: what a worker's run (or, merged, the whole data set) holds, with the settings
//! that decided its bytes.

use std::path::{Path, PathBuf};

use seqwarm_format::{OutputLayout, ShardEncoding};
use serde::{Deserialize, Serialize};

use crate::digest::sha256_hex;
use crate::error::{PreprocessError, Result, io_at};
use crate::input::InputFormat;
use crate::tokenizer::Tokenizer;

/// `format` of every manifest this crate writes.
pub(crate) const MANIFEST_FORMAT: &str = "seqwarm-manifest-v1";

/// The settings that decide the output bytes; a resumed run must use the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The id appended after every document, if any.
    pub eos_id: Option<i32>,
    /// Output layout.
    pub layout: OutputLayout,
    /// Token encoding.
    pub encoding: ShardEncoding,
    /// Shards close at the first document boundary past this many tokens.
    pub shard_tokens: u64,
    /// Row groups close at the first document boundary past this many tokens.
    pub row_group_tokens: usize,
    /// How input files are read.
    pub input_format: InputFormat,
    /// JSON Lines field holding the text.
    pub text_field: String,
    /// Parquet column holding the text.
    pub text_column: String,
    /// Text files are split into documents on this string.
    pub separator: Option<String>,
    /// This worker's index.
    pub worker: usize,
    /// Number of workers.
    pub workers: usize,
    /// This worker's input files, in order.
    pub inputs: Vec<String>,
}

impl Settings {
    /// A digest of every setting, the input list included (SHA-256 of their JSON, hex): what a
    /// shard record holds in place of the settings themselves, so that records stay small
    /// however many inputs there are, and a resumed run compares one string per shard.
    pub fn digest(&self) -> String {
        sha256_hex(&serde_json::to_vec(self).unwrap_or_default())
    }
}

/// Where in the inputs a shard ends: the next document to read. Ordered as the inputs are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Index into this worker's inputs.
    pub file: usize,
    /// Document index within that file.
    pub document: u64,
}

impl Position {
    /// Document `document` of a stream of documents (a [`DocumentWriter`]'s single input).
    ///
    /// [`DocumentWriter`]: crate::DocumentWriter
    pub fn in_stream(document: u64) -> Self {
        Self { file: 0, document }
    }

    /// The end of a stream: where [`DocumentWriter::finish`] closes the last shard, as a run
    /// over one input file does.
    ///
    /// [`DocumentWriter::finish`]: crate::DocumentWriter::finish
    pub fn stream_end() -> Self {
        Self {
            file: 1,
            document: 0,
        }
    }
}

/// One finished shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name, relative to the manifest.
    pub file: String,
    /// Documents in it.
    pub documents: u64,
    /// Tokens in it.
    pub tokens: u64,
    /// Row groups in it.
    pub row_groups: u64,
    /// Documents in each row group: with `row_group_tokens`, what the loader plans with
    /// instead of reading every footer at startup (it checks them against the footer when it
    /// reads the shard). Empty in manifests written before they were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_group_documents: Vec<u64>,
    /// Tokens in each row group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub row_group_tokens: Vec<u64>,
    /// Size in bytes.
    pub bytes: u64,
    /// The input position after the shard's last document.
    pub end: Position,
}

/// A worker's manifest (or, merged, the whole data set's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `seqwarm-manifest-v1`, this crate's manifest format.
    pub format: String,
    /// The settings of the run.
    pub settings: Settings,
    /// Columns: `tokens: int32` (flat) or `input_ids: list<int32>` (rows).
    pub schema: String,
    /// Token ids are below this (pass it to the loader's `--vocab-size`).
    pub vocab_size: u64,
    /// The shards, in order.
    pub shards: Vec<ShardEntry>,
    /// Documents in all shards.
    pub documents: u64,
    /// Tokens in all shards.
    pub tokens: u64,
    /// Bad documents skipped (`--on-error skip`).
    pub skipped_documents: u64,
    /// Unreadable files skipped, with the reason.
    pub skipped_files: Vec<String>,
}

impl Manifest {
    /// A manifest of `shards` made with `settings`.
    pub fn new(
        settings: Settings,
        shards: Vec<ShardEntry>,
        skipped_documents: u64,
        skipped_files: Vec<String>,
    ) -> Self {
        Self {
            format: MANIFEST_FORMAT.into(),
            schema: match settings.layout {
                OutputLayout::Flat if settings.encoding.is_uint16() => {
                    "tokens: fixed_size_binary[2], little-endian uint16 (flat-v1, document \
                     lengths in the footer)"
                        .into()
                }
                OutputLayout::Flat => {
                    "tokens: int32 (flat-v1, document lengths in the footer)".into()
                }
                OutputLayout::Rows => "input_ids: list<int32>".into(),
            },
            vocab_size: settings.tokenizer.vocab_size(),
            documents: shards.iter().map(|s| s.documents).sum(),
            tokens: shards.iter().map(|s| s.tokens).sum(),
            shards,
            skipped_documents,
            skipped_files,
            settings,
        }
    }

    /// The file name of worker `worker` of `workers`' manifest.
    pub fn worker_file_name(worker: usize, workers: usize) -> String {
        format!("manifest-w{worker:05}-of-{workers:05}.json")
    }

    /// Reads a manifest.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(io_at(path))?;
        serde_json::from_str(&text).map_err(|e| PreprocessError::Mismatch {
            path: path.display().to_string(),
            reason: format!("not a seqwarm manifest: {e}"),
        })
    }

    /// Writes the manifest as pretty JSON.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(|e| PreprocessError::Mismatch {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        seqwarm_format::atomic::write_atomic(path, &text).map_err(io_at(path))
    }
}

/// Joins the manifests of `preprocess --worker I --workers N` runs (files, or directories
/// holding `manifest-w*-of-*.json`) into one, written to `output`. Every worker must be there,
/// with the same settings.
pub fn merge_manifests(manifests: &[PathBuf], output: &Path) -> Result<Manifest> {
    let mut files = Vec::new();
    for m in manifests {
        if m.is_dir() {
            for entry in std::fs::read_dir(m).map_err(io_at(m))? {
                let p = entry.map_err(io_at(m))?.path();
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.starts_with("manifest-w")
                    && Path::new(&name)
                        .extension()
                        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
                {
                    files.push(p);
                }
            }
        } else {
            files.push(m.clone());
        }
    }
    files.sort();
    let mut all: Vec<Manifest> = files
        .iter()
        .map(|p| Manifest::read(p))
        .collect::<Result<_>>()?;
    let Some(first) = all.first().cloned() else {
        return Err(PreprocessError::Mismatch {
            path: format!("{manifests:?}"),
            reason: "no manifests found".into(),
        });
    };
    all.sort_by_key(|m| m.settings.worker);
    let workers = first.settings.workers;
    let seen: Vec<usize> = all.iter().map(|m| m.settings.worker).collect();
    if seen != (0..workers).collect::<Vec<_>>() {
        return Err(PreprocessError::Mismatch {
            path: output.display().to_string(),
            reason: format!("expected manifests of workers 0..{workers}, found workers {seen:?}"),
        });
    }
    for m in &all[1..] {
        if let Some(difference) = settings_difference(&first.settings, &m.settings) {
            return Err(PreprocessError::Mismatch {
                path: output.display().to_string(),
                reason: format!(
                    "worker {} used other settings than worker 0: {difference}",
                    m.settings.worker
                ),
            });
        }
    }
    let mut settings = first.settings.clone();
    settings.worker = 0;
    settings.inputs = all.iter().flat_map(|m| m.settings.inputs.clone()).collect();
    let merged = Manifest::new(
        settings,
        all.iter().flat_map(|m| m.shards.clone()).collect(),
        all.iter().map(|m| m.skipped_documents).sum(),
        all.iter().flat_map(|m| m.skipped_files.clone()).collect(),
    );
    merged.write(output)?;
    Ok(merged)
}

/// The first setting (other than the worker and its inputs) in which two workers' runs differ,
/// with both values.
fn settings_difference(first: &Settings, other: &Settings) -> Option<String> {
    let as_map = |s: &Settings| match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(first), as_map(other));
    a.iter()
        .filter(|(key, _)| !matches!(key.as_str(), "worker" | "inputs"))
        .find(|(key, value)| b.get(*key) != Some(value))
        .map(|(key, value)| {
            let theirs = b
                .get(key)
                .map_or_else(|| "absent".into(), ToString::to_string);
            format!(
                "`{key}` is {value} for worker 0 and {theirs} for worker {}",
                other.worker
            )
        })
}
