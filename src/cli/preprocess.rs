//! `seqwarm preprocess` and `seqwarm merge-manifests`: flags over `seqwarm-preprocess`, with
//! a progress bar.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use seqwarm::format::{OutputLayout, ShardEncoding};
use seqwarm::preprocess::{
    DEFAULT_TEXT_KEY, InputFormat, OnError, Preprocess, Progress, Tokenizer, merge_manifests,
};

pub const EXAMPLES: &str = "Examples:
  seqwarm preprocess corpus/*.txt -o shards/                       # one document per file, GPT-2 BPE
  seqwarm preprocess data.jsonl --text-field content -o shards/ --layout rows
  seqwarm preprocess books/ --separator '\\n\\n\\n' --tokenizer cl100k_base -o shards/
  seqwarm preprocess 'crawl/*.parquet' --text-column text -o s3-staging/ --worker 3 --workers 16
  seqwarm merge-manifests shards/ -o shards/manifest.json           # after all workers finished";

/// Arguments of `seqwarm preprocess`.
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Input files, directories (their files, sorted) or globs.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output directory for shards and manifests.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Input format: auto (by extension), text, jsonl, parquet.
    #[arg(long, default_value_t = InputFormat::default())]
    pub input_format: InputFormat,
    /// JSON Lines field holding the text.
    #[arg(long, default_value = DEFAULT_TEXT_KEY)]
    pub text_field: String,
    /// Parquet column holding the text.
    #[arg(long, default_value = DEFAULT_TEXT_KEY)]
    pub text_column: String,
    /// Split text files into documents on this string (escapes \n and \t understood).
    #[arg(long)]
    pub separator: Option<String>,
    /// Tokenizer: gpt2, r50k_base, p50k_base, cl100k_base, o200k_base, bytes.
    #[arg(long, default_value_t = Preprocess::DEFAULT_TOKENIZER)]
    pub tokenizer: Tokenizer,
    /// Do not append the tokenizer's EOS id to each document.
    #[arg(long)]
    pub no_eos: bool,
    /// Output layout: flat (seqwarm's fast layout) or rows (Hugging Face `input_ids` lists).
    #[arg(long, default_value_t = OutputLayout::default())]
    pub layout: OutputLayout,
    /// Token encoding: zstd (about 2 bytes per token) or plain (4 bytes per token, read by the
    /// loader's fast path without Arrow's decoder; flat layout).
    #[arg(long, default_value_t = ShardEncoding::default())]
    pub encoding: ShardEncoding,
    /// Target tokens per shard (shards close at the first document boundary past it).
    #[arg(long, default_value_t = Preprocess::DEFAULT_SHARD_TOKENS)]
    pub shard_tokens: u64,
    /// Tokens per row group (about 4 bytes each decoded: what the loader's prefetch window
    /// holds).
    #[arg(long, default_value_t = Preprocess::DEFAULT_ROW_GROUP_TOKENS)]
    pub row_group_tokens: usize,
    /// Shard file name prefix.
    #[arg(long, default_value = Preprocess::DEFAULT_PREFIX)]
    pub prefix: String,
    /// This worker's index (0-based) when the inputs are split across workers.
    #[arg(long, default_value_t = 0)]
    pub worker: usize,
    /// Number of workers; worker I takes the inputs whose sorted index is I mod N.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Bad input: fail, or skip and count.
    #[arg(long, default_value_t = OnError::default())]
    pub on_error: OnError,
    /// Tokenizer threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: &PreprocessArgs) -> anyhow::Result<()> {
    let run = Preprocess::new(args.inputs.iter().cloned(), &args.output)
        .with_tokenizer(args.tokenizer)
        .with_eos(!args.no_eos)
        .with_layout(args.layout)
        .with_encoding(args.encoding)
        .with_shard_tokens(args.shard_tokens)
        .with_row_group_tokens(args.row_group_tokens)
        .with_input_format(args.input_format)
        .with_text_field(&args.text_field)
        .with_text_column(&args.text_column)
        .with_separator(args.separator.clone())
        .with_prefix(&args.prefix)
        .with_worker(args.worker, args.workers)
        .with_on_error(args.on_error)
        .with_threads(args.threads);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let summary = run.run(|progress| match progress {
        Progress::Resuming { shards, at } => bar.println(format!(
            "resuming after {shards} finished shards (input {} document {})",
            at.file, at.document
        )),
        Progress::Total { bytes } => bar.set_length(bytes),
        Progress::Advanced {
            bytes,
            documents,
            tokens,
            shards,
        } => {
            bar.set_position(bytes);
            bar.set_message(format!(
                "{documents} documents, {tokens} tokens, {shards} shards"
            ));
        }
    })?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let manifest = &summary.manifest;
    eprintln!(
        "preprocess: {} files, {} documents, {} tokens into {} shards in {elapsed:.2} s ({:.1} MB/s); {} documents and {} files skipped; manifest {}",
        summary.files,
        manifest.documents,
        manifest.tokens,
        manifest.shards.len(),
        summary.bytes as f64 / elapsed.max(1e-9) / 1e6,
        manifest.skipped_documents,
        manifest.skipped_files.len(),
        summary.manifest_path.display()
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
    let merged = merge_manifests(&args.manifests, &args.output)?;
    eprintln!(
        "merged {} worker manifests: {} shards, {} documents, {} tokens -> {}",
        merged.settings.workers,
        merged.shards.len(),
        merged.documents,
        merged.tokens,
        args.output.display()
    );
    Ok(())
}
