//! Schedules checked and planned with the library's rules: `seqwarm.Schedule` validates
//! through [`check_schedule`], `seqwarm.plan` lists change points through [`plan`].

use pyo3::prelude::*;
use seqwarm_loader::WarmupConfig;
use seqwarm_schedule::ProgressUnit;
use seqwarm_schedule::{Schedule, ScheduleConfig, ShapePolicy};
use seqwarm_stage::shape::tokens_given_up;
use serde_json::{Value, json};

use crate::errors::{config_error, loader_error, schedule_error};

/// The most change points `plan` lists (as `seqwarm plan` does).
const MAX_CHANGE_POINTS: usize = 100_000;

fn build(py: Python<'_>, schedule_json: &str) -> PyResult<Schedule> {
    let config: ScheduleConfig = serde_json::from_str(schedule_json)
        .map_err(|e| config_error(py, "schedule", format!("schedule: {e}")))?;
    config.build().map_err(|e| schedule_error(py, &e))
}

fn parse<T: serde::de::DeserializeOwned>(py: Python<'_>, setting: &str, json: &str) -> PyResult<T> {
    serde_json::from_str(json).map_err(|e| config_error(py, setting, format!("{setting}: {e}")))
}

/// Checks a schedule (JSON text); returns its normalized config, range, unit, end of warmup
/// and warnings as JSON text.
#[pyfunction]
pub fn check_schedule(py: Python<'_>, schedule_json: &str) -> PyResult<String> {
    let schedule = build(py, schedule_json)?;
    let warnings: Vec<String> = schedule
        .warnings()
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(json!({
        "config": schedule.config(),
        "min": schedule.min_len(),
        "max": schedule.max_len(),
        "unit": schedule.unit().name(),
        "total": schedule.total(),
        "warmup_end": schedule.warmup_end(),
        "warnings": warnings,
        "allowed_lengths": schedule.allowed_lengths(),
    })
    .to_string())
}

/// The change points of a schedule with each one's step shape under `mode` and
/// `batch_size_json` (`{"rows": n}` or `{"tokens": n}`), and the tokens emitted before it when
/// the schedule counts steps (`null` otherwise, or past 2^64); as JSON text.
#[pyfunction]
pub fn plan(py: Python<'_>, schedule_json: &str, settings_json: &str) -> PyResult<String> {
    let config: ScheduleConfig = parse(py, "schedule", schedule_json)?;
    // The mode and batch size as the loader reads them (its defaults, and its rule for
    // `batch_rows` / `batch_tokens`), then built as the loader builds its stage: the same
    // checks of the schedule and of the batch size against it (rows >= 1, a budget that holds
    // a row at the maximum length, a step that fits in memory), and the same shape rule.
    let loader = crate::loader::settings(py, settings_json)?;
    let warmup = WarmupConfig::new(config)
        .with_mode(loader.warmup().mode())
        .with_batch_size(loader.warmup().batch_size())
        .build()
        .map_err(|e| loader_error(py, &e.into()))?;
    let schedule = warmup.schedule();
    // Tokens before each point, summed as the points go (steps only: in samples or tokens,
    // where a length starts depends on the shapes before it).
    let counts_steps = schedule.unit() == ProgressUnit::Steps;
    let mut before = Some(0u64);
    let mut previous: Option<(u64, u64)> = None;
    let mut points = Vec::new();
    for point in schedule.change_points().take(MAX_CHANGE_POINTS + 1) {
        if points.len() == MAX_CHANGE_POINTS {
            return Err(config_error(
                py,
                "schedule",
                format!(
                    "the schedule changes length more than {MAX_CHANGE_POINTS} times; use a \
                     larger step or a smaller range"
                ),
            ));
        }
        let len = usize::try_from(point.seq_len).unwrap_or(usize::MAX);
        let shape = warmup.shape(len);
        if let Some((position, per_step)) = previous {
            before = before
                .and_then(|b| b.checked_add((point.position - position).checked_mul(per_step)?));
        }
        previous = Some((point.position, shape.tokens_out()));
        points.push(json!({
            "position": point.position,
            "seq_len": point.seq_len,
            "rows": shape.rows_out,
            "tokens_per_step": shape.tokens_out(),
            "tokens_before": before.filter(|_| counts_steps),
        }));
    }
    // What snapping to the shape policy gives up over training (as `seqwarm plan` counts it).
    let given_up = schedule
        .total()
        .and_then(|total| {
            tokens_given_up(
                schedule,
                warmup.mode(),
                warmup.batch_size(),
                total,
                MAX_CHANGE_POINTS,
            )
        })
        .and_then(|tokens| i64::try_from(tokens).ok());
    Ok(json!({
        "unit": schedule.unit().name(),
        "total": schedule.total(),
        "points": Value::Array(points),
        "tokens_given_up": given_up,
    })
    .to_string())
}

/// A shape policy in the command line's spelling (`even:8`, `powers_of_two`, `pow2`,
/// `256,512,1024`) as its config value, JSON text: the one parser of those spellings.
#[pyfunction]
pub fn parse_shapes(py: Python<'_>, text: &str) -> PyResult<String> {
    let policy: ShapePolicy = text
        .parse()
        .map_err(|reason: String| config_error(py, "schedule.shapes", reason))?;
    serde_json::to_string(&policy).map_err(|e| config_error(py, "schedule.shapes", e.to_string()))
}

/// A TOML (`.toml`) or JSON file's table, as JSON text.
#[pyfunction]
pub fn read_table(py: Python<'_>, path: &str) -> PyResult<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| config_error(py, "schedule", format!("cannot read {path}: {e}")))?;
    let toml = std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let value: Value = if toml {
        toml::from_str(&text)
            .map_err(|e| config_error(py, "schedule", format!("{path}: invalid TOML: {e}")))?
    } else {
        serde_json::from_str(&text)
            .map_err(|e| config_error(py, "schedule", format!("{path}: invalid JSON: {e}")))?
    };
    Ok(value.to_string())
}
