//! Serde-friendly schedule configuration and its validation.

use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::{ProgressUnit, Schedule, ScheduleError, ScheduleWarning};

/// Which schedule family a [`ScheduleConfig`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// seqwarm's own stepped linear ramp: reaches `max` exactly when the warmup ends, and every
    /// length is `min`, `max` or a multiple of `step`.
    Linear,
    /// Composer's `SeqLengthWarmup` step schedule, bit-exact, quirks included.
    Composer,
    /// DeepSpeed's `fixed_linear` curriculum schedule.
    FixedLinear,
    /// DeepSpeed's `fixed_root` curriculum schedule.
    FixedRoot,
    /// DeepSpeed's `fixed_discrete` curriculum schedule.
    FixedDiscrete,
    /// Always `max`: the baseline without warmup.
    Constant,
}

impl ScheduleKind {
    /// The name used in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "linear",
            Self::Composer => "composer",
            Self::FixedLinear => "fixed_linear",
            Self::FixedRoot => "fixed_root",
            Self::FixedDiscrete => "fixed_discrete",
            Self::Constant => "constant",
        }
    }

    /// Every kind, in documentation order.
    pub const ALL: [ScheduleKind; 6] = [
        Self::Linear,
        Self::Composer,
        Self::FixedLinear,
        Self::FixedRoot,
        Self::FixedDiscrete,
        Self::Constant,
    ];
}

impl std::fmt::Display for ScheduleKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown schedule kind `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A schedule as written in a config file (TOML or JSON), e.g.
///
/// ```toml
/// kind = "linear"
/// duration = 0.3
/// min = 8
/// max = 1024
/// step = 8
/// total = 10000
/// ```
///
/// Fields that a kind does not use must be absent, so that a typo or a half-edited config is
/// reported instead of silently ignored. Build it with [`ScheduleConfig::new`] and the `with_*`
/// setters, or deserialize it, then call [`ScheduleConfig::build`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The schedule family.
    pub kind: ScheduleKind,
    /// What progress is counted in; `total` and `total_curriculum_step` use the same unit.
    #[serde(default)]
    pub unit: ProgressUnit,
    /// Length of training in `unit` (needed by `linear` and `composer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// Fraction of `total` spent warming up, in [0, 1] (`linear`, `composer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// Shortest sequence length (`linear`, `composer`, `fixed_linear`, `fixed_root`).
    #[serde(
        default,
        alias = "min_difficulty",
        alias = "min_seq_length",
        skip_serializing_if = "Option::is_none"
    )]
    pub min: Option<u64>,
    /// Longest sequence length; the only length of `constant`.
    #[serde(
        default,
        alias = "max_difficulty",
        alias = "max_seq_length",
        skip_serializing_if = "Option::is_none"
    )]
    pub max: Option<u64>,
    /// Length increment (DeepSpeed's `difficulty_step`); a multiple of 8 suits tensor cores.
    #[serde(
        default,
        alias = "difficulty_step",
        alias = "step_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub step: Option<u64>,
    /// DeepSpeed's `total_curriculum_step`: progress at which `fixed_linear`/`fixed_root` end.
    #[serde(default, alias = "total_step", skip_serializing_if = "Option::is_none")]
    pub total_curriculum_step: Option<u64>,
    /// DeepSpeed's `root_degree` for `fixed_root` (2 = square root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_degree: Option<u32>,
    /// DeepSpeed's `difficulty` list for `fixed_discrete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<Vec<u64>>,
    /// DeepSpeed's `max_step` list for `fixed_discrete` (one shorter than `difficulty`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_step: Option<Vec<u64>>,
}

/// The `step` used when a config leaves it out: 8, the tensor-core-friendly default.
pub const DEFAULT_STEP: u64 = 8;

impl ScheduleConfig {
    /// An empty config of the given kind; fill it with the `with_*` setters.
    pub fn new(kind: ScheduleKind) -> Self {
        Self {
            kind,
            unit: ProgressUnit::default(),
            total: None,
            duration: None,
            min: None,
            max: None,
            step: None,
            total_curriculum_step: None,
            root_degree: None,
            difficulty: None,
            max_step: None,
        }
    }

    /// seqwarm's `linear` schedule from `min` to `max` over `duration` of `total`.
    pub fn linear(min: u64, max: u64, duration: f64, total: u64) -> Self {
        Self::new(ScheduleKind::Linear)
            .with_min(min)
            .with_max(max)
            .with_duration(duration)
            .with_total(total)
    }

    /// The `constant` baseline at `max`.
    pub fn constant(max: u64) -> Self {
        Self::new(ScheduleKind::Constant).with_max(max)
    }

    /// Sets the progress unit.
    #[must_use]
    pub fn with_unit(mut self, unit: ProgressUnit) -> Self {
        self.unit = unit;
        self
    }
    /// Sets the length of training.
    #[must_use]
    pub fn with_total(mut self, total: u64) -> Self {
        self.total = Some(total);
        self
    }
    /// Sets the warmup fraction.
    #[must_use]
    pub fn with_duration(mut self, duration: f64) -> Self {
        self.duration = Some(duration);
        self
    }
    /// Sets the shortest length.
    #[must_use]
    pub fn with_min(mut self, min: u64) -> Self {
        self.min = Some(min);
        self
    }
    /// Sets the longest length.
    #[must_use]
    pub fn with_max(mut self, max: u64) -> Self {
        self.max = Some(max);
        self
    }
    /// Sets the length increment.
    #[must_use]
    pub fn with_step(mut self, step: u64) -> Self {
        self.step = Some(step);
        self
    }
    /// Sets DeepSpeed's `total_curriculum_step`.
    #[must_use]
    pub fn with_total_curriculum_step(mut self, steps: u64) -> Self {
        self.total_curriculum_step = Some(steps);
        self
    }
    /// Sets DeepSpeed's `root_degree`.
    #[must_use]
    pub fn with_root_degree(mut self, degree: u32) -> Self {
        self.root_degree = Some(degree);
        self
    }
    /// Sets DeepSpeed's `fixed_discrete` lists.
    #[must_use]
    pub fn with_discrete(mut self, difficulty: Vec<u64>, max_step: Vec<u64>) -> Self {
        self.difficulty = Some(difficulty);
        self.max_step = Some(max_step);
        self
    }

    /// Validates the config and builds the [`Schedule`].
    pub fn build(&self) -> Result<Schedule, ScheduleError> {
        let kind = self.kind;
        self.reject_unused()?;
        let mut warnings = Vec::new();
        let curve = match kind {
            ScheduleKind::Constant => Curve::Constant {
                len: positive("max", self.require("max", self.max)?)?,
            },
            ScheduleKind::Linear | ScheduleKind::Composer => {
                let (min, max) = self.min_max()?;
                let step = self.step(&mut warnings)?;
                let total = self.require("total", self.total)?;
                let duration = self.require("duration", self.duration)?;
                if !(0.0..=1.0).contains(&duration) {
                    return Err(invalid(
                        "duration",
                        duration,
                        "must be a fraction of training in [0, 1]",
                    ));
                }
                // Python's int(total * duration): a float product truncated toward zero.
                let warmup = (total as f64 * duration) as u64;
                if kind == ScheduleKind::Linear {
                    Curve::Linear {
                        min,
                        max,
                        step,
                        warmup,
                    }
                } else {
                    composer_curve(min, max, step, total, duration, warmup, &mut warnings)?
                }
            }
            ScheduleKind::FixedLinear | ScheduleKind::FixedRoot => {
                let (min, max) = self.min_max()?;
                let step = self.step(&mut warnings)?;
                let total_step = positive(
                    "total_curriculum_step",
                    self.require("total_curriculum_step", self.total_curriculum_step)?,
                )?;
                let degree = if kind == ScheduleKind::FixedRoot {
                    let d = self.require("root_degree", self.root_degree)?;
                    if d == 0 {
                        return Err(invalid(
                            "root_degree",
                            d,
                            "must be >= 1 (1 = linear, 2 = square root)",
                        ));
                    }
                    d
                } else {
                    1
                };
                Curve::DeepSpeedRoot {
                    min,
                    max,
                    step,
                    total_step,
                    degree,
                }
            }
            ScheduleKind::FixedDiscrete => self.discrete_curve()?,
        };
        Ok(Schedule::from_parts(self.clone(), curve, warnings))
    }

    fn require<T>(&self, field: &'static str, value: Option<T>) -> Result<T, ScheduleError> {
        value.ok_or(ScheduleError::MissingField {
            field,
            kind: self.kind.name(),
        })
    }

    fn min_max(&self) -> Result<(u64, u64), ScheduleError> {
        let min = positive("min", self.require("min", self.min)?)?;
        let max = self.require("max", self.max)?;
        if max < min {
            return Err(invalid("max", max, &format!("must be >= min ({min})")));
        }
        Ok((min, max))
    }

    fn step(&self, warnings: &mut Vec<ScheduleWarning>) -> Result<u64, ScheduleError> {
        let step = positive("step", self.step.unwrap_or(DEFAULT_STEP))?;
        if step % 8 != 0 {
            // Allowed, as in Composer and DeepSpeed, but lengths off a multiple of 8 waste
            // tensor-core tiles.
            warnings.push(ScheduleWarning::StepNotMultipleOf8 { step });
        }
        Ok(step)
    }

    fn discrete_curve(&self) -> Result<Curve, ScheduleError> {
        let difficulty = self.require("difficulty", self.difficulty.clone())?;
        let max_step = self.require("max_step", self.max_step.clone())?;
        if max_step.is_empty() {
            return Err(invalid(
                "max_step",
                "[]",
                "needs at least one entry (DeepSpeed indexes max_step[-1]); use kind = \"constant\" for a single length",
            ));
        }
        if difficulty.len() != max_step.len() + 1 {
            return Err(invalid(
                "difficulty",
                format!("{difficulty:?}"),
                &format!(
                    "must have exactly one more entry than max_step ({} entries)",
                    max_step.len()
                ),
            ));
        }
        if let Some(&bad) = difficulty.iter().find(|&&d| d == 0) {
            return Err(invalid("difficulty", bad, "every length must be >= 1"));
        }
        if difficulty.windows(2).any(|w| w[1] < w[0]) {
            return Err(invalid(
                "difficulty",
                format!("{difficulty:?}"),
                "must be non-decreasing: a sequence-length warmup never shortens",
            ));
        }
        if max_step.windows(2).any(|w| w[1] <= w[0]) {
            return Err(invalid(
                "max_step",
                format!("{max_step:?}"),
                "must be strictly increasing",
            ));
        }
        if let (Some(max), Some(&last)) = (self.max, difficulty.last())
            && last > max
        {
            return Err(invalid(
                "difficulty",
                format!("{difficulty:?}"),
                &format!("entries must not exceed max ({max})"),
            ));
        }
        Ok(Curve::Discrete {
            difficulty,
            max_step,
        })
    }

    fn reject_unused(&self) -> Result<(), ScheduleError> {
        let used: &[&str] = match self.kind {
            ScheduleKind::Constant => &["max"],
            ScheduleKind::Linear | ScheduleKind::Composer => {
                &["total", "duration", "min", "max", "step"]
            }
            ScheduleKind::FixedLinear => &["min", "max", "step", "total_curriculum_step"],
            ScheduleKind::FixedRoot => {
                &["min", "max", "step", "total_curriculum_step", "root_degree"]
            }
            // min/max are accepted for DeepSpeed config parity; max bounds the difficulties.
            ScheduleKind::FixedDiscrete => &["min", "max", "difficulty", "max_step"],
        };
        let given: [(&'static str, bool); 9] = [
            ("total", self.total.is_some()),
            ("duration", self.duration.is_some()),
            ("min", self.min.is_some()),
            ("max", self.max.is_some()),
            ("step", self.step.is_some()),
            (
                "total_curriculum_step",
                self.total_curriculum_step.is_some(),
            ),
            ("root_degree", self.root_degree.is_some()),
            ("difficulty", self.difficulty.is_some()),
            ("max_step", self.max_step.is_some()),
        ];
        for (field, present) in given {
            // `total` is harmless everywhere: the CLI sets it from --steps for every kind.
            if present && field != "total" && !used.contains(&field) {
                return Err(ScheduleError::UnusedField {
                    field,
                    kind: self.kind.name(),
                });
            }
        }
        Ok(())
    }
}

fn composer_curve(
    min: u64,
    max: u64,
    step: u64,
    total: u64,
    duration: f64,
    warmup: u64,
    warnings: &mut Vec<ScheduleWarning>,
) -> Result<Curve, ScheduleError> {
    let updates = (max - min) / step;
    if updates == 0 {
        return Err(ScheduleError::ComposerDivisionByZero {
            reason: format!(
                "(max - min) / step = ({max} - {min}) / {step} = 0 whole update steps; \
                 use step <= max - min, or kind = \"linear\""
            ),
        });
    }
    let every = warmup / updates;
    if every == 0 {
        return Err(ScheduleError::ComposerDivisionByZero {
            reason: format!(
                "int(total * duration) = int({total} * {duration}) = {warmup} warmup batches \
                 is fewer than the {updates} length updates, so the update interval rounds \
                 to 0; raise total or duration so that total * duration >= {updates}, \
                 raise step, or use kind = \"linear\""
            ),
        });
    }
    let curve = Curve::Composer {
        min,
        max,
        step,
        every,
    };
    let reaches_max_at = curve.composer_max_reached_at();
    if !(max - min).is_multiple_of(step) {
        warnings.push(ScheduleWarning::ComposerStepDoesNotDivideRange { min, max, step });
    }
    if reaches_max_at.is_none_or(|at| at >= total) {
        warnings.push(ScheduleWarning::MaxNotReachedInTraining {
            total,
            reached_at: reaches_max_at,
        });
    }
    Ok(curve)
}

fn positive(field: &'static str, value: u64) -> Result<u64, ScheduleError> {
    if value == 0 {
        Err(invalid(field, value, "must be >= 1"))
    } else {
        Ok(value)
    }
}

fn invalid(field: &'static str, value: impl std::fmt::Display, reason: &str) -> ScheduleError {
    ScheduleError::InvalidField {
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}
