//! `seqwarm plan FILES --mode decompose`: a decomposition's plan before training: the bucket
//! table (pieces and batches per length), the steps per epoch, the tokens the minimum drops,
//! the shapes a compiled model sees, and a plot of one epoch's lengths step by step.

use std::io::Write;

use anyhow::{Context, bail};
use plotters::prelude::*;

use crate::loader::DecomposedLoader;

use super::decompose::DecomposeFlags;
use super::output::note;
use super::plan::{Format, PlanArgs, plot_error};

/// Runs `plan` over raw token files.
pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    if args.mode.as_deref() != Some("decompose") {
        bail!(
            "token files, --token-dtype, --curriculum, --cycles, --balanced, --eos-id, --seed and \
             --world-size plan a decomposition: give --mode decompose (and the files)"
        );
    }
    if args.files.is_empty() {
        bail!("--mode decompose plans over raw token files: give their files or directories");
    }
    let schedule = &args.schedule;
    let ignored = [
        ("--schedule-config", schedule.schedule_config.is_some()),
        ("--kind", schedule.kind.is_some()),
        ("--unit", schedule.unit.is_some()),
        ("--total", schedule.total.is_some()),
        ("--duration", schedule.duration.is_some()),
        ("--step", schedule.step.is_some()),
        ("--shapes", schedule.shapes.is_some()),
        ("--batch-rows", args.batch_rows.is_some()),
    ];
    if let Some((flag, _)) = ignored.iter().find(|(_, given)| *given) {
        bail!(
            "{flag} does not apply to --mode decompose: its curriculum fixes every step's length \
             and rows (see docs/decomposition.md)"
        );
    }
    let settings = args.decompose.settings(&DecomposeFlags {
        eos_id: args.eos_id,
        min: schedule.min,
        max: schedule.max,
        batch_tokens: args.batch_tokens,
        seed: args.seed,
        rank: None,
        world_size: args.world_size,
        vocab_size: args.vocab_size,
    })?;
    let loader = DecomposedLoader::open(&args.files, settings, 1)?;
    let plan = loader.decomposition();
    let index = plan.index();
    let config = plan.config();
    let world = config.world_size.max(1);
    let rows: Vec<(u64, u64, u64, u64)> = index
        .pieces_per_length()
        .iter()
        .zip(plan.batches_per_length())
        .map(|(&(len, pieces), &(_, batches))| (len, pieces, batches, config.batch_tokens / len))
        .collect();
    let shapes = rows.iter().filter(|r| r.2 > 0).count();
    let steps = plan.steps_per_epoch();
    let tokens = loader.files().tokens();
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            let lengths: Vec<serde_json::Value> = rows
                .iter()
                .map(|&(length, pieces, batches, rows)| {
                    serde_json::json!({"length": length, "pieces": pieces, "batches": batches, "rows_per_rank": rows})
                })
                .collect();
            let value = serde_json::json!({
                "curriculum": config.curriculum.name(),
                "files": loader.files().len(),
                "tokens": tokens,
                "documents": index.documents(),
                "batch_tokens_per_rank": config.batch_tokens,
                "world_size": world,
                "lengths": lengths,
                "steps_per_epoch": steps,
                "shapes": shapes,
                "tokens_dropped": index.tokens_dropped(),
                "tokens_unused_per_epoch": plan.tokens_unused_per_epoch(),
            });
            serde_json::to_writer_pretty(&mut out, &value)?;
            writeln!(out)?;
        }
        Format::Table => {
            writeln!(
                out,
                "decomposition: {} files, {tokens} tokens, {} documents; curriculum {}, {} tokens per step on each of {world} ranks, seed {}",
                loader.files().len(),
                index.documents(),
                config.curriculum.name(),
                config.batch_tokens,
                config.seed,
            )?;
            writeln!(
                out,
                "{:>8}  {:>10}  {:>14}  {:>16}  {:>13}  {:>7}",
                "length", "pieces", "piece tokens", "batches / epoch", "rows per rank", "steps"
            )?;
            for &(len, pieces, batches, rows) in &rows {
                let share = 100.0 * batches as f64 / steps.max(1) as f64;
                writeln!(
                    out,
                    "{len:>8}  {pieces:>10}  {:>14}  {batches:>16}  {rows:>13}  {share:>6.1}%",
                    pieces * len
                )?;
            }
            let unused = plan.tokens_unused_per_epoch();
            writeln!(
                out,
                "{steps} steps per epoch; {shapes} shapes (a compiled model compiles {shapes} graphs); \
                 per epoch {unused} of {tokens} tokens in no batch ({:.2}%): {} under the minimum or \
                 after a file's last EOS, {} in pieces the batches leave over",
                100.0 * unused as f64 / tokens.max(1) as f64,
                index.tokens_dropped(),
                unused - index.tokens_dropped(),
            )?;
        }
    }
    if !args.no_svg {
        plot(&loader, &args.svg)?;
        note!("plot written to {}", args.svg.display());
    }
    Ok(())
}

/// Epoch 1's lengths, step by step (the curriculum's shape), on a log2 axis.
fn plot(loader: &DecomposedLoader, path: &std::path::Path) -> anyhow::Result<()> {
    let plan = loader.decomposition();
    let epoch = plan.epoch(0)?;
    let points: Vec<(u64, u32)> = (0..epoch.steps())
        .filter_map(|i| Some((i, epoch.step(i)?.length.trailing_zeros())))
        .collect();
    let index = plan.index();
    let (low, high) = (index.min().trailing_zeros(), index.max().trailing_zeros());
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let caption = format!(
        "seqwarm decomposition: {}, epoch 1",
        plan.config().curriculum.name()
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..epoch.steps().max(1), low.saturating_sub(1)..high + 1)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("sequence length")
        .y_label_formatter(&|e| format!("{}", 1u64 << e))
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(points.into_iter().map(|p| Circle::new(p, 2, BLUE.filled())))
        .map_err(plot_error)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
