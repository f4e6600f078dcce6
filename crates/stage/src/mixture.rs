//! Weighted mixtures of sources, sans IO: which source the next document comes from, so that
//! the tokens drawn from each follow the weights.
//!
//! The unit is tokens, not documents: sources differ in document length by orders of magnitude
//! (a code file, a tweet, a book), and what a weight means to a training run is its share of
//! the tokens trained on. The interleave is deficit-based: the next document comes from the
//! source furthest below its share of the tokens drawn so far (ties: the larger weight, then
//! the earlier source). It uses no randomness, so it is the same on every rank and after every
//! resume, and the running share of each source stays close to its weight at every prefix, not
//! only on average: a source is drawn only when at or below its share, so it is never more than
//! one document over it, and since the deficits sum to zero never more than (sources - 1)
//! documents under it (tested at every prefix; with documents of up to 2 000 tokens that is
//! within 1% from 250 000 tokens on). The order within a source (its shuffle, its epochs) is
//! the source's own.
//!
//! Weights may change at given steps or token counts (data annealing): from the first batch of
//! such a step (or begun past such a count) on, the shares count from zero again, so the new
//! weights hold for the tokens drawn after the change, immediately, rather than being averaged
//! with the tokens before it.

use serde::{Deserialize, Serialize};

use seqwarm_schedule::Progress;

use crate::error::{Result, StageError};

/// One source of a mixture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureSource {
    /// Its name (in statistics and checkpoints).
    pub name: String,
    /// Its share of the tokens, relative to the other sources' weights (need not sum to 1).
    pub weight: f64,
}

/// When a [`WeightChange`] takes effect: before the batch of a step, or before the first batch
/// that begins once a number of tokens was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAt {
    /// From the batch of this step on.
    Step(u64),
    /// From the first batch that begins with at least this many tokens emitted
    /// ([`Progress::tokens`]: this rank's count, as a schedule in tokens counts them).
    Tokens(u64),
}

impl ChangeAt {
    /// Whether the change holds for the batch that begins at `progress`.
    pub fn reached(self, progress: &Progress) -> bool {
        match self {
            Self::Step(step) => progress.steps >= step,
            Self::Tokens(tokens) => progress.tokens >= tokens,
        }
    }

    /// The step or token count.
    pub fn value(self) -> u64 {
        match self {
            Self::Step(v) | Self::Tokens(v) => v,
        }
    }

    /// Its unit, as the setting is named (`step`, `tokens`).
    pub fn unit(self) -> &'static str {
        match self {
            Self::Step(_) => "step",
            Self::Tokens(_) => "tokens",
        }
    }
}

impl std::fmt::Display for ChangeAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Step(step) => write!(f, "step {step}"),
            Self::Tokens(tokens) => write!(f, "{tokens} tokens"),
        }
    }
}

/// New weights from a step, or from a token count, on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightChange {
    /// When the weights apply from.
    pub at: ChangeAt,
    /// One weight per source, in the sources' order.
    pub weights: Vec<f64>,
}

/// A mixture's settings: the sources with their weights, and weight changes by step or by
/// tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MixtureConfig {
    /// The sources, in order.
    pub sources: Vec<MixtureSource>,
    /// Weight changes, all in one unit (steps or tokens), by increasing step or token count.
    pub changes: Vec<WeightChange>,
}

impl MixtureConfig {
    /// The mixture, with its settings checked: at least one source, unique non-empty names,
    /// weights finite and not negative with a positive sum (also after each change), changes
    /// in one unit at strictly increasing steps or token counts, with one weight per source.
    pub fn build(&self) -> Result<Mixture> {
        let invalid = |field: &'static str, reason: String| StageError::Config { field, reason };
        if self.sources.is_empty() {
            return Err(invalid(
                "sources",
                "a mixture needs at least one source".into(),
            ));
        }
        let mut names: Vec<&str> = Vec::with_capacity(self.sources.len());
        for source in &self.sources {
            if source.name.is_empty() || names.contains(&source.name.as_str()) {
                return Err(invalid(
                    "sources",
                    format!(
                        "source name {:?}: names must be non-empty and unique",
                        source.name
                    ),
                ));
            }
            names.push(&source.name);
        }
        let initial: Vec<f64> = self.sources.iter().map(|s| s.weight).collect();
        let mut phases = vec![(
            ChangeAt::Step(0),
            normalized(&initial).map_err(|r| invalid("sources", r))?,
        )];
        for change in &self.changes {
            let at = change.at;
            if change.weights.len() != self.sources.len() {
                return Err(invalid(
                    "changes",
                    format!(
                        "the change at {at} has {} weights for {} sources",
                        change.weights.len(),
                        self.sources.len()
                    ),
                ));
            }
            if let Some(first) = self.changes.first().map(|c| c.at)
                && first.unit() != at.unit()
            {
                return Err(invalid(
                    "changes",
                    format!(
                        "a change at {at} after one at {first}: changes are all by step or all \
                         by tokens"
                    ),
                ));
            }
            // The sources' weights hold from the start: changes come after it, in order.
            let after = phases.last().map_or(0, |(at, _)| at.value());
            if at.value() <= after {
                return Err(invalid(
                    "changes",
                    format!(
                        "a change at {at} after {after}: change {}s must be above 0 and increase",
                        at.unit().trim_end_matches('s')
                    ),
                ));
            }
            let weights = normalized(&change.weights)
                .map_err(|r| invalid("changes", format!("at {at}: {r}")))?;
            phases.push((at, weights));
        }
        Ok(Mixture {
            names: self.sources.iter().map(|s| s.name.clone()).collect(),
            phases,
            phase: 0,
            drawn: vec![0; self.sources.len()],
            lifetime: vec![0; self.sources.len()],
        })
    }
}

/// Weights scaled to sum to 1, or why they cannot be.
fn normalized(weights: &[f64]) -> std::result::Result<Vec<f64>, String> {
    if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
        return Err(format!(
            "weight {bad}: weights must be finite and not negative"
        ));
    }
    let sum: f64 = weights.iter().sum();
    if !sum.is_normal() {
        return Err(format!(
            "the weights sum to {sum}: need a positive, finite sum (at least one source with a \
             positive weight)"
        ));
    }
    Ok(weights.iter().map(|w| w / sum).collect())
}

/// The interleave of a mixture ([`MixtureConfig::build`]): ask [`Mixture::next_source`],
/// take a document from that source, [`Mixture::record`] its tokens; call
/// [`Mixture::at_progress`] before each batch so that weight changes take effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Mixture {
    names: Vec<String>,
    /// `(from when, weights summing to 1)`, in order; the first from step 0.
    phases: Vec<(ChangeAt, Vec<f64>)>,
    /// The phase in effect.
    phase: usize,
    /// Tokens drawn from each source since the phase began.
    drawn: Vec<u64>,
    /// Tokens drawn from each source over the whole run.
    lifetime: Vec<u64>,
}

/// Where a mixture stands, for checkpoints. Opaque; serialize it with serde.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixtureState {
    /// The sources' names, in order: a checkpoint resumes only the same sources.
    sources: Vec<String>,
    /// The phase in effect (0: the sources' weights; `i`: after the `i`-th change).
    phase: usize,
    /// Tokens drawn from each source since that phase began.
    drawn: Vec<u64>,
    /// Tokens drawn from each source over the whole run.
    lifetime: Vec<u64>,
}

impl MixtureState {
    /// Tokens drawn from all sources over the whole run (`None` past `u64`).
    pub(crate) fn tokens_drawn(&self) -> Option<u64> {
        self.lifetime
            .iter()
            .try_fold(0u64, |sum, &t| sum.checked_add(t))
    }
}

impl Mixture {
    /// The sources' names, in order.
    pub fn sources(&self) -> &[String] {
        &self.names
    }

    /// The weights in effect, summing to 1.
    pub fn weights(&self) -> &[f64] {
        &self.phases[self.phase].1
    }

    /// Enters the phase that holds for the next batch, which begins at `progress`: a phase
    /// that begins there starts counting shares from zero.
    pub fn at_progress(&mut self, progress: &Progress) {
        let phase = self
            .phases
            .partition_point(|(at, _)| at.reached(progress))
            .saturating_sub(1);
        if phase != self.phase {
            self.phase = phase;
            self.drawn.iter_mut().for_each(|d| *d = 0);
        }
    }

    /// The source the next document comes from: of the sources with a positive weight, the
    /// one furthest below its share of the tokens drawn since the phase began.
    pub fn next_source(&self) -> usize {
        let weights = self.weights();
        let total = self.drawn.iter().sum::<u64>() as f64;
        let mut best = 0usize;
        let mut best_key = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (i, (&w, &d)) in weights.iter().zip(&self.drawn).enumerate() {
            if w <= 0.0 {
                continue;
            }
            let key = (w * total - d as f64, w);
            // Lexicographic: the larger deficit, then the larger weight; the earlier source
            // keeps a tie of both.
            if key > best_key {
                best = i;
                best_key = key;
            }
        }
        best
    }

    /// Counts `tokens` drawn from `source` (a document and, where the stage appends one, its
    /// end-of-text token). A source out of range is ignored.
    pub fn record(&mut self, source: usize, tokens: u64) {
        if let (Some(d), Some(l)) = (self.drawn.get_mut(source), self.lifetime.get_mut(source)) {
            *d += tokens;
            *l += tokens;
        }
    }

    /// Tokens drawn from each source over the whole run.
    pub fn tokens_per_source(&self) -> &[u64] {
        &self.lifetime
    }

    /// A checkpoint of where the mixture stands.
    pub fn state(&self) -> MixtureState {
        MixtureState {
            sources: self.names.clone(),
            phase: self.phase,
            drawn: self.drawn.clone(),
            lifetime: self.lifetime.clone(),
        }
    }

    /// Continues from `state`; refused when it does not fit these sources and changes.
    pub fn restore(&mut self, state: &MixtureState) -> Result<()> {
        let n = self.names.len();
        if state.sources != self.names {
            return Err(StageError::State {
                reason: format!(
                    "the checkpoint's mixture has sources {:?}, this one {:?}",
                    state.sources, self.names
                ),
            });
        }
        let fits = state.phase < self.phases.len()
            && state.drawn.len() == n
            && state.lifetime.len() == n
            && state.drawn.iter().zip(&state.lifetime).all(|(d, l)| d <= l);
        let summed = state
            .drawn
            .iter()
            .try_fold(0u64, |sum, &d| sum.checked_add(d));
        let (true, Some(_)) = (fits, summed) else {
            return Err(StageError::State {
                reason: format!(
                    "mixture state (phase {}, {} and {} counts) does not fit {n} sources and {} \
                     weight phases, or its counts contradict each other",
                    state.phase,
                    state.drawn.len(),
                    state.lifetime.len(),
                    self.phases.len()
                ),
            });
        };
        self.phase = state.phase;
        self.drawn.clone_from(&state.drawn);
        self.lifetime.clone_from(&state.lifetime);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{ChangeAt, MixtureConfig, MixtureSource, WeightChange};
    use proptest::prelude::*;
    use seqwarm_schedule::Progress;

    fn config(weights: &[f64]) -> MixtureConfig {
        MixtureConfig {
            sources: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| MixtureSource {
                    name: format!("s{i}"),
                    weight,
                })
                .collect(),
            changes: Vec::new(),
        }
    }

    /// A deterministic document length in `1..=max` for draw `i` of source `s`.
    fn length(s: usize, i: u64, max: u64) -> u64 {
        let x = (i + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(s as u64 * 0x2545_f491_4f6c_dd1d);
        1 + (x ^ (x >> 29)) % max
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Over a million tokens, at every prefix, each source is at most one document over
        /// its share of the tokens and at most (sources - 1) documents under it, here of up to
        /// 2 000 tokens (sources whose documents differ in length by 100x); so past the first
        /// 250 000 (four steps of 65 536 tokens) each share is within 1% of its weight.
        #[test]
        fn shares_follow_the_weights_at_every_prefix(
            raw in prop::collection::vec(0.05f64..1.0, 2..6),
        ) {
            let mut mixture = config(&raw).build().unwrap();
            let weights = mixture.weights().to_vec();
            let mut counts = vec![0u64; raw.len()];
            let mut total = 0u64;
            while total < 1_000_000 {
                let s = mixture.next_source();
                // Source 0 has documents of up to 20 tokens, the others up to 2 000.
                let max = if s == 0 { 20 } else { 2_000 };
                let n = length(s, counts[s], max);
                mixture.record(s, n);
                counts[s] += 1;
                total += n;
                for (i, &w) in weights.iter().enumerate() {
                    let drawn = mixture.tokens_per_source()[i] as f64;
                    // At every prefix: at most one document over its share (drawn only when at
                    // or below it) and, the deficits summing to zero, at most (sources - 1)
                    // documents under it.
                    let off = drawn - w * total as f64;
                    prop_assert!(off <= 2_000.0 + 1e-6, "source {i} over by {off} at {total}");
                    prop_assert!(
                        -off <= ((raw.len() - 1) * 2_000) as f64 + 1e-6,
                        "source {i} under by {} at {total}", -off
                    );
                    if total > 250_000 {
                        let share = drawn / total as f64;
                        prop_assert!((share - w).abs() < 0.01, "source {i}: {share} for {w} at {total}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_weight_change_takes_effect_at_its_step_and_state_resumes_exactly() {
        let mut cfg = config(&[1.0, 1.0, 0.0]);
        cfg.changes.push(WeightChange {
            at: ChangeAt::Step(10),
            weights: vec![0.0, 1.0, 3.0],
        });
        let build = || cfg.build().unwrap();
        let run = |mixture: &mut super::Mixture, steps: std::ops::Range<u64>| {
            let mut picks = Vec::new();
            for step in steps {
                mixture.at_progress(&Progress {
                    steps: step,
                    ..Progress::default()
                });
                for _ in 0..4 {
                    let s = mixture.next_source();
                    mixture.record(s, length(s, picks.len() as u64, 300));
                    picks.push((step, s));
                }
            }
            picks
        };
        let mut whole = build();
        let picks = run(&mut whole, 0..40);
        // Before step 10 only sources 0 and 1; from step 10 on never source 0.
        assert!(picks.iter().filter(|(st, _)| *st < 10).all(|(_, s)| *s < 2));
        assert!(
            picks
                .iter()
                .filter(|(st, _)| *st >= 10)
                .all(|(_, s)| *s != 0)
        );
        assert!(picks.iter().any(|(st, s)| *st == 10 && *s == 2));
        // Interrupted at step 17 and restored into a fresh mixture: the same picks after.
        let mut first = build();
        let head = run(&mut first, 0..17);
        let state = first.state();
        let mut resumed = build();
        resumed.restore(&state).unwrap();
        let tail = run(&mut resumed, 17..40);
        let joined: Vec<usize> = head.iter().chain(&tail).map(|(_, s)| *s).collect();
        // `length` depends on the pick's index: re-derive the whole run's the same way.
        let mut again = build();
        let mut expected = run(&mut again, 0..17);
        let mut rest = run(&mut again, 17..40);
        expected.append(&mut rest);
        assert_eq!(joined, expected.iter().map(|(_, s)| *s).collect::<Vec<_>>());
        assert_eq!(resumed.tokens_per_source(), again.tokens_per_source());
    }

    #[test]
    fn bad_settings_and_states_are_refused() {
        for weights in [vec![], vec![0.0, 0.0], vec![1.0, -1.0], vec![f64::NAN]] {
            assert!(config(&weights).build().is_err(), "{weights:?}");
        }
        let mut same = config(&[1.0, 1.0]);
        same.sources[1].name = "s0".into();
        assert!(same.build().is_err());
        let mut cfg = config(&[1.0, 1.0]);
        cfg.changes = vec![
            WeightChange {
                at: ChangeAt::Step(5),
                weights: vec![1.0, 0.0],
            },
            WeightChange {
                at: ChangeAt::Step(5),
                weights: vec![0.0, 1.0],
            },
        ];
        assert!(cfg.build().is_err());
        cfg.changes = vec![WeightChange {
            at: ChangeAt::Step(5),
            weights: vec![1.0],
        }];
        assert!(cfg.build().is_err());
        cfg.changes = vec![WeightChange {
            at: ChangeAt::Step(0),
            weights: vec![1.0, 2.0],
        }];
        assert!(cfg.build().is_err());
        // Steps and tokens are not mixed.
        cfg.changes = vec![
            WeightChange {
                at: ChangeAt::Step(5),
                weights: vec![1.0, 0.0],
            },
            WeightChange {
                at: ChangeAt::Tokens(50_000),
                weights: vec![0.0, 1.0],
            },
        ];
        let err = cfg.build().unwrap_err().to_string();
        assert!(err.contains("all by step or all by tokens"), "{err}");
        let mut m = config(&[1.0, 1.0]).build().unwrap();
        let mut state = m.state();
        state.drawn = vec![5, 0];
        assert!(m.restore(&state).is_err(), "drawn above lifetime");
        state.lifetime = vec![5];
        assert!(m.restore(&state).is_err(), "wrong length");
        let mut renamed = m.state();
        renamed.sources.reverse();
        assert!(m.restore(&renamed).is_err(), "other sources");
        assert!(config(&[1e308, 1e308]).build().is_err(), "an infinite sum");
    }
}
