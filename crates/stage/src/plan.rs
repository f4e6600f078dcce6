//! [`EpochPlan`]: the sans-IO driver of a [`WarmupCore`] over a set of work units (row
//! groups). It decides which units this rank reads in each epoch and in what order, how many
//! batches every rank emits per epoch, when the stream ends, and where a checkpoint resumes.
//! It does no I/O: a driver reads the units it asks for and pushes their documents back, so
//! tests drive it with in-memory documents.
//!
//! A little over 600 lines: one state machine (its phases, epoch order, rank cap, resume and
//! the checks that refuse a plan that would stop early) reads best whole; the per-epoch
//! settings are in `epochs.rs`, the shape rule in `shape.rs`.
//!
//! ```
//! use seqwarm_stage::{Action, Documents, EpochConfig, EpochPlan, Origin, UnitInfo, WarmupConfig, WarmupCore};
//! use seqwarm_schedule::ScheduleConfig;
//!
//! // Three work units of 40 one-token-per-id documents each.
//! let units = vec![UnitInfo { documents: 40, tokens: 40 }; 3];
//! let read = |epoch: u64, position: u64, unit: usize| {
//!     let tokens: Vec<i32> = (0..40).map(|i| (unit * 40 + i) as i32).collect();
//!     let offsets: Vec<usize> = (0..=40).collect();
//!     Documents::new(seqwarm_batcher::Tensor::vector(tokens), offsets)
//!         .map(|d| d.with_origin(Origin { epoch, unit: position, first_document: 0 }))
//! };
//! let warmup = WarmupConfig::new(ScheduleConfig::constant(8)).build()?;
//! let mut plan = EpochPlan::new(units, EpochConfig::default(), WarmupCore::new(warmup))?;
//! let (mut batches, mut reads) = (0, None);
//! loop {
//!     match plan.next_action()? {
//!         Action::Emit(_) => batches += 1,
//!         Action::Read { reads: r, .. } => reads = Some((r, 0)),
//!         Action::Await { .. } => match &mut reads {
//!             Some((r, next)) if (*next as usize) < r.order.len() => {
//!                 plan.push(read(r.epoch, *next, r.order[*next as usize])?)?;
//!                 *next += 1;
//!             }
//!             _ => plan.end_of_reads()?,
//!         },
//!         Action::Finished => break,
//!     }
//! }
//! assert_eq!(batches, 1); // 120 tokens: one batch of 8 rows x 8, the rest dropped and counted
//! assert_eq!(plan.stats().tokens_dropped, 120 - 64);
//! # Ok::<(), seqwarm_stage::StageError>(())
//! ```

use std::sync::Arc;

use seqwarm_batcher::RowSink;
use serde::{Deserialize, Serialize};

use crate::core::{CoreState, ScheduledBatch, WarmupCore};
use crate::documents::{Documents, Origin};
use crate::driven::{Action, Plan, PlanCheckpoint};
use crate::epochs::EpochConfig;
use crate::error::{Result, StageError};
use crate::kept_steps::{InputHint, KeptSteps};
use crate::rest::RestUnit;
use crate::rng::SplitMix64;
use crate::sink::ModeSink;
use crate::stats::Stats;

/// One work unit (a row group) as its footer describes it, before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitInfo {
    /// Documents it holds at most.
    pub documents: u64,
    /// Tokens it holds at least (EOS tokens the stage adds not counted).
    pub tokens: u64,
}

/// What a driver reads: this rank's units of one epoch, `order[start..]` (round and round when
/// `cycle`), skipping the documents a checkpoint had already taken from the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reads {
    /// The epoch.
    pub epoch: u64,
    /// Unit indices (into the plan's units) in read order.
    pub order: Arc<[usize]>,
    /// Position in `order` to start at.
    pub start: u64,
    /// Whether reading goes round `order` again after its end (several ranks: a rank that runs
    /// short reads its units again rather than leave the others waiting).
    pub cycle: bool,
}

impl Reads {
    /// The unit at `position` (past the end of `order` when cycling).
    pub fn unit_at(&self, position: u64) -> Option<usize> {
        let len = self.order.len() as u64;
        if len == 0 || (!self.cycle && position >= len) {
            return None;
        }
        self.order.get((position % len) as usize).copied()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Phase {
    /// Reading this epoch's units.
    Reading,
    /// The last epoch's units are read: emitting what is left.
    Draining,
    /// An epoch's units are read and the next epoch restarts the stage
    /// ([`crate::EpochBoundary::Restart`]): emitting what is left of this one.
    Flushing,
    /// Everything is emitted.
    Done,
}

/// An [`EpochPlan`] at a batch boundary, for a checkpoint. Opaque; serialize it with serde.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanState<C = crate::sink::ModeCarry> {
    epoch: u64,
    unit: u64,
    document: u64,
    step_in_epoch: u64,
    steps_per_epoch: Option<u64>,
    phase: Phase,
    core: CoreState<C>,
    /// The epoch's list of units when it is the rest of an elastically resumed epoch
    /// (`elastic.rs`), not the epoch's order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rest: Option<Vec<RestUnit>>,
    /// Tokens (EOS not counted) of the documents before `document` of the unit at `unit`, when
    /// known and `document > 0`: what an elastic resume counts on of a partly read unit is its
    /// footer's tokens less these (states written before them have none: such a unit's rest
    /// then counts as empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit_tokens: Option<u64>,
}

impl PlanState<crate::sink::ModeCarry> {
    /// The token ids the state holds (see [`CoreState::token_ids`]).
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.core.token_ids()
    }
}

impl<C> PlanState<C> {
    /// Batches emitted in the current epoch.
    pub fn step_in_epoch(&self) -> u64 {
        self.step_in_epoch
    }
    /// The epoch's list of units, when it is the rest of an elastically resumed epoch.
    pub fn rest(&self) -> Option<&[RestUnit]> {
        self.rest.as_deref()
    }
    /// Whether the state is inside an epoch's reading (not between epochs, not ended).
    pub(crate) fn is_reading(&self) -> bool {
        self.phase == Phase::Reading
    }
    /// The position in this rank's share of the epoch's units, and the documents taken from
    /// the unit there.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.unit, self.document)
    }
    /// Tokens (EOS not counted) of the documents taken from the unit at the position, when
    /// known.
    pub(crate) fn unit_tokens(&self) -> Option<u64> {
        if self.document == 0 {
            Some(0)
        } else {
            self.unit_tokens
        }
    }
    /// The core's part.
    pub fn core(&self) -> &CoreState<C> {
        &self.core
    }
    /// The epoch of the next unread document.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Whether the stream had ended.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }
}

/// How far a rank's reads have reached in its share of an epoch: the unit at `position` of
/// its order, up to document `documents`, whose documents before that hold `tokens` tokens
/// (EOS not counted) when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ReadTo {
    position: u64,
    documents: u64,
    tokens: Option<u64>,
}

/// The sans-IO epoch plan around a [`WarmupCore`]; see the module documentation.
// Four independent facts of the epoch in progress (reads asked for, stopped, tokens taken,
// share read), not a state an enum would name better.
#[allow(clippy::struct_excessive_bools)]
pub struct EpochPlan<S: RowSink = ModeSink> {
    core: WarmupCore<S>,
    units: Arc<[UnitInfo]>,
    config: EpochConfig,
    epoch: u64,
    order: Arc<[usize]>,
    /// The current epoch's list when it is the rest of an elastic resume (`elastic.rs`).
    rest: Option<Arc<[RestUnit]>>,
    /// With `rest`: the documents already taken from the unit at each position of `order`,
    /// and their tokens when known.
    taken: Arc<[(u64, Option<u64>)]>,
    steps_per_epoch: Option<u64>,
    step_in_epoch: u64,
    start: u64,
    skip: u64,
    /// The tokens of the `skip` documents (a checkpoint's `unit_tokens`), when known.
    skip_tokens: Option<u64>,
    /// How far this epoch's reads have reached in this rank's share (`None` before its first
    /// documents): where what the rank never read starts when the epoch ends by the batch
    /// count.
    read_to: Option<ReadTo>,
    phase: Phase,
    reads_started: bool,
    /// Stopped by a limit or an error (not part of a checkpoint: a resume with a larger limit
    /// goes on).
    stopped: bool,
    skipped_in_a_row: u64,
    /// A rank's own units read again (several ranks, a rank past its share), held until the
    /// stage needs them: the shuffle buffer is emptied first, so that they are taken in only
    /// when the epoch's own documents do not fill the epoch's batches.
    repeat: Option<Documents>,
    /// Whether this rank has read past its share this epoch (its shuffle buffer went to the
    /// sink then, once: later repeats pass through the buffer as any document).
    share_ended: bool,
    /// Whether this epoch has taken in any token: an epoch that takes none would repeat
    /// forever.
    epoch_took_tokens: bool,
    skipped: Vec<String>,
}

impl<S: RowSink> std::fmt::Debug for EpochPlan<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochPlan")
            .field("units", &self.units.len())
            .field("epoch", &self.epoch)
            .field("phase", &self.phase)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl<S: RowSink> EpochPlan<S> {
    /// A plan over `units` (in their natural order) from the start of training.
    pub fn new(
        units: impl Into<Arc<[UnitInfo]>>,
        config: EpochConfig,
        core: WarmupCore<S>,
    ) -> Result<Self> {
        let mut plan = Self::at_epoch_start(units.into(), config, core, 0, Phase::Reading)?;
        plan.plan_epoch()?;
        Ok(plan)
    }

    /// A checked plan at the start of `epoch`, in `phase`, its order not yet drawn.
    fn at_epoch_start(
        units: Arc<[UnitInfo]>,
        config: EpochConfig,
        core: WarmupCore<S>,
        epoch: u64,
        phase: Phase,
    ) -> Result<Self> {
        config.check(units.len())?;
        let plan = Self {
            core,
            units,
            config,
            epoch,
            order: Arc::from([]),
            rest: None,
            taken: Arc::from([]),
            steps_per_epoch: None,
            step_in_epoch: 0,
            start: 0,
            skip: 0,
            skip_tokens: Some(0),
            read_to: None,
            phase,
            reads_started: false,
            stopped: false,
            skipped_in_a_row: 0,
            repeat: None,
            share_ended: false,
            epoch_took_tokens: false,
            skipped: Vec::new(),
        };
        plan.check_every_epoch_fills_a_batch()?;
        Ok(plan)
    }

    /// A plan continuing from `state` (taken with [`EpochPlan::state`] by a plan with the same
    /// units and settings). Positions that do not fit the units are an error.
    pub fn resume(
        units: impl Into<Arc<[UnitInfo]>>,
        config: EpochConfig,
        mut core: WarmupCore<S>,
        state: &PlanState<S::Carry>,
    ) -> Result<Self> {
        core.restore(&state.core)?;
        let out_of_range = |what: String| StageError::State {
            reason: format!("{what} (a checkpoint of another data set, or edited by hand?)"),
        };
        let positions = [
            ("epoch", state.epoch),
            ("unit", state.unit),
            ("document", state.document),
            ("step_in_epoch", state.step_in_epoch),
        ];
        if let Some((name, value)) = positions.iter().find(|(_, v)| *v > crate::stats::MAX_COUNT) {
            return Err(out_of_range(format!("`{name}` is {value}")));
        }
        if state.step_in_epoch > core.progress().steps {
            return Err(out_of_range(format!(
                "batch {} of the epoch, after {} batches in all",
                state.step_in_epoch,
                core.progress().steps
            )));
        }
        let epochs = config.epochs();
        if epochs > 0 && state.epoch > epochs {
            return Err(out_of_range(format!(
                "epoch {} of a {epochs}-epoch run",
                state.epoch
            )));
        }
        let mut phase = state.phase;
        let more_epochs = epochs == 0 || state.epoch < epochs;
        match phase {
            Phase::Reading if !more_epochs => {
                return Err(out_of_range(format!(
                    "epoch {} of a {epochs}-epoch run",
                    state.epoch
                )));
            }
            Phase::Draining | Phase::Done if more_epochs => {
                // The run ended and now has more epochs: it reads on, from the next epoch's
                // start (what was left at the end was emitted or dropped then).
                core.reopen();
                phase = Phase::Reading;
            }
            _ => {}
        }
        let mut plan = Self::at_epoch_start(units.into(), config, core, state.epoch, phase)?;
        (plan.start, plan.skip, plan.step_in_epoch) =
            (state.unit, state.document, state.step_in_epoch);
        plan.skip_tokens = state.unit_tokens();
        if let Some(rest) = &state.rest {
            if let Some(bad) = rest.iter().find(|r| r.unit >= plan.units.len()) {
                return Err(out_of_range(format!(
                    "unit {} of {}",
                    bad.unit,
                    plan.units.len()
                )));
            }
            let world = plan.config.world_size();
            if let Some(rank) = rest.iter().find_map(|r| r.rank.filter(|&k| k >= world)) {
                return Err(out_of_range(format!(
                    "a unit of the epoch's list dealt to rank {rank} of {world}"
                )));
            }
            plan.rest = Some(Arc::from(rest.as_slice()));
        }
        plan.order_epoch();
        // A checkpoint taken inside an epoch has already taken tokens of it; one taken past
        // the rank's share had moved its shuffle buffer to the sink when it got there.
        plan.epoch_took_tokens = state.unit > 0 || state.document > 0 || state.step_in_epoch > 0;
        plan.share_ended = state.unit >= plan.order.len() as u64;
        if phase != state.phase {
            (plan.start, plan.skip, plan.step_in_epoch) = (0, 0, 0);
            plan.skip_tokens = Some(0);
            plan.rest = None;
            plan.order_epoch();
            plan.steps_per_epoch = plan.count_steps()?;
            return Ok(plan);
        }
        let len = plan.order.len() as u64;
        if !plan.cycles() && state.unit > len {
            return Err(out_of_range(format!(
                "row group position {} of the {len} this rank reads",
                state.unit
            )));
        }
        let documents = plan
            .reads()
            .unit_at(state.unit)
            .map_or(0, |u| plan.units[u].documents);
        if state.document > documents {
            return Err(out_of_range(format!(
                "document {} of a row group of {documents}",
                state.document
            )));
        }
        if plan.cycles() {
            // Fixed when the epoch began, from the progress then: restored, not recomputed.
            let Some(count) = state.steps_per_epoch else {
                return Err(out_of_range(
                    "no batch count for an epoch read by several ranks".into(),
                ));
            };
            if state.step_in_epoch > count {
                return Err(out_of_range(format!(
                    "batch {} of an epoch of {count}",
                    state.step_in_epoch
                )));
            }
            plan.steps_per_epoch = Some(count);
        }
        Ok(plan)
    }

    /// The core (schedule progress, next shape, stats).
    pub fn core(&self) -> &WarmupCore<S> {
        &self.core
    }

    /// The settings.
    pub fn config(&self) -> &EpochConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Why each skipped unit was skipped.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches every rank emits per epoch, when several ranks must stay in step.
    pub fn steps_per_epoch(&self) -> Option<u64> {
        self.steps_per_epoch
    }

    /// What this rank reads in the current epoch, from where it stands.
    pub fn reads(&self) -> Reads {
        Reads {
            epoch: self.epoch,
            order: Arc::clone(&self.order),
            start: self.start,
            cycle: self.cycles(),
        }
    }

    /// What this rank reads in the next epoch, when its current reads end (not when they
    /// cycle) and another epoch follows: its order is drawn from (seed, epoch) alone, and an
    /// epoch after the current one starts at its beginning.
    pub fn upcoming_reads(&self) -> Option<Reads> {
        let next = self.epoch + 1;
        if self.cycles()
            || self.stopped
            || (self.config.epochs() > 0 && next >= self.config.epochs())
        {
            return None;
        }
        let order: Vec<usize> = Self::epoch_order(&self.units, &self.config, next);
        Some(Reads {
            epoch: next,
            order: order.into(),
            start: 0,
            cycle: false,
        })
    }

    fn cycles(&self) -> bool {
        self.config.world_size() > 1
    }

    /// What to do next.
    pub fn next_action(&mut self) -> Result<Action> {
        let action = self.decide();
        if action.is_err() {
            self.stopped = true;
        }
        action
    }

    fn decide(&mut self) -> Result<Action> {
        loop {
            if self.stopped || self.phase == Phase::Done {
                return Ok(Action::Finished);
            }
            if self.config.limits_reached(&self.core.progress()) {
                self.stopped = true;
                return Ok(Action::Finished);
            }
            if self.phase == Phase::Flushing {
                if let Some(batch) = self.finish_within_epoch()? {
                    return Ok(Action::Emit(batch));
                }
                // Everything of the epoch was emitted or dropped: the next starts afresh.
                self.core.reopen();
                self.phase = Phase::Reading;
                if !self.next_epoch()? {
                    self.phase = Phase::Done;
                }
                continue;
            }
            if self.phase == Phase::Draining {
                if let Some(batch) = self.finish_within_epoch()? {
                    return Ok(Action::Emit(batch));
                }
                self.phase = Phase::Done;
                return Ok(Action::Finished);
            }
            if self.epoch_full() {
                // Every rank stops the epoch at the same batch; what is left is dropped and
                // counted (docs/loader.md), the part of its share the rank never read included.
                self.core.drop_buffered();
                self.drop_unread_share();
                if !self.next_epoch()? {
                    self.phase = Phase::Done;
                }
                continue;
            }
            if let Some(batch) = self.core.next_batch()? {
                self.step_in_epoch += 1;
                return Ok(Action::Emit(batch));
            }
            if let Some(repeat) = self.repeat.take() {
                self.take_in(repeat)?;
                continue;
            }
            if !self.reads_started {
                self.reads_started = true;
                return Ok(Action::Read {
                    source: 0,
                    reads: self.reads(),
                });
            }
            return Ok(Action::Await { source: 0 });
        }
    }

    /// Whether this rank emitted the epoch's batch count (several ranks; never with one).
    fn epoch_full(&self) -> bool {
        self.steps_per_epoch
            .is_some_and(|n| self.step_in_epoch >= n)
    }

    /// After this rank's reads ended: the next batch of what it holds, or `None` once it is
    /// all emitted, or dropped (and counted) when the epoch's batch count is reached first.
    /// Several ranks stop at the same batch here too: a rank that emitted more would leave
    /// the others waiting for that batch forever.
    fn finish_within_epoch(&mut self) -> Result<Option<ScheduledBatch>> {
        if self.epoch_full() {
            self.core.drop_buffered();
            return Ok(None);
        }
        let batch = self.core.finish()?;
        if batch.is_some() {
            self.step_in_epoch += 1;
        }
        Ok(batch)
    }

    /// Documents read for the current [`Reads`], their origin saying from which position
    /// (and, for a unit read in several runs, from which document).
    pub fn push(&mut self, documents: Documents) -> Result<()> {
        let origin = documents.origin();
        if origin.epoch != self.epoch {
            return Err(StageError::Documents {
                reason: format!(
                    "documents of epoch {} pushed in epoch {}",
                    origin.epoch, self.epoch
                ),
            });
        }
        // Documents already taken: by an elastic resume's old ranks, and before a checkpoint.
        let (taken, _) = self.taken_at(origin.unit);
        let documents = if taken > origin.first_document {
            let skip = taken - origin.first_document;
            documents.skip(usize::try_from(skip).unwrap_or(usize::MAX))
        } else {
            documents
        };
        if documents.is_empty() {
            return Ok(());
        }
        if origin.unit >= self.order.len() as u64 {
            // Past the epoch's order: a rank reading its own units again. The epoch's own
            // documents first: the input of the rank's share has ended, so what the shuffle
            // buffer holds goes to the sink and best fit packs its partial window; these wait
            // until the stage needs them (`decide`).
            if !self.share_ended {
                self.share_ended = true;
                self.core.end_of_input()?;
            }
            if let Some(earlier) = self.repeat.take() {
                self.take_in(earlier)?;
            }
            self.repeat = Some(documents);
            return Ok(());
        }
        self.note_read(&documents);
        self.take_in(documents)
    }

    /// Documents into the core.
    fn take_in(&mut self, documents: Documents) -> Result<()> {
        let origin = documents.origin();
        if origin.unit >= self.order.len() as u64 && origin.first_document == 0 {
            self.core.stats_mut().units_repeated += 1;
        }
        self.skipped_in_a_row = 0;
        // Empty documents give tokens only through the EOS the stage appends.
        if documents.token_count() > 0 || self.core.warmup().eos_id().is_some() {
            self.epoch_took_tokens = true;
        }
        self.core.push(documents)
    }

    /// The documents taken from the unit at `position` of this rank's order before this
    /// epoch's reads (by an elastic resume's old ranks, or before a checkpoint), and their
    /// tokens when known.
    fn taken_at(&self, position: u64) -> (u64, Option<u64>) {
        let (mut taken, mut tokens) = usize::try_from(position)
            .ok()
            .and_then(|at| self.taken.get(at))
            .copied()
            .unwrap_or((0, Some(0)));
        if taken == 0 {
            tokens = Some(0);
        }
        if position == self.start && self.skip > taken {
            (taken, tokens) = (self.skip, self.skip_tokens);
        }
        (taken, tokens)
    }

    /// The tokens of the documents before `document` of the unit at `position`, when known:
    /// from this epoch's reads of the unit, or from what was taken of it before them.
    fn tokens_before(&self, position: u64, document: u64) -> Option<u64> {
        if document == 0 {
            return Some(0);
        }
        match self.read_to {
            Some(r) if r.position == position && r.documents == document => r.tokens,
            _ => match self.taken_at(position) {
                (taken, tokens) if taken == document => tokens,
                _ => None,
            },
        }
    }

    /// The tokens of the documents before `document` of the unit at `position` that the
    /// stage has taken in, when known (a checkpoint there): what the reads of the unit gave,
    /// less what the core has not yet taken of the current run.
    fn tokens_taken(&self, position: u64, document: u64) -> Option<u64> {
        let (documents, tokens) = self.core.unread_in_run();
        match self.read_to {
            Some(r)
                if r.position == position && r.documents == document.saturating_add(documents) =>
            {
                r.tokens.map(|t| t.saturating_sub(tokens))
            }
            _ => self.tokens_before(position, document),
        }
    }

    /// Notes how far the reads of this rank's share reached: `documents` are about to be taken
    /// in.
    fn note_read(&mut self, documents: &Documents) {
        let origin = documents.origin();
        let before = self.tokens_before(origin.unit, origin.first_document);
        let count = documents.len();
        self.read_to = Some(ReadTo {
            position: origin.unit,
            documents: origin.first_document.saturating_add(count as u64),
            tokens: before.map(|t| t.saturating_add(documents.tokens_in(0, count) as u64)),
        });
    }

    /// At an epoch's end by the batch count (several ranks): what this rank never read of its
    /// share, from where its reads stopped (the rest of that unit, then the units after it),
    /// counted as dropped by the units' footers, so that every token of the epoch is emitted
    /// or counted. A unit whose taken tokens are not known (a state written before they were
    /// recorded) is left out.
    fn drop_unread_share(&mut self) {
        let (from, documents, tokens) = if let Some(r) = self.read_to {
            (r.position, r.documents, r.tokens)
        } else {
            let (documents, tokens) = self.taken_at(self.start);
            (self.start, documents, tokens)
        };
        let (mut unread_documents, mut unread_tokens) = (0u64, 0u64);
        for position in from..self.order.len() as u64 {
            let info = self.units[self.order[position as usize]];
            let (taken, taken_tokens) = if position == from {
                (documents, tokens)
            } else {
                self.taken_at(position)
            };
            let Some(taken_tokens) = taken_tokens else {
                continue;
            };
            unread_documents =
                unread_documents.saturating_add(info.documents.saturating_sub(taken));
            unread_tokens = unread_tokens.saturating_add(info.tokens.saturating_sub(taken_tokens));
        }
        self.core.drop_unread(unread_documents, unread_tokens);
    }

    /// A unit of the current reads was skipped under a skip-and-count policy, for `reason`.
    pub fn push_skipped(&mut self, position: u64, reason: String) -> Result<()> {
        self.core.stats_mut().units_skipped += 1;
        // Passed (and counted as skipped, not again as unread at the epoch's end).
        if let Some(&unit) = usize::try_from(position)
            .ok()
            .and_then(|at| self.order.get(at))
        {
            let info = self.units[unit];
            self.read_to = Some(ReadTo {
                position,
                documents: info.documents,
                tokens: Some(info.tokens),
            });
        }
        self.skipped.push(reason);
        self.skipped_in_a_row += 1;
        if self.cycles() && self.skipped_in_a_row > self.order.len() as u64 {
            return Err(StageError::Config {
                field: "shards",
                reason: format!(
                    "rank {} has no readable row groups (every one up to position {position} was skipped)",
                    self.config.rank()
                ),
            });
        }
        Ok(())
    }

    /// The current reads have ended: every unit was pushed or skipped. An epoch that gave no
    /// tokens at all (every unit skipped, or every document empty) is an error, not a loop.
    pub fn end_of_reads(&mut self) -> Result<()> {
        if self.phase != Phase::Reading {
            return Ok(());
        }
        if !self.epoch_took_tokens {
            self.stopped = true;
            return Err(StageError::Config {
                field: "shards",
                reason: format!(
                    "epoch {} gave no tokens: every row group this rank reads was skipped or empty",
                    self.epoch
                ),
            });
        }
        let more = self.config.epochs() == 0 || self.epoch + 1 < self.config.epochs();
        let restart = self.config.epoch_boundary_for(self.core.warmup().mode())
            == crate::EpochBoundary::Restart;
        // Several ranks read round their units, so reads end only for a rank whose share of an
        // elastically resumed epoch is empty: it empties what it holds up to the epoch's batch
        // count, as the other ranks do, before the next epoch; it must not start that epoch
        // early, or take what it holds into it.
        if more && (restart || self.cycles()) {
            self.phase = Phase::Flushing;
            return Ok(());
        }
        let step_in_epoch = self.step_in_epoch;
        if !self.next_epoch()? {
            self.phase = Phase::Draining;
            // The last epoch's batch count still bounds what is drained: with several ranks
            // (after an elastic resume, a rank whose rest of the epoch ran out) every rank
            // stops at the same batch.
            self.step_in_epoch = step_in_epoch;
        }
        Ok(())
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> PlanState<S::Carry> {
        let (unit, document) = match self.core.position() {
            Some(o) if o.epoch == self.epoch => (o.unit, o.first_document),
            _ => (self.start, self.skip),
        };
        PlanState {
            epoch: self.epoch,
            unit,
            document,
            step_in_epoch: self.step_in_epoch,
            steps_per_epoch: self.steps_per_epoch,
            phase: self.phase,
            core: self.core.state(),
            rest: self.rest.as_ref().map(|r| r.to_vec()),
            unit_tokens: if document == 0 {
                None
            } else {
                self.tokens_taken(unit, document)
            },
        }
    }

    fn next_epoch(&mut self) -> Result<bool> {
        self.epoch += 1;
        self.rest = None;
        self.repeat = None;
        self.share_ended = false;
        self.start = 0;
        self.skip = 0;
        self.skip_tokens = Some(0);
        self.read_to = None;
        self.step_in_epoch = 0;
        self.reads_started = false;
        self.skipped_in_a_row = 0;
        self.epoch_took_tokens = false;
        if self.config.epochs() > 0 && self.epoch >= self.config.epochs() {
            return Ok(false);
        }
        self.plan_epoch()?;
        Ok(true)
    }

    /// This epoch's order and, with several ranks, the epoch's batch count.
    fn plan_epoch(&mut self) -> Result<()> {
        self.order_epoch();
        self.steps_per_epoch = self.count_steps()?;
        Ok(())
    }

    /// This rank's units for the epoch: a permutation of all units drawn from (seed, epoch)
    /// alone, then every `world_size`-th from `rank`; in the rest of an elastically resumed
    /// epoch, the entries of the rest dealt to `rank` (entry `i` by the rank it names, or to
    /// rank `i % world_size`), in the rest's order, with the documents taken from each.
    fn order_epoch(&mut self) {
        let (rank, world) = (self.config.rank(), self.config.world_size().max(1));
        if let Some(rest) = &self.rest {
            let mine: Vec<&RestUnit> = rest
                .iter()
                .enumerate()
                .filter(|&(i, r)| r.rank.unwrap_or(i % world) == rank)
                .map(|(_, r)| r)
                .collect();
            self.order = mine.iter().map(|r| r.unit).collect();
            self.taken = mine.iter().map(|r| (r.taken, r.taken_tokens)).collect();
            return;
        }
        self.order = self
            .epoch_permutation()
            .into_iter()
            .skip(rank)
            .step_by(world)
            .collect();
        self.taken = Arc::from([]);
    }

    fn epoch_permutation(&self) -> Vec<usize> {
        Self::epoch_order(&self.units, &self.config, self.epoch)
    }

    /// Every unit in `epoch`'s order: a permutation drawn from (seed, epoch) alone, or the
    /// natural order when units are not shuffled.
    pub(crate) fn epoch_order(units: &[UnitInfo], config: &EpochConfig, epoch: u64) -> Vec<usize> {
        let mut all: Vec<usize> = (0..units.len()).collect();
        if config.shuffle_units() {
            SplitMix64::from_parts(&[config.seed(), epoch, 0x0D0E]).shuffle(&mut all);
        }
        all
    }

    /// A plan reading `rest`, the rest of `epoch` after an elastic resume, from `core` (already
    /// restored), `step_in_epoch` batches into the epoch; with several ranks, the epoch ends
    /// after the batches `least` tokens (the least any rank holds) are sure to fill. None, in
    /// the last epoch, is an error: every rank would stop at once, and the run end with
    /// nothing (with a later epoch, the rest is dropped and counted, and that epoch runs).
    pub(crate) fn resume_rest(
        units: Arc<[UnitInfo]>,
        config: EpochConfig,
        core: WarmupCore<S>,
        epoch: u64,
        step_in_epoch: u64,
        rest: Vec<RestUnit>,
        least: u64,
    ) -> Result<Self> {
        let mut plan = Self::at_epoch_start(units, config, core, epoch, Phase::Reading)?;
        plan.step_in_epoch = step_in_epoch;
        plan.rest = Some(Arc::from(rest));
        plan.order_epoch();
        // Tokens of the epoch were taken before the checkpoints.
        plan.epoch_took_tokens = true;
        if plan.cycles() {
            let steps = plan.supported_steps(least);
            let last = plan.config.epochs() > 0 && epoch.saturating_add(1) >= plan.config.epochs();
            if steps == 0 && last {
                return Err(StageError::Config {
                    field: "world_size",
                    reason: format!(
                        "the rest of epoch {epoch} leaves the rank with the least of it {least} \
                         tokens, less than one batch ({} tokens at the next step's shape), so no \
                         rank would emit a batch; resume on fewer ranks",
                        plan.core.next_shape().tokens_in()
                    ),
                });
            }
            plan.steps_per_epoch = Some(step_in_epoch.saturating_add(steps));
        }
        Ok(plan)
    }

    /// With several ranks and more than one epoch, refuses up front data that some epoch's
    /// order could leave a rank unable to fill one batch of the longest shape with: its
    /// epoch would give no batch, and training would stop there, hours in. The bound is the
    /// least a rank can hold under any order: the `units / world_size` smallest units.
    fn check_every_epoch_fills_a_batch(&self) -> Result<()> {
        if !self.cycles() || self.config.epochs() == 1 {
            return Ok(());
        }
        let world = self.config.world_size().max(1);
        let per_rank = self.units.len() / world;
        let mut sizes: Vec<u64> = self.units.iter().map(|u| u.tokens).collect();
        sizes.sort_unstable();
        let least: u64 = sizes
            .iter()
            .take(per_rank)
            .fold(0, |a, &t| a.saturating_add(t));
        let largest = self.core.warmup().largest_step_tokens();
        if least < largest {
            return Err(StageError::Config {
                field: "world_size",
                reason: format!(
                    "over {} units and {world} ranks, some epoch's order can leave a rank \
                     {least} tokens, less than one batch of the longest shape ({largest} \
                     tokens); use fewer ranks, smaller batches or more data",
                    self.units.len()
                ),
            });
        }
        Ok(())
    }

    /// With several ranks, the batches each emits this epoch: what the rank holding the least
    /// is sure to fill. Zero is an error: every rank would stop every epoch at once, forever.
    fn count_steps(&self) -> Result<Option<u64>> {
        if !self.cycles() {
            return Ok(None);
        }
        let world = self.config.world_size().max(1);
        let all = self.epoch_permutation();
        // The least any rank holds, in one pass over the order whatever the world size.
        let mut per_rank = vec![0u64; world.min(all.len()).max(1)];
        for (position, &unit) in all.iter().enumerate() {
            let rank = &mut per_rank[position % world];
            *rank = rank.saturating_add(self.units[unit].tokens);
        }
        let least = per_rank.into_iter().min().unwrap_or(0);
        match self.supported_steps(least) {
            0 => Err(StageError::Config {
                field: "world_size",
                reason: format!(
                    "the rank with the least data holds {least} tokens, less than one batch \
                     ({} tokens at the next step's shape); use fewer ranks or smaller batches",
                    self.core.next_shape().tokens_in()
                ),
            }),
            steps => Ok(Some(steps)),
        }
    }

    /// How many batches `tokens` tokens are sure to fill, stepping the schedule from the core's
    /// progress with the shape rule.
    fn supported_steps(&self, tokens: u64) -> u64 {
        let warmup = self.core.warmup();
        let mut progress = self.core.progress();
        let (mut left, mut steps) = (tokens, 0);
        loop {
            let shape = warmup.shape_at(&progress);
            let need = shape.tokens_in();
            if need > left || need == 0 {
                return steps;
            }
            left -= need;
            progress.advance(shape.rows_out as u64, shape.tokens_out());
            steps += 1;
        }
    }
}

/// The epoch plan is a plan of one source (index 0).
impl Plan for EpochPlan<ModeSink> {
    fn next_action(&mut self) -> Result<Action> {
        EpochPlan::next_action(self)
    }

    fn push(&mut self, source: usize, documents: Documents) -> Result<()> {
        one_source(source)?;
        EpochPlan::push(self, documents)
    }

    fn push_skipped(&mut self, source: usize, position: u64, reason: String) -> Result<()> {
        one_source(source)?;
        EpochPlan::push_skipped(self, position, reason)
    }

    fn end_of_reads(&mut self, source: usize) -> Result<()> {
        one_source(source)?;
        EpochPlan::end_of_reads(self)
    }

    fn upcoming_reads(&self, source: usize) -> Option<Reads> {
        (source == 0)
            .then(|| EpochPlan::upcoming_reads(self))
            .flatten()
    }

    fn set_kept_steps(&mut self, kept: Option<KeptSteps>) {
        self.core.set_kept_steps(kept);
    }

    /// Only for documents of this epoch's own order that go to the core as they come: a
    /// rank's repeated units wait until the stage needs them (`push`), when the step may be
    /// a kept one.
    fn input_hint(&self, source: usize, next: Origin) -> Option<InputHint> {
        let direct = source == 0
            && next.epoch == self.epoch
            && next.unit < self.order.len() as u64
            && self.repeat.is_none()
            && !self.share_ended;
        direct.then(|| self.core.input_hint()).flatten()
    }

    fn core(&self) -> &WarmupCore<ModeSink> {
        &self.core
    }

    fn skipped(&self) -> &[String] {
        &self.skipped
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn steps_per_epoch(&self) -> Option<u64> {
        self.steps_per_epoch
    }

    fn source_stats(&self) -> Option<Vec<crate::SourceStats>> {
        None
    }

    fn checkpoint(&self) -> PlanCheckpoint {
        PlanCheckpoint::Epochs(self.state())
    }
}

/// An epoch plan has one source: anything pushed for another is a driver's bug, reported.
fn one_source(source: usize) -> Result<()> {
    if source == 0 {
        Ok(())
    } else {
        Err(StageError::Documents {
            reason: format!("documents of source {source} for a plan of one source"),
        })
    }
}
