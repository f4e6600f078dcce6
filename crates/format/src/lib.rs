//! seqwarm's token shard formats, and writing them.
//!
//! - [`flat`]: the flat layout (one token per row, document boundaries in the footer) and its
//!   document-length encoding, which the loader reads.
//! - [`ShardWriter`]: writes documents into a shard in either layout (`preprocess`, the demo
//!   corpus, tests and benchmarks).
//! - [`paths`]: local files, directories and globs expanded in a stable order (the loader's
//!   local shards, the preprocessor's inputs).
//! - [`OnError`]: what readers of shards and inputs do with what they cannot read.
//! - [`checksum`]: the CRC32 of every row group that the shard writer records in the footer.
//! - [`raw_token_layout`], [`scan_tokens`]: raw token files (headerless `uint16`/`uint32`
//!   arrays and NumPy `.npy` files) and the vectorised EOS scan that finds their documents.
//! - [`atomic`]: crash-safe writes (temporary file, fsync, rename, fsync of the directory).
//!
//! See `docs/formats.md`.

#![forbid(unsafe_code)]

pub mod atomic;
pub mod checksum;
mod error;
pub mod flat;
mod megatron;
mod on_error;
pub mod paths;
mod raw_tokens;
mod writer;

pub use error::FormatError;
pub use megatron::{MEGATRON_INDEX_MAGIC, MegatronIndex, megatron_index};
pub use on_error::OnError;
pub use raw_tokens::{RawTokenLayout, TokenDtype, TokenScan, raw_token_layout, scan_tokens};
pub use writer::{OutputLayout, ShardEncoding, ShardSummary, ShardWriter};
