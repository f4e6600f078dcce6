//! Checking a [`ScheduleConfig`] and building its [`Schedule`]: each kind's fields validated
//! (with the reason and the value in every error), the curve chosen, warnings collected.

use crate::config::{
    FixedDiscrete, OLMO_DEFAULT_KEEP_MULTIPLE_OF, Olmo, RampBuilder, Root, ScheduleConfig,
};
use crate::curve::Curve;
use crate::error::ScheduleError;
use crate::progress::ProgressUnit;
use crate::schedule::Schedule;
use crate::shapes::AllowedLengths;
use crate::warning::ScheduleWarning;

impl ScheduleConfig {
    /// Validates the config and builds the [`Schedule`].
    pub fn build(&self) -> Result<Schedule, ScheduleError> {
        let mut warnings = Vec::new();
        let curve = match self {
            Self::Constant(c) => Curve::Constant {
                len: positive("max", c.max)?,
            },
            Self::Linear(c) | Self::Composer(c) => {
                let (min, max) = min_max(c.min, c.max)?;
                let step = step(c.step, &mut warnings)?;
                if !(0.0..=1.0).contains(&c.duration) {
                    return Err(invalid(
                        "duration",
                        c.duration,
                        "must be a fraction of training in [0, 1]",
                    ));
                }
                // Python's int(total * duration): a float product truncated toward zero.
                let warmup = (c.total as f64 * c.duration) as u64;
                if let Self::Linear(_) = self {
                    Curve::Linear {
                        min,
                        max,
                        step,
                        warmup,
                    }
                } else {
                    composer_curve(min, max, step, c.total, c.duration, warmup, &mut warnings)?
                }
            }
            Self::FixedLinear(c) => {
                if let Some(degree) = c.root_degree.filter(|&d| d != 1) {
                    return Err(invalid(
                        "root_degree",
                        degree,
                        "fixed_linear is fixed_root of degree 1; use kind = \"fixed_root\"",
                    ));
                }
                root_curve(c, 1, &mut warnings)?
            }
            Self::FixedRoot(c) => {
                let degree = match c.root_degree {
                    None => {
                        return Err(invalid(
                            "root_degree",
                            "missing",
                            "fixed_root needs its degree (2 = square root)",
                        ));
                    }
                    Some(0) => {
                        return Err(invalid(
                            "root_degree",
                            0,
                            "must be >= 1 (1 = linear, 2 = square root)",
                        ));
                    }
                    Some(d) => d,
                };
                root_curve(c, degree, &mut warnings)?
            }
            Self::FixedDiscrete(c) => discrete_curve(c)?,
            Self::OlmoSplit(c) => olmo_curve(c, false)?,
            Self::OlmoTruncate(c) => olmo_curve(c, true)?,
        };
        let allowed = self
            .shapes()
            .map(|policy| {
                AllowedLengths::new(
                    policy,
                    curve.first_len(),
                    curve.final_len(),
                    self.shape_step(),
                )
            })
            .transpose()?;
        Ok(Schedule::from_parts(self.clone(), curve, allowed, warnings))
    }
}

impl RampBuilder {
    /// Validates the config and builds the [`Schedule`].
    pub fn build(&self) -> Result<Schedule, ScheduleError> {
        self.config().build()
    }
}

fn min_max(min: u64, max: u64) -> Result<(u64, u64), ScheduleError> {
    let min = positive("min", min)?;
    if max < min {
        return Err(invalid("max", max, &format!("must be >= min ({min})")));
    }
    Ok((min, max))
}

fn step(step: u64, warnings: &mut Vec<ScheduleWarning>) -> Result<u64, ScheduleError> {
    let step = positive("step", step)?;
    if step % 8 != 0 {
        // Allowed, as in Composer and DeepSpeed, but lengths off a multiple of 8 waste
        // tensor-core tiles.
        warnings.push(ScheduleWarning::StepNotMultipleOf8 { step });
    }
    Ok(step)
}

fn root_curve(
    c: &Root,
    degree: u32,
    warnings: &mut Vec<ScheduleWarning>,
) -> Result<Curve, ScheduleError> {
    let (min, max) = min_max(c.min, c.max)?;
    Ok(Curve::DeepSpeedRoot {
        min,
        max,
        step: step(c.step, warnings)?,
        total_step: positive("total_curriculum_step", c.total_curriculum_step)?,
        degree,
    })
}

fn discrete_curve(c: &FixedDiscrete) -> Result<Curve, ScheduleError> {
    let (difficulty, max_step) = (&c.difficulty, &c.max_step);
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
    if let (Some(max), Some(&last)) = (c.max, difficulty.last())
        && last > max
    {
        return Err(invalid(
            "difficulty",
            format!("{difficulty:?}"),
            &format!("entries must not exceed max ({max})"),
        ));
    }
    Ok(Curve::Discrete {
        difficulty: difficulty.clone(),
        max_step: max_step.clone(),
    })
}

/// OLMo-core's callback checks what its `pre_train` means to check (its split-mode condition is
/// inverted there: it refuses a ratio that is not a power of two in truncate mode, where it
/// works, and lets it through in split mode, where the batch cannot be split), and refuses a
/// truncate step that would keep no token.
fn olmo_curve(c: &Olmo, truncate: bool) -> Result<Curve, ScheduleError> {
    if c.unit != ProgressUnit::Steps {
        return Err(invalid(
            "unit",
            c.unit,
            "OLMo-core's sequence-length scheduler counts trainer steps: use unit = \"steps\"",
        ));
    }
    let min = positive("min", c.min)?;
    if c.max <= min {
        return Err(invalid(
            "max",
            c.max,
            &format!("must be greater than min ({min}), as OLMo-core requires"),
        ));
    }
    let warmup_steps = positive("warmup_steps", c.warmup_steps)?;
    let keep = if truncate {
        Some(positive(
            "keep_multiple_of",
            c.keep_multiple_of.unwrap_or(OLMO_DEFAULT_KEEP_MULTIPLE_OF),
        )?)
    } else {
        if let Some(keep) = c.keep_multiple_of {
            return Err(invalid(
                "keep_multiple_of",
                keep,
                "belongs to olmo_truncate; olmo_split lengths are min times a power of two",
            ));
        }
        if !c.max.is_multiple_of(min) || !(c.max / min).is_power_of_two() {
            return Err(invalid(
                "max",
                c.max,
                &format!(
                    "olmo_split needs max = min ({min}) times a power of 2, so that every row splits evenly"
                ),
            ));
        }
        None
    };
    let curve = Curve::Olmo {
        min,
        max: c.max,
        warmup_steps,
        keep,
    };
    if curve.len_at(0) == 0 {
        return Err(invalid(
            "keep_multiple_of",
            keep.unwrap_or(0),
            &format!(
                "the first step's length rounds down to 0 (min {min} is below it): OLMo-core would train on empty rows"
            ),
        ));
    }
    Ok(curve)
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
    // The first update that reaches max, if within u64.
    let reaches_max_at = (max - min).div_ceil(step).checked_mul(every);
    if !(max - min).is_multiple_of(step) {
        warnings.push(ScheduleWarning::ComposerStepDoesNotDivideRange { min, max, step });
    }
    if reaches_max_at.is_none_or(|at| at >= total) {
        warnings.push(ScheduleWarning::MaxNotReachedInTraining {
            total,
            reached_at: reaches_max_at,
        });
    }
    Ok(Curve::Composer {
        min,
        max,
        step,
        every,
    })
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
