//! Lossless streaming repacking: rows of exactly the scheduled length, remainder carried.
//!
//! A little over 600 lines: one type, its config and its `RowSink` implementation, which read
//! best together; the byte-level copies are in `runs.rs`, the padding in `pad.rs`.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::BatchError;
use crate::batch::{Batch, fields};
use crate::pad::PadValues;
use crate::runs::{checked_i32, concat, describe, gather_prefix, gather_row, right_padded_len};
use crate::sink::{Popped, RowSink, Tokens};
use crate::tensor::{DType, Shape, Tensor};

/// Configuration of a [`Repacker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepackerConfig {
    /// Drop positions whose `attention_mask` is 0 before repacking, so padding never becomes
    /// training tokens. Default: true.
    pub strip_padding: bool,
    /// Padding for [`RowSink::finish`].
    pub pad: PadValues,
}

impl Default for RepackerConfig {
    fn default() -> Self {
        Self {
            strip_padding: true,
            pad: PadValues::default(),
        }
    }
}

impl RepackerConfig {
    /// Sets [`RepackerConfig::strip_padding`].
    #[must_use]
    pub fn with_strip_padding(mut self, strip: bool) -> Self {
        self.strip_padding = strip;
        self
    }
    /// Sets [`RepackerConfig::pad`].
    #[must_use]
    pub fn with_pad_values(mut self, pad: PadValues) -> Self {
        self.pad = pad;
        self
    }
    /// Builds the repacker.
    pub fn build(self) -> Repacker {
        Repacker {
            config: self,
            schema: None,
            queue: VecDeque::new(),
            carried: 0,
            tokens_in: 0,
            tokens_out: 0,
        }
    }
}

/// A run of tokens, one byte slice per field, all of the same token count.
#[derive(Debug, Clone)]
struct Segment {
    tokens: usize,
    columns: Vec<Bytes>,
}

/// What a [`Repacker`] carries between batches, for a checkpoint: the buffered tokens of each
/// field, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepackerCarry {
    /// `(field, dtype, tokens)` per field.
    fields: Vec<(String, DType, Vec<i64>)>,
}

impl RepackerCarry {
    /// The carried token ids (the `input_ids` field), for checking a checkpoint against a
    /// vocabulary.
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.fields
            .iter()
            .filter(|(name, _, _)| name == crate::fields::INPUT_IDS)
            .flat_map(|(_, _, tokens)| tokens.iter().copied())
    }

    /// The carries of several repackers as one, in the order given: each field's tokens one
    /// carry after another (what an elastic resume gives a rank that takes over several
    /// ranks' tokens). Carries with other fields or dtypes than the first non-empty one are
    /// refused.
    pub fn concat<'a>(
        carries: impl IntoIterator<Item = &'a RepackerCarry>,
    ) -> Result<RepackerCarry, BatchError> {
        let mut out = RepackerCarry::default();
        for carry in carries {
            carry.check()?;
            if carry.fields.is_empty() {
                continue;
            }
            if out.fields.is_empty() {
                out = carry.clone();
                continue;
            }
            let same = out.fields.len() == carry.fields.len()
                && out
                    .fields
                    .iter()
                    .zip(&carry.fields)
                    .all(|(a, b)| a.0 == b.0 && a.1 == b.1);
            if !same {
                return Err(BatchError::InvalidCarry {
                    reason: "carries with different fields cannot be combined".into(),
                });
            }
            for (into, from) in out.fields.iter_mut().zip(&carry.fields) {
                into.2.extend_from_slice(&from.2);
            }
        }
        Ok(out)
    }

    /// Refuses a carry that no repacker could have written: fields of different lengths, or
    /// no `input_ids` (the other fields are counted against it).
    fn check(&self) -> Result<(), BatchError> {
        let Some((_, _, first)) = self.fields.first() else {
            return Ok(());
        };
        let invalid = |reason: String| Err(BatchError::InvalidCarry { reason });
        if !self
            .fields
            .iter()
            .any(|(name, ..)| name == fields::INPUT_IDS)
        {
            return invalid(format!("no `{}` field", fields::INPUT_IDS));
        }
        if first.is_empty() {
            return invalid("fields without tokens".into());
        }
        if let Some((name, _, values)) = self.fields.iter().find(|f| f.2.len() != first.len()) {
            return invalid(format!(
                "field `{name}` carries {} tokens, the first field {}",
                values.len(),
                first.len()
            ));
        }
        Ok(())
    }
}

/// Lossless streaming repacker.
///
/// Every field of every pushed batch is read as one flat token stream (row-major, padding
/// stripped unless configured otherwise) and cut into rows of exactly the requested length.
/// The tokens that do not fill a row stay in the repacker and lead the next batch; nothing is
/// dropped. The length may change from one call to the next. [`RowSink::finish`] hands back
/// the last partial row, padded. Its streaming verbs are those of [`RowSink`].
///
/// Pushing never copies tokens (batches are held by reference); popping copies each token at
/// most once, and not at all when the requested rows lie inside one pushed buffer.
///
/// ```
/// use seqwarm_batcher::{Batch, RepackerConfig, RowSink};
///
/// let mut repacker = RepackerConfig::default().build();
/// let out = repacker.repack(&Batch::from_input_ids((0..10i64).collect(), 2, 5)?, 4)?;
/// assert_eq!(out.input_ids().unwrap().to_rows_i64(), vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]);
/// assert_eq!(repacker.buffered_tokens(), 2); // 8 and 9 wait for the next batch
/// let last = repacker.finish(4, 1)?.unwrap();
/// assert_eq!(last.input_ids().unwrap().to_rows_i64(), vec![vec![8, 9, 0, 0]]);
/// assert_eq!(last.get("attention_mask").unwrap().to_rows_i64(), vec![vec![1, 1, 0, 0]]);
/// # Ok::<(), seqwarm_batcher::BatchError>(())
/// ```
#[derive(Debug)]
pub struct Repacker {
    config: RepackerConfig,
    schema: Option<Vec<(Arc<str>, DType)>>,
    queue: VecDeque<Segment>,
    carried: usize,
    tokens_in: u64,
    tokens_out: u64,
}

impl Repacker {
    /// Real tokens accepted so far.
    pub fn tokens_in(&self) -> u64 {
        self.tokens_in
    }

    /// Real (non-padding) tokens handed out so far.
    pub fn tokens_out(&self) -> u64 {
        self.tokens_out
    }

    /// The configuration.
    pub fn config(&self) -> &RepackerConfig {
        &self.config
    }

    /// Accepts a batch; its tokens join the carried stream. All fields must be sequence-shaped
    /// like `input_ids`, and names and dtypes must match the first batch pushed.
    pub fn push(&mut self, batch: &Batch) -> Result<(), BatchError> {
        let ids = batch.input_ids().ok_or_else(|| BatchError::MissingField {
            field: fields::INPUT_IDS.into(),
            operation: "repacking",
        })?;
        let shape = ids.shape();
        let Shape::Matrix { rows, cols } = shape else {
            return Err(BatchError::NotSequenceShaped {
                field: fields::INPUT_IDS.into(),
                shape: shape.dims(),
                operation: "repacking",
            });
        };
        for (name, tensor) in batch.iter() {
            if tensor.cols().is_none() {
                return Err(BatchError::NotSequenceShaped {
                    field: name.into(),
                    shape: tensor.shape().dims(),
                    operation: "repacking (per-sample fields cannot follow tokens into new rows)",
                });
            }
            if tensor.shape() != shape {
                return Err(BatchError::ShapeMismatch {
                    field: name.into(),
                    shape: tensor.shape().dims(),
                    expected: shape.dims(),
                    operation: "repacking needs every field shaped like input_ids",
                });
            }
        }
        let schema: Vec<(Arc<str>, DType)> = batch
            .iter()
            .map(|(n, t)| (Arc::from(n), t.dtype()))
            .collect();
        self.fix_schema(schema)?;
        let tensors: Vec<&Tensor> = batch.iter().map(|(_, t)| t).collect();
        let mask = if self.config.strip_padding {
            batch.get(fields::ATTENTION_MASK)
        } else {
            None
        };
        match mask {
            None if tensors.iter().all(|t| t.is_contiguous()) => {
                // Fast path: the whole batch is one run, shared, not copied.
                self.enqueue(Segment {
                    tokens: rows * cols,
                    columns: tensors.iter().map(|t| t.to_contiguous_bytes()).collect(),
                });
            }
            None => {
                for r in 0..rows {
                    self.enqueue_span(&tensors, r, 0, cols);
                }
            }
            Some(mask) => {
                for r in 0..rows {
                    let Some(row) = mask.row(r) else { continue };
                    if let Some(real) = right_padded_len(row) {
                        // Right padding (the common case): the row's prefix, shared.
                        self.enqueue_span(&tensors, r, 0, real);
                    } else {
                        self.enqueue_gathered(&tensors, r, &row.to_vec_i64());
                    }
                }
            }
        }
        Ok(())
    }

    /// Accepts one run of tokens (a 1-D `input_ids` tensor, plus an optional 1-D `labels`
    /// tensor of the same length), shared, not copied. The fast path for document streams;
    /// the schema is `input_ids` (and `labels`), fixed by the first push.
    pub fn push_tokens(
        &mut self,
        input_ids: &Tensor,
        labels: Option<&Tensor>,
    ) -> Result<(), BatchError> {
        let Shape::Vector { len } = input_ids.shape() else {
            return Err(BatchError::ShapeMismatch {
                field: fields::INPUT_IDS.into(),
                shape: input_ids.shape().dims(),
                expected: vec![input_ids.numel()],
                operation: "push_tokens takes 1-D token runs",
            });
        };
        if let Some(labels) = labels
            && labels.shape() != input_ids.shape()
        {
            return Err(BatchError::ShapeMismatch {
                field: fields::LABELS.into(),
                shape: labels.shape().dims(),
                expected: vec![len],
                operation: "labels must match input_ids",
            });
        }
        let mut schema = vec![(Arc::from(fields::INPUT_IDS), input_ids.dtype())];
        if let Some(labels) = labels {
            schema.push((Arc::from(fields::LABELS), labels.dtype()));
        }
        self.fix_schema(schema)?;
        let mut columns = vec![input_ids.buffer().clone()];
        if let Some(labels) = labels {
            columns.push(labels.buffer().clone());
        }
        self.enqueue(Segment {
            tokens: len,
            columns,
        });
        Ok(())
    }

    /// Accepts elements `start..end` of 1-D `input_ids` (and `labels`) buffers, shared, not
    /// copied. When the previous push ended exactly where this one starts in the same
    /// buffers, the two runs are joined into one, so that later pops that span both are still
    /// zero-copy views.
    pub fn push_span(
        &mut self,
        input_ids: &Tensor,
        labels: Option<&Tensor>,
        start: usize,
        end: usize,
    ) -> Result<(), BatchError> {
        let out_of_range = |field: &str, t: &Tensor| BatchError::ShapeMismatch {
            field: field.into(),
            shape: t.shape().dims(),
            expected: vec![end],
            operation: "push_span range outside the buffer",
        };
        let ids = input_ids
            .slice_rows(start, end)
            .ok_or_else(|| out_of_range(fields::INPUT_IDS, input_ids))?;
        let labels_span = match labels {
            Some(l) => Some(
                l.slice_rows(start, end)
                    .ok_or_else(|| out_of_range(fields::LABELS, l))?,
            ),
            None => None,
        };
        let schema_matches = self.schema.as_ref().is_some_and(|s| {
            s.len() == 1 + usize::from(labels.is_some())
                && s[0].1 == input_ids.dtype()
                && labels.is_none_or(|l| s[1].1 == l.dtype())
        });
        if schema_matches && input_ids.cols().is_none() && start < end {
            let parents: Vec<&Tensor> = std::iter::once(input_ids).chain(labels).collect();
            if let Some(last) = self.queue.back_mut() {
                let joined: Vec<Bytes> = parents
                    .iter()
                    .zip(&last.columns)
                    .filter_map(|(parent, tail)| {
                        let size = parent.dtype().size();
                        let buffer = parent.buffer();
                        let base = buffer.as_ptr() as usize;
                        let tail_start = tail.as_ptr() as usize;
                        // The previous run lies inside this buffer and ends at `start`.
                        (tail_start >= base && tail_start + tail.len() == base + start * size)
                            .then(|| buffer.slice(tail_start - base..end * size))
                    })
                    .collect();
                if joined.len() == parents.len() && joined.len() == last.columns.len() {
                    last.columns = joined;
                    last.tokens += end - start;
                    self.carried += end - start;
                    self.tokens_in += (end - start) as u64;
                    return Ok(());
                }
            }
        }
        self.push_tokens(&ids, labels_span.as_ref())
    }

    /// The fields of the first push; every later push must have the same.
    fn fix_schema(&mut self, schema: Vec<(Arc<str>, DType)>) -> Result<(), BatchError> {
        match &self.schema {
            None => self.schema = Some(schema),
            Some(expected) if *expected != schema => {
                return Err(BatchError::FieldsChanged {
                    expected: describe(expected),
                    got: describe(&schema),
                });
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn enqueue(&mut self, segment: Segment) {
        if segment.tokens == 0 {
            return;
        }
        self.carried += segment.tokens;
        self.tokens_in += segment.tokens as u64;
        self.queue.push_back(segment);
    }

    fn enqueue_span(&mut self, tensors: &[&Tensor], row: usize, start: usize, end: usize) {
        let columns = tensors
            .iter()
            .filter_map(|t| t.row_span_bytes(row, start, end))
            .collect();
        self.enqueue(Segment {
            tokens: end - start,
            columns,
        });
    }

    fn enqueue_gathered(&mut self, tensors: &[&Tensor], row: usize, mask: &[i64]) {
        let keep: Vec<usize> = (0..mask.len()).filter(|&i| mask[i] != 0).collect();
        let columns = tensors
            .iter()
            .map(|t| match t.dtype() {
                DType::I32 => gather_row::<i32>(t, row, &keep),
                DType::I64 => gather_row::<i64>(t, row, &keep),
            })
            .collect();
        self.enqueue(Segment {
            tokens: keep.len(),
            columns,
        });
    }

    /// Pushes `batch` and returns every full row of `len` now available (possibly none).
    pub fn repack(&mut self, batch: &Batch, len: usize) -> Result<Batch, BatchError> {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        self.push(batch)?;
        let rows = self.carried / len;
        Ok(self.pop(len, rows)?.unwrap_or_default())
    }

    /// Removes `count` tokens from the front of the queue as byte runs per field (in schema
    /// order), or `None`, taking nothing, when fewer are carried or nothing was ever pushed.
    #[allow(clippy::type_complexity)]
    fn take_columns(&mut self, count: usize) -> Option<(Vec<(Arc<str>, DType)>, Vec<Vec<Bytes>>)> {
        if count > self.carried {
            return None;
        }
        let schema = self.schema.clone()?;
        let pieces = self.take(count);
        let columns = (0..schema.len())
            .map(|c| pieces.iter().map(|p| p.columns[c].clone()).collect())
            .collect();
        Some((schema, columns))
    }

    /// Removes `count` tokens from the front of the queue, as segments.
    fn take(&mut self, count: usize) -> Vec<Segment> {
        let mut out = Vec::new();
        let mut remaining = count;
        while remaining > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            let take = front.tokens.min(remaining);
            if take == front.tokens {
                if let Some(seg) = self.queue.pop_front() {
                    out.push(seg);
                }
            } else {
                let size_of = |c: &Bytes, tokens: usize| c.len() / tokens;
                let tokens = front.tokens;
                let head = Segment {
                    tokens: take,
                    columns: front
                        .columns
                        .iter()
                        .map(|c| c.slice(..take * size_of(c, tokens)))
                        .collect(),
                };
                for c in &mut front.columns {
                    *c = c.slice(take * size_of(c, tokens)..);
                }
                front.tokens -= take;
                out.push(head);
            }
            remaining -= take;
        }
        self.carried -= count - remaining;
        out
    }
}

impl RowSink for Repacker {
    type Carry = RepackerCarry;

    /// Takes one document (and its labels), followed by `eos` when given; shared, not copied.
    fn push_document(&mut self, doc: Tokens<'_>, eos: Option<i64>) -> Result<(), BatchError> {
        let Tokens {
            ids: tokens,
            labels,
        } = doc;
        self.push_tokens(tokens, labels)?;
        if let Some(eos) = eos {
            let one = |t: &Tensor, field: &str| -> Result<Tensor, BatchError> {
                Ok(match t.dtype() {
                    DType::I32 => Tensor::vector(vec![checked_i32(field, eos)?]),
                    DType::I64 => Tensor::vector(vec![eos]),
                })
            };
            let eos_labels = match labels {
                Some(l) => Some(one(l, fields::LABELS)?),
                None => None,
            };
            self.push_tokens(&one(tokens, fields::INPUT_IDS)?, eos_labels.as_ref())?;
        }
        Ok(())
    }

    fn push_run(&mut self, run: Tokens<'_>, span: Range<usize>) -> Result<bool, BatchError> {
        self.push_span(run.ids, run.labels, span.start, span.end)
            .map(|()| true)
    }

    /// Drops `tokens` from the front of the queue when that many are carried: rows are cut
    /// wherever they fall, so what a batch takes is known by its count alone.
    fn skip(&mut self, tokens: usize) -> Result<bool, BatchError> {
        if tokens > self.carried {
            return Ok(false);
        }
        self.take(tokens);
        self.tokens_out += tokens as u64;
        Ok(true)
    }

    fn skips_by_count(&self) -> bool {
        true
    }

    /// Whether `rows` rows of `len` can be taken now.
    fn can_pop(&self, len: usize, rows: usize) -> bool {
        self.carried >= rows.saturating_mul(len)
    }

    /// Takes exactly `rows` rows of `len` tokens, or `None` (taking nothing) when fewer than
    /// `rows * len` tokens are carried.
    fn pop(&mut self, len: usize, rows: usize) -> Popped {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        let need = rows * len;
        let Some((schema, columns)) = self.take_columns(need) else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        for ((name, dtype), column) in schema.iter().zip(columns) {
            let data = match dtype {
                DType::I32 => concat::<i32>(&column, need, 0),
                DType::I64 => concat::<i64>(&column, need, 0),
            };
            batch.insert(name.clone(), Tensor::from_bytes(data, *dtype, rows, len)?)?;
        }
        self.tokens_out += need as u64;
        Ok(Some(batch))
    }

    /// Takes `rows` rows of `row_len` tokens like [`RowSink::pop`], but keeps only the first
    /// `keep` columns of each: Composer's truncation of max-length rows, copying only the kept
    /// tokens (a zero-copy view when the rows lie in one pushed buffer). The cut tokens leave
    /// the repacker and count as handed out.
    fn pop_truncated(&mut self, row_len: usize, rows: usize, keep: usize) -> Popped {
        if keep >= row_len {
            return self.pop(row_len, rows);
        }
        if row_len == 0 || keep == 0 {
            return Err(BatchError::InvalidLength {
                len: keep.min(row_len),
            });
        }
        let need = rows * row_len;
        let Some((schema, columns)) = self.take_columns(need) else {
            return Ok(None);
        };
        let mut batch = Batch::new();
        for ((name, dtype), column) in schema.iter().zip(columns) {
            let tensor = if let [only] = column.as_slice() {
                Tensor::from_bytes(only.clone(), *dtype, rows, row_len)?.narrow_cols(keep)
            } else {
                let data = match dtype {
                    DType::I32 => gather_prefix::<i32>(&column, rows, row_len, keep),
                    DType::I64 => gather_prefix::<i64>(&column, rows, row_len, keep),
                };
                Tensor::from_bytes(data, *dtype, rows, keep)?
            };
            batch.insert(name.clone(), tensor)?;
        }
        self.tokens_out += need as u64;
        Ok(Some(batch))
    }

    /// Hands back up to `rows` rows of `len` from the carried tokens, the last one padded with
    /// [`RepackerConfig::pad`] (`attention_mask` 0, `labels` -100); adds an `attention_mask`
    /// field when the stream had none, so the padding is visible. `None` when nothing is
    /// carried; call it until then to take everything.
    fn finish(&mut self, len: usize, rows: usize) -> Popped {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        let real = self.carried.min(rows.saturating_mul(len));
        if real == 0 {
            return Ok(None);
        }
        let Some((schema, columns)) = self.take_columns(real) else {
            return Ok(None);
        };
        let rows = real.div_ceil(len);
        let total = rows * len;
        let mut batch = Batch::new();
        for ((name, dtype), column) in schema.iter().zip(columns) {
            let pad = self.config.pad.for_field(name);
            let data = match dtype {
                DType::I32 => concat::<i32>(&column, total, checked_i32(name, pad)?),
                DType::I64 => concat::<i64>(&column, total, pad),
            };
            batch.insert(name.clone(), Tensor::from_bytes(data, *dtype, rows, len)?)?;
        }
        if batch.get(fields::ATTENTION_MASK).is_none() {
            let dtype = schema
                .iter()
                .find(|(n, _)| &**n == fields::INPUT_IDS)
                .map_or(DType::I64, |(_, d)| *d);
            let mask: Vec<i64> = (0..total).map(|i| i64::from(i < real)).collect();
            let tensor = match dtype {
                DType::I32 => {
                    Tensor::from_vec(mask.iter().map(|&x| x as i32).collect(), rows, len)?
                }
                DType::I64 => Tensor::from_vec(mask, rows, len)?,
            };
            batch.insert(fields::ATTENTION_MASK, tensor)?;
        }
        self.tokens_out += real as u64;
        Ok(Some(batch))
    }

    /// Tokens held, waiting to fill a row.
    fn buffered_tokens(&self) -> usize {
        self.carried
    }

    /// Drops every buffered token; returns how many there were.
    fn clear(&mut self) -> usize {
        let dropped = self.carried;
        self.queue.clear();
        self.carried = 0;
        dropped
    }

    /// The buffered tokens of each field, copied out for a checkpoint.
    fn carry(&self) -> RepackerCarry {
        let Some(schema) = &self.schema else {
            return RepackerCarry::default();
        };
        if self.carried == 0 {
            return RepackerCarry::default();
        }
        let fields = schema
            .iter()
            .enumerate()
            .map(|(c, (name, dtype))| {
                let column: Vec<Bytes> = self.queue.iter().map(|s| s.columns[c].clone()).collect();
                let values = match dtype {
                    DType::I32 => {
                        bytemuck::cast_slice::<u8, i32>(&concat::<i32>(&column, self.carried, 0))
                            .iter()
                            .map(|&v| i64::from(v))
                            .collect()
                    }
                    DType::I64 => {
                        bytemuck::cast_slice::<u8, i64>(&concat::<i64>(&column, self.carried, 0))
                            .to_vec()
                    }
                };
                (name.to_string(), *dtype, values)
            })
            .collect();
        RepackerCarry { fields }
    }

    /// Replaces what is buffered with a [`RowSink::carry`], keeping the token counters
    /// consistent (they count only tokens pushed after the restore).
    fn restore(&mut self, carry: &RepackerCarry) -> Result<(), BatchError> {
        carry.check()?;
        self.clear();
        if carry.fields.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for (name, dtype, values) in &carry.fields {
            let n = values.len();
            let tensor = match dtype {
                DType::I32 => Tensor::from_vec(
                    values
                        .iter()
                        .map(|&v| checked_i32(name, v))
                        .collect::<Result<Vec<i32>, _>>()?,
                    1,
                    n,
                )?,
                DType::I64 => Tensor::from_vec(values.clone(), 1, n)?,
            };
            batch.insert(name.as_str(), tensor)?;
        }
        let strip = self.config.strip_padding;
        self.config.strip_padding = false;
        let result = self.push(&batch);
        self.config.strip_padding = strip;
        result?;
        self.tokens_in -= batch.input_ids().map_or(0, Tensor::numel) as u64;
        Ok(())
    }
}
