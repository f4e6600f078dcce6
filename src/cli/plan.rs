//! `seqwarm plan`: the schedule as a table of change points and an SVG plot.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::loader::{BatchSize, Mode};
use crate::schedule::{ChangePoint, ProgressUnit, Schedule};
use crate::stage::shape::{step_shape, tokens_given_up, tokens_over_steps};
use anyhow::Context;
use clap::{Args, ValueEnum};
use plotters::prelude::*;

use super::decompose::DecomposeArgs;
use super::output::note;
use super::schedule_args::{ScheduleArgs, build_logged};

/// The most change points `plan` lists and draws: far more than a table or a plot can show,
/// and a bound on its memory (a schedule from 8 to 2^30 in steps of 8 has 134 million).
pub const MAX_CHANGE_POINTS: usize = 100_000;

pub const EXAMPLES: &str = "Examples:
  seqwarm plan                                    # built-in default: linear 8 -> 1024 over 30% of 10000 steps
  seqwarm plan --kind composer --min 64 --max 1024 --step 64 --duration 0.3 --total 20000
  seqwarm plan --kind fixed_root --root-degree 2 --total-curriculum-step 5000 --svg root.svg
  seqwarm plan --kind composer --min 64 --max 2048 --duration 0.3 --total 20000 --shapes even:8   # compiled training
  seqwarm plan --schedule-config schedule.toml --format json
  seqwarm plan olmo-npy/ --mode decompose --token-dtype uint16 --eos-id 50256 \\
      --curriculum grow-p2 --cycles 4 --min 64 --max 2048 --batch-tokens 4096 --svg grow-p2.svg";

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
    /// Raw token files (with `--mode decompose`): plan a decomposition over them instead of a
    /// schedule.
    pub(super) files: Vec<String>,
    #[command(flatten)]
    pub(super) schedule: ScheduleArgs,
    /// Where to write the SVG plot.
    #[arg(long, default_value = "seqwarm-plan.svg")]
    pub(super) svg: PathBuf,
    /// Do not write the SVG plot.
    #[arg(long)]
    pub(super) no_svg: bool,
    /// Table format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub(super) format: Format,
    /// Fixed rows per batch, for the tokens-per-step columns.
    #[arg(long, conflicts_with = "batch_tokens")]
    pub(super) batch_rows: Option<usize>,
    /// Token budget per batch (rows = budget / length), for the tokens-per-step columns; with
    /// `--mode decompose`, tokens per step on each rank.
    #[arg(long)]
    pub(super) batch_tokens: Option<usize>,
    /// `decompose`: plan a dataset decomposition over the files (the bucket table, steps per
    /// epoch, tokens dropped, shapes, and a plot of an epoch's lengths).
    #[arg(long, value_parser = ["decompose"])]
    pub(super) mode: Option<String>,
    #[command(flatten)]
    pub(super) decompose: DecomposeArgs,
    /// The id that ends every document in the files (`--mode decompose`).
    #[arg(long)]
    pub(super) eos_id: Option<i64>,
    /// The decomposition's seed (`--mode decompose`).
    #[arg(long)]
    pub(super) seed: Option<u64>,
    /// Data-parallel ranks (`--mode decompose`; the table is the same on every rank).
    #[arg(long)]
    pub(super) world_size: Option<usize>,
    /// Ids at or over this are an error (`--mode decompose`).
    #[arg(long)]
    pub(super) vocab_size: Option<u64>,
}

impl PlanArgs {
    /// Whether anything of a decomposition's plan was given.
    fn plans_files(&self) -> bool {
        !self.files.is_empty()
            || self.mode.is_some()
            || self.decompose.any()
            || self.eos_id.is_some()
            || self.seed.is_some()
            || self.world_size.is_some()
            || self.vocab_size.is_some()
    }
}

/// One step at `len` under the lossless and cutting modes (truncate, repack and pack emit the
/// same shape) and under reshape: (rows, tokens, reshape rows, reshape tokens), by the shape
/// rule.
fn step_tokens(sizing: BatchSize, len: u64, max: u64) -> (u64, u64, u64, u64) {
    let (len, max) = (
        usize::try_from(len).unwrap_or(usize::MAX),
        usize::try_from(max).unwrap_or(usize::MAX),
    );
    let cut = step_shape(Mode::Repack, sizing, len, max);
    let reshape = step_shape(Mode::Reshape, sizing, len, max);
    (
        cut.rows_out as u64,
        cut.tokens_out(),
        reshape.rows_out as u64,
        reshape.tokens_out(),
    )
}

/// Tokens trained over `0..total` steps under the cutting modes and reshape, and the constant
/// baseline at the maximum length.
fn totals(schedule: &Schedule, total: u64, sizing: BatchSize) -> Option<(u64, u64, u64)> {
    let baseline = crate::schedule::ScheduleConfig::constant(schedule.max_len())
        .build()
        .ok()?;
    Some((
        tokens_over_steps(schedule, Mode::Repack, sizing, total)?,
        tokens_over_steps(schedule, Mode::Reshape, sizing, total)?,
        tokens_over_steps(&baseline, Mode::Repack, sizing, total)?,
    ))
}

/// The most shapes the table lists of each mode (the JSON lists all).
const SHAPES_LISTED: usize = 12;

/// The distinct shapes a schedule's steps take, and what snapping to its shape policy costs.
struct ShapeSummary {
    /// `rows x len` of each distinct length under the cutting modes (truncate, repack, pack).
    cut: Vec<(u64, u64)>,
    /// `rows x len` of each distinct length under reshape.
    reshape: Vec<(u64, u64)>,
    /// Tokens snapping gives up over training (cutting modes, reshape): the schedule without
    /// its policy minus the schedule with it (negative where a list snaps short lengths up).
    /// `None` without a policy, without a length of training in steps, or when the schedule
    /// without its policy has more than [`MAX_CHANGE_POINTS`] change points to walk.
    given_up: Option<(i128, i128)>,
    /// Tokens the schedule without its policy trains (cutting modes), for the share given up.
    unsnapped_cut: u64,
}

impl ShapeSummary {
    fn new(schedule: &Schedule, points: &[ChangePoint], sizing: BatchSize) -> Self {
        let max = schedule.max_len();
        let (mut cut, mut reshape) = (Vec::new(), Vec::new());
        // Change points are where the length changes, so their lengths are the distinct ones.
        for p in points {
            let (rows, _, reshape_rows, _) = step_tokens(sizing, p.seq_len, max);
            cut.push((rows, p.seq_len));
            reshape.push((reshape_rows, p.seq_len));
        }
        let given_up = |mode| {
            let total = schedule.total()?;
            tokens_given_up(schedule, mode, sizing, total, MAX_CHANGE_POINTS)
        };
        let given_up = given_up(Mode::Repack).zip(given_up(Mode::Reshape));
        // The share is of what the schedule without its policy trains (known when the given-up
        // count is: it walked the same change points).
        let unsnapped_cut = given_up
            .and_then(|_| {
                let total = schedule.total()?;
                tokens_over_steps(&schedule.without_shapes(), Mode::Repack, sizing, total)
            })
            .unwrap_or(0);
        Self {
            cut,
            reshape,
            given_up,
            unsnapped_cut,
        }
    }

    /// The shapes as `rows x len`, the middle elided past [`SHAPES_LISTED`].
    fn list(shapes: &[(u64, u64)]) -> String {
        let text = |s: &[(u64, u64)]| -> Vec<String> {
            s.iter().map(|(r, l)| format!("{r}x{l}")).collect()
        };
        if shapes.len() <= SHAPES_LISTED {
            return text(shapes).join(", ");
        }
        let half = SHAPES_LISTED / 2;
        format!(
            "{}, ... {} more ..., {}",
            text(&shapes[..half]).join(", "),
            shapes.len() - 2 * half,
            text(&shapes[shapes.len() - half..]).join(", ")
        )
    }

    fn write(&self, out: &mut impl Write, schedule: &Schedule) -> std::io::Result<()> {
        let policy = schedule.config().shapes().map_or_else(
            || "no shape policy; --shapes even:K bounds them for compiled training".to_string(),
            |p| format!("shape policy {p}"),
        );
        writeln!(
            out,
            "shapes: {} distinct ({policy}): truncate/repack/pack {}; reshape {}",
            self.cut.len(),
            Self::list(&self.cut),
            Self::list(&self.reshape)
        )?;
        if let Some((cut, reshape)) = self.given_up {
            // Negative where a list snaps short lengths up: more tokens, not fewer.
            let change = |tokens: i128| {
                if tokens >= 0 {
                    format!("gives up {tokens} tokens")
                } else {
                    format!("adds {} tokens", -tokens)
                }
            };
            writeln!(
                out,
                "snapping to the shape policy {} under truncate/repack/pack ({:.2}% of {}) and \
                 {} under reshape",
                change(cut),
                cut as f64 / self.unsnapped_cut.max(1) as f64 * 100.0,
                self.unsnapped_cut,
                change(reshape)
            )?;
        }
        Ok(())
    }

    fn json(&self, schedule: &Schedule) -> serde_json::Value {
        serde_json::json!({
            "policy": schedule.config().shapes().map(ToString::to_string),
            "count": self.cut.len(),
            "truncate_repack_pack": self.cut,
            "reshape": self.reshape,
            "tokens_given_up": self.given_up.map(|(cut, reshape)| serde_json::json!({
                "truncate_repack_pack": i64::try_from(cut).ok(),
                "reshape": i64::try_from(reshape).ok(),
            })),
        })
    }
}

pub fn run(args: &PlanArgs) -> anyhow::Result<()> {
    if args.plans_files() {
        return super::plan_decompose::run(args);
    }
    let config = args.schedule.config()?;
    if config.total() == Some(0) {
        anyhow::bail!("--total 0: a plan needs a length of training of at least one step");
    }
    let schedule = build_logged(&config)?;
    let points: Vec<ChangePoint> = schedule
        .change_points()
        .take(MAX_CHANGE_POINTS + 1)
        .collect();
    if points.len() > MAX_CHANGE_POINTS {
        anyhow::bail!(
            "the schedule changes length more than {MAX_CHANGE_POINTS} times ({} to {} in steps \
             of {}); plan lists and draws at most {MAX_CHANGE_POINTS}: use a larger step or a \
             smaller range",
            schedule.min_len(),
            schedule.max_len(),
            points
                .get(1)
                .map_or(0, |p| p.seq_len.saturating_sub(points[0].seq_len))
        );
    }
    let sizing = match (args.batch_rows, args.batch_tokens) {
        (Some(r), _) => BatchSize::Rows(r),
        (None, Some(t)) => BatchSize::Tokens(t),
        (None, None) => BatchSize::default(),
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        Format::Table => table(&mut out, &schedule, &points, sizing).map_err(Into::into),
        Format::Json => json(&mut out, &schedule, &points, sizing),
    };
    written
        .and_then(|()| out.flush().map_err(Into::into))
        .context("writing the change points to stdout")?;
    if !args.no_svg {
        plot(&schedule, &points, &args.svg)?;
        note!("plot written to {}", args.svg.display());
    }
    Ok(())
}

/// The change points as aligned text, written as they are formatted.
fn table(
    out: &mut impl Write,
    schedule: &Schedule,
    points: &[ChangePoint],
    sizing: BatchSize,
) -> std::io::Result<()> {
    let unit = schedule.unit();
    let max = schedule.max_len();
    writeln!(
        out,
        "schedule: {} (unit: {unit}{}), {} change points, max {} from {unit} {}",
        schedule.kind(),
        schedule
            .total()
            .map(|t| format!(", total {t}"))
            .unwrap_or_default(),
        points.len(),
        max,
        schedule.warmup_end(),
    )?;
    let sizing_text = match sizing {
        BatchSize::Rows(_) => sizing.to_string(),
        BatchSize::Tokens(t) => format!("{t}-token budget per batch"),
    };
    writeln!(
        out,
        "tokens per step at {sizing_text}: truncate/repack/pack train rows x len; reshape re-flows rows x max into rows of len"
    )?;
    writeln!(
        out,
        "{:>14}  {:>9}  {:>8}  {:>6}  {:>14}  {:>12}  {:>14}",
        unit.name(),
        "seq_len",
        "of total",
        "rows",
        "tokens (cut)",
        "reshape rows",
        "tokens (reshape)"
    )?;
    for p in points {
        let fraction = schedule
            .total()
            .filter(|&t| t > 0)
            .map(|t| format!("{:>7.2}%", p.position as f64 / t as f64 * 100.0))
            .unwrap_or_default();
        let (rows, cut, reshape_rows, reshape) = step_tokens(sizing, p.seq_len, max);
        writeln!(
            out,
            "{:>14}  {:>9}  {fraction:>8}  {rows:>6}  {cut:>14}  {reshape_rows:>12}  {reshape:>14}",
            p.position, p.seq_len
        )?;
    }
    if let Some((total, (cut, reshape, baseline))) = schedule
        .total()
        .and_then(|total| Some((total, totals(schedule, total, sizing)?)))
    {
        let versus = |x: u64| {
            let change = 100.0 * (x as f64 / baseline.max(1) as f64 - 1.0);
            if x == baseline {
                "the same".to_string()
            } else if change < 0.0 {
                // `abs`, not negation: a change that rounds to zero must not print "-0.0%".
                format!("{:.1}% fewer", change.abs())
            } else {
                format!("{change:.1}% more")
            }
        };
        writeln!(
            out,
            "over {total} steps: constant max trains {baseline} tokens; truncate/repack/pack {cut} ({}); reshape {reshape} ({})",
            versus(cut),
            versus(reshape)
        )?;
    }
    ShapeSummary::new(schedule, points, sizing).write(out, schedule)
}

fn json(
    out: &mut impl Write,
    schedule: &Schedule,
    points: &[ChangePoint],
    sizing: BatchSize,
) -> anyhow::Result<()> {
    let max = schedule.max_len();
    let steps: Vec<_> = points
        .iter()
        .map(|p| {
            let (rows, cut, reshape_rows, reshape) = step_tokens(sizing, p.seq_len, max);
            serde_json::json!({"position": p.position, "seq_len": p.seq_len, "rows": rows, "tokens": cut, "reshape_rows": reshape_rows, "reshape_tokens": reshape})
        })
        .collect();
    let mut value = serde_json::json!({
        "config": schedule.config(),
        "max_len": max,
        "warmup_end": schedule.warmup_end(),
        "warnings": schedule.warnings().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "change_points": points.iter().map(|p| [p.position, p.seq_len]).collect::<Vec<_>>(),
        "batch_size": sizing,
        "steps": steps,
        "shapes": ShapeSummary::new(schedule, points, sizing).json(schedule),
    });
    if let Some((cut, reshape, baseline)) = schedule
        .total()
        .filter(|_| schedule.unit() == ProgressUnit::Steps)
        .and_then(|total| totals(schedule, total, sizing))
    {
        value["tokens_over_training"] = serde_json::json!({"constant_max": baseline, "truncate_repack_pack": cut, "reshape": reshape});
    }
    serde_json::to_writer_pretty(&mut *out, &value)?;
    writeln!(out)?;
    Ok(())
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

pub(super) fn plot_error<E: std::error::Error + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}
