//! Async Parquet token-shard loading with a sequence-length-warmup stage.
//!
//! - [`LoaderBuilder`] / [`Loader`]: shards (local paths, globs, and object-store URLs such as
//!   `s3://`, `gs://`, `az://`, `http(s)://`, `file://`) read ahead with bounded concurrency,
//!   decoded without per-token copies, and emitted as batches already cut, reshaped, repacked
//!   or packed to the scheduled length. Deterministic in (seed, epoch), rank-aware, resumable
//!   from an opaque, versioned [`LoaderState`]. Every setting lives in [`LoaderConfig`].
//! - [`WarmupStreamExt::warmup`]: the same stage as an adapter over any stream of
//!   [`Documents`] (re-exported from `seqwarm-stage`, whose `futures` feature is all a pipeline
//!   that brings its own documents needs).
//!
//! The decisions are made by the sans-IO stage (`seqwarm-stage`: [`WarmupCore`], the epoch
//! plan); this crate reads shards for it. Runtimes and object stores can be injected
//! ([`LoaderBuilder::with_runtime`], [`LoaderBuilder::with_object_store`]); the cloud backends
//! are cargo features (`aws`, `gcp`, `azure`, `http`). See `docs/loader.md` and
//! `docs/formats.md`.

// `deny`, not `forbid`: `mapped.rs`, the memory map of local row groups, opts out.
#![deny(unsafe_code)]

mod buffers;
mod builder;
mod cache;
mod catalog;
mod checksum;
mod config;
mod error;
mod fetch;
mod layout;
mod loader;
mod manifest;
mod mapped;
mod narrow;
mod plain;
mod prefetch;
mod read;
mod retry;
mod runtime;
mod source;
mod state;
mod stores;

pub use builder::{LoaderBuilder, count_tokens};
pub use cache::CacheStats;
pub use catalog::{Catalog, TokenCount};
pub use config::{LoaderConfig, SourceConfig, WeightChangeConfig};
pub use error::{LoaderError, Result};
pub use layout::{LayoutKind, ShardLayout};
pub use loader::Loader;
pub use prefetch::Prefetch;
pub use retry::RetryPolicy;
pub use seqwarm_format::OnError;
pub use seqwarm_stage::{WarmupStream, WarmupStreamExt};
pub use source::{ShardFile, find_shards};
pub use state::{LoaderState, STATE_FORMAT, STATE_VERSION};
pub use stores::store_for_url;

// What the builder and its settings take, from the crates that define it, so that a loader's
// user needs this one crate (each item keeps its own documentation).
/// The `object_store` crate, at the version [`LoaderBuilder::with_object_store`] takes stores
/// of (`InMemory`, `AmazonS3Builder`, ...): no version to guess.
pub use object_store;
pub use seqwarm_schedule::{Progress, ProgressUnit, Schedule, ScheduleConfig, ShapePolicy};
pub use seqwarm_stage::{
    BatchSize, Documents, EpochBoundary, EpochConfig, LastBatch, Mode, Origin, ScheduledBatch,
    SourceStats, Stats, StepShape, Warmup, WarmupConfig, WarmupCore,
};
