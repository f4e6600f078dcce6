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
//!
//! # Example
//!
//! Shards from an object store (here an in-memory one standing in for `s3://bucket`), on a
//! runtime the caller owns, through a schedule from 32 to 128 tokens, checkpointed and resumed:
//!
//! ```
//! use std::sync::Arc;
//!
//! use futures_util::StreamExt;
//! use seqwarm_format::{OutputLayout, ShardWriter};
//! use seqwarm_loader::object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
//! use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, ScheduleConfig, WarmupConfig};
//!
//! let runtime = tokio::runtime::Runtime::new()?;
//! let store = Arc::new(InMemory::new());
//! // Two shards of 100 documents of 50 tokens each, written where `s3://bucket/shards/` is.
//! for shard in 0..2 {
//!     let mut bytes = Vec::new();
//!     let mut writer = ShardWriter::new(&mut bytes, OutputLayout::Flat, 1000, "shard")?;
//!     for doc in 0..100 {
//!         writer.write_document(&vec![shard * 100 + doc; 50])?;
//!     }
//!     writer.finish()?;
//!     let path = Path::from(format!("shards/shard-{shard}.parquet"));
//!     runtime.block_on(store.put(&path, PutPayload::from(bytes)))?;
//! }
//!
//! let warmup = WarmupConfig::new(ScheduleConfig::linear(32, 128, 0.5, 20).with_step(32))
//!     .with_mode(Mode::Repack)
//!     .with_batch_size(BatchSize::Tokens(1024));
//! let builder = LoaderBuilder::new(["s3://bucket/shards/"], warmup)
//!     .with_runtime(runtime.handle().clone())
//!     .with_object_store("s3://bucket", store)?
//!     .with_seed(7);
//! let (first_three, state) = runtime.block_on(async {
//!     let mut loader = builder.clone().build().await?;
//!     let mut seen = Vec::new();
//!     for _ in 0..3 {
//!         let batch = loader.next().await.unwrap()?;
//!         seen.push((batch.step, batch.seq_len, batch.batch.rows()));
//!     }
//!     Ok::<_, seqwarm_loader::LoaderError>((seen, loader.state()))
//! })?;
//! assert_eq!(first_three[0], (0, 32, 32)); // 1024 tokens at length 32
//!
//! // A checkpoint (JSON text) resumes at the next batch, on any later run.
//! let resumed = seqwarm_loader::LoaderState::from_json(&state.to_json()?)?;
//! let next = runtime.block_on(async {
//!     let mut loader = builder.with_state(resumed).build().await?;
//!     loader.next().await.unwrap()
//! })?;
//! assert_eq!(next.step, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// `deny`, not `forbid`: `mapped.rs`, the memory map of local row groups, opts out.
#![deny(unsafe_code)]

// docs/loader.md's Rust example runs as a doctest of this crate.
#[doc = include_str!("../../../docs/loader.md")]
#[cfg(doctest)]
struct LoaderDocDoctests;

mod buffers;
mod builder;
mod cache;
mod catalog;
mod checksum;
mod chunked;
mod config;
mod decomposed;
mod error;
mod fetch;
mod layout;
mod loader;
mod manifest;
mod mapped;
mod narrow;
mod plain;
mod prefetch;
mod raw_files;
mod read;
mod retry;
mod runtime;
mod source;
mod state;
mod stores;

pub use builder::{LoaderBuilder, count_tokens};
pub use cache::CacheStats;
pub use catalog::{Catalog, TokenCount};
pub use chunked::{ChunkSettings, ChunkedBatch, ChunkedLoader, ChunkedState};
pub use config::{LoaderConfig, SourceConfig, WeightChangeConfig};
pub use decomposed::{DecomposeSettings, DecomposedBatch, DecomposedLoader, DecomposedState};
pub use error::{LoaderError, Result};
pub use layout::{LayoutKind, ShardLayout};
pub use loader::Loader;
pub use prefetch::Prefetch;
pub use raw_files::RawTokenFiles;
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
pub use seqwarm_format::TokenDtype;
pub use seqwarm_schedule::{Progress, ProgressUnit, Schedule, ScheduleConfig, ShapePolicy};
pub use seqwarm_stage::{
    BatchSize, BatchSizeSchedule, ChunkConfig, ChunkPosition, Curriculum, DecomposeConfig,
    Documents, DurationUnit, EpochBoundary, EpochConfig, KeptSteps, LastBatch, Mode, Origin,
    PackFields, ScheduledBatch, SourceStats, Stats, StepShape, Warmup, WarmupConfig, WarmupCore,
};
