//! `seqwarm plan`: the schedule as a table of change points and an SVG plot.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use plotters::prelude::*;
use seqwarm::schedule::{ChangePoint, Schedule};

use super::schedule_args::ScheduleArgs;

pub const EXAMPLES: &str = "Examples:
  seqwarm plan                                    # built-in default: linear 8 -> 1024 over 30% of 10000 steps
  seqwarm plan --kind composer --min 64 --max 1024 --step 64 --duration 0.3 --total 20000
  seqwarm plan --kind fixed_root --root-degree 2 --total-curriculum-step 5000 --svg root.svg
  seqwarm plan --schedule-config schedule.toml --format json";

/// Output format of the change-point table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text columns.
    Table,
    /// One JSON document with the config and the change points.
    Json,
}

/// Arguments of `seqwarm plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Where to write the SVG plot.
    #[arg(long, default_value = "seqwarm-plan.svg")]
    svg: PathBuf,
    /// Do not write the SVG plot.
    #[arg(long)]
    no_svg: bool,
    /// Table format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    let schedule = args.schedule.schedule()?;
    let points: Vec<ChangePoint> = schedule.change_points().collect();
    let text = match args.format {
        Format::Table => table(&schedule, &points),
        Format::Json => json(&schedule, &points)?,
    };
    print!("{text}");
    if !args.no_svg {
        plot(&schedule, &points, &args.svg)?;
        eprintln!("plot written to {}", args.svg.display());
    }
    Ok(())
}

fn table(schedule: &Schedule, points: &[ChangePoint]) -> String {
    let unit = schedule.unit();
    let mut out = String::new();
    let config = schedule.config();
    let _ = writeln!(
        out,
        "schedule: {} (unit: {unit}{}), {} change points, max {} from {unit} {}",
        schedule.kind(),
        config
            .total
            .map(|t| format!(", total {t}"))
            .unwrap_or_default(),
        points.len(),
        schedule.max_len(),
        schedule.warmup_end(),
    );
    let _ = writeln!(
        out,
        "{:>14}  {:>9}  {:>8}",
        unit.name(),
        "seq_len",
        "of total"
    );
    for p in points {
        let fraction = config
            .total
            .filter(|&t| t > 0)
            .map(|t| format!("{:>7.2}%", p.position as f64 / t as f64 * 100.0))
            .unwrap_or_default();
        let _ = writeln!(out, "{:>14}  {:>9}  {fraction:>8}", p.position, p.seq_len);
    }
    out
}

fn json(schedule: &Schedule, points: &[ChangePoint]) -> anyhow::Result<String> {
    let value = serde_json::json!({
        "config": schedule.config(),
        "max_len": schedule.max_len(),
        "warmup_end": schedule.warmup_end(),
        "warnings": schedule.warnings().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "change_points": points.iter().map(|p| [p.position, p.seq_len]).collect::<Vec<_>>(),
    });
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// A step plot of length against progress, up to the end of training (or a little past the
/// warmup when no total is known).
fn plot(schedule: &Schedule, points: &[ChangePoint], path: &Path) -> anyhow::Result<()> {
    let end = schedule
        .total()
        .unwrap_or(0)
        .max(schedule.warmup_end() + schedule.warmup_end() / 5)
        .max(1);
    let top = schedule.max_len() + schedule.max_len() / 10 + 1;
    let mut series: Vec<(u64, u64)> = Vec::with_capacity(points.len() * 2 + 1);
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            series.push((p.position, points[i - 1].seq_len));
        }
        series.push((p.position, p.seq_len));
    }
    if let Some(last) = points.last() {
        series.push((end.max(last.position), last.seq_len));
    }
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let caption = format!("seqwarm schedule: {}", schedule.kind());
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0..end, 0..top)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(format!("progress ({})", schedule.unit()))
        .y_desc("sequence length")
        .draw()
        .map_err(plot_error)?;
    chart
        .draw_series(LineSeries::new(series, &BLUE))
        .map_err(plot_error)?;
    root.present()
        .map_err(plot_error)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}
