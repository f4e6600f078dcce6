//! [`Preprocess`]: one worker's run, resumable. Shards are written under a temporary name and
//! renamed when complete, then recorded in a per-shard record (`NAME.parquet.json`); a resumed
//! run reads the records, keeps the finished shards, and continues after the last one.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use seqwarm_format::atomic::{finish_atomic, write_atomic};
use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};

use crate::error::{PreprocessError, Result, io_at};
use crate::input::{OnError, Read, Reading, list_inputs, read_file};
use crate::manifest::{Manifest, Position, Settings, ShardEntry};
use crate::tokenizer::Tokenizer;

/// A preprocessing run: which inputs, where to, and how. Build it with [`Preprocess::new`] and
/// the `with_*` setters, then [`Preprocess::run`].
///
/// ```no_run
/// use seqwarm_preprocess::{Preprocess, Tokenizer};
///
/// let summary = Preprocess::new(["corpus/"], "shards/")
///     .with_tokenizer(Tokenizer::Gpt2)
///     .with_separator(Some("\\n\\n".into()))
///     .run(|_| {})?;
/// println!("{} documents in {} shards", summary.manifest.documents, summary.manifest.shards.len());
/// # Ok::<(), seqwarm_preprocess::PreprocessError>(())
/// ```
///
/// It serializes to its settings (the CLI shows the defaults in `--help` from it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preprocess {
    inputs: Vec<String>,
    output: PathBuf,
    tokenizer: Tokenizer,
    eos: bool,
    layout: OutputLayout,
    encoding: Option<ShardEncoding>,
    shard_tokens: u64,
    row_group_tokens: usize,
    #[serde(flatten)]
    reading: Reading,
    prefix: String,
    worker: usize,
    workers: usize,
    on_error: OnError,
    threads: Option<usize>,
}

/// What a run reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// An earlier run of this worker finished `shards` shards, up to `at`; they are kept.
    Resuming {
        /// Finished shards kept.
        shards: usize,
        /// Where the run continues.
        at: Position,
    },
    /// The inputs hold this many bytes.
    Total {
        /// Bytes of this worker's inputs.
        bytes: u64,
    },
    /// A file is done.
    Advanced {
        /// Input bytes done.
        bytes: u64,
        /// Documents written so far in this run.
        documents: u64,
        /// Tokens written so far in this run.
        tokens: u64,
        /// Shards finished, kept ones included.
        shards: usize,
    },
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// This worker's input files.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
    /// The worker's manifest (also written to `manifest_path`).
    pub manifest: Manifest,
    /// Where the manifest is.
    pub manifest_path: PathBuf,
}

/// An open shard.
struct Open {
    writer: ShardWriter<std::io::BufWriter<std::fs::File>>,
    name: String,
    partial: PathBuf,
}

impl Preprocess {
    /// GPT-2 tokens with its EOS after every document, flat `uint16` shards of 64 Mi tokens in row
    /// groups of 1 Mi tokens (about 4 MiB decoded, what the loader's prefetch window is sized
    /// for), named `shard-…`, one worker, failing on bad input, all cores.
    pub fn new<I, S>(inputs: I, output: impl Into<PathBuf>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            inputs: inputs.into_iter().map(Into::into).collect(),
            output: output.into(),
            tokenizer: Tokenizer::Gpt2,
            eos: true,
            layout: OutputLayout::default(),
            encoding: None,
            shard_tokens: 64 << 20,
            row_group_tokens: 1 << 20,
            reading: Reading::default(),
            prefix: "shard".into(),
            worker: 0,
            workers: 1,
            on_error: OnError::Fail,
            threads: None,
        }
    }

    /// The tokenizer.
    #[must_use]
    pub fn with_tokenizer(mut self, tokenizer: Tokenizer) -> Self {
        self.tokenizer = tokenizer;
        self
    }
    /// Whether the tokenizer's EOS id follows every document.
    #[must_use]
    pub fn with_eos(mut self, eos: bool) -> Self {
        self.eos = eos;
        self
    }
    /// The output layout.
    #[must_use]
    pub fn with_layout(mut self, layout: OutputLayout) -> Self {
        self.layout = layout;
        self
    }
    /// The token encoding [default: [`ShardEncoding::default_for`] the layout and the
    /// tokenizer's vocabulary: `uint16` for GPT-2 and bytes, dictionary + zstd beyond 65 536
    /// ids].
    #[must_use]
    pub fn with_encoding(mut self, encoding: ShardEncoding) -> Self {
        self.encoding = Some(encoding);
        self
    }
    /// Tokens per shard (shards close at the first document boundary past it).
    #[must_use]
    pub fn with_shard_tokens(mut self, tokens: u64) -> Self {
        self.shard_tokens = tokens;
        self
    }
    /// Tokens per row group.
    #[must_use]
    pub fn with_row_group_tokens(mut self, tokens: usize) -> Self {
        self.row_group_tokens = tokens;
        self
    }
    /// How input files are read.
    #[must_use]
    pub fn with_input_format(mut self, format: crate::InputFormat) -> Self {
        self.reading.input_format = format;
        self
    }
    /// The JSON Lines field holding the text.
    #[must_use]
    pub fn with_text_field(mut self, field: impl Into<String>) -> Self {
        self.reading.text_field = field.into();
        self
    }
    /// The Parquet column holding the text.
    #[must_use]
    pub fn with_text_column(mut self, column: impl Into<String>) -> Self {
        self.reading.text_column = column.into();
        self
    }
    /// Split text files into documents on this string.
    #[must_use]
    pub fn with_separator(mut self, separator: Option<String>) -> Self {
        self.reading.separator = separator;
        self
    }
    /// Shard file name prefix.
    #[must_use]
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }
    /// This worker's index and the number of workers: worker `i` takes the inputs whose sorted
    /// index is `i` mod `n`.
    #[must_use]
    pub fn with_worker(mut self, worker: usize, workers: usize) -> Self {
        self.worker = worker;
        self.workers = workers;
        self
    }
    /// What to do with bad input.
    #[must_use]
    pub fn with_on_error(mut self, on_error: OnError) -> Self {
        self.on_error = on_error;
        self
    }
    /// Tokenizer threads (`None`: all cores).
    #[must_use]
    pub fn with_threads(mut self, threads: Option<usize>) -> Self {
        self.threads = threads;
        self
    }

    fn shard_name(&self, index: usize) -> String {
        format!("{}-w{:05}-{index:05}.parquet", self.prefix, self.worker)
    }

    /// Runs (or resumes) this worker's part; `progress` sees what happens.
    pub fn run(&self, mut progress: impl FnMut(Progress)) -> Result<Summary> {
        if self.workers == 0 || self.worker >= self.workers {
            return Err(PreprocessError::Config {
                field: "worker",
                reason: format!("worker {} is not in 0..{}", self.worker, self.workers),
            });
        }
        if self.prefix.is_empty() || self.prefix.contains(['/', '\\', '\0']) {
            return Err(PreprocessError::Config {
                field: "prefix",
                reason: format!(
                    "{:?} is not a file name prefix (no path separators: shards go in the output directory)",
                    self.prefix
                ),
            });
        }
        let all = list_inputs(&self.inputs)?;
        let mine: Vec<PathBuf> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.workers == self.worker)
            .map(|(_, p)| p.clone())
            .collect();
        let eos_id = match (self.eos, self.tokenizer.eos_id()) {
            (false, _) => None,
            (true, Some(id)) => Some(id),
            (true, None) => {
                return Err(PreprocessError::Config {
                    field: "tokenizer",
                    reason: format!(
                        "{} names no end-of-text token: give one (`--eos-token`, \
                         `HuggingFace::from_file`) or append none (`--no-eos`)",
                        self.tokenizer.name()
                    ),
                });
            }
        };
        let settings = Settings {
            tokenizer: self.tokenizer.clone(),
            eos_id,
            layout: self.layout,
            encoding: self.encoding.unwrap_or_else(|| {
                ShardEncoding::default_for(self.layout, self.tokenizer.vocab_size())
            }),
            shard_tokens: self.shard_tokens.max(1),
            row_group_tokens: self.row_group_tokens.max(1),
            input_format: self.reading.input_format,
            text_field: self.reading.text_field.clone(),
            text_column: self.reading.text_column.clone(),
            separator: self.reading.separator.clone(),
            worker: self.worker,
            workers: self.workers,
            inputs: mine.iter().map(|p| p.display().to_string()).collect(),
        };
        std::fs::create_dir_all(&self.output).map_err(io_at(&self.output))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads.unwrap_or(0))
            .build()
            .map_err(|e| PreprocessError::Config {
                field: "threads",
                reason: e.to_string(),
            })?;
        let (shards, resumed_skips) = self.finished_shards(&settings)?;
        let resume = shards.last().map(|s| s.end).unwrap_or_default();
        if !shards.is_empty() {
            progress(Progress::Resuming {
                shards: shards.len(),
                at: resume,
            });
        }
        let total_bytes: u64 = mine
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        progress(Progress::Total { bytes: total_bytes });
        let mut skipped = 0u64;
        let mut skipped_files = Vec::new();
        let mut out = Output {
            shards,
            ..Output::default()
        };
        // Documents read but not yet tokenized, with where each came from: tokenizing waits
        // until there is enough to keep every thread busy, across files (a corpus of one
        // document per file would otherwise tokenize one document at a time).
        let mut pending: Vec<(Position, String)> = Vec::new();
        let mut pending_bytes = 0usize;
        // Tokenized documents not yet written. Writing (encoding, compressing, checksumming)
        // runs on one thread while the next batch is tokenized on the others, so that
        // `--threads N` keeps N threads busy as N separate workers would.
        let mut ready: Vec<(Position, Vec<i32>)> = Vec::new();
        let write = |ready: Vec<(Position, Vec<i32>)>, out: &mut Output| -> Result<()> {
            for (at, ids) in ready {
                if ids.is_empty() {
                    continue;
                }
                let writer = match &mut out.open {
                    Some(o) => o,
                    None => out
                        .open
                        .insert(self.open_shard(&settings, out.shards.len())?),
                };
                writer.writer.write_document(&ids)?;
                out.documents += 1;
                out.tokens += ids.len() as u64;
                if writer.writer.tokens() >= settings.shard_tokens {
                    let end = Position {
                        file: at.file,
                        document: at.document + 1,
                    };
                    let skips = Skips::before(&mut out.skip_log, end);
                    let entry = self.close(out.open.take(), end, &settings, skips)?;
                    out.shards.push(entry);
                }
            }
            Ok(())
        };
        let encode = |(at, text): (Position, String)| {
            if text.is_empty() {
                return (at, Ok(Vec::new()));
            }
            let ids = settings.tokenizer.encode(&text).map(|mut ids| {
                // Not twice: a `tokenizer.json` whose post-processor ends every document with
                // its EOS (T5's) already did.
                if ids.last() != settings.eos_id.as_ref() {
                    ids.extend(settings.eos_id);
                }
                ids
            });
            (at, ids)
        };
        // Tokenizes `pending` while writing `ready`; returns the newly tokenized documents.
        let flush = |pending: Vec<(Position, String)>,
                     ready: Vec<(Position, Vec<i32>)>,
                     out: &mut Output|
         -> Result<Vec<(Position, Vec<i32>)>> {
            let (encoded, written) = pool.install(|| {
                rayon::join(
                    || pending.into_par_iter().map(encode).collect::<Vec<_>>(),
                    || write(ready, out),
                )
            });
            written?;
            // A document the tokenizer refuses (only a `tokenizer.json` can) is an error that
            // names it, under either policy: it was read fine, so nothing says to skip it.
            encoded
                .into_iter()
                .map(|(at, ids)| {
                    ids.map(|ids| (at, ids))
                        .map_err(|reason| PreprocessError::Input {
                            location: format!(
                                "{} document {}",
                                mine.get(at.file)
                                    .map_or_else(String::new, |p| p.display().to_string()),
                                at.document + 1
                            ),
                            reason,
                        })
                })
                .collect()
        };
        let todo: Vec<(usize, &PathBuf)> = mine.iter().enumerate().skip(resume.file).collect();
        let mut done_bytes: u64 = mine
            .iter()
            .take(resume.file)
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        // Files are read (and decoded, and parsed) in parallel, a group at a time, and handled
        // in order.
        for group in todo.chunks(FILES_READ_AT_ONCE) {
            let reads: Vec<Result<Vec<Read>>> = pool.install(|| {
                group
                    .par_iter()
                    .map(|(_, path)| read_file(path, &self.reading))
                    .collect()
            });
            for ((file_index, path), reads) in group.iter().zip(reads) {
                done_bytes += std::fs::metadata(path).map_or(0, |m| m.len());
                let reads = match reads {
                    Ok(r) => r,
                    Err(e) if self.on_error == OnError::Skip => {
                        tracing::warn!("skipping {}: {e}", path.display());
                        let at = Position {
                            file: *file_index,
                            document: 0,
                        };
                        out.skip_log.push((at, Some(e.to_string())));
                        skipped_files.push(e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let skip = if *file_index == resume.file {
                    resume.document
                } else {
                    0
                };
                for (i, read) in reads
                    .into_iter()
                    .enumerate()
                    .skip(usize::try_from(skip).unwrap_or(usize::MAX))
                {
                    let at = Position {
                        file: *file_index,
                        document: i as u64,
                    };
                    match read {
                        Read::Document(t) => {
                            pending_bytes += t.len();
                            pending.push((at, t));
                        }
                        Read::Bad { location, reason } if self.on_error == OnError::Skip => {
                            out.skip_log.push((at, None));
                            skipped += 1;
                            tracing::warn!("skipping {location}: {reason}");
                        }
                        Read::Bad { location, reason } => {
                            return Err(PreprocessError::Input { location, reason });
                        }
                    }
                }
                if pending_bytes >= TOKENIZE_BATCH_BYTES {
                    ready = flush(
                        std::mem::take(&mut pending),
                        std::mem::take(&mut ready),
                        &mut out,
                    )?;
                    pending_bytes = 0;
                    progress(out.advanced(done_bytes));
                }
            }
        }
        let last = flush(pending, ready, &mut out)?;
        write(last, &mut out)?;
        progress(out.advanced(done_bytes));
        let end = Position {
            file: mine.len(),
            document: 0,
        };
        if out.open.is_some() {
            let skips = Skips::before(&mut out.skip_log, end);
            let entry = self.close(out.open.take(), end, &settings, skips)?;
            out.shards.push(entry);
        }
        // Skips counted in the records of the shards this run resumed after, then this run's.
        let mut all_skipped_files = resumed_skips.files;
        all_skipped_files.extend(skipped_files);
        let manifest = Manifest::new(
            settings,
            out.shards,
            resumed_skips.documents + skipped,
            all_skipped_files,
        );
        let manifest_path = self
            .output
            .join(Manifest::worker_file_name(self.worker, self.workers));
        manifest.write(&manifest_path)?;
        if self.workers == 1 {
            manifest.write(&self.output.join("manifest.json"))?;
        }
        Ok(Summary {
            files: mine.len(),
            bytes: total_bytes,
            manifest,
            manifest_path,
        })
    }

    fn open_shard(&self, settings: &Settings, index: usize) -> Result<Open> {
        let name = self.shard_name(index);
        let partial = self.output.join(format!("{name}.partial"));
        let file = std::fs::File::create(&partial).map_err(io_at(&partial))?;
        let writer = ShardWriter::with_encoding(
            std::io::BufWriter::new(file),
            settings.layout,
            settings.row_group_tokens,
            settings.encoding,
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
    fn close(
        &self,
        open: Option<Open>,
        end: Position,
        settings: &Settings,
        skipped: Skips,
    ) -> Result<ShardEntry> {
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
            settings_digest: settings.digest(),
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

    /// Finished shards of an earlier run of this worker, in order, and what was skipped before
    /// the last one's end; stray partial files removed.
    fn finished_shards(&self, settings: &Settings) -> Result<(Vec<ShardEntry>, Skips)> {
        let mut entries = Vec::new();
        let mut skips = Skips::default();
        let digest = settings.digest();
        for index in 0.. {
            let record = self.output.join(format!("{}.json", self.shard_name(index)));
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
                        if saved.encoding != settings.encoding {
                            // Version 0.1 wrote zstd by default; uint16 is the default now.
                            hint = format!(
                                " (its shards are --encoding {}: pass that to continue it)",
                                saved.encoding.name()
                            );
                        }
                        (&saved == settings, entry, Skips::default())
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
        remove_partials(&self.output);
        Ok((entries, skips))
    }
}

/// Input files read in parallel at once (then handled in order).
const FILES_READ_AT_ONCE: usize = 64;
/// Text gathered before it is tokenized in parallel: enough to keep every thread busy, little
/// enough to stay a few MiB of memory.
const TOKENIZE_BATCH_BYTES: usize = 4 << 20;

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

/// What a run has written so far.
#[derive(Default)]
struct Output {
    /// The shard being written.
    open: Option<Open>,
    /// Finished shards, those of the run resumed after included.
    shards: Vec<ShardEntry>,
    /// What was skipped, where, not yet counted in a shard record: each record counts the
    /// skips before its end, so that a resumed run's manifest counts them all, once.
    skip_log: Vec<(Position, Option<String>)>,
    /// Documents and tokens written by this run.
    documents: u64,
    tokens: u64,
}

impl Output {
    fn advanced(&self, bytes: u64) -> Progress {
        Progress::Advanced {
            bytes,
            documents: self.documents,
            tokens: self.tokens,
            shards: self.shards.len(),
        }
    }
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

fn remove_partials(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
