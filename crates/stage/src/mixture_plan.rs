//! [`MixturePlan`]: the sans-IO driver of one [`WarmupCore`] over several sources, each its own
//! set of work units, interleaved document by document by a [`Mixture`] so that the tokens
//! drawn from each follow the weights.
//!
//! Each source is read as an epoch plan reads its units: every epoch a permutation of its
//! units drawn from (seed, source, epoch), every `world_size`-th of it for this rank. A source
//! runs through its epochs on its own: a small source repeats while a large one is still in
//! its first pass, and its epoch count is reported per source. The mixture itself has no
//! epoch: it runs until `max_steps` or `max_tokens` (one is required). Since every source
//! repeats, every rank always has documents, so ranks stay in lockstep by the step limit.
//!
//! The interleave is exact and resumable: documents are handed to the core one at a time, when
//! it needs more, and the core takes each whole before it asks again, so at every batch
//! boundary each source's position (epoch, unit, document) marks exactly what was taken from
//! it; a checkpoint holds those positions, the mixture's counts and the core's carry.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::core::{CoreState, WarmupCore};
use crate::documents::Documents;
use crate::driven::{Action, Plan, PlanCheckpoint};
use crate::epochs::EpochConfig;
use crate::error::{Result, StageError};
use crate::kept_steps::KeptSteps;
use crate::mixture::{Mixture, MixtureState};
use crate::plan::{Reads, UnitInfo};
use crate::rng::SplitMix64;
use crate::sink::ModeSink;

/// What was drawn from one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStats {
    /// The source's name.
    pub name: String,
    /// Documents taken from it.
    pub documents: u64,
    /// Tokens taken from it (EOS tokens the stage adds included).
    pub tokens: u64,
    /// The epoch of the source being read (0 in its first pass).
    pub epoch: u64,
    /// Row groups of it skipped as unreadable.
    pub units_skipped: u64,
}

/// A source's place, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceState {
    epoch: u64,
    unit: u64,
    document: u64,
    documents: u64,
    units_skipped: u64,
}

/// A [`MixturePlan`] at a batch boundary, for a checkpoint. Opaque; serialize it with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixturePlanState {
    sources: Vec<SourceState>,
    mixture: MixtureState,
    core: CoreState,
}

impl MixturePlanState {
    /// The token ids the state holds (see [`CoreState::token_ids`]).
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.core.token_ids()
    }

    /// Batches emitted up to this state.
    pub fn step(&self) -> u64 {
        self.core.step()
    }
}

/// One source: its units, its epoch's order for this rank, where reading stands, and what the
/// driver pushed that the core has not taken yet.
struct Source {
    units: Arc<[UnitInfo]>,
    epoch: u64,
    order: Arc<[usize]>,
    /// The next document to take: a position in `order` and a document of the unit there.
    unit: u64,
    document: u64,
    /// Where the current reads started, and the documents of that unit to skip.
    start: (u64, u64),
    /// Runs pushed, each with the index of its next document to take.
    queue: VecDeque<(Documents, usize)>,
    reads_started: bool,
    reads_ended: bool,
    epoch_took_tokens: bool,
    documents: u64,
    units_skipped: u64,
}

/// The sans-IO mixture plan around a [`WarmupCore`]; see the module documentation.
pub struct MixturePlan {
    core: WarmupCore<ModeSink>,
    mixture: Mixture,
    sources: Vec<Source>,
    config: EpochConfig,
    stopped: bool,
    skipped: Vec<String>,
}

impl std::fmt::Debug for MixturePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MixturePlan")
            .field("sources", &self.mixture.sources())
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl MixturePlan {
    /// A plan over `units[s]`, the units of source `s` of `mixture`, from the start. `config`
    /// gives the seed, the ranks, unit shuffling and the limits (`epochs` does not apply:
    /// sources repeat on their own); `max_steps` or `max_tokens` is required.
    pub fn new(
        units: Vec<Arc<[UnitInfo]>>,
        mixture: Mixture,
        config: EpochConfig,
        core: WarmupCore<ModeSink>,
    ) -> Result<Self> {
        let invalid = |field: &'static str, reason: String| StageError::Config { field, reason };
        if units.len() != mixture.sources().len() {
            return Err(invalid(
                "sources",
                format!(
                    "{} sources of units for a mixture of {}",
                    units.len(),
                    mixture.sources().len()
                ),
            ));
        }
        if config.max_steps().is_none() && config.max_tokens().is_none() {
            return Err(invalid(
                "max_steps",
                "a mixture repeats its sources and has no end of its own: give max_steps or \
                 max_tokens"
                    .into(),
            ));
        }
        if config.world_size() > 1 && config.max_steps().is_none() {
            return Err(invalid(
                "max_steps",
                "with several ranks a mixture needs max_steps, so that every rank stops at the \
                 same step (tokens per batch differ between ranks)"
                    .into(),
            ));
        }
        for (name, units) in mixture.sources().iter().zip(&units) {
            if units.is_empty() {
                return Err(invalid(
                    "sources",
                    format!("source `{name}` has no row groups"),
                ));
            }
            if config.world_size() > units.len() {
                return Err(invalid(
                    "world_size",
                    format!(
                        "{} ranks but source `{name}` has {} row groups: every rank needs at \
                         least one of every source",
                        config.world_size(),
                        units.len()
                    ),
                ));
            }
        }
        let mut plan = Self {
            core,
            mixture,
            sources: Vec::new(),
            config,
            stopped: false,
            skipped: Vec::new(),
        };
        plan.sources = units
            .into_iter()
            .enumerate()
            .map(|(index, units)| plan.source_at(index, units, 0))
            .collect();
        Ok(plan)
    }

    /// A plan continuing from `state` (taken with [`MixturePlan::state`] by a plan with the
    /// same sources, units and settings).
    pub fn resume(
        units: Vec<Arc<[UnitInfo]>>,
        mixture: Mixture,
        config: EpochConfig,
        mut core: WarmupCore<ModeSink>,
        state: &MixturePlanState,
    ) -> Result<Self> {
        core.restore(&state.core)?;
        let mut mixture = mixture;
        mixture.restore(&state.mixture)?;
        // Every token drawn from a source went into the core: the mixture's counts and the
        // core's must agree, or the shares drawn from here on would follow made-up counts.
        let drawn = state.mixture.tokens_drawn();
        if drawn != Some(core.stats().tokens_in) {
            return Err(StageError::State {
                reason: format!(
                    "the mixture counts {} tokens drawn from its sources, the stage {} taken in \
                     (edited by hand?)",
                    drawn.map_or_else(|| "more than 2^64".to_string(), |d| d.to_string()),
                    core.stats().tokens_in
                ),
            });
        }
        let mut plan = Self::new(units, mixture, config, core)?;
        if state.sources.len() != plan.sources.len() {
            return Err(StageError::State {
                reason: format!(
                    "the checkpoint has {} sources, this mixture {}",
                    state.sources.len(),
                    plan.sources.len()
                ),
            });
        }
        for index in 0..plan.sources.len() {
            let saved = &state.sources[index];
            let units = Arc::clone(&plan.sources[index].units);
            let mut source = plan.source_at(index, units, saved.epoch);
            let len = source.order.len() as u64;
            let documents = source
                .order
                .get(usize::try_from(saved.unit).unwrap_or(usize::MAX))
                .map_or(0, |&u| source.units[u].documents);
            if saved.unit > len || saved.document > documents {
                return Err(StageError::State {
                    reason: format!(
                        "source {index}: row group position {} (document {}) of {len} (a \
                         checkpoint of another data set, or edited by hand?)",
                        saved.unit, saved.document
                    ),
                });
            }
            (source.unit, source.document) = (saved.unit, saved.document);
            source.start = (saved.unit, saved.document);
            source.documents = saved.documents;
            source.units_skipped = saved.units_skipped;
            source.epoch_took_tokens = saved.unit > 0 || saved.document > 0;
            plan.sources[index] = source;
        }
        Ok(plan)
    }

    /// Source `index` at the start of `epoch`: its order for this rank.
    fn source_at(&self, index: usize, units: Arc<[UnitInfo]>, epoch: u64) -> Source {
        let mut all: Vec<usize> = (0..units.len()).collect();
        if self.config.shuffle_units() {
            SplitMix64::from_parts(&[self.config.seed(), index as u64, epoch, 0x4D49])
                .shuffle(&mut all);
        }
        let order = all
            .into_iter()
            .skip(self.config.rank())
            .step_by(self.config.world_size().max(1))
            .collect();
        Source {
            units,
            epoch,
            order,
            unit: 0,
            document: 0,
            start: (0, 0),
            queue: VecDeque::new(),
            reads_started: false,
            reads_ended: false,
            epoch_took_tokens: false,
            documents: 0,
            units_skipped: 0,
        }
    }

    /// What was drawn from each source.
    pub fn source_stats(&self) -> Vec<SourceStats> {
        self.mixture
            .sources()
            .iter()
            .zip(&self.sources)
            .zip(self.mixture.tokens_per_source())
            .map(|((name, s), &tokens)| SourceStats {
                name: name.clone(),
                documents: s.documents,
                tokens,
                epoch: s.epoch,
                units_skipped: s.units_skipped,
            })
            .collect()
    }

    fn decide(&mut self) -> Result<Action> {
        loop {
            if self.stopped {
                return Ok(Action::Finished);
            }
            let p = self.core.progress();
            if self.config.limits_reached(&p) {
                self.stopped = true;
                return Ok(Action::Finished);
            }
            self.mixture.at_progress(&p);
            if let Some(batch) = self.core.next_batch()? {
                return Ok(Action::Emit(batch));
            }
            let index = self.mixture.next_source();
            if let Some(document) = self.take_document(index) {
                let eos = u64::from(self.core.warmup().eos_id().is_some());
                self.mixture
                    .record(index, document.token_count() as u64 + eos);
                let source = &mut self.sources[index];
                source.documents += 1;
                if document.token_count() > 0 || eos > 0 {
                    source.epoch_took_tokens = true;
                }
                self.core.push(document)?;
                continue;
            }
            let source = &mut self.sources[index];
            if !source.reads_started {
                source.reads_started = true;
                source.start = (source.unit, source.document);
                let reads = Reads {
                    epoch: source.epoch,
                    order: Arc::clone(&source.order),
                    start: source.unit,
                    cycle: false,
                };
                return Ok(Action::Read {
                    source: index,
                    reads,
                });
            }
            if source.reads_ended {
                if !source.epoch_took_tokens {
                    return Err(StageError::Config {
                        field: "sources",
                        reason: format!(
                            "source `{}` gave no tokens in its epoch {}: every row group this \
                             rank reads of it was skipped or empty",
                            self.mixture.sources()[index],
                            source.epoch
                        ),
                    });
                }
                let units = Arc::clone(&source.units);
                let (documents, skipped, epoch) =
                    (source.documents, source.units_skipped, source.epoch);
                let mut next = self.source_at(index, units, epoch + 1);
                (next.documents, next.units_skipped) = (documents, skipped);
                self.sources[index] = next;
                continue;
            }
            return Ok(Action::Await { source: index });
        }
    }

    /// The next document of `source`'s queue, its position advanced past it.
    fn take_document(&mut self, index: usize) -> Option<Documents> {
        let source = &mut self.sources[index];
        loop {
            let (run, next) = source.queue.front_mut()?;
            // One document sliced out where the run is, not the run's rest rebuilt each time.
            let Some(document) = run.one(*next) else {
                source.queue.pop_front();
                continue;
            };
            *next += 1;
            let origin = document.origin();
            (source.unit, source.document) = (origin.unit, origin.first_document + 1);
            return Some(document);
        }
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> MixturePlanState {
        MixturePlanState {
            sources: self
                .sources
                .iter()
                .map(|s| SourceState {
                    epoch: s.epoch,
                    unit: s.unit,
                    document: s.document,
                    documents: s.documents,
                    units_skipped: s.units_skipped,
                })
                .collect(),
            mixture: self.mixture.state(),
            core: self.core.state(),
        }
    }
}

/// A mixture is a plan of one source per entry, in the mixture's order.
impl Plan for MixturePlan {
    fn next_action(&mut self) -> Result<Action> {
        let action = self.decide();
        if action.is_err() {
            self.stopped = true;
        }
        action
    }

    fn push(&mut self, source: usize, documents: Documents) -> Result<()> {
        let Some(s) = self.sources.get_mut(source) else {
            return Err(StageError::Documents {
                reason: format!(
                    "documents of source {source} of {}",
                    self.mixture.sources().len()
                ),
            });
        };
        let origin = documents.origin();
        if origin.epoch != s.epoch {
            return Err(StageError::Documents {
                reason: format!(
                    "documents of epoch {} pushed in source {source}'s epoch {}",
                    origin.epoch, s.epoch
                ),
            });
        }
        let (start, skip) = s.start;
        let documents = if origin.unit == start && skip > origin.first_document {
            documents.skip(usize::try_from(skip - origin.first_document).unwrap_or(usize::MAX))
        } else {
            documents
        };
        if !documents.is_empty() {
            s.queue.push_back((documents, 0));
        }
        Ok(())
    }

    fn push_skipped(&mut self, source: usize, _position: u64, reason: String) -> Result<()> {
        let Some(s) = self.sources.get_mut(source) else {
            return Ok(());
        };
        s.units_skipped += 1;
        self.core.stats_mut().units_skipped += 1;
        self.skipped.push(reason);
        Ok(())
    }

    fn end_of_reads(&mut self, source: usize) -> Result<()> {
        if let Some(s) = self.sources.get_mut(source) {
            s.reads_ended = true;
        }
        Ok(())
    }

    /// Skipped steps are dropped by count here too; the input hint stays `None` (the
    /// default): documents wait in per-source queues before the mixture draws them.
    fn set_kept_steps(&mut self, kept: Option<KeptSteps>) {
        self.core.set_kept_steps(kept);
    }

    fn core(&self) -> &WarmupCore<ModeSink> {
        &self.core
    }

    fn skipped(&self) -> &[String] {
        &self.skipped
    }

    fn epoch(&self) -> u64 {
        0
    }

    fn steps_per_epoch(&self) -> Option<u64> {
        None
    }

    fn source_stats(&self) -> Option<Vec<SourceStats>> {
        Some(MixturePlan::source_stats(self))
    }

    fn checkpoint(&self) -> PlanCheckpoint {
        PlanCheckpoint::Mixture(self.state())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::core::ScheduledBatch;
    use seqwarm_batcher::Tensor;
    use seqwarm_schedule::ScheduleConfig;

    use super::*;
    use crate::{
        BatchSize, ChangeAt, MixtureConfig, MixtureSource, Mode, Origin, WarmupConfig, WeightChange,
    };

    /// Source `s`'s units: `count` documents of 1..=`max_len` tokens, 8 a unit; token
    /// `1 + s * 10^7 + document * 1000 + position`, unique across sources.
    fn source_units(s: usize, count: usize, max_len: usize) -> Vec<Vec<Vec<i32>>> {
        let mut rng = SplitMix64::new(s as u64 + 77);
        let docs: Vec<Vec<i32>> = (0..count)
            .map(|d| {
                let len = 1 + rng.below(max_len);
                (0..len)
                    .map(|p| (1 + s * 10_000_000 + d * 1000 + p) as i32)
                    .collect()
            })
            .collect();
        docs.chunks(8).map(<[_]>::to_vec).collect()
    }

    struct Data {
        sources: Vec<Vec<Vec<Vec<i32>>>>,
    }

    impl Data {
        fn new(specs: &[(usize, usize)]) -> Self {
            Self {
                sources: specs
                    .iter()
                    .enumerate()
                    .map(|(s, &(count, len))| source_units(s, count, len))
                    .collect(),
            }
        }
        fn infos(&self) -> Vec<Arc<[UnitInfo]>> {
            self.sources
                .iter()
                .map(|units| {
                    units
                        .iter()
                        .map(|u| UnitInfo {
                            documents: u.len() as u64,
                            tokens: u.iter().map(Vec::len).sum::<usize>() as u64,
                        })
                        .collect()
                })
                .collect()
        }
    }

    /// Runs `plan` for at most `limit` batches, reading each unit as one run; `after` sees the
    /// plan after each batch.
    fn drive(
        plan: &mut MixturePlan,
        data: &Data,
        limit: usize,
        mut after: impl FnMut(&MixturePlan, &ScheduledBatch),
    ) -> Vec<ScheduledBatch> {
        let mut reads: Vec<Option<(Reads, u64)>> = vec![None; data.sources.len()];
        let mut out = Vec::new();
        while out.len() < limit {
            match plan.next_action().unwrap() {
                Action::Emit(b) => {
                    after(plan, &b);
                    out.push(b);
                }
                Action::Read { source, reads: r } => {
                    let start = r.start;
                    reads[source] = Some((r, start));
                }
                Action::Await { source } => {
                    let (r, next) = reads[source].as_mut().unwrap();
                    match r.unit_at(*next) {
                        None => plan.end_of_reads(source).unwrap(),
                        Some(unit) => {
                            let docs = &data.sources[source][unit];
                            let mut offsets = vec![0];
                            let mut tokens = Vec::new();
                            for d in docs {
                                tokens.extend_from_slice(d);
                                offsets.push(tokens.len());
                            }
                            let origin = Origin {
                                epoch: r.epoch,
                                unit: *next,
                                first_document: 0,
                            };
                            let run = Documents::new(Tensor::vector(tokens), offsets)
                                .unwrap()
                                .with_origin(origin);
                            *next += 1;
                            plan.push(source, run).unwrap();
                        }
                    }
                }
                Action::Finished => break,
            }
        }
        out
    }

    fn mixture(weights: &[f64], changes: Vec<WeightChange>) -> Mixture {
        MixtureConfig {
            sources: weights
                .iter()
                .enumerate()
                .map(|(i, &weight)| MixtureSource {
                    name: format!("s{i}"),
                    weight,
                })
                .collect(),
            changes,
        }
        .build()
        .unwrap()
    }

    fn core(mode: Mode) -> WarmupCore<ModeSink> {
        let warmup = WarmupConfig::new(ScheduleConfig::linear(16, 128, 0.5, 400).with_step(16))
            .with_mode(mode)
            .with_batch_size(BatchSize::Rows(8))
            .with_shuffle_buffer(4, 2);
        WarmupCore::new(warmup.build().unwrap())
    }

    fn config(rank: usize, world: usize, steps: u64) -> EpochConfig {
        EpochConfig::default()
            .with_rank(rank, world)
            .with_seed(5)
            .with_max_steps(Some(steps))
    }

    #[test]
    fn drawn_tokens_follow_the_weights_within_one_percent_past_the_first_steps() {
        // Sources of very different sizes and document lengths: the small one repeats.
        let data = Data::new(&[(400, 300), (60, 40), (2000, 1200)]);
        let weights = [0.5, 0.3, 0.2];
        let mut plan = MixturePlan::new(
            data.infos(),
            mixture(&weights, vec![]),
            EpochConfig::default()
                .with_seed(5)
                .with_max_tokens(Some(1_000_000)),
            core(Mode::Repack),
        )
        .unwrap();
        let mut worst: f64 = 0.0;
        let mut total = 0;
        drive(&mut plan, &data, usize::MAX, |plan, _| {
            let drawn: Vec<u64> = plan.source_stats().iter().map(|s| s.tokens).collect();
            total = drawn.iter().sum::<u64>();
            // Off by about one document at any prefix: under 1% once a 1 200-token document
            // is a small part of what was drawn (a few steps of a real batch size).
            if total >= 250_000 {
                for (d, w) in drawn.iter().zip(weights) {
                    worst = worst.max((*d as f64 / total as f64 - w).abs());
                }
            }
        });
        assert!(total >= 1_000_000, "{total} tokens drawn");
        assert!(
            plan.source_stats()[1].epoch > 10,
            "the small source repeats"
        );
        assert!(worst < 0.01, "worst deviation {worst}");
    }

    #[test]
    fn a_mixture_needs_a_limit_and_a_share_for_every_rank() {
        let data = Data::new(&[(40, 10), (40, 10)]);
        let err = MixturePlan::new(
            data.infos(),
            mixture(&[1.0, 1.0], vec![]),
            EpochConfig::default(),
            core(Mode::Repack),
        )
        .unwrap_err();
        assert!(err.to_string().contains("max_steps or max_tokens"), "{err}");
        let err = MixturePlan::new(
            data.infos(),
            mixture(&[1.0, 1.0], vec![]),
            config(0, 9, 10),
            core(Mode::Repack),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("source `s0` has 5 row groups"),
            "{err}"
        );
    }

    #[test]
    fn counts_that_contradict_the_stage_are_refused_on_resume() {
        // Issue 22, point 12: a state's mixture counts (up to 2^64) were taken as they were,
        // and changed the shares drawn from there on.
        let data = Data::new(&[(100, 90), (30, 20)]);
        let make = |state: Option<&MixturePlanState>| {
            let (m, c, k) = (
                mixture(&[0.5, 0.5], vec![]),
                config(1, 2, 30),
                core(Mode::Repack),
            );
            match state {
                None => MixturePlan::new(data.infos(), m, c, k),
                Some(s) => MixturePlan::resume(data.infos(), m, c, k, s),
            }
        };
        let mut first = make(None).unwrap();
        drive(&mut first, &data, 7, |_, _| {});
        let state = serde_json::to_value(first.state()).unwrap();
        let resume = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut value = state.clone();
            edit(&mut value);
            let state: MixturePlanState = serde_json::from_value(value).unwrap();
            make(Some(&state)).map(|_| ())
        };
        assert!(resume(&|_| {}).is_ok());
        for big in [1_000_000u64, 1 << 62] {
            let err = resume(&|v| {
                v["mixture"]["lifetime"][0] = serde_json::json!(big);
                v["mixture"]["drawn"][0] = serde_json::json!(big);
            })
            .unwrap_err();
            assert!(err.to_string().contains("tokens drawn"), "{err}");
        }
    }

    #[test]
    fn a_resume_at_any_batch_continues_byte_identically_in_every_mode() {
        let data = Data::new(&[(100, 90), (30, 20), (200, 300)]);
        for mode in Mode::ALL {
            let make = |state: Option<&MixturePlanState>| {
                let (m, c, k) = (
                    mixture(&[0.2, 0.5, 0.3], vec![]),
                    config(1, 2, 60),
                    core(mode),
                );
                match state {
                    None => MixturePlan::new(data.infos(), m, c, k).unwrap(),
                    Some(s) => MixturePlan::resume(data.infos(), m, c, k, s).unwrap(),
                }
            };
            let fingerprint = |batches: &[ScheduledBatch]| -> Vec<(u64, Vec<Vec<i64>>)> {
                batches
                    .iter()
                    .map(|b| (b.step, b.batch.input_ids().unwrap().to_rows_i64()))
                    .collect()
            };
            let mut whole = make(None);
            let full = drive(&mut whole, &data, usize::MAX, |_, _| {});
            let expected = whole.source_stats();
            assert_eq!(full.len(), 60, "{mode}");
            for cut in [1, 17, 33, 59] {
                let mut first = make(None);
                let mut batches = drive(&mut first, &data, cut, |_, _| {});
                let text = serde_json::to_string(&first.state()).unwrap();
                let state: MixturePlanState = serde_json::from_str(&text).unwrap();
                let mut second = make(Some(&state));
                batches.extend(drive(&mut second, &data, usize::MAX, |_, _| {}));
                assert_eq!(
                    fingerprint(&batches),
                    fingerprint(&full),
                    "{mode} cut at {cut}"
                );
                assert_eq!(second.source_stats(), expected, "{mode} cut at {cut}");
            }
        }
    }

    #[test]
    fn ranks_draw_from_disjoint_row_groups_and_stay_in_step() {
        let data = Data::new(&[(600, 60), (600, 30)]);
        let mut seen: Vec<BTreeSet<i64>> = Vec::new();
        let mut counts = Vec::new();
        for rank in 0..3 {
            let mut plan = MixturePlan::new(
                data.infos(),
                mixture(&[0.6, 0.4], vec![]),
                config(rank, 3, 25),
                core(Mode::Repack),
            )
            .unwrap();
            let batches = drive(&mut plan, &data, usize::MAX, |_, _| {});
            counts.push(batches.len());
            assert!(
                plan.source_stats().iter().all(|s| s.epoch == 0),
                "no source repeats here"
            );
            // Documents (not tokens: a document may be split across batches) by identity.
            let documents: BTreeSet<i64> = batches
                .iter()
                .flat_map(|b| b.batch.input_ids().unwrap().to_vec_i64())
                .filter(|&t| t != 0)
                .map(|t| (t - 1) / 1000)
                .collect();
            for other in &seen {
                assert!(other.is_disjoint(&documents), "rank {rank} overlaps");
            }
            seen.push(documents);
        }
        assert_eq!(counts, vec![25; 3]);
    }

    /// Two sources, the first alone weighted until the change `at` gives all to the second:
    /// per batch, its step, the tokens emitted before it, and each source's tokens drawn
    /// after it.
    fn drawn_around_a_change(at: ChangeAt) -> Vec<(u64, u64, u64, u64)> {
        let data = Data::new(&[(200, 50), (200, 50)]);
        let change = WeightChange {
            at,
            weights: vec![0.0, 1.0],
        };
        let mut plan = MixturePlan::new(
            data.infos(),
            mixture(&[1.0, 0.0], vec![change]),
            config(0, 1, 30),
            core(Mode::Repack),
        )
        .unwrap();
        let mut seen = Vec::new();
        let mut begun = 0;
        drive(&mut plan, &data, usize::MAX, |plan, b| {
            let stats = plan.source_stats();
            seen.push((b.step, begun, stats[0].tokens, stats[1].tokens));
            begun = b.progress.tokens;
        });
        seen
    }

    #[test]
    fn a_weight_change_at_step_k_draws_by_the_new_weights_from_step_k() {
        let first_source_at: Vec<(u64, u64, u64)> = drawn_around_a_change(ChangeAt::Step(10))
            .into_iter()
            .map(|(step, _, first, second)| (step, first, second))
            .collect();
        // Up to the batch of step 9 only the first source is drawn; from step 10 on only the
        // second (its first documents are drawn for step 10's batch).
        let at = |step: u64| {
            first_source_at
                .iter()
                .find(|(s, ..)| *s == step)
                .copied()
                .unwrap()
        };
        assert_eq!(at(9).2, 0, "{first_source_at:?}");
        let (_, first_after_change, _) = at(10);
        assert_eq!(
            first_after_change,
            at(9).1,
            "no first-source tokens from step 10 on"
        );
        assert_eq!(at(29).1, at(9).1);
        assert!(at(29).2 > 0);
    }

    #[test]
    fn a_weight_change_at_a_token_count_holds_from_the_first_batch_begun_past_it() {
        // (tokens emitted before the batch, first- and second-source tokens drawn after it)
        let seen: Vec<(u64, u64, u64)> = drawn_around_a_change(ChangeAt::Tokens(1_000))
            .into_iter()
            .map(|(_, begun, first, second)| (begun, first, second))
            .collect();
        let first_after = seen.iter().position(|s| s.0 >= 1_000).unwrap();
        assert!(first_after > 1, "{seen:?}");
        // Before it only the first source; from it on no more of the first source.
        assert_eq!(seen[first_after - 1].2, 0, "{seen:?}");
        assert!(
            seen[first_after - 1].1 > seen[first_after - 2].1,
            "{seen:?}"
        );
        assert!(
            seen[first_after..]
                .iter()
                .all(|s| s.1 == seen[first_after - 1].1),
            "{seen:?}"
        );
        assert!(seen.last().unwrap().2 > 0);
    }
}
