//! The preprocessor from Python: [`RawShardWriter`] (the `seqwarm.ShardWriter` behind its
//! Python class) feeds documents to the library's `DocumentWriter`, and [`preprocess_files`]
//! runs the CLI's `preprocess` over files. Tokenizing and writing run with the GIL released, on
//! every core (or `threads`).

use std::path::PathBuf;

use pyo3::prelude::*;
use seqwarm::preprocess::{DocumentWriter, Position, Preprocess, Tokenizer};
use serde::Deserialize;

use crate::errors::{config_error, preprocess_error};

/// The settings Python gives, by the CLI flags' names; one left out keeps the library's
/// default.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Settings {
    tokenizer: Option<String>,
    eos_token: Option<String>,
    bos_token: Option<String>,
    eos: Option<bool>,
    layout: Option<seqwarm::format::OutputLayout>,
    encoding: Option<seqwarm::format::ShardEncoding>,
    shard_tokens: Option<u64>,
    row_group_tokens: Option<usize>,
    prefix: Option<String>,
    worker: Option<usize>,
    workers: Option<usize>,
    on_error: Option<seqwarm::format::OnError>,
    threads: Option<usize>,
    input_format: Option<seqwarm::preprocess::InputFormat>,
    text_field: Option<String>,
    text_column: Option<String>,
    separator: Option<String>,
}

/// The run `settings_json` describes, over `inputs` (none for a writer) into `output`.
fn build(
    py: Python<'_>,
    inputs: Vec<String>,
    output: PathBuf,
    settings_json: &str,
) -> PyResult<Preprocess> {
    let s: Settings = serde_json::from_str(settings_json)
        .map_err(|e| config_error(py, "settings", format!("preprocess settings: {e}")))?;
    let mut run = Preprocess::new(inputs, output);
    match &s.tokenizer {
        Some(given) => {
            let tokenizer =
                Tokenizer::resolve(given, s.eos_token.as_deref(), s.bos_token.as_deref())
                    .map_err(|e| preprocess_error(py, &e))?;
            run = run.with_tokenizer(tokenizer);
        }
        None if s.eos_token.is_some() || s.bos_token.is_some() => {
            return Err(config_error(
                py,
                "tokenizer",
                "eos_token and bos_token name tokens of a tokenizer.json: give tokenizer=PATH"
                    .into(),
            ));
        }
        None => {}
    }
    if let Some(eos) = s.eos {
        run = run.with_eos(eos);
    }
    if let Some(layout) = s.layout {
        run = run.with_layout(layout);
    }
    if let Some(encoding) = s.encoding {
        run = run.with_encoding(encoding);
    }
    if let Some(tokens) = s.shard_tokens {
        run = run.with_shard_tokens(tokens);
    }
    if let Some(tokens) = s.row_group_tokens {
        run = run.with_row_group_tokens(tokens);
    }
    if let Some(prefix) = s.prefix {
        run = run.with_prefix(prefix);
    }
    if s.worker.is_some() || s.workers.is_some() {
        run = run.with_worker(s.worker.unwrap_or(0), s.workers.unwrap_or(1));
    }
    if let Some(on_error) = s.on_error {
        run = run.with_on_error(on_error);
    }
    if let Some(format) = s.input_format {
        run = run.with_input_format(format);
    }
    if let Some(field) = s.text_field {
        run = run.with_text_field(field);
    }
    if let Some(column) = s.text_column {
        run = run.with_text_column(column);
    }
    Ok(run.with_separator(s.separator).with_threads(s.threads))
}

/// Writes documents given from Python into seqwarm shards (see `seqwarm.ShardWriter`).
#[pyclass(module = "seqwarm._seqwarm")]
pub struct RawShardWriter {
    /// `None` once finished. In a mutex because a Python object may be used from any thread
    /// (one at a time: the GIL is released only while this is locked).
    writer: std::sync::Mutex<Option<DocumentWriter>>,
    /// The next document's index in the stream.
    next: u64,
    source: String,
}

impl RawShardWriter {
    /// Runs `f` on the open writer with the GIL released.
    fn with_writer<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut DocumentWriter) -> seqwarm::preprocess::Result<T> + Send,
    ) -> PyResult<T> {
        let mut guard = self
            .writer
            .lock()
            .map_err(|_| crate::errors::state_error(py, "this ShardWriter failed".into()))?;
        let writer = guard
            .as_mut()
            .ok_or_else(|| crate::errors::state_error(py, "this ShardWriter is closed".into()))?;
        py.detach(|| f(writer))
            .map_err(|e| preprocess_error(py, &e))
    }
}

#[pymethods]
impl RawShardWriter {
    /// Opens a writer into `output`: `settings_json` as for `preprocess`, `source` the stream's
    /// name (in the manifest, in errors; a resumed run must give the same).
    #[new]
    fn new(py: Python<'_>, output: PathBuf, settings_json: &str, source: String) -> PyResult<Self> {
        let run = build(py, Vec::new(), output, settings_json)?;
        let writer = py
            .detach(|| run.document_writer(&source))
            .map_err(|e| preprocess_error(py, &e))?;
        Ok(Self {
            writer: std::sync::Mutex::new(Some(writer)),
            next: 0,
            source,
        })
    }

    /// Texts, one document each (`None`: a bad document, an error or skipped by `on_error`).
    fn write_texts(&mut self, py: Python<'_>, texts: Vec<Option<String>>) -> PyResult<()> {
        let first = self.next;
        self.next += texts.len() as u64;
        let source = &self.source;
        self.with_writer(py, |writer| {
            for (i, text) in (first..).zip(texts) {
                let at = Position::in_stream(i);
                match text {
                    Some(text) => writer.write_text(at, text)?,
                    None => writer.bad_document(
                        at,
                        format!("{source} document {}", i + 1),
                        "no text (None)".into(),
                    )?,
                }
            }
            Ok(())
        })
    }

    /// One document already tokenized.
    fn write_ids(&mut self, py: Python<'_>, ids: Vec<i32>) -> PyResult<()> {
        let at = Position::in_stream(self.next);
        self.next += 1;
        self.with_writer(py, |writer| writer.write_ids(at, ids))
    }

    /// Documents given before this one in the stream, written or not.
    #[getter]
    fn position(&self) -> u64 {
        self.next
    }

    /// Where an earlier run's finished shards end in the stream: the documents before it,
    /// given again, are neither tokenized nor written. `None` when an earlier run finished the
    /// whole stream.
    #[getter]
    fn resume_at(&self) -> Option<u64> {
        let guard = self.writer.lock().ok()?;
        let at = guard.as_ref().map(DocumentWriter::resume_at)?;
        (at < Position::stream_end()).then_some(at.document)
    }

    /// Documents, tokens and shards written so far (shards: kept ones included).
    #[getter]
    fn progress(&self) -> (u64, u64, usize) {
        self.writer
            .lock()
            .ok()
            .and_then(|guard| {
                guard
                    .as_ref()
                    .map(|w| (w.documents(), w.tokens(), w.shards()))
            })
            .unwrap_or_default()
    }

    /// Writes what is left, the last shard and the manifest; returns the manifest's path and
    /// its JSON.
    fn finish(&mut self, py: Python<'_>) -> PyResult<(String, String)> {
        let taken = self.writer.lock().ok().and_then(|mut guard| guard.take());
        let writer = taken
            .ok_or_else(|| crate::errors::state_error(py, "this ShardWriter is closed".into()))?;
        let (manifest, path) = py
            .detach(|| writer.finish(Position::stream_end()))
            .map_err(|e| preprocess_error(py, &e))?;
        let json = serde_json::to_string(&manifest)
            .map_err(|e| crate::errors::state_error(py, e.to_string()))?;
        Ok((path.display().to_string(), json))
    }

    /// Drops what was given since the last finished shard, as a crash would: the finished
    /// shards stay, and a writer opened on the same directory continues after them.
    fn abandon(&mut self) {
        if let Ok(mut guard) = self.writer.lock() {
            guard.take();
        }
    }
}

/// `seqwarm preprocess` over files (their paths, directories or globs): the same shards and
/// manifest as the CLI. Returns the manifest's path and its JSON.
#[pyfunction]
pub fn preprocess_files(
    py: Python<'_>,
    inputs: Vec<String>,
    output: PathBuf,
    settings_json: &str,
) -> PyResult<(String, String)> {
    let run = build(py, inputs, output, settings_json)?;
    let summary = py
        .detach(|| run.run(|_| {}))
        .map_err(|e| preprocess_error(py, &e))?;
    let json = serde_json::to_string(&summary.manifest)
        .map_err(|e| crate::errors::state_error(py, e.to_string()))?;
    Ok((summary.manifest_path.display().to_string(), json))
}

/// `seqwarm merge-manifests`: joins worker manifests (files, or directories holding
/// `manifest-w*-of-*.json`) into `output`. Returns its path and its JSON.
#[pyfunction]
#[allow(clippy::needless_pass_by_value)] // pyo3 extracts arguments as owned values
pub fn merge_manifests(
    py: Python<'_>,
    manifests: Vec<PathBuf>,
    output: PathBuf,
) -> PyResult<(String, String)> {
    let merged = py
        .detach(|| seqwarm::preprocess::merge_manifests(&manifests, &output))
        .map_err(|e| preprocess_error(py, &e))?;
    let json = serde_json::to_string(&merged)
        .map_err(|e| crate::errors::state_error(py, e.to_string()))?;
    Ok((output.display().to_string(), json))
}
