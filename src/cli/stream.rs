//! `seqwarm stream`: the main job. Streams shards through the warmup stage and reports what
//! comes out, step by step.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::format::OutputLayout;
use crate::loader::{
    Catalog, Loader, LoaderBuilder, LoaderConfig, LoaderState, ScheduledBatch, TokenCount,
};
use crate::schedule::{ProgressUnit, Schedule, ScheduleConfig};
use anyhow::Context;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::chunk::ChunkArgs;
use super::config_file::ConfigFile;
use super::decompose::DecomposeArgs;
use super::demo;
use super::loader_args::LoaderArgs;
use super::loader_args::ModeFlag;
use super::output::note;
use super::schedule_args::{ScheduleArgs, build_logged};

pub const EXAMPLES: &str = "Examples:
  seqwarm stream                                   # built-in demo corpus, linear 64 -> 1024 warmup
  seqwarm stream data/shards/ --mode truncate --batch-rows 8 --eos-id 50256
  seqwarm stream s3://bucket/shards/ --rank 3 --world-size 8 --state-out state.json
  seqwarm stream data/ --state-in state.json       # continue where state.json left off
  seqwarm stream data/ --emit jsonl --max-steps 2 | jq .seq_len
  seqwarm stream olmo-npy/ --token-dtype uint16 --eos-id 50256 --mode decompose \\
      --curriculum grow-p2 --cycles 4 --min 64 --max 2048 --batch-tokens 4096
  seqwarm stream olmo-npy/ --token-dtype uint16 --mode chunk --seq-len 2048 \\
      --batch-schedule 0:1048576,2000:2097152,6000:4194304";

/// Output of `stream`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Emit {
    /// A line per reported step, and a summary.
    Table,
    /// Every batch, all fields, one JSON object per line on stdout (the table goes to stderr).
    Jsonl,
}

/// The data and its settings, for `stream` and `train`: shards, a config file, and the
/// schedule and loader flags over it.
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Shard locations: files, directories, globs or URLs (s3://, gs://, az://, http(s)://,
    /// file://). None: the built-in demo corpus.
    pub shards: Vec<String>,
    /// Config file (TOML or JSON): `shards`, the loader keys (named as the flags), a
    /// `[schedule]` table, and `train`'s `[train]` table. Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[command(flatten)]
    pub loader: LoaderArgs,
}

/// Arguments of `seqwarm stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Layout of the demo corpus when no shards are given.
    #[arg(long, value_enum, default_value = "flat")]
    pub demo_layout: DemoLayout,
    /// Report every N steps (the first and last are always reported).
    #[arg(long, default_value_t = 10)]
    pub print_every: u64,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Emit::Table)]
    pub emit: Emit,
    /// Continue from a state file written by `--state-out`.
    #[arg(long, value_name = "FILE")]
    pub state_in: Option<PathBuf>,
    /// Write the loader's state here every `--state-every` steps and at the end.
    #[arg(long, value_name = "FILE")]
    pub state_out: Option<PathBuf>,
    /// Steps between state writes.
    #[arg(long, default_value_t = 100)]
    pub state_every: u64,
    #[command(flatten)]
    pub decompose: DecomposeArgs,
    #[command(flatten)]
    pub chunk: ChunkArgs,
}

/// Demo corpus layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoLayout {
    /// seqwarm's flat layout.
    Flat,
    /// Hugging Face `list<int32>` rows.
    Rows,
}

/// Shards (the demo corpus when none), config file and flags, resolved into the library's
/// settings.
pub struct Resolved {
    pub shards: Vec<String>,
    pub config: LoaderConfig,
    pub schedule: Schedule,
    /// The shards' footers, when sizing the schedule read them (the loader reuses them).
    pub catalog: Option<Arc<Catalog>>,
}

impl Resolved {
    /// A loader builder with every setting (and the catalog already read, if any).
    pub fn builder(&self) -> LoaderBuilder {
        let builder = LoaderBuilder::from_config(self.shards.iter().cloned(), self.config.clone());
        match &self.catalog {
            Some(catalog) => builder.with_catalog(Arc::clone(catalog)),
            None => builder,
        }
    }
}

/// Layers the library's defaults < the config file < the flags, and sizes the schedule when its
/// length of training was not given: to the checkpoint's (`resumed`) when resuming, else to one
/// epoch of the shards.
pub async fn resolve(
    shards: &[String],
    file: &ConfigFile,
    schedule: &ScheduleArgs,
    loader: &LoaderArgs,
    demo_layout: DemoLayout,
    resumed: Option<&LoaderState>,
) -> anyhow::Result<Resolved> {
    let mut keys = loader.over(&file.loader);
    let mut shards = if shards.is_empty() {
        file.shards.clone()
    } else {
        shards.to_vec()
    };
    let mixture = matches!(keys.get("sources"), Some(Value::Array(s)) if !s.is_empty());
    if mixture && !shards.is_empty() {
        anyhow::bail!("give shard locations or sources (--source, [[sources]]), not both");
    }
    let demo = shards.is_empty() && !mixture;
    if demo {
        let layout = match demo_layout {
            DemoLayout::Flat => OutputLayout::Flat,
            DemoLayout::Rows => OutputLayout::Rows,
        };
        let dir = tokio::task::spawn_blocking(move || demo::corpus(layout)).await??;
        note!(
            "no shards given: using the built-in demo corpus ({} documents, {:?} layout) at {}",
            demo::DOCUMENTS,
            layout,
            dir.display()
        );
        shards = vec![dir.display().to_string()];
        keys.entry("vocab_size").or_insert(Value::from(demo::VOCAB));
        keys.entry("eos_id").or_insert(Value::from(demo::EOS));
    }
    let config = LoaderConfig::from_value(Value::Object(keys)).with_context(|| file.context())?;
    let mut schedule_config = schedule
        .config_over(file.schedule.as_ref(), |defaults| {
            if demo && schedule.min.is_none() && schedule.max.is_none() {
                // The demo's default: 64 -> 1024 in steps of 64.
                for (key, value) in [("min", 64), ("max", 1024), ("step", 64)] {
                    if defaults.contains_key(key) {
                        defaults.insert(key.into(), Value::from(value));
                    }
                }
            }
        })
        .with_context(|| file.context())?;
    let mut catalog = None;
    let sized = schedule.sets_total(file.schedule.as_ref());
    if mixture && !sized && schedule_config.unit() == ProgressUnit::Steps {
        // A mixture has no epoch to size the schedule by: its length is the step limit.
        let Some(steps) = config.epochs().max_steps() else {
            anyhow::bail!(
                "a mixture runs until --max-steps or --max-tokens: give --max-steps, or the schedule's --total and a limit"
            );
        };
        schedule_config = schedule_config.with_total(steps);
    } else if let Some(total) = resumed
        .and_then(LoaderState::schedule_total)
        .filter(|_| !sized && schedule_config.unit() == ProgressUnit::Steps)
    {
        // The epoch's steps depend on the number of ranks: a resume on another number (an
        // elastic one) keeps the length the checkpoint was taken with.
        note!("schedule total: {total} steps, the checkpoint's; --total sets it");
        schedule_config = schedule_config.with_total(total);
    } else if !sized && schedule_config.unit() == ProgressUnit::Steps {
        // Every footer is read once: the catalog that sizes the schedule is the loader's.
        let opened = LoaderBuilder::from_config(shards.iter().cloned(), config.clone())
            .open_catalog()
            .await?;
        let appended = opened.eos_to_append(config.warmup().eos_id())?;
        let total = epoch_total(opened.token_count(), appended, &config, &schedule_config)?;
        schedule_config = schedule_config.with_total(total);
        catalog = Some(opened);
    }
    let schedule = build_logged(&schedule_config)?;
    Ok(Resolved {
        shards,
        config: config.with_schedule(schedule_config),
        schedule,
        catalog,
    })
}

/// The length of training when none is given: the steps the run's epochs of the shards fill,
/// counted from their footers (with the EOS ids the stage appends, `appended_eos`). Said on stderr, with whether it is exact (Composer's count for
/// `max_duration = "Nep"`) or an estimate, and why.
fn epoch_total(
    count: TokenCount,
    appended_eos: Option<i64>,
    config: &LoaderConfig,
    schedule: &ScheduleConfig,
) -> anyhow::Result<u64> {
    let warmup = config
        .warmup()
        .clone()
        .with_schedule(schedule.clone())
        .build()?;
    let (tokens, counted) = count.with_eos(appended_eos.is_some());
    let plan = config.epochs();
    let (epochs, world) = (plan.epochs().max(1), plan.world_size().max(1) as u64);
    let boundary = plan.epoch_boundary_for(warmup.mode());
    let steps = warmup.epoch_steps(tokens / world, epochs, boundary);
    let mut estimate = Vec::new();
    if !counted {
        estimate.push("the footers give a lower bound on the tokens");
    }
    if !steps.exact {
        estimate.push("steps take in fewer tokens below the maximum length in this mode");
    }
    if world > 1 {
        estimate.push("ranks hold unequal shares");
    }
    let how = if estimate.is_empty() {
        "exact".to_string()
    } else {
        format!("an estimate: {}", estimate.join("; "))
    };
    let total = steps.steps.max(1);
    note!(
        "schedule total: {total} steps, {epochs} epoch(s) of {tokens} tokens at {} tokens a \
         step ({how}); --total sets it",
        warmup.shape(warmup.max_len()).tokens_in()
    );
    Ok(total)
}

/// A progress bar on stderr, drawn only when stderr is a terminal (indicatif hides it
/// otherwise): over the steps left when the run's length is known in steps (the schedule's
/// total, or `--max-steps`), else a spinner.
fn progress_bar(loader: &Loader, schedule: &Schedule) -> ProgressBar {
    let done = loader.stats().batches;
    let total = match schedule.unit() {
        ProgressUnit::Steps => schedule.total(),
        _ => None,
    };
    let bar = match total {
        Some(total) => ProgressBar::new(total.saturating_sub(done)),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {per_sec} {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Writes a checkpoint so that a crash at any moment leaves the previous one or this one.
fn write_state(path: &Path, state: &LoaderState) -> anyhow::Result<()> {
    crate::format::atomic::write_atomic(path, state.to_json()?.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

fn batch_json(b: &ScheduledBatch) -> serde_json::Value {
    let mut fields = serde_json::Map::new();
    for (name, tensor) in b.batch.iter() {
        fields.insert(name.to_string(), serde_json::json!(tensor.to_rows_i64()));
    }
    serde_json::json!({
        "step": b.step,
        "seq_len": b.seq_len,
        "rows": b.batch.rows(),
        "tokens": b.tokens,
        "fields": fields,
    })
}

pub async fn run(args: &StreamArgs) -> anyhow::Result<()> {
    let source = &args.source;
    match source.loader.mode {
        Some(ModeFlag::Decompose) => return super::decompose::run(args),
        Some(ModeFlag::Chunk) => return super::chunk::run(args),
        _ => {}
    }
    if args.decompose.any() || args.chunk.any() {
        anyhow::bail!(
            "--token-dtype, --curriculum, --cycles and --balanced belong to --mode decompose, \
             --seq-len and --batch-schedule to --mode chunk"
        );
    }
    let file = ConfigFile::read(source.config.as_ref())?;
    let state = match &args.state_in {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read state {}", path.display()))?;
            Some(
                LoaderState::from_json(&text)
                    .with_context(|| format!("invalid state file {}", path.display()))?,
            )
        }
        None => None,
    };
    let resolved = resolve(
        &source.shards,
        &file,
        &source.schedule,
        &source.loader,
        args.demo_layout,
        state.as_ref(),
    )
    .await?;
    let mut builder = resolved.builder();
    if let Some(state) = state {
        builder = builder.with_state(state);
    }
    let mut loader = builder.build().await?;
    let schedule = &resolved.schedule;
    let mut info: Box<dyn Write> = match args.emit {
        Emit::Table => Box::new(std::io::stdout().lock()),
        Emit::Jsonl => Box::new(std::io::stderr()),
    };
    let mut out = std::io::stdout().lock();
    writeln!(
        info,
        "seqwarm stream: {} shards, {} row groups, mode {}, schedule {} {} -> {} over {} of {} {}, {}",
        loader.catalog().shard_count(),
        loader.catalog().unit_count(),
        loader.warmup().mode_label(),
        schedule.kind(),
        schedule.min_len(),
        schedule.max_len(),
        schedule.warmup_end(),
        schedule.total().unwrap_or(0),
        schedule.unit(),
        loader.warmup().batch_size()
    )?;
    writeln!(
        info,
        "{:>8}  {:>7}  {:>12}  {:>9}  {:>12}  {:>11}",
        "step", "seq_len", "batch shape", "tokens", "total tokens", "tokens/s"
    )?;
    let started = Instant::now();
    let bar = progress_bar(&loader, schedule);
    let mut last: Option<ScheduledBatch> = None;
    let mut emitted = 0u64;
    let mut tokens = 0u64;
    let report = |info: &mut Box<dyn Write>,
                  b: &ScheduledBatch,
                  total: u64,
                  started: Instant|
     -> std::io::Result<()> {
        let rate = total as f64 / started.elapsed().as_secs_f64().max(1e-9);
        writeln!(
            info,
            "{:>8}  {:>7}  {:>12}  {:>9}  {:>12}  {:>11.0}",
            b.step,
            b.seq_len,
            format!("{}x{}", b.batch.rows(), b.batch.seq_len()),
            b.tokens,
            b.progress.tokens,
            rate
        )
    };
    while let Some(batch) = loader.next().await {
        let batch = batch?;
        emitted += 1;
        tokens += batch.tokens;
        if args.emit == Emit::Jsonl {
            let mut line = batch_json(&batch);
            if let Some(sources) = loader.source_stats() {
                line["sources"] = serde_json::to_value(sources)?;
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        if emitted == 1 || batch.step % args.print_every.max(1) == 0 {
            bar.suspend(|| report(&mut info, &batch, tokens, started))?;
        }
        bar.inc(1);
        if let Some(path) = &args.state_out
            && (batch.step + 1) % args.state_every.max(1) == 0
        {
            write_state(path, &loader.state())?;
        }
        last = Some(batch);
    }
    bar.finish_and_clear();
    if let Some(b) = &last
        && emitted > 1
        && b.step % args.print_every.max(1) != 0
    {
        report(&mut info, b, tokens, started)?;
    }
    if let Some(path) = &args.state_out {
        write_state(path, &loader.state())?;
    }
    let stats = loader.stats();
    let elapsed = started.elapsed().as_secs_f64();
    writeln!(
        info,
        "summary: {emitted} batches, {tokens} tokens in {elapsed:.2} s ({:.1} M tokens/s); {} documents read, {} tokens cut by the mode, {} dropped at the end, {} row groups skipped",
        tokens as f64 / elapsed.max(1e-9) / 1e6,
        stats.documents,
        stats.tokens_cut,
        stats.tokens_dropped,
        stats.units_skipped
    )?;
    if let Some(sources) = loader.source_stats() {
        let drawn: u64 = sources.iter().map(|s| s.tokens).sum();
        for s in sources {
            writeln!(
                info,
                "source {}: {} documents, {} tokens ({:.1}%), epoch {}, {} row groups skipped",
                s.name,
                s.documents,
                s.tokens,
                100.0 * s.tokens as f64 / drawn.max(1) as f64,
                s.epoch,
                s.units_skipped
            )?;
        }
    }
    if let Some(cache) = loader.cache_stats() {
        writeln!(
            info,
            "cache: {} reads from the cache, {} shards downloaded ({:.1} MB), {} corrupt entries downloaded again, {} evicted, {} reads of shards too large to cache",
            cache.hits,
            cache.downloads,
            cache.bytes_downloaded as f64 / 1e6,
            cache.refetched,
            cache.evicted,
            cache.bypassed
        )?;
    }
    for reason in loader.skipped() {
        writeln!(info, "skipped: {reason}")?;
    }
    let unread = loader.catalog().unread_columns();
    if !unread.is_empty() {
        let hint = if unread.iter().any(|c| c == "attention_mask") {
            "; --attention-mask drops the positions an attention mask marks as padding"
        } else {
            ""
        };
        writeln!(info, "columns not read: {}{hint}", unread.join(", "))?;
    }
    out.flush()?;
    Ok(())
}
