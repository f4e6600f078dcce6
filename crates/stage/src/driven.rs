//! [`Plan`]: what every sans-IO plan offers its driver, so that one driver (the loader's
//! `poll_next`) reads for any plan: the epoch plan over one set of shards ([`EpochPlan`], one
//! source), a weighted mixture ([`MixturePlan`], one source per entry), and any plan added
//! later. A plan names the source it needs; the driver keeps one reader per source.
//!
//! [`EpochPlan`]: crate::EpochPlan
//! [`MixturePlan`]: crate::MixturePlan

use crate::core::{ScheduledBatch, WarmupCore};
use crate::documents::{Documents, Origin};
use crate::error::Result;
use crate::kept_steps::{InputHint, KeptSteps};
use crate::mixture_plan::{MixturePlanState, SourceStats};
use crate::plan::{PlanState, Reads};
use crate::sink::ModeSink;
use crate::stats::Stats;

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    /// Hand this batch on.
    Emit(ScheduledBatch),
    /// Drop any reads in flight for `source` and start these; push what they give with
    /// [`Plan::push`] and [`Plan::push_skipped`], then [`Plan::end_of_reads`].
    Read {
        /// The source (0 for a plan of one).
        source: usize,
        /// Its units to read, in order.
        reads: Reads,
    },
    /// Push the next documents of `source`'s current reads (or say they ended).
    Await {
        /// The source (0 for a plan of one).
        source: usize,
    },
    /// The stream has ended.
    Finished,
}

/// A plan at a batch boundary, for a checkpoint: which plan, and its opaque state. Exhaustive
/// on purpose: a new plan's state must be given a place in the loader's checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanCheckpoint {
    /// Of an [`EpochPlan`](crate::EpochPlan).
    Epochs(PlanState),
    /// Of a [`MixturePlan`](crate::MixturePlan).
    Mixture(MixturePlanState),
}

/// A sans-IO plan around a [`WarmupCore`]: it says what to read and when to emit; a driver
/// reads the units it names and pushes their documents back. Every source index a plan hands
/// out in an [`Action`] is one the driver was given shards for, in order.
pub trait Plan: std::fmt::Debug + Send {
    /// What to do next. After an error the plan is finished.
    fn next_action(&mut self) -> Result<Action>;

    /// Documents read for `source`'s current [`Reads`], their origin saying from which
    /// position (and, for a unit read in several runs, from which document).
    fn push(&mut self, source: usize, documents: Documents) -> Result<()>;

    /// The unit at `position` of `source`'s current reads was skipped under a skip-and-count
    /// policy, for `reason`.
    fn push_skipped(&mut self, source: usize, position: u64, reason: String) -> Result<()>;

    /// `source`'s current reads have ended: every unit was pushed or skipped.
    fn end_of_reads(&mut self, source: usize) -> Result<()>;

    /// The reads `source` will be asked for once its current ones end, when the plan can tell
    /// now (the next epoch's, say), so that a driver reads across the boundary instead of
    /// starting afresh there. Only a hint: a driver compares it with the next
    /// [`Action::Read`] and reads that. `None` (the default) when the plan cannot tell.
    fn upcoming_reads(&self, source: usize) -> Option<Reads> {
        let _ = source;
        None
    }

    /// Hands over only `kept`'s steps: the others are still emitted, in order, but without
    /// fields where the mode drops them by count ([`WarmupCore::set_kept_steps`]). The
    /// default ignores it (every batch is built; a driver drops the others).
    fn set_kept_steps(&mut self, kept: Option<KeptSteps>) {
        let _ = kept;
    }

    /// Under [`Plan::set_kept_steps`]: what `source`'s next documents (`next`, their origin)
    /// are for, when they go straight to the core ([`WarmupCore::input_hint`]); `None` (the
    /// default) when the plan may hold them back or reorder them, so they must be real.
    fn input_hint(&self, source: usize, next: Origin) -> Option<InputHint> {
        let _ = (source, next);
        None
    }

    /// The core (schedule progress, next shape, stats).
    fn core(&self) -> &WarmupCore<ModeSink>;

    /// Counters so far (all sources together).
    fn stats(&self) -> Stats {
        self.core().stats()
    }

    /// Why each skipped unit was skipped.
    fn skipped(&self) -> &[String];

    /// The current epoch (0 for a plan whose sources count their own).
    fn epoch(&self) -> u64;

    /// Batches every rank emits per epoch, when several ranks must stay in step.
    fn steps_per_epoch(&self) -> Option<u64>;

    /// What was drawn from each source, for a plan of several (`None` otherwise).
    fn source_stats(&self) -> Option<Vec<SourceStats>>;

    /// A checkpoint at the current batch boundary.
    fn checkpoint(&self) -> PlanCheckpoint;
}
