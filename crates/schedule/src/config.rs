//! Schedule configuration: one variant per kind, each carrying exactly its fields.

use serde::{Deserialize, Serialize};

use crate::progress::ProgressUnit;
use crate::shapes::ShapePolicy;

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
    /// OLMo-core's `SequenceLengthSchedulerCallback` with `truncate=False`: lengths `min`
    /// times a power of two, each batch split into more, shorter rows (use with `reshape`).
    OlmoSplit,
    /// OLMo-core's `SequenceLengthSchedulerCallback` with `truncate=True`: lengths multiples
    /// of `keep_multiple_of`, each row truncated (use with `truncate`).
    OlmoTruncate,
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
            Self::OlmoSplit => "olmo_split",
            Self::OlmoTruncate => "olmo_truncate",
        }
    }

    /// Every kind, in documentation order.
    pub const ALL: [ScheduleKind; 8] = [
        Self::Linear,
        Self::Composer,
        Self::FixedLinear,
        Self::FixedRoot,
        Self::FixedDiscrete,
        Self::Constant,
        Self::OlmoSplit,
        Self::OlmoTruncate,
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
            // OLMo-core's kinds also by the hyphenated names of its docs.
            .find(|k| k.name() == s || k.name().replace('_', "-") == s)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "unknown schedule kind `{s}`; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// The `step` used when a config leaves it out: 8, the tensor-core-friendly default.
pub const DEFAULT_STEP: u64 = 8;

fn default_step() -> u64 {
    DEFAULT_STEP
}

/// A schedule as written in a config file (TOML or JSON), tagged by `kind`, e.g.
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
/// Each kind takes exactly its own fields, so a typo or a field of another kind is an error
/// naming it. `unit` (what progress is counted in; default `steps`) and `total` (the length of
/// training in that unit) belong to every kind: `linear` and `composer` need `total`, the
/// others use it only to report on a whole run. DeepSpeed's spellings (`min_difficulty`,
/// `difficulty_step`, `total_step`, ...) and Composer's (`min_seq_length`, `step_size`) are
/// accepted as aliases.
///
/// ```
/// use seqwarm_schedule::{ProgressUnit, ScheduleConfig};
///
/// let config: ScheduleConfig = toml::from_str("kind = \"linear\"\nmin = 8\nmax = 64\nduration = 0.5\ntotal = 100")?;
/// assert_eq!(config, ScheduleConfig::linear(8, 64, 0.5, 100).into());
/// let typo = toml::from_str::<ScheduleConfig>("kind = \"constant\"\nmax = 64\nmin = 8");
/// assert!(typo.unwrap_err().to_string().contains("unknown field `min`"));
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleConfig {
    /// seqwarm's stepped linear ramp.
    Linear(Ramp),
    /// Composer's `SeqLengthWarmup`.
    Composer(Ramp),
    /// DeepSpeed's `fixed_linear`.
    FixedLinear(Root),
    /// DeepSpeed's `fixed_root`.
    FixedRoot(Root),
    /// DeepSpeed's `fixed_discrete`.
    FixedDiscrete(FixedDiscrete),
    /// The constant baseline.
    Constant(Constant),
    /// OLMo-core's sequence-length scheduler, split mode.
    #[serde(alias = "olmo-split")]
    OlmoSplit(Olmo),
    /// OLMo-core's sequence-length scheduler, truncate mode.
    #[serde(alias = "olmo-truncate")]
    OlmoTruncate(Olmo),
}

/// The fields of `linear` and `composer`: from `min` to `max` in steps of `step` over the first
/// `duration` of `total`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ramp {
    /// Shortest sequence length.
    #[serde(alias = "min_seq_length")]
    pub min: u64,
    /// Longest sequence length.
    #[serde(alias = "max_seq_length")]
    pub max: u64,
    /// Length increment; a multiple of 8 suits tensor cores.
    #[serde(default = "default_step", alias = "step_size")]
    pub step: u64,
    /// Fraction of `total` spent warming up, in [0, 1].
    pub duration: f64,
    /// Length of training in `unit`.
    pub total: u64,
    /// What progress is counted in.
    #[serde(default)]
    pub unit: ProgressUnit,
    /// At most a few lengths, for compiled training ([`ShapePolicy`]); off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<ShapePolicy>,
}

/// The fields of DeepSpeed's `fixed_linear` and `fixed_root`: from `min` to `max` in steps of
/// `step` along a root of degree `root_degree` (1 for `fixed_linear`, which takes no other)
/// over `total_curriculum_step`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Shortest sequence length.
    #[serde(alias = "min_difficulty")]
    pub min: u64,
    /// Longest sequence length.
    #[serde(alias = "max_difficulty")]
    pub max: u64,
    /// Length increment (DeepSpeed's `difficulty_step`).
    #[serde(default = "default_step", alias = "difficulty_step")]
    pub step: u64,
    /// Progress at which the ramp ends (DeepSpeed's `total_curriculum_step`).
    #[serde(alias = "total_step")]
    pub total_curriculum_step: u64,
    /// The root's degree (2 = square root); `fixed_root` needs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_degree: Option<u32>,
    /// Length of training, for reports on a whole run.
    #[serde(default)]
    pub total: Option<u64>,
    /// What progress is counted in.
    #[serde(default)]
    pub unit: ProgressUnit,
    /// At most a few lengths, for compiled training ([`ShapePolicy`]); off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<ShapePolicy>,
}

/// The fields of DeepSpeed's `fixed_discrete`: `difficulty[i]` up to `max_step[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedDiscrete {
    /// The lengths, non-decreasing; one more than `max_step`.
    pub difficulty: Vec<u64>,
    /// The last position of each length but the final one, strictly increasing.
    pub max_step: Vec<u64>,
    /// DeepSpeed's `min_difficulty` (its configs carry it; not used by this kind).
    #[serde(default, alias = "min_difficulty")]
    pub min: Option<u64>,
    /// DeepSpeed's `max_difficulty`: when given, no `difficulty` may exceed it.
    #[serde(default, alias = "max_difficulty")]
    pub max: Option<u64>,
    /// Length of training, for reports on a whole run.
    #[serde(default)]
    pub total: Option<u64>,
    /// What progress is counted in.
    #[serde(default)]
    pub unit: ProgressUnit,
    /// At most a few lengths, for compiled training ([`ShapePolicy`]); off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<ShapePolicy>,
}

/// The fields of the constant baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constant {
    /// The only length.
    #[serde(alias = "max_seq_length")]
    pub max: u64,
    /// Length of training, for reports on a whole run.
    #[serde(default)]
    pub total: Option<u64>,
    /// What progress is counted in.
    #[serde(default)]
    pub unit: ProgressUnit,
    /// At most a few lengths, for compiled training ([`ShapePolicy`]); off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<ShapePolicy>,
}

/// The fields of OLMo-core's `SequenceLengthSchedulerCallback` (its names are aliases): from
/// `min` toward `max` (the dataset's sequence length) over steps 1 to `warmup_steps`, full
/// length after. Progress is counted in steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Olmo {
    /// The first length (OLMo-core's `min_sequence_length`, default 128).
    #[serde(default = "default_olmo_min", alias = "min_sequence_length")]
    pub min: u64,
    /// The training sequence length (OLMo-core's dataset `sequence_length`).
    #[serde(alias = "sequence_length")]
    pub max: u64,
    /// Steps of warmup (OLMo-core's `warmup_steps`, default 2000).
    #[serde(default = "default_olmo_warmup_steps")]
    pub warmup_steps: u64,
    /// `olmo_truncate` only: every length a multiple of this (default 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_multiple_of: Option<u64>,
    /// Length of training in steps, for reports on a whole run.
    #[serde(default)]
    pub total: Option<u64>,
    /// What progress is counted in: steps (the callback counts trainer steps).
    #[serde(default)]
    pub unit: ProgressUnit,
    /// At most a few lengths, for compiled training ([`ShapePolicy`]); off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shapes: Option<ShapePolicy>,
}

/// OLMo-core's defaults of `SequenceLengthSchedulerCallback`.
pub const OLMO_DEFAULT_MIN: u64 = 128;
/// OLMo-core's default `warmup_steps`.
pub const OLMO_DEFAULT_WARMUP_STEPS: u64 = 2000;
/// OLMo-core's default `keep_multiple_of`.
pub const OLMO_DEFAULT_KEEP_MULTIPLE_OF: u64 = 128;

fn default_olmo_min() -> u64 {
    OLMO_DEFAULT_MIN
}

fn default_olmo_warmup_steps() -> u64 {
    OLMO_DEFAULT_WARMUP_STEPS
}

impl Olmo {
    /// OLMo-core's callback toward `max` with its defaults (min 128, 2000 warmup steps).
    pub fn new(max: u64) -> Self {
        Self {
            min: OLMO_DEFAULT_MIN,
            max,
            warmup_steps: OLMO_DEFAULT_WARMUP_STEPS,
            keep_multiple_of: None,
            total: None,
            unit: ProgressUnit::default(),
            shapes: None,
        }
    }
}

/// The default schedule: seqwarm's linear ramp from 8 to 1024 in steps of 8 over the first 30%
/// (the duration of Composer's GPT-2 experiments) of 10 000 steps.
/// The built-in lengths, span and length of training of every kind ([`ScheduleConfig::default_for`]).
const BUILT_IN_MIN: u64 = 8;
const BUILT_IN_MAX: u64 = 1024;
const BUILT_IN_DURATION: f64 = 0.3;
const BUILT_IN_TOTAL: u64 = 10_000;

/// The built-in `linear` schedule ([`ScheduleConfig::default_for`]).
impl Default for ScheduleConfig {
    fn default() -> Self {
        Self::linear(
            BUILT_IN_MIN,
            BUILT_IN_MAX,
            BUILT_IN_DURATION,
            BUILT_IN_TOTAL,
        )
        .into()
    }
}

impl ScheduleConfig {
    /// seqwarm's `linear` ramp from `min` to `max` over `duration` of `total` (step 8).
    pub fn linear(min: u64, max: u64, duration: f64, total: u64) -> RampBuilder {
        RampBuilder::new(ScheduleKind::Linear, min, max, duration, total)
    }

    /// Composer's `SeqLengthWarmup` from `min` to `max` over `duration` of `total` (step 8).
    pub fn composer(min: u64, max: u64, duration: f64, total: u64) -> RampBuilder {
        RampBuilder::new(ScheduleKind::Composer, min, max, duration, total)
    }

    /// DeepSpeed's `fixed_linear` from `min` to `max` over `total_curriculum_step` (step 8).
    pub fn fixed_linear(min: u64, max: u64, total_curriculum_step: u64) -> Self {
        Self::FixedLinear(Root::new(min, max, total_curriculum_step, None))
    }

    /// DeepSpeed's `fixed_root` of `root_degree` from `min` to `max` over
    /// `total_curriculum_step` (step 8).
    pub fn fixed_root(min: u64, max: u64, total_curriculum_step: u64, root_degree: u32) -> Self {
        Self::FixedRoot(Root::new(
            min,
            max,
            total_curriculum_step,
            Some(root_degree),
        ))
    }

    /// DeepSpeed's `fixed_discrete`: `difficulty[i]` up to position `max_step[i]`.
    pub fn fixed_discrete(difficulty: Vec<u64>, max_step: Vec<u64>) -> Self {
        Self::FixedDiscrete(FixedDiscrete {
            difficulty,
            max_step,
            min: None,
            max: None,
            total: None,
            unit: ProgressUnit::default(),
            shapes: None,
        })
    }

    /// The `constant` baseline at `max`.
    pub fn constant(max: u64) -> Self {
        Self::Constant(Constant {
            max,
            total: None,
            unit: ProgressUnit::default(),
            shapes: None,
        })
    }

    /// The built-in schedule of each kind (what `seqwarm plan --kind KIND` shows): lengths 8 to
    /// 1024 in steps of 8 over 10 000 steps, the ramps over their first 30% (3 000 steps),
    /// `fixed_root` a square root. `fixed_discrete` has no sensible default (its lengths are
    /// the configuration), so `None`.
    pub fn default_for(kind: ScheduleKind) -> Option<Self> {
        let (min, max, total) = (BUILT_IN_MIN, BUILT_IN_MAX, BUILT_IN_TOTAL);
        // DeepSpeed's kinds count their span in steps: the same fraction of the same total.
        let span = (BUILT_IN_DURATION * total as f64).round() as u64;
        Some(match kind {
            ScheduleKind::Linear => Self::default(),
            ScheduleKind::Composer => Self::composer(min, max, BUILT_IN_DURATION, total).into(),
            ScheduleKind::FixedLinear => Self::fixed_linear(min, max, span).with_total(total),
            ScheduleKind::FixedRoot => Self::fixed_root(min, max, span, 2).with_total(total),
            ScheduleKind::Constant => Self::constant(max).with_total(total),
            ScheduleKind::FixedDiscrete => return None,
            // OLMo-core's own defaults (min 128, 2000 warmup steps, multiples of 128).
            ScheduleKind::OlmoSplit => Self::OlmoSplit(Olmo::new(max)).with_total(total),
            ScheduleKind::OlmoTruncate => Self::OlmoTruncate(Olmo {
                keep_multiple_of: Some(OLMO_DEFAULT_KEEP_MULTIPLE_OF),
                ..Olmo::new(max)
            })
            .with_total(total),
        })
    }

    /// The kind.
    pub fn kind(&self) -> ScheduleKind {
        match self {
            Self::Linear(_) => ScheduleKind::Linear,
            Self::Composer(_) => ScheduleKind::Composer,
            Self::FixedLinear(_) => ScheduleKind::FixedLinear,
            Self::FixedRoot(_) => ScheduleKind::FixedRoot,
            Self::FixedDiscrete(_) => ScheduleKind::FixedDiscrete,
            Self::Constant(_) => ScheduleKind::Constant,
            Self::OlmoSplit(_) => ScheduleKind::OlmoSplit,
            Self::OlmoTruncate(_) => ScheduleKind::OlmoTruncate,
        }
    }

    /// The unit progress is counted in.
    pub fn unit(&self) -> ProgressUnit {
        match self {
            Self::Linear(c) | Self::Composer(c) => c.unit,
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.unit,
            Self::FixedDiscrete(c) => c.unit,
            Self::Constant(c) => c.unit,
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.unit,
        }
    }

    /// The length of training in [`ScheduleConfig::unit`], when known.
    pub fn total(&self) -> Option<u64> {
        match self {
            Self::Linear(c) | Self::Composer(c) => Some(c.total),
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.total,
            Self::FixedDiscrete(c) => c.total,
            Self::Constant(c) => c.total,
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.total,
        }
    }

    /// The configured longest length (`fixed_discrete` has one only when `max` is given).
    pub fn max(&self) -> Option<u64> {
        match self {
            Self::Linear(c) | Self::Composer(c) => Some(c.max),
            Self::FixedLinear(c) | Self::FixedRoot(c) => Some(c.max),
            Self::FixedDiscrete(c) => c.max,
            Self::Constant(c) => Some(c.max),
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => Some(c.max),
        }
    }

    /// The shape policy, when one is set.
    pub fn shapes(&self) -> Option<&ShapePolicy> {
        match self {
            Self::Linear(c) | Self::Composer(c) => c.shapes.as_ref(),
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.shapes.as_ref(),
            Self::FixedDiscrete(c) => c.shapes.as_ref(),
            Self::Constant(c) => c.shapes.as_ref(),
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.shapes.as_ref(),
        }
    }

    /// The length increment the shape policy rounds to: the kind's `step`, else
    /// [`DEFAULT_STEP`].
    pub(crate) fn shape_step(&self) -> u64 {
        match self {
            Self::Linear(c) | Self::Composer(c) => c.step,
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.step,
            Self::FixedDiscrete(_) | Self::Constant(_) => DEFAULT_STEP,
            Self::OlmoSplit(c) => c.min,
            Self::OlmoTruncate(c) => c.keep_multiple_of.unwrap_or(OLMO_DEFAULT_KEEP_MULTIPLE_OF),
        }
    }

    /// Sets (or, with `None`, removes) the shape policy: at most a few lengths, each position's
    /// length snapped down to an allowed one.
    #[must_use]
    pub fn with_shapes(mut self, shapes: impl Into<Option<ShapePolicy>>) -> Self {
        let shapes = shapes.into();
        match &mut self {
            Self::Linear(c) | Self::Composer(c) => c.shapes = shapes,
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.shapes = shapes,
            Self::FixedDiscrete(c) => c.shapes = shapes,
            Self::Constant(c) => c.shapes = shapes,
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.shapes = shapes,
        }
        self
    }

    /// Sets the progress unit.
    #[must_use]
    pub fn with_unit(mut self, unit: ProgressUnit) -> Self {
        match &mut self {
            Self::Linear(c) | Self::Composer(c) => c.unit = unit,
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.unit = unit,
            Self::FixedDiscrete(c) => c.unit = unit,
            Self::Constant(c) => c.unit = unit,
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.unit = unit,
        }
        self
    }

    /// Sets the length of training (for `linear` and `composer`, the span of the ramp).
    #[must_use]
    pub fn with_total(mut self, total: u64) -> Self {
        match &mut self {
            Self::Linear(c) | Self::Composer(c) => c.total = total,
            Self::FixedLinear(c) | Self::FixedRoot(c) => c.total = Some(total),
            Self::FixedDiscrete(c) => c.total = Some(total),
            Self::Constant(c) => c.total = Some(total),
            Self::OlmoSplit(c) | Self::OlmoTruncate(c) => c.total = Some(total),
        }
        self
    }
}

impl Root {
    fn new(min: u64, max: u64, total_curriculum_step: u64, root_degree: Option<u32>) -> Self {
        Self {
            min,
            max,
            step: DEFAULT_STEP,
            total_curriculum_step,
            root_degree,
            total: None,
            unit: ProgressUnit::default(),
            shapes: None,
        }
    }
}

/// Builds `linear` and `composer` configs: `ScheduleConfig::linear(8, 1024, 0.3, 10_000)`,
/// then the optional settings, then [`RampBuilder::build`] (or `.into()` for the config).
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RampBuilder {
    composer: bool,
    ramp: Ramp,
}

impl RampBuilder {
    fn new(kind: ScheduleKind, min: u64, max: u64, duration: f64, total: u64) -> Self {
        Self {
            composer: kind == ScheduleKind::Composer,
            ramp: Ramp {
                min,
                max,
                step: DEFAULT_STEP,
                duration,
                total,
                unit: ProgressUnit::default(),
                shapes: None,
            },
        }
    }

    /// Sets the length increment.
    pub fn with_step(mut self, step: u64) -> Self {
        self.ramp.step = step;
        self
    }

    /// Sets the progress unit.
    pub fn with_unit(mut self, unit: ProgressUnit) -> Self {
        self.ramp.unit = unit;
        self
    }

    /// Sets the shape policy ([`ScheduleConfig::with_shapes`]).
    pub fn with_shapes(mut self, shapes: ShapePolicy) -> Self {
        self.ramp.shapes = Some(shapes);
        self
    }

    /// The config.
    pub fn config(&self) -> ScheduleConfig {
        self.clone().into()
    }
}

impl From<RampBuilder> for ScheduleConfig {
    fn from(b: RampBuilder) -> Self {
        if b.composer {
            Self::Composer(b.ramp)
        } else {
            Self::Linear(b.ramp)
        }
    }
}
