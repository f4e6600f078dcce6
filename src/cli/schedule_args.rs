//! Schedule flags shared by every command, layered over a schedule table (a `[schedule]` table
//! or a `--schedule-config` file) or the library's built-in schedule of the kind.

use std::path::PathBuf;

use crate::schedule::{ProgressUnit, Schedule, ScheduleConfig, ScheduleKind, ShapePolicy};
use clap::Args;
use serde::Serialize;
use serde_json::{Map, Value};

use super::config_file::read_table;
use super::flags::{self, given, named};
use super::output::note;

/// Schedule flags. Each overrides the same key of the schedule table; without a table, they
/// override the library's built-in schedule of the kind.
#[derive(Debug, Clone, Default, Args, Serialize)]
pub struct ScheduleArgs {
    /// TOML or JSON schedule file (keys as the flags below, e.g. `kind = "linear"`).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub schedule_config: Option<PathBuf>,
    /// Schedule kind: linear, composer, fixed_linear, fixed_root, fixed_discrete, constant,
    /// olmo_split, olmo_truncate.
    #[arg(long, value_parser = named::<ScheduleKind>)]
    pub kind: Option<ScheduleKind>,
    /// Progress unit: steps, samples or tokens.
    #[arg(long, value_parser = named::<ProgressUnit>)]
    pub unit: Option<ProgressUnit>,
    /// Length of training, in the unit.
    #[arg(long)]
    pub total: Option<u64>,
    /// Fraction of training spent warming up, in [0, 1].
    #[arg(long)]
    pub duration: Option<f64>,
    /// Shortest sequence length.
    #[arg(long)]
    pub min: Option<u64>,
    /// Longest sequence length.
    #[arg(long)]
    pub max: Option<u64>,
    /// Length increment (a multiple of 8 suits tensor cores).
    #[arg(long)]
    pub step: Option<u64>,
    /// DeepSpeed's total_curriculum_step (fixed_linear, fixed_root).
    #[arg(long)]
    pub total_curriculum_step: Option<u64>,
    /// DeepSpeed's root_degree (fixed_root).
    #[arg(long)]
    pub root_degree: Option<u32>,
    /// DeepSpeed's difficulty list (fixed_discrete), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub difficulty: Option<Vec<u64>>,
    /// DeepSpeed's max_step list (fixed_discrete), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub max_step: Option<Vec<u64>>,
    /// OLMo-core's warmup_steps (olmo_split, olmo_truncate).
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// OLMo-core's keep_multiple_of (olmo_truncate).
    #[arg(long)]
    pub keep_multiple_of: Option<u64>,
    /// At most a few lengths, for compiled training: even:K, powers_of_two, or a comma-separated
    /// list of lengths; each step's length is snapped down to an allowed one.
    #[arg(long, value_name = "POLICY")]
    pub shapes: Option<ShapePolicy>,
}

impl ScheduleArgs {
    /// The schedule table (`--schedule-config`, else `table`), else the built-in schedule of
    /// the kind (passed through `adjust_defaults`), with the flags over it.
    pub fn config_over(
        &self,
        table: Option<&Map<String, Value>>,
        adjust_defaults: impl FnOnce(&mut Map<String, Value>),
    ) -> anyhow::Result<ScheduleConfig> {
        let (mut map, source) = match (&self.schedule_config, table) {
            (Some(path), _) => (read_table(path)?, path.display().to_string()),
            (None, Some(table)) => (table.clone(), "the [schedule] table".into()),
            (None, None) => {
                let kind = self.kind.unwrap_or(ScheduleConfig::default().kind());
                let mut map = match ScheduleConfig::default_for(kind) {
                    Some(config) => flags::table(&config),
                    None => Map::from_iter([("kind".to_string(), Value::from(kind.name()))]),
                };
                adjust_defaults(&mut map);
                (map, "the flags".into())
            }
        };
        let flags = given(self);
        let kind = flags
            .get("kind")
            .or_else(|| map.get("kind"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        map.extend(flags.clone());
        serde_json::from_value(Value::Object(map)).map_err(|e| {
            // A flag the kind has no field for is named as the flag, not as a field.
            let text = e.to_string();
            let unknown = text
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(field, rest)| (field.to_owned(), rest.to_owned()));
            match unknown {
                Some((field, rest)) if flags.contains_key(&field) => {
                    // serde says "expected `a`", "expected `a` or `b`" or "expected one of
                    // `a`, `b`, ...".
                    let takes: Vec<String> = rest
                        .split_once("expected ")
                        .map(|(_, list)| {
                            list.trim_start_matches("one of ")
                                .split(", ")
                                .flat_map(|f| f.split(" or "))
                                .map(|f| format!("--{}", f.trim_matches('`').replace('_', "-")))
                                .collect()
                        })
                        .unwrap_or_default();
                    anyhow::anyhow!(
                        "--{} does not apply to a `{}` schedule (it takes {})",
                        field.replace('_', "-"),
                        kind.as_deref().unwrap_or("?"),
                        takes.join(", ")
                    )
                }
                _ => anyhow::Error::new(e).context(format!("invalid schedule from {source}")),
            }
        })
    }

    /// [`ScheduleArgs::config_over`] with no table and the defaults as they are.
    pub fn config(&self) -> anyhow::Result<ScheduleConfig> {
        self.config_over(None, |_| {})
    }

    /// Whether the flags or `table` set the length of training.
    pub fn sets_total(&self, table: Option<&Map<String, Value>>) -> bool {
        self.total.is_some() || table.is_some_and(|t| t.contains_key("total"))
    }
}

/// Appends the default schedule's values to the help of the schedule flags (for `plan`, which
/// shows that schedule when given no other).
pub fn annotate_defaults(command: clap::Command) -> clap::Command {
    flags::annotate(command, &flags::table(&ScheduleConfig::default()), |_| None)
}

/// Builds a schedule, printing its warnings.
pub fn build_logged(config: &ScheduleConfig) -> anyhow::Result<Schedule> {
    let schedule = config.build()?;
    // Once, on stderr, as every note (not again through the log).
    for warning in schedule.warnings() {
        note!("warning: {warning}");
    }
    Ok(schedule)
}
