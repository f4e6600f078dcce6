//! [`Preprocess`]: one worker's run over files, resumable: it lists and reads the inputs and
//! feeds their documents to a [`DocumentWriter`], which writes the shards and their records and
//! keeps (and skips past) an earlier run's finished shards.

use std::path::PathBuf;

use rayon::prelude::*;
use seqwarm_format::{OutputLayout, ShardEncoding};

use crate::error::{PreprocessError, Result};
use crate::input::{OnError, Read, Reading, list_inputs, read_file};
use crate::manifest::{Manifest, Position, Settings};
use crate::tokenizer::Tokenizer;
use crate::writer::DocumentWriter;

/// The shard file name prefix a run uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "shard";

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
            prefix: DEFAULT_PREFIX.into(),
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
    /// Shard file name prefix ([`DEFAULT_PREFIX`] unless set).
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

    /// The settings of this worker's run over `inputs` (its share of the input files, or the
    /// name of a stream), or why they are invalid.
    fn settings(&self, inputs: Vec<String>) -> Result<Settings> {
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
        Ok(Settings {
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
            inputs,
        })
    }

    /// A writer of this worker's shards for documents that come from elsewhere (a Python
    /// iterable, a datatrove task, a Ray block): `source` names the stream in the manifest and
    /// in errors, and is part of the settings a resumed run must repeat. Documents are at
    /// [`Position::in_stream`]; finish at `Position::in_stream(n)` after `n` documents (so that
    /// a later run with more documents appends them, and one with fewer is refused). Given the
    /// documents of a single input file, in order, it writes the shards `run` writes for that
    /// file, byte for byte; finished at [`Position::stream_end`] with `source` the file's path
    /// as `run` lists it (and this builder's reading settings), the same records and manifest.
    ///
    /// The inputs of this builder are not used; its reading settings are recorded only.
    pub fn document_writer(&self, source: &str) -> Result<DocumentWriter> {
        let settings = self.settings(vec![source.to_string()])?;
        DocumentWriter::open(
            &self.output,
            &self.prefix,
            settings,
            self.on_error,
            self.threads,
        )
    }

    /// Runs (or resumes) this worker's part; `progress` sees what happens.
    pub fn run(&self, mut progress: impl FnMut(Progress)) -> Result<Summary> {
        if self.workers == 0 || self.worker >= self.workers {
            return Err(PreprocessError::Config {
                field: "worker",
                reason: format!("worker {} is not in 0..{}", self.worker, self.workers),
            });
        }
        let all = list_inputs(&self.inputs)?;
        let mine: Vec<PathBuf> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.workers == self.worker)
            .map(|(_, p)| p.clone())
            .collect();
        let settings = self.settings(mine.iter().map(|p| p.display().to_string()).collect())?;
        let mut writer = DocumentWriter::open(
            &self.output,
            &self.prefix,
            settings,
            self.on_error,
            self.threads,
        )?;
        let resume = writer.resume_at();
        if writer.kept_shards() > 0 {
            progress(Progress::Resuming {
                shards: writer.kept_shards(),
                at: resume,
            });
        }
        let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
        let total_bytes: u64 = mine.iter().map(size).sum();
        progress(Progress::Total { bytes: total_bytes });
        let advanced = |writer: &DocumentWriter, bytes| Progress::Advanced {
            bytes,
            documents: writer.documents(),
            tokens: writer.tokens(),
            shards: writer.shards(),
        };
        let todo: Vec<(usize, &PathBuf)> = mine.iter().enumerate().skip(resume.file).collect();
        let mut done_bytes: u64 = mine.iter().take(resume.file).map(size).sum();
        // Files are read (and decoded, and parsed) in parallel on the writer's threads, a group
        // at a time, and handled in order.
        for group in todo.chunks(FILES_READ_AT_ONCE) {
            let reads: Vec<Result<Vec<Read>>> = writer.pool().install(|| {
                group
                    .par_iter()
                    .map(|(_, path)| read_file(path, &self.reading))
                    .collect()
            });
            for ((file_index, path), reads) in group.iter().zip(reads) {
                done_bytes += size(path);
                let start = Position {
                    file: *file_index,
                    document: 0,
                };
                let reads = match reads {
                    Ok(r) => r,
                    Err(e) if self.on_error == OnError::Skip => {
                        writer.skip_file(start, e.to_string());
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                for (i, read) in reads.into_iter().enumerate() {
                    let at = Position {
                        document: i as u64,
                        ..start
                    };
                    match read {
                        Read::Document(text) => writer.write_text(at, text)?,
                        Read::Bad { location, reason } => {
                            writer.bad_document(at, location, reason)?;
                        }
                    }
                }
                progress(advanced(&writer, done_bytes));
            }
        }
        let end = Position {
            file: mine.len(),
            document: 0,
        };
        let (kept_documents, kept_tokens) = writer.kept();
        let (manifest, manifest_path) = writer.finish(end)?;
        progress(Progress::Advanced {
            bytes: done_bytes,
            documents: manifest.documents - kept_documents,
            tokens: manifest.tokens - kept_tokens,
            shards: manifest.shards.len(),
        });
        Ok(Summary {
            files: mine.len(),
            bytes: total_bytes,
            manifest,
            manifest_path,
        })
    }
}

/// Input files read in parallel at once (then handled in order).
const FILES_READ_AT_ONCE: usize = 64;
