//! `seqwarm preprocess`: text, JSON Lines or Parquet text in; tokenized Parquet shards and a
//! manifest out. Deterministic, resumable, and split across workers without coordination.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use seqwarm::loader::{OutputLayout, ShardEncoding, ShardWriter};
use serde::{Deserialize, Serialize};

use super::tokenize::Tokenizer;

pub const EXAMPLES: &str = "Examples:
  seqwarm preprocess corpus/*.txt -o shards/                       # one document per file, GPT-2 BPE
  seqwarm preprocess data.jsonl --text-field content -o shards/ --layout rows
  seqwarm preprocess books/ --separator '\\n\\n\\n' --tokenizer cl100k_base -o shards/
  seqwarm preprocess 'crawl/*.parquet' --text-column text -o s3-staging/ --worker 3 --workers 16
  seqwarm merge-manifests shards/ -o shards/manifest.json           # after all workers finished";

/// How input files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// By extension: .jsonl/.json/.ndjson as JSON Lines, .parquet as Parquet, else text.
    Auto,
    /// Plain UTF-8 text: one document per file, or split on `--separator`.
    Text,
    /// One JSON object per line; the document is `--text-field`.
    Jsonl,
    /// Parquet with a string column `--text-column`, one document per row.
    Parquet,
}

/// `--on-error` for preprocess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop at the first bad input.
    Fail,
    /// Skip the bad document (or unreadable file), count it, go on.
    Skip,
}

/// Output layout flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutArg {
    /// seqwarm's fast layout (flat tokens, boundaries in the footer).
    Flat,
    /// Hugging Face style `input_ids: list<int32>`.
    Rows,
}

/// `--encoding` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodingArg {
    /// Dictionary + zstd.
    Zstd,
    /// PLAIN, uncompressed.
    Plain,
}

/// Arguments of `seqwarm preprocess`.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Input files, directories (their files, sorted) or globs.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output directory for shards and manifests.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub input_format: InputFormat,
    /// JSON Lines field holding the text.
    #[arg(long, default_value = "text")]
    pub text_field: String,
    /// Parquet column holding the text.
    #[arg(long, default_value = "text")]
    pub text_column: String,
    /// Split text files into documents on this string (escapes \n and \t understood).
    #[arg(long)]
    pub separator: Option<String>,
    /// Tokenizer.
    #[arg(long, value_enum, default_value_t = Tokenizer::Gpt2)]
    pub tokenizer: Tokenizer,
    /// Do not append the tokenizer's EOS id to each document.
    #[arg(long)]
    pub no_eos: bool,
    /// Output layout.
    #[arg(long, value_enum, default_value_t = LayoutArg::Flat)]
    pub layout: LayoutArg,
    /// Token encoding: zstd (about 2 bytes per token) or plain (4 bytes per token, read by the
    /// loader's fast path without Arrow's decoder; flat layout).
    #[arg(long, value_enum, default_value_t = EncodingArg::Zstd)]
    pub encoding: EncodingArg,
    /// Target tokens per shard (shards close at the first document boundary past it).
    #[arg(long, default_value_t = 64 << 20)]
    pub shard_tokens: u64,
    /// Tokens per row group: 1 Mi keeps a row group about 4 MiB decoded, what the loader's
    /// prefetch window is sized for.
    #[arg(long, default_value_t = 1 << 20)]
    pub row_group_tokens: usize,
    /// Shard file name prefix.
    #[arg(long, default_value = "shard")]
    pub prefix: String,
    /// This worker's index (0-based) when the inputs are split across workers.
    #[arg(long, default_value_t = 0)]
    pub worker: usize,
    /// Number of workers; worker I takes the inputs whose sorted index is I mod N.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Bad input: fail, or skip and count.
    #[arg(long, value_enum, default_value_t = OnError::Fail)]
    pub on_error: OnError,
    /// Tokenizer threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// The settings that decide the output bytes; a resumed run must use the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub tokenizer: Tokenizer,
    pub eos_id: Option<i32>,
    pub layout: LayoutArg,
    pub encoding: EncodingArg,
    pub shard_tokens: u64,
    pub row_group_tokens: usize,
    pub input_format: InputFormat,
    pub text_field: String,
    pub text_column: String,
    pub separator: Option<String>,
    pub worker: usize,
    pub workers: usize,
    /// This worker's input files, in order.
    pub inputs: Vec<String>,
}

/// Where in the inputs a shard ends: the next document to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Index into this worker's inputs.
    pub file: usize,
    /// Document index within that file.
    pub document: u64,
}

/// One finished shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardEntry {
    /// File name, relative to the manifest.
    pub file: String,
    pub documents: u64,
    pub tokens: u64,
    pub row_groups: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// The input position after the shard's last document.
    pub end: Position,
}

/// A worker's manifest (or, merged, the whole data set's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub settings: Settings,
    /// Columns: `tokens: int32` (flat) or `input_ids: list<int32>` (rows).
    pub schema: String,
    /// Token ids are below this (pass it to the loader's `--vocab-size`).
    pub vocab_size: u64,
    pub shards: Vec<ShardEntry>,
    pub documents: u64,
    pub tokens: u64,
    pub skipped_documents: u64,
    pub skipped_files: Vec<String>,
}

const MANIFEST_FORMAT: &str = "seqwarm-manifest-v1";

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Expands inputs into a sorted, de-duplicated list of files.
pub fn list_inputs(inputs: &[String]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if input.contains(['*', '?', '[']) {
            for entry in glob::glob(input).with_context(|| format!("invalid glob {input}"))? {
                let p = entry.with_context(|| format!("cannot read a match of {input}"))?;
                if p.is_file() {
                    files.push(p);
                }
            }
        } else if path.is_dir() {
            for entry in std::fs::read_dir(path).with_context(|| format!("cannot list {input}"))? {
                let p = entry?.path();
                if p.is_file() {
                    files.push(p);
                }
            }
        } else if path.is_file() {
            files.push(path.to_path_buf());
        } else {
            bail!("input {input}: no such file or directory");
        }
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        bail!("no input files matched {}", inputs.join(" "));
    }
    Ok(files)
}

fn format_of(path: &Path, format: InputFormat) -> InputFormat {
    if format != InputFormat::Auto {
        return format;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "json" | "ndjson") => InputFormat::Jsonl,
        Some("parquet") => InputFormat::Parquet,
        _ => InputFormat::Text,
    }
}

/// A document or a bad input, with its place.
enum Read {
    Document(String),
    Bad(String),
}

/// Reads every document of `path` in order (line numbers are 1-based).
fn read_file(path: &Path, settings: &Settings) -> anyhow::Result<Vec<Read>> {
    let name = path.display();
    match format_of(path, settings.input_format) {
        InputFormat::Text | InputFormat::Auto => {
            let bytes = std::fs::read(path).with_context(|| format!("{name}: cannot read"))?;
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => {
                    let at = e.utf8_error().valid_up_to();
                    #[allow(clippy::naive_bytecount)] // once per bad file
                    let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                    return Ok(vec![Read::Bad(format!(
                        "{name}:{line}: invalid UTF-8 (byte {at})"
                    ))]);
                }
            };
            Ok(match &settings.separator {
                None => vec![Read::Document(text)],
                Some(sep) => text
                    .split(unescape(sep).as_str())
                    .filter(|d| !d.trim().is_empty())
                    .map(|d| Read::Document(d.to_string()))
                    .collect(),
            })
        }
        InputFormat::Jsonl => {
            let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
            let mut out = Vec::new();
            for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
                let line_no = i + 1;
                let bytes = line.with_context(|| format!("{name}:{line_no}: cannot read"))?;
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    out.push(Read::Bad(format!("{name}:{line_no}: invalid UTF-8")));
                    continue;
                };
                if text.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(v) => match v.get(&settings.text_field).and_then(|t| t.as_str()) {
                        Some(t) => out.push(Read::Document(t.to_string())),
                        None => out.push(Read::Bad(format!(
                            "{name}:{line_no}: no string field `{}`",
                            settings.text_field
                        ))),
                    },
                    Err(e) => out.push(Read::Bad(format!("{name}:{line_no}: invalid JSON: {e}"))),
                }
            }
            Ok(out)
        }
        InputFormat::Parquet => read_parquet(path, &settings.text_column),
    }
}

fn read_parquet(path: &Path, column: &str) -> anyhow::Result<Vec<Read>> {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{name}: cannot read"))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .with_context(|| format!("{name}: not a readable Parquet file"))?;
    let index = builder
        .schema()
        .index_of(column)
        .with_context(|| format!("{name}: no column `{column}`"))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder.with_projection(mask).build()?;
    let mut out = Vec::new();
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.with_context(|| format!("{name}: cannot decode `{column}`"))?;
        let array = batch.column(0);
        let strings: Vec<Option<String>> = match array.data_type() {
            arrow_schema::DataType::Utf8 => array
                .as_string::<i32>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
            arrow_schema::DataType::LargeUtf8 => array
                .as_string::<i64>()
                .iter()
                .map(|s| s.map(str::to_string))
                .collect(),
            other => bail!("{name}: column `{column}` has type {other}; expected a string column"),
        };
        for s in strings {
            row += 1;
            out.push(match s {
                Some(t) => Read::Document(t),
                None => Read::Bad(format!("{name}: row {row}: `{column}` is null")),
            });
        }
    }
    Ok(out)
}

fn shard_name(prefix: &str, worker: usize, index: usize) -> String {
    format!("{prefix}-w{worker:05}-{index:05}.parquet")
}

/// Finished shards of an earlier run of this worker, in order; stray partial files removed.
fn finished_shards(
    settings: &Settings,
    output: &Path,
    prefix: &str,
) -> anyhow::Result<Vec<ShardEntry>> {
    let mut entries = Vec::new();
    for index in 0.. {
        let sidecar = output.join(format!(
            "{}.json",
            shard_name(prefix, settings.worker, index)
        ));
        if !sidecar.exists() {
            break;
        }
        let text = std::fs::read_to_string(&sidecar)?;
        let (saved, entry): (Settings, ShardEntry) = serde_json::from_str(&text)
            .with_context(|| format!("{}: unreadable shard record", sidecar.display()))?;
        if &saved != settings {
            bail!(
                "{} holds shards made with other settings or inputs; use another output directory or delete them",
                output.display()
            );
        }
        if !output.join(&entry.file).exists() {
            break;
        }
        entries.push(entry);
    }
    if let Ok(dir) = std::fs::read_dir(output) {
        for entry in dir.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".partial") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    Ok(entries)
}

struct Open {
    writer: ShardWriter<std::io::BufWriter<std::fs::File>>,
    name: String,
    partial: PathBuf,
}

pub fn run(args: &PreprocessArgs) -> anyhow::Result<()> {
    if args.workers == 0 || args.worker >= args.workers {
        bail!("--worker {} is not in 0..{}", args.worker, args.workers);
    }
    let all = list_inputs(&args.inputs)?;
    let mine: Vec<PathBuf> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| i % args.workers == args.worker)
        .map(|(_, p)| p.clone())
        .collect();
    let settings = Settings {
        tokenizer: args.tokenizer,
        eos_id: (!args.no_eos).then(|| args.tokenizer.eos_id()),
        layout: args.layout,
        encoding: args.encoding,
        shard_tokens: args.shard_tokens.max(1),
        row_group_tokens: args.row_group_tokens.max(1),
        input_format: args.input_format,
        text_field: args.text_field.clone(),
        text_column: args.text_column.clone(),
        separator: args.separator.clone(),
        worker: args.worker,
        workers: args.workers,
        inputs: mine.iter().map(|p| p.display().to_string()).collect(),
    };
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads.unwrap_or(0))
        .build()?;
    let mut shards = finished_shards(&settings, &args.output, &args.prefix)?;
    let resume = shards.last().map(|s| s.end).unwrap_or_default();
    if !shards.is_empty() {
        eprintln!(
            "resuming after {} finished shards (input {} document {})",
            shards.len(),
            resume.file,
            resume.document
        );
    }
    let total_bytes: u64 = mine
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let bar = ProgressBar::new(total_bytes);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let (mut documents, mut tokens, mut skipped) = (0u64, 0u64, 0u64);
    let mut skipped_files = Vec::new();
    let layout = match settings.layout {
        LayoutArg::Flat => OutputLayout::Flat,
        LayoutArg::Rows => OutputLayout::Rows,
    };
    let mut open: Option<Open> = None;
    let close = |open: Option<Open>,
                 end: Position,
                 shards: &mut Vec<ShardEntry>,
                 output: &Path|
     -> anyhow::Result<()> {
        let Some(o) = open else { return Ok(()) };
        let summary = o.writer.finish()?;
        let path = output.join(&o.name);
        std::fs::rename(&o.partial, &path)
            .with_context(|| format!("cannot finish {}", path.display()))?;
        let entry = ShardEntry {
            file: o.name.clone(),
            documents: summary.documents,
            tokens: summary.tokens,
            row_groups: summary.row_groups,
            bytes: std::fs::metadata(&path)?.len(),
            end,
        };
        // The record is written after the shard is in place: a record always means a
        // complete shard.
        let sidecar = output.join(format!("{}.json", o.name));
        std::fs::write(&sidecar, serde_json::to_vec_pretty(&(&settings, &entry))?)?;
        shards.push(entry);
        Ok(())
    };
    for (file_index, path) in mine.iter().enumerate() {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if file_index < resume.file {
            bar.inc(size);
            continue;
        }
        let reads = match read_file(path, &settings) {
            Ok(r) => r,
            Err(e) if args.on_error == OnError::Skip => {
                tracing::warn!("skipping {}: {e:#}", path.display());
                skipped_files.push(format!("{e:#}"));
                bar.inc(size);
                continue;
            }
            Err(e) => return Err(e),
        };
        let skip = if file_index == resume.file {
            resume.document
        } else {
            0
        };
        let mut texts = Vec::with_capacity(reads.len());
        for read in reads.into_iter().skip(usize::try_from(skip)?) {
            match read {
                Read::Document(t) => texts.push(t),
                Read::Bad(reason) if args.on_error == OnError::Skip => {
                    skipped += 1;
                    tracing::warn!("skipping {reason}");
                    texts.push(String::new()); // keeps document indices stable; dropped below
                }
                Read::Bad(reason) => bail!("{reason}"),
            }
        }
        let encoded: Vec<Vec<i32>> = pool.install(|| {
            texts
                .par_iter()
                .map(|t| {
                    if t.is_empty() {
                        return Vec::new();
                    }
                    let mut ids = settings.tokenizer.encode(t);
                    ids.extend(settings.eos_id);
                    ids
                })
                .collect()
        });
        for (i, ids) in encoded.into_iter().enumerate() {
            let position = Position {
                file: file_index,
                document: skip + i as u64,
            };
            if ids.is_empty() {
                continue;
            }
            if open.is_none() {
                let name = shard_name(&args.prefix, args.worker, shards.len());
                let partial = args.output.join(format!("{name}.partial"));
                let file = std::fs::File::create(&partial)
                    .with_context(|| format!("cannot create {}", partial.display()))?;
                let encoding = match settings.encoding {
                    EncodingArg::Zstd => ShardEncoding::Zstd,
                    EncodingArg::Plain => ShardEncoding::Plain,
                };
                let writer = ShardWriter::with_encoding(
                    std::io::BufWriter::new(file),
                    layout,
                    settings.row_group_tokens,
                    encoding,
                    &name,
                )?;
                open = Some(Open {
                    writer,
                    name,
                    partial,
                });
            }
            if let Some(o) = open.as_mut() {
                o.writer.write_document(&ids)?;
            }
            documents += 1;
            tokens += ids.len() as u64;
            if open
                .as_ref()
                .is_some_and(|o| o.writer.tokens() >= settings.shard_tokens)
            {
                let end = Position {
                    file: position.file,
                    document: position.document + 1,
                };
                close(open.take(), end, &mut shards, &args.output)?;
            }
        }
        bar.inc(size);
        bar.set_message(format!(
            "{documents} documents, {tokens} tokens, {} shards",
            shards.len()
        ));
    }
    let end = Position {
        file: mine.len(),
        document: 0,
    };
    close(open.take(), end, &mut shards, &args.output)?;
    bar.finish_and_clear();
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        schema: match settings.layout {
            LayoutArg::Flat => "tokens: int32 (flat-v1, document lengths in the footer)".into(),
            LayoutArg::Rows => "input_ids: list<int32>".into(),
        },
        vocab_size: settings.tokenizer.vocab_size(),
        documents: shards.iter().map(|s| s.documents).sum(),
        tokens: shards.iter().map(|s| s.tokens).sum(),
        shards,
        skipped_documents: skipped,
        skipped_files,
        settings: settings.clone(),
    };
    let name = format!("manifest-w{:05}-of-{:05}.json", args.worker, args.workers);
    std::fs::write(
        args.output.join(&name),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    if args.workers == 1 {
        std::fs::write(
            args.output.join("manifest.json"),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "preprocess: {} files, {} documents, {} tokens into {} shards in {elapsed:.2} s ({:.1} MB/s); {} documents and {} files skipped; manifest {}",
        mine.len(),
        manifest.documents,
        manifest.tokens,
        manifest.shards.len(),
        total_bytes as f64 / elapsed.max(1e-9) / 1e6,
        manifest.skipped_documents,
        manifest.skipped_files.len(),
        args.output.join(&name).display()
    );
    Ok(())
}

/// Arguments of `seqwarm merge-manifests`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Worker manifests, or directories holding `manifest-w*-of-*.json`.
    #[arg(required = true)]
    pub manifests: Vec<PathBuf>,
    /// The merged manifest.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn merge(args: &MergeArgs) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for m in &args.manifests {
        if m.is_dir() {
            for entry in std::fs::read_dir(m)? {
                let p = entry?.path();
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
    let mut manifests: Vec<Manifest> = files
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a seqwarm manifest", p.display()))
        })
        .collect::<anyhow::Result<_>>()?;
    let Some(first) = manifests.first().cloned() else {
        bail!("no manifests found in {:?}", args.manifests);
    };
    manifests.sort_by_key(|m| m.settings.worker);
    let workers = first.settings.workers;
    let seen: Vec<usize> = manifests.iter().map(|m| m.settings.worker).collect();
    if seen != (0..workers).collect::<Vec<_>>() {
        bail!("expected manifests of workers 0..{workers}, found workers {seen:?}");
    }
    let same = |m: &Manifest| {
        let (a, b) = (&m.settings, &first.settings);
        (
            a.tokenizer,
            a.eos_id,
            a.layout,
            a.shard_tokens,
            a.row_group_tokens,
            a.workers,
        ) == (
            b.tokenizer,
            b.eos_id,
            b.layout,
            b.shard_tokens,
            b.row_group_tokens,
            b.workers,
        )
    };
    if let Some(m) = manifests.iter().find(|m| !same(m)) {
        bail!(
            "worker {} used other settings than worker 0",
            m.settings.worker
        );
    }
    let mut merged = first.clone();
    merged.settings.worker = 0;
    merged.settings.inputs = manifests
        .iter()
        .flat_map(|m| m.settings.inputs.clone())
        .collect();
    merged.shards = manifests.iter().flat_map(|m| m.shards.clone()).collect();
    merged.documents = manifests.iter().map(|m| m.documents).sum();
    merged.tokens = manifests.iter().map(|m| m.tokens).sum();
    merged.skipped_documents = manifests.iter().map(|m| m.skipped_documents).sum();
    merged.skipped_files = manifests
        .iter()
        .flat_map(|m| m.skipped_files.clone())
        .collect();
    std::fs::write(&args.output, serde_json::to_vec_pretty(&merged)?)?;
    eprintln!(
        "merged {} worker manifests: {} shards, {} documents, {} tokens -> {}",
        manifests.len(),
        merged.shards.len(),
        merged.documents,
        merged.tokens,
        args.output.display()
    );
    Ok(())
}
