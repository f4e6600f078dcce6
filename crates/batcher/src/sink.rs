//! [`RowSink`]: what the warmup stage needs from anything that turns a token stream into rows.

use std::ops::Range;

use crate::BatchError;
use crate::batch::Batch;
use crate::tensor::Tensor;

/// A document's (or a run's) token ids, with their per-token labels when the source has them.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    /// The token ids, a 1-D tensor.
    pub ids: &'a Tensor,
    /// Labels of the same length, if any.
    pub labels: Option<&'a Tensor>,
}

impl<'a> Tokens<'a> {
    /// Token ids without labels.
    pub fn new(ids: &'a Tensor) -> Self {
        Self { ids, labels: None }
    }

    /// The same ids with these labels.
    #[must_use]
    pub fn with_labels(self, labels: Option<&'a Tensor>) -> Self {
        Self { labels, ..self }
    }
}

/// What taking rows from a sink gives: the rows, `None` when more input is needed first, or
/// why it failed.
pub type Popped = Result<Option<Batch>, BatchError>;

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

    /// Takes one document (1-D token ids, shared, not copied, with their optional labels),
    /// followed by the `eos` token when given.
    fn push_document(&mut self, doc: Tokens<'_>, eos: Option<i64>) -> Result<(), BatchError>;

    /// Takes the document at elements `span` of a 1-D token (and label) buffer that holds
    /// several, followed by `eos` when given: what [`RowSink::push_document`] of that slice
    /// does, but a sink that keeps the whole buffer can hand out consecutive documents as one
    /// view instead of a copy (the greedy packer does).
    fn push_document_in(
        &mut self,
        run: Tokens<'_>,
        span: Range<usize>,
        eos: Option<i64>,
    ) -> Result<(), BatchError> {
        push_slice(self, run, span, eos)
    }

    /// Takes elements `span` of 1-D token (and label) buffers that hold several whole
    /// documents, without looking at the boundaries between them, when the sink's rows do not
    /// depend on those boundaries. Returns `false`, taking nothing, when they do (the caller then
    /// pushes the documents one by one).
    fn push_run(&mut self, run: Tokens<'_>, span: Range<usize>) -> Result<bool, BatchError> {
        let _ = (run, span);
        Ok(false)
    }

    /// Whether [`RowSink::pop`] of `rows` rows of `len` can make progress without more input.
    /// When false, `pop` returns `None`; when true, the repacker's and the greedy packer's
    /// `pop` succeed, and best fit packs its next window (which may still leave it short).
    fn can_pop(&self, len: usize, rows: usize) -> bool;

    /// Takes exactly `rows` rows of `len` tokens, or `None` (taking nothing) when more input is
    /// needed first.
    fn pop(&mut self, len: usize, rows: usize) -> Popped;

    /// Takes `rows` rows of `row_len` tokens like [`RowSink::pop`] and keeps the first `keep`
    /// columns of each (Composer's truncation). The cut tokens leave the sink as handed out.
    fn pop_truncated(&mut self, row_len: usize, rows: usize, keep: usize) -> Popped {
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

    /// Drops the next `tokens` buffered tokens as handed out, without building the rows they
    /// would make: a step that nobody takes (a DataLoader worker's step that another worker
    /// hands over). Returns `false`, taking nothing, when fewer are buffered or when the sink
    /// cannot tell its next rows by count alone (a packer's rows depend on the documents): the
    /// caller then pops the batch and drops it.
    fn skip(&mut self, tokens: usize) -> Result<bool, BatchError> {
        let _ = tokens;
        Ok(false)
    }

    /// Whether [`RowSink::skip`] drops any count it holds (so the input that only skipped
    /// steps take need not be read).
    fn skips_by_count(&self) -> bool {
        false
    }

    /// The input has ended: no more documents will be pushed, so a sink that waits for more
    /// before it packs (best fit waits for a whole window) packs what it has. Pops that follow
    /// hand out every full batch there is; [`RowSink::finish`] the partial rest. A push after
    /// it starts the input again.
    fn end_of_input(&mut self) {}

    /// After the input has ended: up to `rows` rows of `len` from what is buffered, the last
    /// one padded, or `None` when nothing is buffered. Call it again until it returns `None`.
    fn finish(&mut self, len: usize, rows: usize) -> Popped;

    /// Tokens taken but not yet handed out.
    fn buffered_tokens(&self) -> usize;

    /// The real tokens (padding not counted) of every batch handed out so far, when the sink
    /// counts them as it builds rows; `None` when a batch's own
    /// [`Batch::token_count`](crate::Batch::token_count) tells (the default). A packer whose
    /// rows carry no `attention_mask` must count them: its padding looks like tokens.
    fn tokens_handed_out(&self) -> Option<u64> {
        None
    }

    /// Drops everything buffered; returns how many tokens that was.
    fn clear(&mut self) -> usize;

    /// Everything buffered, copied out.
    fn carry(&self) -> Self::Carry;

    /// Replaces what is buffered with a [`RowSink::carry`].
    fn restore(&mut self, carry: &Self::Carry) -> Result<(), BatchError>;
}

/// [`RowSink::push_document_in`] as [`RowSink::push_document`] of the document's slice.
pub(crate) fn push_slice<S: RowSink + ?Sized>(
    sink: &mut S,
    run: Tokens<'_>,
    span: Range<usize>,
    eos: Option<i64>,
) -> Result<(), BatchError> {
    let slice = |t: &Tensor| {
        t.slice_rows(span.start, span.end)
            .ok_or_else(|| BatchError::ShapeMismatch {
                field: format!("document at {}..{}", span.start, span.end),
                shape: t.shape().dims(),
                expected: vec![span.end],
                operation: "a document's span lies within its run",
            })
    };
    let ids = slice(run.ids)?;
    let labels = run.labels.map(slice).transpose()?;
    sink.push_document(Tokens::new(&ids).with_labels(labels.as_ref()), eos)
}
