//! Schedule flags shared by every command, and their merge with a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use seqwarm::schedule::{ProgressUnit, Schedule, ScheduleConfig, ScheduleKind};

/// Built-in default schedule: seqwarm's linear ramp, 8 -> 1024 in steps of 8 over the first
/// 30% of 10 000 steps (the duration Composer's GPT-2 experiments used).
pub const DEFAULT_KIND: ScheduleKind = ScheduleKind::Linear;

/// Schedule flags. Each overrides the same-named key of `--schedule-config`.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// TOML or JSON schedule file (keys as the flags below, e.g. `kind = "linear"`).
    #[arg(long, value_name = "FILE")]
    pub schedule_config: Option<PathBuf>,
    /// Schedule kind: linear, composer, fixed_linear, fixed_root, fixed_discrete, constant.
    #[arg(long)]
    pub kind: Option<ScheduleKind>,
    /// Progress unit: steps, samples or tokens.
    #[arg(long)]
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
}

impl ScheduleArgs {
    /// The config file (if any) overlaid with the flags, defaults filled in for the kind.
    pub fn config(&self) -> anyhow::Result<ScheduleConfig> {
        self.config_over(None)
    }

    /// Like [`ScheduleArgs::config`], starting from `base` (a command config's schedule) when
    /// no `--schedule-config` is given.
    pub fn config_over(&self, base: Option<ScheduleConfig>) -> anyhow::Result<ScheduleConfig> {
        let from_file = self.schedule_config.is_some() || base.is_some();
        let mut config = match (&self.schedule_config, base) {
            (Some(path), _) => read_config(path)?,
            (None, Some(base)) => base,
            (None, None) => ScheduleConfig::new(self.kind.unwrap_or(DEFAULT_KIND)),
        };
        if let Some(kind) = self.kind {
            config.kind = kind;
        }
        if !from_file {
            fill_defaults(&mut config);
        }
        let overlay = [
            (&mut config.total, self.total),
            (&mut config.min, self.min),
            (&mut config.max, self.max),
            (&mut config.step, self.step),
            (
                &mut config.total_curriculum_step,
                self.total_curriculum_step,
            ),
        ];
        for (slot, value) in overlay {
            if value.is_some() {
                *slot = value;
            }
        }
        if let Some(unit) = self.unit {
            config.unit = unit;
        }
        if self.duration.is_some() {
            config.duration = self.duration;
        }
        if self.root_degree.is_some() {
            config.root_degree = self.root_degree;
        }
        if self.difficulty.is_some() {
            config.difficulty.clone_from(&self.difficulty);
        }
        if self.max_step.is_some() {
            config.max_step.clone_from(&self.max_step);
        }
        Ok(config)
    }

    /// The validated schedule; warnings are logged.
    pub fn schedule(&self) -> anyhow::Result<Schedule> {
        build_logged(&self.config()?)
    }
}

/// Builds a schedule, printing its warnings.
pub fn build_logged(config: &ScheduleConfig) -> anyhow::Result<Schedule> {
    let schedule = config.build()?;
    for warning in schedule.warnings() {
        tracing::warn!("{warning}");
        eprintln!("warning: {warning}");
    }
    Ok(schedule)
}

/// Reads a schedule config from TOML (`.toml`) or JSON (anything else).
pub fn read_config(path: &std::path::Path) -> anyhow::Result<ScheduleConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read schedule config {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(anyhow::Error::from)
    } else {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("invalid schedule config {}", path.display()))
}

/// Built-in defaults for flags left out, per kind, so that `seqwarm plan` alone works.
fn fill_defaults(config: &mut ScheduleConfig) {
    match config.kind {
        ScheduleKind::Linear | ScheduleKind::Composer => {
            config.total.get_or_insert(10_000);
            config.duration.get_or_insert(0.3);
            config.min.get_or_insert(8);
            config.max.get_or_insert(1024);
            config.step.get_or_insert(8);
        }
        ScheduleKind::FixedLinear | ScheduleKind::FixedRoot => {
            config.min.get_or_insert(8);
            config.max.get_or_insert(1024);
            config.step.get_or_insert(8);
            config.total_curriculum_step.get_or_insert(3_000);
            config.total.get_or_insert(10_000);
            if config.kind == ScheduleKind::FixedRoot {
                config.root_degree.get_or_insert(2);
            }
        }
        ScheduleKind::Constant => {
            config.max.get_or_insert(1024);
            config.total.get_or_insert(10_000);
        }
        ScheduleKind::FixedDiscrete => {
            config.total.get_or_insert(10_000);
        }
    }
}
