//! seqwarm: Sequence Length Warmup as a streaming data-loader stage.
//!
//! This facade re-exports the member crates:
//! - [`schedule`]: training progress to sequence length (Composer- and DeepSpeed-exact).
//! - [`batcher`]: token batches cut, reshaped, repacked or document-packed to that length.
//! - [`stage`]: the sans-IO warmup stage: documents to batches, epoch plans, checkpoints.
//! - [`format`](mod@format): the shard formats and the shard writer.
//! - [`loader`]: async Parquet shards to warmup-scheduled batches.
//! - [`preprocess`]: text to token shards, resumable and split across workers.
//! - `trainer` (feature `train`): a tch GPT trained from the stream, with the warm pass.
//! - [`cli`] (feature `cli`, on by default): the `seqwarm` command line as a function.
//!
//! Features: `cli` (the command line), `cloud` (shards on S3, GCS, Azure and HTTP(S); one by
//! one: `aws`, `gcp`, `azure`, `http`), both on by default; `train` (links libtorch). A
//! pipeline that only reads local shards needs neither default:
//! `seqwarm = { version = "0.1", default-features = false }`.

#![forbid(unsafe_code)]

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;

#[cfg(feature = "cli")]
pub mod cli;

pub use seqwarm_batcher as batcher;
pub use seqwarm_format as format;
pub use seqwarm_loader as loader;
pub use seqwarm_preprocess as preprocess;
pub use seqwarm_schedule as schedule;
pub use seqwarm_stage as stage;
/// The tch trainer (feature `train`; needs libtorch, see `docs/trainer.md`).
#[cfg(feature = "train")]
pub use seqwarm_trainer as trainer;
