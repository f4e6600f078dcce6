//! seqwarm: Sequence Length Warmup as a streaming data-loader stage.
//!
//! This facade re-exports the member crates:
//! - [`schedule`]: training progress to sequence length (Composer- and DeepSpeed-exact).
//! - [`batcher`]: token batches cut, reshaped, repacked or document-packed to that length.
//! - [`loader`]: async Parquet shards to warmup-scheduled batches.
//! - `trainer` (feature `train`): a tch GPT trained from the stream, with the warm pass.

#![forbid(unsafe_code)]

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;

pub use seqwarm_batcher as batcher;
pub use seqwarm_loader as loader;
pub use seqwarm_schedule as schedule;
/// The tch trainer (feature `train`; needs libtorch, see `docs/trainer.md`).
#[cfg(feature = "train")]
pub use seqwarm_trainer as trainer;
