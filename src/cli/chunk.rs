//! `seqwarm stream --mode chunk`: raw token files cut into fixed-length instances, batch for
//! batch OLMo-core's `NumpyFSLDataLoader` on the same rank, under its batch-size schedule
//! (`--batch-schedule`) with the learning-rate factor on every batch.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use crate::loader::{
    BatchSizeSchedule, ChunkConfig, ChunkSettings, ChunkedBatch, ChunkedLoader, ChunkedState,
    DurationUnit,
};

use super::raw_stream::{Reported, info_sink, read_state, refuse_other_flags, stream_batches};
use super::stream::StreamArgs;

/// Flags of `--mode chunk` (refused with any other mode).
#[derive(Debug, Clone, Default, Args)]
pub struct ChunkArgs {
    /// The length of every row of `--mode chunk` (OLMo-core's `sequence_length`).
    #[arg(long)]
    pub seq_len: Option<u64>,
    /// Global batch sizes over training, OLMo-core's `BatchSizeSchedulerCallback`:
    /// `AT:TOKENS,...`, tokens on all ranks, the first at 0; each change an integer factor.
    /// The learning-rate factor `sqrt(new / old)` rides on every batch.
    #[arg(long, value_name = "AT:TOKENS,...", value_parser = schedule_points)]
    pub batch_schedule: Option<SchedulePoints>,
    /// What `AT` of `--batch-schedule` counts: steps, tokens (all ranks) or epochs [default:
    /// steps].
    #[arg(long, requires = "batch_schedule", value_parser = clap::value_parser!(DurationUnit))]
    pub batch_schedule_unit: Option<DurationUnit>,
}

/// The points of `--batch-schedule`, `(at, global batch tokens)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulePoints(Vec<(u64, u64)>);

fn schedule_points(text: &str) -> Result<SchedulePoints, String> {
    text.split(',')
        .map(|point| {
            let bad = || format!("{point:?}: expected AT:TOKENS (e.g. 0:1048576,1000:2097152)");
            let (at, tokens) = point.trim().split_once(':').ok_or_else(bad)?;
            Ok((
                at.trim().parse().map_err(|_| bad())?,
                tokens.trim().parse().map_err(|_| bad())?,
            ))
        })
        .collect::<Result<_, _>>()
        .map(SchedulePoints)
}

impl ChunkArgs {
    /// Whether any flag of the chunk mode was given (they mean nothing in another mode).
    pub fn any(&self) -> bool {
        self.seq_len.is_some() || self.batch_schedule.is_some()
    }
}

/// The settings from the flags: every one `chunk` needs, and none it would ignore.
fn settings(args: &StreamArgs) -> anyhow::Result<(ChunkSettings, u64)> {
    let source = &args.source;
    let loader = &source.loader;
    let decompose = &args.decompose;
    refuse_other_flags(
        args,
        "chunk",
        &[
            "batch_tokens",
            "seed",
            "rank",
            "world_size",
            "epochs",
            "vocab_size",
            "max_steps",
        ],
        &[],
        "every row is --seq-len tokens cut from the files as they lie, across documents, \
         shuffled per epoch (see docs/decomposition.md)",
    )?;
    let decompose_only = [
        ("--curriculum", decompose.curriculum.is_some()),
        ("--cycles", decompose.cycles.is_some()),
        ("--balanced", decompose.balanced),
    ];
    if let Some((flag, _)) = decompose_only.iter().find(|(_, given)| *given) {
        bail!("{flag} belongs to --mode decompose, not --mode chunk");
    }
    let token_dtype = decompose
        .token_dtype
        .context("--mode chunk needs --token-dtype uint16 or uint32 (the files carry no width)")?;
    let seq_len = args
        .chunk
        .seq_len
        .context("--mode chunk needs --seq-len: the length of every row")?;
    let world_size = loader.world_size.unwrap_or(1) as u64;
    let batch_schedule = match &args.chunk.batch_schedule {
        None => None,
        Some(points) => {
            let unit = args
                .chunk
                .batch_schedule_unit
                .unwrap_or(DurationUnit::Steps);
            Some(BatchSizeSchedule::new(unit, points.0.clone())?)
        }
    };
    let batch_tokens = match (loader.batch_tokens, &batch_schedule) {
        (Some(tokens), _) => tokens as u64,
        // Without a configured batch, the schedule's first one is it (the rate's factor is 1).
        (None, Some(schedule)) => schedule.points()[0].1 / world_size.max(1),
        (None, None) => bail!("--mode chunk needs --batch-tokens: tokens per step on each rank"),
    };
    let settings = ChunkSettings {
        token_dtype,
        vocab_size: loader.vocab_size,
        run: ChunkConfig {
            seq_len,
            batch_tokens,
            seed: loader.seed.unwrap_or(0),
            rank: loader.rank.unwrap_or(0) as u64,
            world_size,
            batch_schedule,
        },
    };
    Ok((settings, loader.epochs.unwrap_or(1)))
}

fn reported(batch: &ChunkedBatch) -> Reported {
    let rows: Vec<&[i64]> = batch.input_ids.chunks(batch.seq_len as usize).collect();
    Reported {
        step: batch.step,
        tokens: batch.input_ids.len() as u64,
        columns: format!(
            "{:>5}  {:>12}  {:>12}  {:>8.4}",
            batch.epoch,
            format!("{}x{}", batch.instances.len(), batch.seq_len),
            batch.global_batch_tokens,
            batch.lr_multiplier
        ),
        json: serde_json::json!({
            "step": batch.step,
            "epoch": batch.epoch,
            "epoch_step": batch.epoch_step,
            "seq_len": batch.seq_len,
            "rows": batch.instances.len(),
            "tokens": batch.input_ids.len(),
            "global_batch_tokens": batch.global_batch_tokens,
            "lr_multiplier": batch.lr_multiplier,
            "instances": batch.instances,
            "fields": {"input_ids": rows},
        }),
    }
}

/// Runs `stream --mode chunk`.
pub fn run(args: &StreamArgs) -> anyhow::Result<()> {
    let (settings, epochs) = settings(args)?;
    let started = Instant::now();
    let mut loader = ChunkedLoader::open(&args.source.shards, settings, epochs)?;
    if let Some(path) = &args.state_in {
        let state: ChunkedState = read_state(path)?;
        loader = loader.with_state(&state)?;
    }
    let mut info = info_sink(args);
    let chunks = loader.chunks();
    let config = chunks.config();
    let schedule = config.batch_schedule.as_ref().map_or_else(
        || "none".to_string(),
        |s| {
            let points: Vec<String> = s.points().iter().map(|(a, t)| format!("{a}:{t}")).collect();
            format!("{} ({:?})", points.join(","), s.unit()).to_lowercase()
        },
    );
    writeln!(
        info,
        "seqwarm stream: {} token files, {} tokens -> {} instances of {}; mode chunk, {} tokens per step on rank {} of {} as configured, batch schedule {schedule}, {} epochs",
        loader.files().len(),
        loader.files().tokens(),
        chunks.instances(),
        config.seq_len,
        config.batch_tokens,
        config.rank,
        config.world_size,
        loader.epochs(),
    )?;
    stream_batches(
        args,
        &mut info,
        started,
        &mut loader,
        &format!(
            "{:>5}  {:>12}  {:>12}  {:>8}  {:>12}",
            "epoch", "batch shape", "global batch", "lr x", "total tokens"
        ),
        |loader| Some(loader.next()?.map(|b| reported(&b)).map_err(Into::into)),
        ChunkedLoader::state,
    )
}
