//! The sequence-length-warmup stage, sans IO: documents in, batches of the scheduled shape out.
//!
//! No I/O, no async, no threads: every decision (which length, which rows, which tokens are
//! carried, cut or dropped, which units a rank reads, when the stream ends, what a checkpoint
//! holds) is made here, by state machines that tests drive with in-memory documents. The
//! async loader (`seqwarm-loader`) and the `WarmupStream` adapter (feature `futures`: any
//! `futures::Stream` of documents in, batches out) are thin drivers around it.
//!
//! - [`WarmupConfig`] → [`Warmup`]: the stage's settings, with the library's defaults, checked.
//! - [`shape`]: the one shape rule (rows and row length per step, per mode and batch sizing).
//! - [`WarmupCore`]: documents → [`ScheduledBatch`]es, over any [`seqwarm_batcher::RowSink`]
//!   ([`ModeSink`] picks the mode's).
//! - [`EpochPlan`]: unit order per epoch and rank, the per-rank batch cap, limits, the drain
//!   at the end, and checkpoints ([`PlanState`]).
//! - [`Stats`]: where every token went; they always add up.
//! - [`MixturePlan`]: one core over several sources, interleaved by a [`Mixture`] (which
//!   source the next document comes from, by tokens, deficit-based, with weight changes by
//!   step).
//! - [`Plan`]: what both plans offer their driver ([`Action`]s naming a source, pushes per
//!   source, a [`PlanCheckpoint`]), so that one driver reads for either.

#![forbid(unsafe_code)]

mod chunks;
mod config;
mod core;
mod decompose;
mod documents;
mod driven;
mod elastic;
mod epochs;
mod error;
mod kept_steps;
mod last_batch;
mod mixture;
mod mixture_plan;
mod mode;
mod numpy_random;
mod plan;
mod rest;
mod rng;
pub mod shape;
mod shuffle;
mod sink;
mod sizing;
mod stats;
#[cfg(feature = "futures")]
mod stream;

pub use chunks::{BatchSizeSchedule, ChunkConfig, ChunkPosition, ChunkStep, Chunks, DurationUnit};
pub use config::{DEFAULT_PACK_WINDOW, MAX_STEP_TOKENS, Warmup, WarmupConfig};
pub use core::{CoreState, ScheduledBatch, WarmupCore};
pub use decompose::{
    Curriculum, DecomposeConfig, DecomposedEpoch, DecomposedStep, Decomposition, PieceIndex,
    piece_lengths,
};
pub use documents::{Documents, Origin};
pub use driven::{Action, Plan, PlanCheckpoint};
pub use elastic::MergedState;
pub use epochs::{EpochBoundary, EpochConfig};
pub use error::{Result, StageError};
pub use kept_steps::{InputHint, KeptSteps};
pub use last_batch::LastBatch;
pub use mixture::{ChangeAt, Mixture, MixtureConfig, MixtureSource, MixtureState, WeightChange};
pub use mixture_plan::{MixturePlan, MixturePlanState, SourceStats};
pub use mode::Mode;
pub use plan::{EpochPlan, PlanState, Reads, UnitInfo};
pub use rest::RestUnit;
pub use rng::SplitMix64;
/// What [`WarmupConfig::with_pack_fields`] takes, from the crate that defines it.
pub use seqwarm_batcher::PackFields;
pub use shape::{EpochSteps, StepShape};
pub use sink::{ModeCarry, ModeSink};
pub use sizing::BatchSize;
pub use stats::Stats;
#[cfg(feature = "futures")]
pub use stream::{WarmupStream, WarmupStreamExt};

#[cfg(test)]
mod tests;
