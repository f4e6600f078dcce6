//! [`RowSink`]: what the warmup stage needs from anything that turns a token stream into rows.

use crate::BatchError;
use crate::batch::Batch;
use crate::tensor::Tensor;

/// Tokens wait in a sink until they fill rows of the scheduled length.
///
/// [`crate::Repacker`] (documents concatenated, rows cut wherever they fall) and
/// [`crate::DocumentPacker`] (rows built from whole or split documents) implement it with one
/// vocabulary, so that the warmup stage is written once over both. Every token pushed is either
/// handed out by [`RowSink::pop`] / [`RowSink::finish`], counted by [`RowSink::clear`], or still
/// [`RowSink::buffered_tokens`]: a sink never drops a token on its own.
pub trait RowSink {
    /// What [`RowSink::carry`] saves: everything buffered, for a checkpoint.
    type Carry: Clone
        + std::fmt::Debug
        + PartialEq
        + serde::Serialize
        + serde::de::DeserializeOwned
        + Send
        + 'static;

    /// Takes one document (a 1-D token tensor, shared, not copied) with its optional per-token
    /// labels, followed by the `eos` token when given.
    fn push_document(
        &mut self,
        tokens: &Tensor,
        labels: Option<&Tensor>,
        eos: Option<i64>,
    ) -> Result<(), BatchError>;

    /// Takes elements `start..end` of 1-D token (and label) buffers that hold several whole
    /// documents, without looking at the boundaries between them, when the sink's rows do not
    /// depend on those boundaries. Returns `false`, taking nothing, when they do (the caller then
    /// pushes the documents one by one).
    fn push_run(
        &mut self,
        tokens: &Tensor,
        labels: Option<&Tensor>,
        start: usize,
        end: usize,
    ) -> Result<bool, BatchError> {
        let _ = (tokens, labels, start, end);
        Ok(false)
    }

    /// Whether [`RowSink::pop`] of `rows` rows of `len` can make progress without more input.
    /// When false, `pop` returns `None`; when true, the repacker's and the greedy packer's
    /// `pop` succeed, and best fit packs its next window (which may still leave it short).
    fn can_pop(&self, len: usize, rows: usize) -> bool;

    /// Takes exactly `rows` rows of `len` tokens, or `None` (taking nothing) when more input is
    /// needed first.
    fn pop(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError>;

    /// Takes `rows` rows of `row_len` tokens like [`RowSink::pop`] and keeps the first `keep`
    /// columns of each (Composer's truncation). The cut tokens leave the sink as handed out.
    fn pop_truncated(
        &mut self,
        row_len: usize,
        rows: usize,
        keep: usize,
    ) -> Result<Option<Batch>, BatchError> {
        let Some(batch) = self.pop(row_len, rows)? else {
            return Ok(None);
        };
        batch
            .set_sequence_length(
                keep,
                crate::Cut::Truncate {
                    preserve_end_of_sequence: false,
                },
            )
            .map(Some)
    }

    /// After the input has ended: up to `rows` rows of `len` from what is buffered, the last
    /// one padded, or `None` when nothing is buffered. Call it again until it returns `None`.
    fn finish(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError>;

    /// Tokens taken but not yet handed out.
    fn buffered_tokens(&self) -> usize;

    /// Drops everything buffered; returns how many tokens that was.
    fn clear(&mut self) -> usize;

    /// Everything buffered, copied out.
    fn carry(&self) -> Self::Carry;

    /// Replaces what is buffered with a [`RowSink::carry`].
    fn restore(&mut self, carry: &Self::Carry) -> Result<(), BatchError>;
}
