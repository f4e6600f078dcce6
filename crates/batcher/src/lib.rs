//! Token batches cut, reshaped, repacked or document-packed to a scheduled sequence length.
//!
//! The pure, synchronous core of seqwarm's data path: no I/O, no async.
//!
//! - [`Batch`]: named `i32`/`i64` tensors over shared [`bytes::Bytes`] buffers.
//! - [`Batch::set_sequence_length`]: Composer's `set_batch_sequence_length`, bit-exact
//!   (truncate, truncate preserving the end of sequence, reshape).
//! - [`Repacker`]: lossless streaming reshape; the tokens that do not fill a row are carried
//!   into the next batch instead of dropped.
//! - [`DocumentPacker`]: rows built from documents, greedy or best-fit-decreasing, with
//!   `position_ids`, `segment_ids` and boundary-masked `labels`.
//! - [`RowSink`]: the one vocabulary both speak (push, pop, finish, carry, restore), which the
//!   warmup stage is written against.

#![forbid(unsafe_code)]

mod batch;
mod error;
mod pack_fields;
mod packer;
mod pad;
mod repacker;
mod runs;
mod sink;
mod tensor;
mod varlen;

pub use batch::{Batch, Cut, IGNORE_INDEX, fields};
pub use error::BatchError;
pub use pack_fields::PackFields;
pub use packer::{
    DocumentPacker, PackStrategy, PackerCarry, PackerConfig, PackerStats, PieceState,
};
pub use pad::PadValues;
pub use repacker::{Repacker, RepackerCarry, RepackerConfig};
pub use sink::{Popped, RowSink, Tokens};
pub use tensor::{DType, Element, Shape, Tensor, Values, bytes_from_vec};
pub use varlen::{Varlen, fixed_cu_seqlens_len};

#[cfg(test)]
mod tests;
