//! [`DocumentWriter`]: documents in, in input order, shards out. Text is tokenized in parallel a
//! batch at a time while the batch before it is written on one thread; shards are written under
//! a temporary name, renamed when complete, then recorded (`NAME.parquet.json`); a writer opened
//! on a directory that holds an earlier run's records keeps those shards and ignores the
//! documents they hold, so feeding the same documents again continues the run.
//!
//! [`Preprocess::run`](crate::Preprocess::run) drives one over files; the Python package's
//! `ShardWriter` (and through it datatrove and Ray) drives one over any stream of documents.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use seqwarm_format::ShardWriter;
use seqwarm_format::atomic::{finish_atomic, write_atomic};

use crate::error::{PreprocessError, Result, io_at};
use crate::input::OnError;
use crate::manifest::{Manifest, Position, Settings, ShardEntry};

/// Text gathered before it is tokenized in parallel: enough to keep every thread busy, little
/// enough to stay a few MiB of memory.
const TOKENIZE_BATCH_BYTES: usize = 4 << 20;

/// A document waiting to be tokenized (or, given as ids, checked).
enum Pending {
    Text(String),
    Ids(Vec<i32>),
}

/// Writes documents, given in input order with their [`Position`], into shards and a manifest.
/// Open one with [`Preprocess::document_writer`](crate::Preprocess::document_writer).
///
/// ```no_run
/// use seqwarm_preprocess::{Position, Preprocess};
///
/// let mut writer = Preprocess::new(Vec::<String>::new(), "shards/").document_writer("my-stream")?;
/// for (i, text) in ["one document", "another"].into_iter().enumerate() {
///     writer.write_text(Position::in_stream(i as u64), text.to_string())?;
/// }
/// let (manifest, _path) = writer.finish(Position::stream_end())?;
/// assert_eq!(manifest.documents, 2);
/// # Ok::<(), seqwarm_preprocess::PreprocessError>(())
/// ```
pub struct DocumentWriter {
    output: PathBuf,
    prefix: String,
    settings: Settings,
    on_error: OnError,
    pool: rayon::ThreadPool,
    /// Where the finished shards of an earlier run end: documents before it are written.
    resume: Position,
    /// Shards finished before this writer opened.
    kept_shards: usize,
    resumed_skips: Skips,
    out: Output,
    /// The position of the last document given (written, ignored or skipped).
    last: Option<Position>,
    /// Documents given but not yet tokenized, and their text bytes.
    pending: Vec<(Position, Pending)>,
    pending_bytes: usize,
    /// Tokenized documents not yet written: written while the next batch is tokenized, so
    /// that N threads stay busy as N separate workers would.
    ready: Vec<(Position, Vec<i32>)>,
    /// An error stopped the writer: what it held is gone, so going on would lose documents.
    failed: bool,
}

impl DocumentWriter {
    /// Opens the writer: checks the output directory's finished shards against `settings`
    /// (another run's shards are an error) and keeps them.
    pub(crate) fn open(
        output: &Path,
        prefix: &str,
        settings: Settings,
        on_error: OnError,
        threads: Option<usize>,
    ) -> Result<Self> {
        if settings.workers == 0 || settings.worker >= settings.workers {
            return Err(PreprocessError::Config {
                field: "worker",
                reason: format!(
                    "worker {} is not in 0..{}",
                    settings.worker, settings.workers
                ),
            });
        }
        if prefix.is_empty() || prefix.contains(['/', '\\', '\0']) {
            return Err(PreprocessError::Config {
                field: "prefix",
                reason: format!(
                    "{prefix:?} is not a file name prefix (no path separators: shards go in the \
                     output directory)"
                ),
            });
        }
        std::fs::create_dir_all(output).map_err(io_at(output))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.unwrap_or(0))
            .build()
            .map_err(|e| PreprocessError::Config {
                field: "threads",
                reason: e.to_string(),
            })?;
        let mut writer = Self {
            output: output.to_path_buf(),
            prefix: prefix.to_string(),
            settings,
            on_error,
            pool,
            resume: Position::default(),
            kept_shards: 0,
            resumed_skips: Skips::default(),
            out: Output::default(),
            last: None,
            pending: Vec::new(),
            pending_bytes: 0,
            ready: Vec::new(),
            failed: false,
        };
        let (shards, skips) = writer.finished_shards()?;
        writer.resume = shards.last().map(|s| s.end).unwrap_or_default();
        writer.kept_shards = shards.len();
        writer.resumed_skips = skips;
        writer.out.shards = shards;
        Ok(writer)
    }

    /// The settings that decide the output bytes.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Where an earlier run's finished shards end: a document before this position is already
    /// in a shard, and giving it again does nothing.
    pub fn resume_at(&self) -> Position {
        self.resume
    }

    /// Shards an earlier run finished, kept.
    pub fn kept_shards(&self) -> usize {
        self.kept_shards
    }

    /// The threads that tokenize (`threads`, or every core), for a driver's own parallel work
    /// between batches (reading files).
    pub(crate) fn pool(&self) -> &rayon::ThreadPool {
        &self.pool
    }

    /// Documents and tokens in the kept shards.
    pub(crate) fn kept(&self) -> (u64, u64) {
        self.out.shards[..self.kept_shards]
            .iter()
            .fold((0, 0), |(d, t), s| (d + s.documents, t + s.tokens))
    }

    /// Documents written by this writer (not counting kept shards).
    pub fn documents(&self) -> u64 {
        self.out.documents
    }

    /// Tokens written by this writer (not counting kept shards).
    pub fn tokens(&self) -> u64 {
        self.out.tokens
    }

    /// Shards finished, kept ones included.
    pub fn shards(&self) -> usize {
        self.out.shards.len()
    }

    /// Runs one step; an error stops the writer (the documents it held are gone: going on
    /// would lose them silently), and every later call says so.
    fn step<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        if self.failed {
            return Err(PreprocessError::Config {
                field: "writer",
                reason: "an earlier error stopped this writer; open a new one on the output \
                         directory to continue after its finished shards"
                    .into(),
            });
        }
        let result = f(self);
        self.failed = result.is_err();
        result
    }

    /// Positions must grow: a document given twice, or out of order, would be written twice or
    /// out of place. Returns whether the document is new (not in a kept shard).
    fn advance(&mut self, at: Position) -> Result<bool> {
        if let Some(last) = self.last
            && at <= last
        {
            return Err(PreprocessError::Input {
                location: self.location(at),
                reason: format!(
                    "documents must come in input order: this one follows input {} document {}",
                    last.file,
                    last.document + 1
                ),
            });
        }
        self.last = Some(at);
        Ok(at >= self.resume)
    }

    /// `input document N` (1-based) for messages.
    fn location(&self, at: Position) -> String {
        let input = self
            .settings
            .inputs
            .get(at.file)
            .map_or_else(|| format!("input {}", at.file), Clone::clone);
        format!("{input} document {}", at.document + 1)
    }

    /// Gives a document's text (tokenized with the settings' tokenizer, then the EOS appended).
    pub fn write_text(&mut self, at: Position, text: String) -> Result<()> {
        self.step(|w| {
            if w.advance(at)? {
                w.pending_bytes += text.len();
                w.pending.push((at, Pending::Text(text)));
                w.flush_if_full()?;
            }
            Ok(())
        })
    }

    /// Gives a document already tokenized: every id must be below the tokenizer's vocabulary
    /// size; the EOS is appended as for text (unless the ids already end with it), so that the
    /// ids of a text give the same shard bytes as the text.
    pub fn write_ids(&mut self, at: Position, ids: Vec<i32>) -> Result<()> {
        self.step(|w| {
            if w.advance(at)? {
                w.pending_bytes += ids.len() * 4;
                w.pending.push((at, Pending::Ids(ids)));
                w.flush_if_full()?;
            }
            Ok(())
        })
    }

    /// A document that cannot be read: an error naming it and the reason, or (skipping bad
    /// input) counted in the manifest's `skipped_documents`.
    pub fn bad_document(&mut self, at: Position, location: String, reason: String) -> Result<()> {
        self.step(|w| {
            if !w.advance(at)? {
                return Ok(());
            }
            if w.on_error == OnError::Fail {
                return Err(PreprocessError::Input { location, reason });
            }
            tracing::warn!("skipping {location}: {reason}");
            w.out.skip_log.push((at, None));
            w.out.skipped_documents += 1;
            Ok(())
        })
    }

    /// An input that cannot be read at all (skipping bad input): listed in the manifest's
    /// `skipped_files` with the reason.
    pub(crate) fn skip_file(&mut self, at: Position, reason: String) {
        tracing::warn!("skipping {reason}");
        self.last = Some(at);
        self.out.skip_log.push((at, Some(reason.clone())));
        self.out.skipped_files.push(reason);
    }

    /// Tokenizes once the pending text would keep every thread busy, or is about a shard's
    /// worth (4 bytes of text per token, at least 64 KiB): with small shards, a crash then
    /// loses at most about two shards of work, as with large ones it loses at most 8 MiB.
    fn flush_if_full(&mut self) -> Result<()> {
        let shard_bytes = usize::try_from(self.settings.shard_tokens.saturating_mul(4))
            .unwrap_or(usize::MAX)
            .max(64 << 10);
        if self.pending_bytes >= TOKENIZE_BATCH_BYTES.min(shard_bytes) {
            self.flush()?;
        }
        Ok(())
    }

    /// Tokenizes what is pending while writing what is ready.
    fn flush(&mut self) -> Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let ready = std::mem::take(&mut self.ready);
        self.pending_bytes = 0;
        let sink = Sink {
            output: &self.output,
            prefix: &self.prefix,
            settings: &self.settings,
        };
        let out = &mut self.out;
        let settings = &self.settings;
        let (encoded, written) = self.pool.install(|| {
            rayon::join(
                || {
                    pending
                        .into_par_iter()
                        .map(|(at, document)| (at, encode(settings, document)))
                        .collect::<Vec<_>>()
                },
                || sink.write(ready, out),
            )
        });
        written?;
        // A document the tokenizer refuses (only a `tokenizer.json` can) or with ids out of the
        // vocabulary is an error that names it under either policy: it was read fine, so
        // nothing says to skip it.
        self.ready = encoded
            .into_iter()
            .map(|(at, ids)| {
                ids.map(|ids| (at, ids))
                    .map_err(|reason| PreprocessError::Input {
                        location: self.location(at),
                        reason,
                    })
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Writes every document given, closes the last shard at `end` (the position after the
    /// last input: [`Position::in_stream`] of the number of documents given, for a stream), and
    /// writes this worker's manifest (and `manifest.json` when it is the only worker). Returns
    /// the manifest and the worker manifest's path. An `end` before the end of the kept shards
    /// is an error: the inputs stopped short of what an earlier run wrote from them, so they
    /// are not the same inputs.
    pub fn finish(mut self, end: Position) -> Result<(Manifest, PathBuf)> {
        self.step(|_| Ok(()))?;
        if end < self.resume {
            return Err(PreprocessError::Mismatch {
                path: self.output.display().to_string(),
                reason: format!(
                    "its finished shards hold documents up to input {} document {}, but these \
                     inputs end before that (input {} document {}): give the documents the run \
                     that wrote them was given, in the same order, or use another output \
                     directory",
                    self.resume.file, self.resume.document, end.file, end.document
                ),
            });
        }
        self.flush()?;
        let sink = Sink {
            output: &self.output,
            prefix: &self.prefix,
            settings: &self.settings,
        };
        sink.write(std::mem::take(&mut self.ready), &mut self.out)?;
        if self.out.open.is_some() {
            let skips = Skips::before(&mut self.out.skip_log, end);
            let entry = sink.close(self.out.open.take(), end, skips)?;
            self.out.shards.push(entry);
        }
        // Skips counted in the records of the shards this run resumed after, then this run's.
        let mut skipped_files = self.resumed_skips.files;
        skipped_files.extend(self.out.skipped_files);
        let manifest = Manifest::new(
            self.settings,
            self.out.shards,
            self.resumed_skips.documents + self.out.skipped_documents,
            skipped_files,
        );
        let path = self.output.join(Manifest::worker_file_name(
            manifest.settings.worker,
            manifest.settings.workers,
        ));
        manifest.write(&path)?;
        if manifest.settings.workers == 1 {
            manifest.write(&self.output.join("manifest.json"))?;
        }
        Ok((manifest, path))
    }

    /// Finished shards of an earlier run of this worker, in order, and what was skipped before
    /// the last one's end; stray partial files removed.
    fn finished_shards(&self) -> Result<(Vec<ShardEntry>, Skips)> {
        let sink = Sink {
            output: &self.output,
            prefix: &self.prefix,
            settings: &self.settings,
        };
        let mut entries = Vec::new();
        let mut skips = Skips::default();
        let digest = self.settings.digest();
        for index in 0.. {
            let record = self.output.join(format!("{}.json", sink.shard_name(index)));
            if !record.exists() {
                break;
            }
            let text = std::fs::read_to_string(&record).map_err(io_at(&record))?;
            // Records hold the settings' digest; those of version 0.1 held the settings.
            let mut hint = String::new();
            let parsed = serde_json::from_str::<ShardRecord>(&text)
                .map(|r| (r.settings_digest == digest, r.shard, r.skipped))
                .or_else(|_| {
                    serde_json::from_str::<(Settings, ShardEntry)>(&text).map(|(saved, entry)| {
                        if saved.encoding != self.settings.encoding {
                            // Version 0.1 wrote zstd by default; uint16 is the default now.
                            hint = format!(
                                " (its shards are --encoding {}: pass that to continue it)",
                                saved.encoding.name()
                            );
                        }
                        (saved == self.settings, entry, Skips::default())
                    })
                });
            let Ok((same, entry, skipped)) = parsed else {
                // A record torn by a crash (records are written atomically, so only by an older
                // version or a damaged disk): that shard and the ones after it are redone.
                tracing::warn!(
                    "{}: unreadable shard record; redoing from it",
                    record.display()
                );
                break;
            };
            if !same {
                return Err(PreprocessError::Mismatch {
                    path: self.output.display().to_string(),
                    reason: format!(
                        "holds shards made with other settings or inputs{hint}; use another \
                         output directory or delete them"
                    ),
                });
            }
            if !self.output.join(&entry.file).exists() {
                break;
            }
            entries.push(entry);
            skips.documents += skipped.documents;
            skips.files.extend(skipped.files);
        }
        // Only this worker's: the others may be writing theirs into the same directory now.
        remove_partials(&self.output, &sink.shard_name_prefix());
        Ok((entries, skips))
    }
}

/// A document's ids with the EOS appended (not twice: a `tokenizer.json` whose post-processor
/// ends every document with its EOS, T5's, already did), or why it has none.
fn encode(settings: &Settings, document: Pending) -> std::result::Result<Vec<i32>, String> {
    let mut ids = match document {
        Pending::Text(text) if text.is_empty() => return Ok(Vec::new()),
        Pending::Text(text) => settings.tokenizer.encode(&text)?,
        Pending::Ids(ids) => {
            let vocab = settings.tokenizer.vocab_size();
            if let Some((offset, id)) = ids
                .iter()
                .enumerate()
                .find(|(_, id)| u64::try_from(**id).map_or(true, |id| id >= vocab))
            {
                return Err(format!(
                    "token id {id} at offset {offset} is not in 0..{vocab} ({}'s vocabulary)",
                    settings.tokenizer.name()
                ));
            }
            if ids.is_empty() {
                return Ok(ids);
            }
            ids
        }
    };
    if ids.last() != settings.eos_id.as_ref() {
        ids.extend(settings.eos_id);
    }
    Ok(ids)
}

/// What the shard names of worker `worker` start with.
fn shard_name_prefix(prefix: &str, worker: usize) -> String {
    format!("{prefix}-w{worker:05}-")
}

/// The file name of worker `worker`'s shard `index`: the one home of the shard naming rule
/// (the join of separately written runs renames their shards by it).
pub(crate) fn shard_file_name(prefix: &str, worker: usize, index: usize) -> String {
    format!("{}{index:05}.parquet", shard_name_prefix(prefix, worker))
}

/// Where shards go and how they are named: the writing half, borrowed while the writer's
/// pool tokenizes.
struct Sink<'a> {
    output: &'a Path,
    prefix: &'a str,
    settings: &'a Settings,
}

impl Sink<'_> {
    /// What this worker's shard names start with.
    fn shard_name_prefix(&self) -> String {
        shard_name_prefix(self.prefix, self.settings.worker)
    }

    fn shard_name(&self, index: usize) -> String {
        shard_file_name(self.prefix, self.settings.worker, index)
    }

    /// Writes tokenized documents, closing each shard at the first document boundary past
    /// `shard_tokens`.
    fn write(&self, ready: Vec<(Position, Vec<i32>)>, out: &mut Output) -> Result<()> {
        for (at, ids) in ready {
            if ids.is_empty() {
                continue;
            }
            let writer = match &mut out.open {
                Some(o) => o,
                None => out.open.insert(self.open_shard(out.shards.len())?),
            };
            writer.writer.write_document(&ids)?;
            out.documents += 1;
            out.tokens += ids.len() as u64;
            if writer.writer.tokens() >= self.settings.shard_tokens {
                let end = Position {
                    file: at.file,
                    document: at.document + 1,
                };
                let skips = Skips::before(&mut out.skip_log, end);
                let entry = self.close(out.open.take(), end, skips)?;
                out.shards.push(entry);
            }
        }
        Ok(())
    }

    fn open_shard(&self, index: usize) -> Result<Open> {
        let name = self.shard_name(index);
        let partial = self.output.join(format!("{name}.partial"));
        let file = std::fs::File::create(&partial).map_err(io_at(&partial))?;
        let writer = ShardWriter::with_encoding(
            std::io::BufWriter::new(file),
            self.settings.layout,
            self.settings.row_group_tokens,
            self.settings.encoding,
            &name,
        )?;
        Ok(Open {
            writer,
            name,
            partial,
        })
    }

    /// Finishes a shard: footer, rename into place, then its record (a record always means a
    /// complete shard).
    fn close(&self, open: Option<Open>, end: Position, skipped: Skips) -> Result<ShardEntry> {
        let Some(o) = open else {
            return Err(PreprocessError::Config {
                field: "shard",
                reason: "no open shard to close".into(),
            });
        };
        let summary = o.writer.finish()?;
        let path = self.output.join(&o.name);
        finish_atomic(&o.partial, &path).map_err(io_at(&path))?;
        let entry = ShardEntry {
            file: o.name.clone(),
            documents: summary.documents,
            tokens: summary.tokens,
            row_groups: summary.row_groups,
            row_group_documents: summary.row_group_documents,
            row_group_tokens: summary.row_group_tokens,
            bytes: std::fs::metadata(&path).map_err(io_at(&path))?.len(),
            end,
        };
        let record = self.output.join(format!("{}.json", o.name));
        // The settings' digest, not the settings: a record's size does not grow with the
        // number of inputs (the manifest lists them once).
        let text = serde_json::to_vec_pretty(&ShardRecord {
            settings_digest: self.settings.digest(),
            shard: entry.clone(),
            skipped,
        })
        .map_err(|e| PreprocessError::Mismatch {
            path: record.display().to_string(),
            reason: e.to_string(),
        })?;
        write_atomic(&record, &text).map_err(io_at(&record))?;
        Ok(entry)
    }
}

/// An open shard.
struct Open {
    writer: ShardWriter<std::io::BufWriter<std::fs::File>>,
    name: String,
    partial: PathBuf,
}

/// What `NAME.json` beside a finished shard says: the shard, and the digest of the settings
/// (inputs included) that made it ([`Settings::digest`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct ShardRecord {
    settings_digest: String,
    shard: ShardEntry,
    /// Skipped (`--on-error skip`) after the previous shard's end and before this one's.
    #[serde(default)]
    skipped: Skips,
}

/// What a writer has written so far.
#[derive(Default)]
struct Output {
    /// The shard being written.
    open: Option<Open>,
    /// Finished shards, those of the run resumed after included.
    shards: Vec<ShardEntry>,
    /// What was skipped, where, not yet counted in a shard record: each record counts the
    /// skips before its end, so that a resumed run's manifest counts them all, once.
    skip_log: Vec<(Position, Option<String>)>,
    /// Documents and files this writer skipped.
    skipped_documents: u64,
    skipped_files: Vec<String>,
    /// Documents and tokens written by this writer.
    documents: u64,
    tokens: u64,
}

/// Documents and files skipped over a stretch of the inputs.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Skips {
    documents: u64,
    /// Each skipped file's reason.
    files: Vec<String>,
}

impl Skips {
    /// Takes the logged skips before `end` (the log is in input order).
    fn before(log: &mut Vec<(Position, Option<String>)>, end: Position) -> Self {
        let n = log.partition_point(|(at, _)| *at < end);
        let mut skips = Skips::default();
        for (_, file) in log.drain(..n) {
            match file {
                Some(reason) => skips.files.push(reason),
                None => skips.documents += 1,
            }
        }
        skips
    }
}

/// Removes the partial files whose names start with `prefix`.
fn remove_partials(dir: &Path, prefix: &str) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with(prefix) && name.ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
