//! Async Parquet token-shard loading with a sequence-length-warmup stage.
//!
//! - [`LoaderBuilder`] / [`Loader`]: shards (local paths, globs, `s3://`, `gs://`, `az://`,
//!   `http(s)://`, `file://`) read ahead with bounded concurrency, decoded without per-token
//!   copies, and emitted as batches already cut, reshaped, repacked or packed to the scheduled
//!   length. Deterministic in (seed, epoch), rank-aware, resumable from [`LoaderState`].
//! - [`WarmupStreamExt::warmup`]: the same stage as an adapter over any stream of
//!   [`Documents`].
//! - [`WarmupCore`]: the sans-IO state machine both are built on.
//!
//! See `docs/loader.md` and `docs/formats.md`.

#![forbid(unsafe_code)]

mod catalog;
mod config;
mod core;
mod documents;
mod error;
pub mod format;
mod layout;
mod loader;
mod plain;
mod prefetch;
mod reader;
mod rng;
mod source;
mod warmup;
mod writer;

pub use catalog::{BadShardPolicy, Catalog};
pub use config::{BatchSize, Mode, WarmupConfig};
pub use core::{Carry, CoreState, ScheduledBatch, ShuffleState, Stats, WarmupCore};
pub use documents::{Documents, Origin};
pub use error::{LoaderError, Result};
pub use layout::{LayoutKind, ShardLayout};
pub use loader::{Loader, LoaderBuilder, LoaderState, STATE_VERSION, estimate_tokens};
pub use prefetch::Prefetch;
pub use reader::RetryPolicy;
pub use source::{ShardFile, list_shards, store_for_url};
pub use warmup::{WarmupStream, WarmupStreamExt};
pub use writer::{OutputLayout, ShardEncoding, ShardSummary, ShardWriter};
