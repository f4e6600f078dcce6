//! `seqwarm stream --mode decompose`: dataset decomposition over raw token files, batch for
//! batch OLMo-core's `NumpyVSLDataLoader` on the same rank.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::loader::{
    Curriculum, DecomposeConfig, DecomposeSettings, DecomposedBatch, DecomposedLoader,
    DecomposedState, TokenDtype,
};

use super::raw_stream::{Reported, info_sink, read_state, refuse_other_flags, stream_batches};
use super::stream::StreamArgs;

/// Flags of `--mode decompose` (refused with any other mode).
#[derive(Debug, Clone, Default, Args)]
pub struct DecomposeArgs {
    /// Raw token files' id width (`--mode decompose`): uint16 or uint32. A file with a NumPy
    /// `.npy` header must agree with it; one without is read raw, whatever its name.
    #[arg(long, value_parser = clap::value_parser!(TokenDtype))]
    pub token_dtype: Option<TokenDtype>,
    /// The curriculum of `--mode decompose` [default: natural].
    #[arg(long, value_enum)]
    pub curriculum: Option<CurriculumName>,
    /// Cycles of a grow curriculum [default: 8, as OLMo-core].
    #[arg(long)]
    pub cycles: Option<u64>,
    /// The same number of batches for every length (grow curricula; drops more data).
    #[arg(long)]
    pub balanced: bool,
}

/// The curricula, by their command-line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CurriculumName {
    /// Every batch of every length, shuffled.
    Natural,
    /// Grow-P2: odds that are powers of two, short to long, per cycle.
    GrowP2,
    /// Grow-Linear: odds growing linearly, short to long, per cycle.
    GrowLinear,
}

impl DecomposeArgs {
    /// Whether any flag of decomposition was given (they mean nothing in another mode).
    pub fn any(&self) -> bool {
        self.token_dtype.is_some()
            || self.curriculum.is_some()
            || self.cycles.is_some()
            || self.balanced
    }

    fn curriculum(&self) -> anyhow::Result<Curriculum> {
        let cycles = self.cycles.unwrap_or(8);
        let balanced = self.balanced;
        Ok(match self.curriculum.unwrap_or(CurriculumName::Natural) {
            CurriculumName::Natural => {
                if self.cycles.is_some() || balanced {
                    bail!(
                        "--cycles and --balanced belong to the grow curricula (grow-p2, grow-linear), not natural"
                    );
                }
                Curriculum::Natural
            }
            CurriculumName::GrowP2 => Curriculum::GrowP2 { cycles, balanced },
            CurriculumName::GrowLinear => Curriculum::GrowLinear { cycles, balanced },
        })
    }
}

/// The settings from the flags: every one `decompose` needs, and none it would ignore.
fn settings(args: &StreamArgs) -> anyhow::Result<(DecomposeSettings, u64)> {
    let source = &args.source;
    let loader = &source.loader;
    let schedule = &source.schedule;
    refuse_other_flags(
        args,
        "decompose",
        &[
            "eos_id",
            "batch_tokens",
            "seed",
            "rank",
            "world_size",
            "epochs",
            "vocab_size",
            "max_steps",
        ],
        &["min", "max"],
        "its curriculum fixes every step's length and rows (see docs/decomposition.md)",
    )?;
    if args.chunk.seq_len.is_some() {
        bail!("--seq-len belongs to --mode chunk, not --mode decompose");
    }
    if args.chunk.batch_schedule.is_some() {
        // OLMo-core's loader keeps its bucket table from the first batch size: a change would
        // mix two tables in one epoch.
        bail!(
            "--batch-schedule applies to --mode chunk only: OLMo-core's decomposition loader \
             keeps the bucket table of its first batch size"
        );
    }
    let settings = args.decompose.settings(&DecomposeFlags {
        eos_id: loader.eos_id,
        min: schedule.min,
        max: schedule.max,
        batch_tokens: loader.batch_tokens,
        seed: loader.seed,
        rank: loader.rank,
        world_size: loader.world_size,
        vocab_size: loader.vocab_size,
    })?;
    Ok((settings, loader.epochs.unwrap_or(1)))
}

/// The flags of a decomposition that `stream` and `plan` share with other modes.
pub struct DecomposeFlags {
    /// `--eos-id`.
    pub eos_id: Option<i64>,
    /// `--min`.
    pub min: Option<u64>,
    /// `--max`.
    pub max: Option<u64>,
    /// `--batch-tokens`.
    pub batch_tokens: Option<usize>,
    /// `--seed`.
    pub seed: Option<u64>,
    /// `--rank`.
    pub rank: Option<usize>,
    /// `--world-size`.
    pub world_size: Option<usize>,
    /// `--vocab-size`.
    pub vocab_size: Option<u64>,
}

impl DecomposeArgs {
    /// The settings from these flags and the shared ones: every one a decomposition needs.
    pub fn settings(&self, flags: &DecomposeFlags) -> anyhow::Result<DecomposeSettings> {
        let token_dtype = self.token_dtype.context(
            "--mode decompose needs --token-dtype uint16 or uint32 (the files carry no width)",
        )?;
        let eos_id = flags.eos_id.context(
            "--mode decompose needs --eos-id: the id that ends every document in the files",
        )?;
        let eos_id = u32::try_from(eos_id).context("--eos-id must be a token id in [0, 2^32)")?;
        let batch_tokens = flags
            .batch_tokens
            .context("--mode decompose needs --batch-tokens: tokens per step on each rank")?;
        let max = flags
            .max
            .context("--mode decompose needs --max: the longest piece, a power of 2")?;
        Ok(DecomposeSettings {
            token_dtype,
            eos_id,
            // OLMo-core's default minimum.
            min: flags.min.unwrap_or(256),
            max,
            vocab_size: flags.vocab_size,
            run: DecomposeConfig {
                curriculum: self.curriculum()?,
                batch_tokens: batch_tokens as u64,
                seed: flags.seed.unwrap_or(0),
                rank: flags.rank.unwrap_or(0) as u64,
                world_size: flags.world_size.unwrap_or(1) as u64,
            },
        })
    }
}

fn reported(batch: &DecomposedBatch) -> Reported {
    let len = batch.seq_len as usize;
    let rows: Vec<&[i64]> = batch.input_ids.chunks(len.max(1)).collect();
    Reported {
        step: batch.step,
        tokens: batch.input_ids.len() as u64,
        columns: format!(
            "{:>5}  {:>7}  {:>12}",
            batch.epoch,
            batch.seq_len,
            format!("{}x{}", batch.pieces.len(), batch.seq_len)
        ),
        json: serde_json::json!({
            "step": batch.step,
            "epoch": batch.epoch,
            "epoch_step": batch.epoch_step,
            "seq_len": batch.seq_len,
            "rows": batch.pieces.len(),
            "tokens": batch.input_ids.len(),
            "pieces": batch.pieces,
            "fields": {"input_ids": rows},
        }),
    }
}

/// Runs `stream --mode decompose`.
pub fn run(args: &StreamArgs) -> anyhow::Result<()> {
    let (settings, epochs) = settings(args)?;
    let started = Instant::now();
    let mut loader = DecomposedLoader::open(&args.source.shards, settings, epochs)?;
    let indexed = started.elapsed().as_secs_f64();
    if let Some(path) = &args.state_in {
        let state: DecomposedState = read_state(path)?;
        loader = loader.with_state(&state)?;
    }
    let mut info = info_sink(args);
    let plan = loader.decomposition();
    let index = plan.index();
    let config = plan.config();
    writeln!(
        info,
        "seqwarm stream: {} token files, {} tokens, {} documents -> {} pieces of {}..={} in {indexed:.2} s; mode decompose, curriculum {}, {} tokens per step on rank {} of {}, {} steps per epoch, {} epochs",
        loader.files().len(),
        loader.files().tokens(),
        index.documents(),
        index.len(),
        index.min(),
        index.max(),
        config.curriculum.name(),
        config.batch_tokens,
        config.rank,
        config.world_size,
        plan.steps_per_epoch(),
        loader.epochs(),
    )?;
    for (&(len, pieces), &(_, batches)) in index
        .pieces_per_length()
        .iter()
        .zip(plan.batches_per_length())
    {
        writeln!(
            info,
            "  length {len:>6}: {pieces:>9} pieces, {batches:>6} batches per epoch"
        )?;
    }
    writeln!(
        info,
        "  tokens no batch uses per epoch: {} of {} ({} under the minimum or after a file's last EOS)",
        plan.tokens_unused_per_epoch(),
        loader.files().tokens(),
        index.tokens_dropped()
    )?;
    stream_batches(
        args,
        &mut info,
        started,
        &mut loader,
        &format!(
            "{:>5}  {:>7}  {:>12}  {:>12}",
            "epoch", "seq_len", "batch shape", "total tokens"
        ),
        |loader| Some(loader.next()?.map(|b| reported(&b)).map_err(Into::into)),
        DecomposedLoader::state,
    )
}
