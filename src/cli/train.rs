//! `seqwarm train` (feature `train`): a GPT trained with tch from the warmup stream, with the
//! warm pass, held-out evaluation at the maximum length, checkpoints and plots.

use std::path::{Path, PathBuf};

use crate::loader::{BatchSize, LoaderBuilder, Mode, WarmupConfig};
use crate::schedule::{ProgressUnit, Schedule, ScheduleConfig};
use crate::stage::shape::tokens_over_steps;
use anyhow::Context;
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use seqwarm_trainer::tch;
use seqwarm_trainer::{
    GptConfig, ModelInput, Positions, RunOptions, StepRecord, Trainer, TrainerConfig,
    batch_to_input, kind_of, parse_device,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config_file::ConfigFile;
use super::flags::given;
use super::output::{note, outln};
use super::plan::plot_error;
use super::stream::{DemoLayout, SourceArgs, resolve};

pub const EXAMPLES: &str = "Examples:
  seqwarm train data/train/ --eval-shards data/val/ --vocab-size 50257 --max-steps 2000 \\
      --min 64 --max 512 --duration 0.3 --batch-rows 16 --run-dir runs/slw
  seqwarm train data/train/ --vocab-size 257 --kind constant --max 512 --run-dir runs/baseline
  seqwarm train --config train.toml --resume        # continue runs/... from its checkpoint
  seqwarm train data/ --vocab-size 257 --device cuda --no-warm-pass";

/// Position scheme flag values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionsArg {
    /// Learned position embeddings (GPT-2).
    Learned,
    /// ALiBi attention biases (train short, evaluate long).
    Alibi,
}

/// Trainer flags. Each overrides the same key of the config file's `[train]` table; a flag
/// left out there keeps the library's default (`--help` shows it).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainOptions {
    /// Held-out shards, evaluated at the maximum length.
    #[arg(long, num_args = 1..)]
    pub eval_shards: Vec<String>,
    /// Evaluate every N steps (and at the end) [default: 0, only at the end].
    #[arg(long)]
    pub eval_every: Option<u64>,
    /// Held-out batches per evaluation [default: 8].
    #[arg(long)]
    pub eval_batches: Option<u64>,
    /// Rows per held-out batch [default: the training rows at the maximum length].
    #[arg(long)]
    pub eval_rows: Option<usize>,
    /// Transformer blocks.
    #[arg(long)]
    pub layers: Option<i64>,
    /// Attention heads.
    #[arg(long)]
    pub heads: Option<i64>,
    /// Model width.
    #[arg(long)]
    pub width: Option<i64>,
    /// Position scheme.
    #[arg(long, value_enum)]
    pub positions: Option<PositionsArg>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Final learning rate [default: lr / 10 when --lr is given].
    #[arg(long)]
    pub min_lr: Option<f64>,
    /// Tokens of learning-rate warmup [default: 2% of the horizon].
    #[arg(long)]
    pub lr_warmup_tokens: Option<u64>,
    /// Tokens over which the rate decays [default: the tokens the run will train on].
    #[arg(long)]
    pub lr_horizon_tokens: Option<u64>,
    /// AdamW weight decay on matrices.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Clip gradients to this global norm; 0 turns clipping off.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// cpu, cuda, cuda:N or auto [default: auto].
    #[arg(long)]
    pub device: Option<String>,
    /// Skip the warm pass (for measuring what it buys).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_warm_pass: Option<bool>,
    /// bf16 autocast on CUDA.
    #[arg(long)]
    pub autocast: Option<bool>,
    /// libtorch intra-op threads [default: libtorch's choice].
    #[arg(long)]
    pub threads: Option<i32>,
    /// Run directory for metrics.jsonl, the checkpoint and plots [default: runs/train].
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    /// Continue from the run directory's checkpoint.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub resume: Option<bool>,
    /// Read the loss back and log every N steps [default: 1].
    #[arg(long)]
    pub log_every: Option<u64>,
    /// Checkpoint every N steps (and at the end) [default: 0, only at the end].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Seed of the model's initialization [default: the loader seed].
    #[arg(long)]
    pub model_seed: Option<i64>,
}

impl TrainOptions {
    /// The `[train]` table with these flags over it.
    fn over(&self, table: Option<&Map<String, Value>>) -> anyhow::Result<TrainOptions> {
        let mut map = table.cloned().unwrap_or_default();
        map.extend(given(self));
        Ok(serde_json::from_value(Value::Object(map))?)
    }
}

/// The library default of each model and optimizer flag, where it lives in a serialized
/// [`TrainerConfig`].
const TRAIN_DEFAULTS: [(&str, &str); 8] = [
    ("layers", "/model/layers"),
    ("heads", "/model/heads"),
    ("width", "/model/width"),
    ("positions", "/model/positions"),
    ("lr", "/lr/peak_lr"),
    ("weight_decay", "/optimizer/weight_decay"),
    ("clip_norm", "/clip_norm"),
    ("autocast", "/autocast"),
];

/// Appends the library's model and optimizer defaults to the help of their flags.
pub fn annotate_defaults(command: clap::Command) -> clap::Command {
    let defaults =
        serde_json::to_value(TrainerConfig::new(GptConfig::new(1, 1), 0)).unwrap_or(Value::Null);
    let mut command = command;
    for (id, pointer) in TRAIN_DEFAULTS {
        if let Some(value) = defaults.pointer(pointer) {
            let shown = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            command = command.mut_arg(id, |arg| {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                arg.help(format!("{help} [default: {shown}]"))
            });
        }
    }
    command
}

/// Arguments of `seqwarm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub train: TrainOptions,
}

/// Tokens the run will train on, from the schedule and the step limit (or the token limit),
/// by the shape rule.
fn horizon_tokens(
    schedule: &Schedule,
    warmup: &WarmupConfig,
    max_tokens: Option<u64>,
    steps: Option<u64>,
) -> Option<u64> {
    if let Some(tokens) = max_tokens {
        return Some(tokens);
    }
    tokens_over_steps(schedule, warmup.mode(), warmup.batch_size(), steps?)
}

/// Held-out batches at the maximum length, read once and kept in memory.
async fn eval_batches(
    shards: &[String],
    max_len: u64,
    rows: usize,
    batches: u64,
    training: &crate::loader::LoaderConfig,
) -> anyhow::Result<Vec<ModelInput>> {
    let warmup = WarmupConfig::new(ScheduleConfig::constant(max_len))
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(rows))
        .with_eos_id(training.warmup().eos_id());
    let mut stream = LoaderBuilder::new(shards.iter().cloned(), warmup)
        .with_shuffle_units(false)
        .with_epochs(Some(1))
        .with_max_steps(Some(batches))
        .with_vocab_size(training.vocab_size())
        .build()
        .await
        .context("held-out shards")?;
    let mut out = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.context("held-out shards")?;
        out.push(batch_to_input(batch.step, &batch.batch, tch::Device::Cpu)?);
    }
    if out.is_empty() {
        anyhow::bail!("the held-out shards {shards:?} hold less than one {rows}x{max_len} batch");
    }
    Ok(out)
}

pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let source = &args.source;
    let file = ConfigFile::read(source.config.as_ref())?;
    let options = args
        .train
        .over(file.train.as_ref())
        .with_context(|| format!("{} ([train] table)", file.context()))?;
    let mut schedule_args = source.schedule.clone();
    // A training run's schedule spans the run: with a step limit and no explicit total, the
    // total is that limit.
    let max_steps = source
        .loader
        .max_steps
        .or_else(|| file.loader.get("max_steps").and_then(Value::as_u64));
    if !schedule_args.sets_total(file.schedule.as_ref()) {
        schedule_args.total = max_steps;
    }
    // One runtime for everything: resolving the shards, the held-out batches, and the loader
    // reading ahead of training.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let resolved = runtime.block_on(resolve(
        &source.shards,
        &file,
        &schedule_args,
        &source.loader,
        DemoLayout::Flat,
        None,
    ))?;
    let config = &resolved.config;
    let schedule = resolved.schedule.clone();
    let Some(vocab) = config.vocab_size() else {
        anyhow::bail!("--vocab-size is required: the model's embedding is sized by it");
    };
    let max_len = schedule.max_len();
    let warmup = config.warmup().build()?;
    if warmup.mode().is_packing() && !warmup.pack_fields().labels {
        // Without labels the trainer takes input_ids as its targets: padding and each
        // document's first token (predicted from the previous document) would be trained on.
        anyhow::bail!(
            "--pack-fields must include labels for train: they carry -100 on padding and at \
             document boundaries, which input_ids alone cannot"
        );
    }
    let rows_at_max = warmup
        .shape(usize::try_from(max_len).unwrap_or(usize::MAX))
        .rows_out;
    let steps = config
        .epochs()
        .max_steps()
        .or(if schedule.unit() == ProgressUnit::Steps {
            schedule.total()
        } else {
            None
        });
    let horizon = options
        .lr_horizon_tokens
        .or_else(|| {
            horizon_tokens(
                &schedule,
                config.warmup(),
                config.epochs().max_tokens(),
                steps,
            )
        })
        .context("cannot tell how many tokens the run trains on; give --lr-horizon-tokens")?;

    if let Some(threads) = options.threads {
        tch::set_num_threads(threads);
    }
    let device = parse_device(options.device.as_deref().unwrap_or("auto"))?;
    let mut model = GptConfig::new(vocab as i64, max_len as i64);
    if let Some(layers) = options.layers {
        model = model.with_layers(layers);
    }
    if let Some(heads) = options.heads {
        model = model.with_heads(heads);
    }
    if let Some(width) = options.width {
        model = model.with_width(width);
    }
    if let Some(positions) = options.positions {
        model = model.with_positions(match positions {
            PositionsArg::Alibi => Positions::Alibi,
            PositionsArg::Learned => Positions::Learned,
        });
    }
    let loader_seed = config.epochs().seed();
    let mut config = TrainerConfig::new(model, horizon);
    config.seed = options.model_seed.unwrap_or(loader_seed as i64);
    if let Some(lr) = options.lr {
        config.lr.peak_lr = lr;
        config.lr.min_lr = lr / 10.0;
    }
    if let Some(min) = options.min_lr {
        config.lr.min_lr = min;
    }
    if let Some(tokens) = options.lr_warmup_tokens {
        config.lr.warmup_tokens = tokens.max(1);
    }
    if let Some(wd) = options.weight_decay {
        config.optimizer.weight_decay = wd;
    }
    match options.clip_norm {
        Some(n) if n <= 0.0 => config.clip_norm = None,
        Some(n) => config.clip_norm = Some(n),
        None => {}
    }
    if let Some(autocast) = options.autocast {
        config.autocast = autocast;
    }

    let eval = if options.eval_shards.is_empty() {
        note!("no --eval-shards: the run reports training loss only");
        Vec::new()
    } else {
        let rows = options.eval_rows.unwrap_or(rows_at_max);
        runtime.block_on(eval_batches(
            &options.eval_shards,
            max_len,
            rows,
            options.eval_batches.unwrap_or(8),
            &resolved.config,
        ))?
    };

    let builder = resolved.builder();
    let mut trainer = Trainer::new(config.clone(), device, kind_of(crate::batcher::DType::I32))?;
    let run_dir = options
        .run_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/train"));
    let mut run_options = RunOptions::new(&run_dir);
    run_options.log_every = options.log_every.unwrap_or(1);
    run_options.eval_every = if eval.is_empty() {
        None
    } else {
        Some(options.eval_every.filter(|&n| n > 0).unwrap_or(u64::MAX))
    };
    run_options.checkpoint_every = options.checkpoint_every.filter(|&n| n > 0);
    run_options.resume = options.resume.unwrap_or(false);
    run_options.warm_pass =
        (!options.no_warm_pass.unwrap_or(false)).then_some((rows_at_max as i64, max_len as i64));

    note!(
        "seqwarm train: {} parameters ({} layers, {} heads, width {}, {:?} positions) on {:?}; \
         schedule {} {} -> {} over {} of {} {}; lr {} -> {} over {} tokens; run dir {}",
        config.model.parameter_count(),
        config.model.layers,
        config.model.heads,
        config.model.width,
        config.model.positions,
        device,
        schedule.kind(),
        schedule.min_len(),
        max_len,
        schedule.warmup_end(),
        schedule.total().unwrap_or(0),
        schedule.unit(),
        config.lr.peak_lr,
        config.lr.min_lr,
        horizon,
        run_dir.display()
    );
    let bar = match steps {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] step {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let summary = seqwarm_trainer::run(
        &mut trainer,
        runtime.handle(),
        builder,
        &eval,
        &run_options,
        |r| {
            bar.set_position(r.step + 1);
            let rate = r.tokens as f64 / r.elapsed_s.max(1e-9);
            let eval = r
                .eval_loss
                .map(|e| format!(" eval {e:.4}"))
                .unwrap_or_default();
            bar.set_message(format!(
                "len {} loss {:.4}{eval} {:.0} tok/s",
                r.seq_len, r.loss, rate
            ));
        },
    )?;
    bar.finish();
    if let Some(warm) = &summary.warm {
        note!(
            "warm pass: {}x{} in {:.2}s, memory {}",
            warm.rows,
            warm.seq_len,
            warm.seconds,
            serde_json::to_string(&warm.memory)?
        );
    }
    outln!(
        "trained {} steps, {} tokens in {:.1}s ({:.0} tokens/s); final loss {}; held-out loss {}",
        summary.steps,
        summary.tokens,
        summary.elapsed_s,
        summary.tokens as f64 / summary.elapsed_s.max(1e-9),
        summary
            .final_loss
            .map_or_else(|| "-".into(), |l| format!("{l:.4}")),
        summary
            .final_eval_loss
            .map_or_else(|| "-".into(), |l| format!("{l:.4}")),
    )?;
    let records = seqwarm_trainer::read_metrics(&run_dir.join("metrics.jsonl"))?;
    plot_runs(&run_dir, &records)?;
    outln!(
        "metrics: {}; plots: loss_vs_tokens.svg, loss_vs_time.svg, seq_len.svg in {}",
        run_dir.join("metrics.jsonl").display(),
        run_dir.display()
    )?;
    Ok(())
}

fn plot_runs(dir: &Path, records: &[StepRecord]) -> anyhow::Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let train = |x: fn(&StepRecord) -> f64| -> Vec<(f64, f64)> {
        records.iter().map(|r| (x(r), r.loss)).collect()
    };
    let held_out = |x: fn(&StepRecord) -> f64| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| r.eval_loss.map(|e| (x(r), e)))
            .collect()
    };
    let tokens = |r: &StepRecord| r.tokens as f64;
    let seconds = |r: &StepRecord| r.elapsed_s;
    line_plot(
        &dir.join("loss_vs_tokens.svg"),
        "loss against tokens",
        "tokens",
        "loss",
        &[("train", train(tokens)), ("held-out", held_out(tokens))],
    )?;
    line_plot(
        &dir.join("loss_vs_time.svg"),
        "loss against wall-clock",
        "training seconds",
        "loss",
        &[("train", train(seconds)), ("held-out", held_out(seconds))],
    )?;
    let lengths: Vec<(f64, f64)> = records
        .iter()
        .map(|r| (r.step as f64, r.seq_len as f64))
        .collect();
    line_plot(
        &dir.join("seq_len.svg"),
        "sequence length against step",
        "step",
        "sequence length",
        &[("seq_len", lengths)],
    )
}

/// Draws named series on one chart (empty series are left out).
pub fn line_plot(
    path: &Path,
    caption: &str,
    x_label: &str,
    y_label: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> anyhow::Result<()> {
    let points = series.iter().flat_map(|(_, s)| s.iter());
    let (mut x_max, mut y_min, mut y_max) = (0f64, f64::INFINITY, f64::NEG_INFINITY);
    for &(x, y) in points {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    if !y_min.is_finite() || !y_max.is_finite() {
        return Ok(());
    }
    let pad = ((y_max - y_min) * 0.05).max(1e-3);
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max.max(1e-9), (y_min - pad)..(y_max + pad))
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(plot_error)?;
    let colors = [BLUE, RED, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (name, data)) in series.iter().enumerate() {
        if data.is_empty() {
            continue;
        }
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(data.iter().copied(), color))
            .map_err(plot_error)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()
        .map_err(plot_error)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
