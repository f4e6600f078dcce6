//! `seqwarm preprocess` and `seqwarm merge-manifests`: flags over `seqwarm-preprocess`, with
//! a progress bar.

use std::path::PathBuf;
use std::time::Instant;

use crate::format::{OnError, OutputLayout, ShardEncoding};
use crate::preprocess::{InputFormat, Options, Preprocess, Progress, array_task, merge_manifests};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::flags::{annotate, named, table};
use super::output::note;

pub const EXAMPLES: &str = "Examples:
  seqwarm preprocess corpus/*.txt -o shards/                       # one document per file, GPT-2 BPE
  seqwarm preprocess data.jsonl --text-field content -o shards/ --layout rows
  seqwarm preprocess books/ --separator '\\n\\n\\n' --tokenizer cl100k_base -o shards/
  seqwarm preprocess data.jsonl --tokenizer llama/tokenizer.json -o shards/  # a Hugging Face tokenizer
  seqwarm preprocess 'crawl/*.parquet' --text-column text -o s3-staging/ --worker 3 --workers 16
  sbatch --array=0-15 --wrap \"seqwarm preprocess 'crawl/*.parquet' -o shards/\"  # worker = array task
  seqwarm merge-manifests shards/ -o shards/manifest.json           # after all workers finished";

/// Arguments of `seqwarm preprocess`. A setting left out keeps the library's default
/// (`--help` shows it).
#[derive(Debug, Args)]
pub struct PreprocessArgs {
    /// Input files, directories (their files, sorted) or globs.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output directory for shards and manifests.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Input format: auto (by extension), text, jsonl, parquet.
    #[arg(long, value_parser = named::<InputFormat>)]
    pub input_format: Option<InputFormat>,
    /// JSON Lines field holding the text.
    #[arg(long)]
    pub text_field: Option<String>,
    /// Parquet column holding the text.
    #[arg(long)]
    pub text_column: Option<String>,
    /// Split text files into documents on this string (escapes \n and \t understood).
    #[arg(long)]
    pub separator: Option<String>,
    /// Tokenizer: gpt2, r50k_base, p50k_base, cl100k_base, o200k_base, bytes, or the path of a
    /// Hugging Face tokenizer.json (encoded as the model does, special tokens included).
    #[arg(long)]
    pub tokenizer: Option<String>,
    /// The end-of-text token of a tokenizer.json [default: the `eos_token` of the
    /// tokenizer_config.json beside it].
    #[arg(long)]
    pub eos_token: Option<String>,
    /// A beginning-of-text token of a tokenizer.json to put before each document, unless its
    /// post-processor already does [default: the `bos_token` of the tokenizer_config.json
    /// beside it when that says `add_bos_token`].
    #[arg(long)]
    pub bos_token: Option<String>,
    /// Do not append the tokenizer's EOS id to each document.
    #[arg(long)]
    pub no_eos: bool,
    /// Output layout: flat (seqwarm's fast layout) or rows (Hugging Face `input_ids` lists).
    #[arg(long, value_parser = named::<OutputLayout>)]
    pub layout: Option<OutputLayout>,
    /// Token encoding: uint16 (2 bytes per token, read at copy speed; flat layout, ids below
    /// 65 536), plain (int32, 4 bytes per token, also read without Arrow's decoder) or zstd
    /// (dictionary + zstd, any vocabulary) [default: uint16 where the tokenizer's vocabulary
    /// fits, else zstd].
    #[arg(long, value_parser = named::<ShardEncoding>)]
    pub encoding: Option<ShardEncoding>,
    /// Target tokens per shard (shards close at the first document boundary past it).
    #[arg(long)]
    pub shard_tokens: Option<u64>,
    /// Tokens per row group (about 4 bytes each decoded: what the loader's prefetch window
    /// holds).
    #[arg(long)]
    pub row_group_tokens: Option<usize>,
    /// Shard file name prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// This worker's index (0-based) when the inputs are split across workers.
    #[arg(long)]
    pub worker: Option<usize>,
    /// Number of workers; worker I takes the inputs whose sorted index is I mod N.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Bad input: fail, or skip and count.
    #[arg(long, value_parser = named::<OnError>)]
    pub on_error: Option<OnError>,
    /// Tokenizer threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Appends the library's defaults to the help of the flags that set them.
pub fn annotate_defaults(command: clap::Command) -> clap::Command {
    let defaults = table(&Preprocess::new(Vec::<String>::new(), ""));
    annotate(command, &defaults, |id| match id {
        "worker" => {
            Some("the task's place in a Slurm job array (SLURM_ARRAY_TASK_ID), else 0".into())
        }
        "workers" => Some("SLURM_ARRAY_TASK_COUNT in a Slurm job array, else 1".into()),
        _ => None,
    })
}

pub fn run(args: &PreprocessArgs) -> anyhow::Result<()> {
    let mut options = Options {
        tokenizer: args.tokenizer.clone(),
        eos_token: args.eos_token.clone(),
        bos_token: args.bos_token.clone(),
        eos: args.no_eos.then_some(false),
        layout: args.layout,
        encoding: args.encoding,
        shard_tokens: args.shard_tokens,
        row_group_tokens: args.row_group_tokens,
        prefix: args.prefix.clone(),
        worker: args.worker,
        workers: args.workers,
        on_error: args.on_error,
        threads: args.threads,
        input_format: args.input_format,
        text_field: args.text_field.clone(),
        text_column: args.text_column.clone(),
        separator: args.separator.clone(),
    };
    let mut from_array = None;
    if args.worker.is_none()
        && args.workers.is_none()
        && let Some(task) = array_task(|name| std::env::var(name).ok())?
    {
        note!(
            "preprocess: worker {} of {} (from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT): this task \
             takes 1 input in {}; give --worker 0 --workers 1 if each task has inputs of its own",
            task.worker,
            task.workers,
            task.workers
        );
        options.worker = Some(task.worker);
        options.workers = Some(task.workers);
        from_array = Some(task);
    }
    let run = options.build(args.inputs.iter().cloned(), &args.output)?;
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
    if let Some(task) = from_array
        && summary.files == 0
    {
        // An array whose tasks each name their own inputs would otherwise write nothing in
        // every task but the first, and say so only in a log line.
        anyhow::bail!(
            "this Slurm array task (worker {} of {}) got none of the inputs: there are fewer \
             inputs than tasks. If each task names inputs of its own, give --worker 0 --workers 1",
            task.worker,
            task.workers
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let manifest = &summary.manifest;
    note!(
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
    note!(
        "merged {} worker manifests: {} shards, {} documents, {} tokens -> {}",
        merged.settings.workers,
        merged.shards.len(),
        merged.documents,
        merged.tokens,
        args.output.display()
    );
    Ok(())
}
