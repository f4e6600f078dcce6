//! The preprocessor from Python: [`RawShardWriter`] (the `seqwarm.ShardWriter` behind its
//! Python class) feeds documents to the library's `DocumentWriter`, and [`preprocess_files`]
//! runs the CLI's `preprocess` over files. Tokenizing and writing run with the GIL released, on
//! every core (or `threads`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use seqwarm::preprocess::{DocumentWriter, Options, Position, Preprocess, PreprocessError};

use crate::errors::{config_error, preprocess_error};

/// The run `settings_json` describes (the CLI flags' names, as [`Options`]), over `inputs`
/// (none for a writer) into `output`.
fn build(
    py: Python<'_>,
    inputs: Vec<String>,
    output: PathBuf,
    settings_json: &str,
) -> PyResult<Preprocess> {
    let options: Options = serde_json::from_str(settings_json).map_err(|e| {
        // Name the setting: the first key that is refused on its own.
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(settings_json).unwrap_or_default();
        map.into_iter()
            .find_map(|(key, value)| {
                let alone = serde_json::Value::Object([(key.clone(), value)].into_iter().collect());
                serde_json::from_value::<Options>(alone)
                    .err()
                    .map(|e| config_error(py, &key, format!("{key}: {e}")))
            })
            .unwrap_or_else(|| config_error(py, "settings", format!("preprocess settings: {e}")))
    })?;
    options
        .build(inputs, output)
        .map_err(|e| preprocess_error(py, &e))
}

/// Writes documents given from Python into seqwarm shards (see `seqwarm.ShardWriter`).
///
/// Every method takes `&self`: the writer is behind a mutex taken with the GIL released (a
/// second Python thread waits without the GIL, so neither blocks the other), and the figures
/// Python reads are atomics, readable while another thread writes.
#[pyclass(module = "seqwarm._seqwarm")]
pub struct RawShardWriter {
    /// `None` once finished, or stopped by an error.
    writer: Mutex<Option<DocumentWriter>>,
    /// The next document's index in the stream.
    next: AtomicU64,
    /// Documents and tokens written, shards finished (kept ones included).
    documents: AtomicU64,
    tokens: AtomicU64,
    shards: AtomicU64,
    /// Where the kept shards end in the stream.
    resume_at: u64,
    source: String,
}

/// Why a call could not use the writer.
enum Refused {
    Closed,
    Failed(PreprocessError),
}

impl RawShardWriter {
    /// Runs `f` on the open writer with the GIL released; an error leaves the writer closed
    /// (it has already stopped itself: what it held is gone).
    fn with_writer<T: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut DocumentWriter) -> seqwarm::preprocess::Result<T> + Send,
    ) -> PyResult<T> {
        let result = py.detach(|| {
            let mut guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            let writer = guard.as_mut().ok_or(Refused::Closed)?;
            match f(writer) {
                Ok(value) => {
                    self.documents.store(writer.documents(), Ordering::Relaxed);
                    self.tokens.store(writer.tokens(), Ordering::Relaxed);
                    self.shards.store(writer.shards() as u64, Ordering::Relaxed);
                    Ok(value)
                }
                Err(e) => {
                    guard.take();
                    Err(Refused::Failed(e))
                }
            }
        });
        result.map_err(|refused| match refused {
            Refused::Closed => crate::errors::state_error(
                py,
                "this ShardWriter is closed (or stopped at an error): open a new one on the \
                 output directory to continue after its finished shards"
                    .into(),
            ),
            Refused::Failed(e) => preprocess_error(py, &e),
        })
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
        let resume = writer.resume_at();
        Ok(Self {
            shards: AtomicU64::new(writer.shards() as u64),
            writer: Mutex::new(Some(writer)),
            next: AtomicU64::new(0),
            documents: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            // A stream's shards end inside it; `stream_end` (a Rust caller's) is past any.
            resume_at: if resume.file == 0 {
                resume.document
            } else {
                u64::MAX
            },
            source,
        })
    }

    /// Texts, one document each (`None`: a bad document, an error or skipped by `on_error`).
    fn write_texts(&self, py: Python<'_>, texts: Vec<Option<String>>) -> PyResult<()> {
        let first = self.next.fetch_add(texts.len() as u64, Ordering::Relaxed);
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
    fn write_ids(&self, py: Python<'_>, ids: Vec<i32>) -> PyResult<()> {
        let at = Position::in_stream(self.next.fetch_add(1, Ordering::Relaxed));
        self.with_writer(py, |writer| writer.write_ids(at, ids))
    }

    /// Documents given before this one in the stream, written or not.
    #[getter]
    fn position(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Where an earlier run's finished shards end in the stream: the documents before it,
    /// given again, are neither tokenized nor written.
    #[getter]
    fn resume_at(&self) -> u64 {
        self.resume_at
    }

    /// Documents, tokens and shards written so far (shards: kept ones included).
    #[getter]
    fn progress(&self) -> (u64, u64, u64) {
        (
            self.documents.load(Ordering::Relaxed),
            self.tokens.load(Ordering::Relaxed),
            self.shards.load(Ordering::Relaxed),
        )
    }

    /// Writes what is left, the last shard and the manifest; returns the manifest's path and
    /// its JSON. The stream ends after the documents given: fewer than an earlier run's
    /// finished shards hold is an error.
    fn finish(&self, py: Python<'_>) -> PyResult<(String, String)> {
        let end = Position::in_stream(self.next.load(Ordering::Relaxed));
        let taken = py.detach(|| {
            self.writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        });
        let writer = taken.ok_or_else(|| {
            crate::errors::state_error(
                py,
                "this ShardWriter is closed (or stopped at an error)".into(),
            )
        })?;
        let (manifest, path) = py
            .detach(|| writer.finish(end))
            .map_err(|e| preprocess_error(py, &e))?;
        let json = serde_json::to_string(&manifest)
            .map_err(|e| crate::errors::state_error(py, e.to_string()))?;
        Ok((path.display().to_string(), json))
    }

    /// Drops what was given since the last finished shard, as a crash would: the finished
    /// shards stay, and a writer opened on the same directory continues after them.
    fn abandon(&self, py: Python<'_>) {
        py.detach(|| {
            self.writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        });
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

/// Joins finished single-worker runs (directories, or their `manifest.json`), in order, into
/// one data set in `output`: run `k` becomes worker `k`, its shards named with `prefix` (the
/// runs' default when `None`). Returns the merged manifest's path and its JSON.
#[pyfunction]
#[pyo3(signature = (runs, output, prefix=None))]
#[allow(clippy::needless_pass_by_value)] // pyo3 extracts arguments as owned values
pub fn join_runs(
    py: Python<'_>,
    runs: Vec<PathBuf>,
    output: PathBuf,
    prefix: Option<&str>,
) -> PyResult<(String, String)> {
    let prefix = prefix.unwrap_or(seqwarm::preprocess::DEFAULT_PREFIX);
    let joined = py
        .detach(|| seqwarm::preprocess::join_runs(&runs, &output, prefix))
        .map_err(|e| preprocess_error(py, &e))?;
    let json = serde_json::to_string(&joined)
        .map_err(|e| crate::errors::state_error(py, e.to_string()))?;
    Ok((output.join("manifest.json").display().to_string(), json))
}

/// The document lengths a flat shard's footer holds (its `seqwarm.document_lengths` value):
/// one list per row group. `None` when the text is not that encoding.
#[pyfunction]
pub fn document_lengths(text: &str) -> Option<Vec<Vec<u64>>> {
    seqwarm_format::flat::decode_document_lengths(text)
}

/// The `.parquet` shards at a local location, in the loader's order (`seqwarm_format::paths`:
/// a directory's files sorted by name, not its subdirectories'; a glob's matches; one file).
#[pyfunction]
pub fn shard_files(py: Python<'_>, location: &str) -> PyResult<Vec<String>> {
    let files = seqwarm_format::paths::expand(location, seqwarm_format::paths::is_parquet)
        .map_err(|e| crate::errors::data_error(py, location, e.to_string()))?;
    if files.is_empty() {
        return Err(crate::errors::data_error(
            py,
            location,
            format!("{location}: no .parquet shards there"),
        ));
    }
    Ok(files.iter().map(|f| f.display().to_string()).collect())
}
