//! Text, JSON Lines or Parquet text in; seqwarm token shards and a manifest out.
//!
//! Deterministic (same inputs and settings, byte-identical shards), resumable (a finished
//! shard is never rewritten; an interrupted run continues after the last one), and split
//! across workers without coordination (worker `i` of `n` takes every `n`-th input).
//!
//! - [`Tokenizer`]: GPT-2 and the other BPE encodings `tiktoken-rs` ships, bytes, or a
//!   Hugging Face `tokenizer.json` ([`HuggingFace`]).
//! - [`input`]: documents from text, JSON Lines and Parquet files, with their places.
//! - [`Manifest`]: what a worker (or, merged, the whole data set) holds.
//! - [`Options`]: a run's settings as flags or Python keywords give them, each optional.
//! - [`Preprocess`]: the resumable run over files; [`merge_manifests`] joins the workers'.
//! - [`array_task`]: the worker split of a Slurm job array.
//! - [`DocumentWriter`]: the same shards from documents given one at a time (the Python
//!   package's `ShardWriter`, datatrove and Ray steps).
//!
//! See `docs/preprocess.md`.

#![forbid(unsafe_code)]

mod bpe_merge;
mod digest;
mod error;
mod hugging_face;
pub mod input;
mod join;
mod manifest;
mod options;
mod piece_cache;
mod pretokenize;
mod run;
mod slurm;
mod tokenizer;
mod writer;

pub use error::{PreprocessError, Result};
pub use hugging_face::HuggingFace;
pub use input::{InputFormat, OnError};
pub use join::join_runs;
pub use manifest::{Manifest, Position, Settings, ShardEntry, merge_manifests};
pub use options::Options;
pub use run::{DEFAULT_PREFIX, Preprocess, Progress, Summary};
pub use slurm::{ArrayTask, array_task};
pub use tokenizer::Tokenizer;
pub use writer::DocumentWriter;
