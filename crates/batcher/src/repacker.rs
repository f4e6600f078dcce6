//! Lossless streaming repacking: rows of exactly the scheduled length, remainder carried.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::BatchError;
use crate::batch::{Batch, IGNORE_INDEX, fields};
use crate::sink::RowSink;
use crate::tensor::{DType, Element, Shape, Tensor, Values, bytes_from_vec};

/// Values used to pad the final partial row handed back by [`Repacker::finish`] (and the
/// padding of [`crate::DocumentPacker`]'s rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PadValues {
    /// Padding for `input_ids` (the tokenizer's pad id).
    pub input_ids: i64,
    /// Padding for `labels` (ignored by the loss).
    pub labels: i64,
    /// Padding for `attention_mask`.
    pub attention_mask: i64,
    /// Padding for every other field.
    pub other: i64,
}

impl Default for PadValues {
    fn default() -> Self {
        Self {
            input_ids: 0,
            labels: IGNORE_INDEX,
            attention_mask: 0,
            other: 0,
        }
    }
}

impl PadValues {
    /// The padding value for the field called `name`.
    pub fn for_field(&self, name: &str) -> i64 {
        match name {
            fields::INPUT_IDS => self.input_ids,
            fields::LABELS => self.labels,
            fields::ATTENTION_MASK => self.attention_mask,
            _ => self.other,
        }
    }
}

/// Configuration of a [`Repacker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepackerConfig {
    /// Drop positions whose `attention_mask` is 0 before repacking, so padding never becomes
    /// training tokens. Default: true.
    pub strip_padding: bool,
    /// Padding for [`Repacker::finish`].
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
    pub fields: Vec<(String, DType, Vec<i64>)>,
}

/// Lossless streaming repacker.
///
/// Every field of every pushed batch is read as one flat token stream (row-major, padding
/// stripped unless configured otherwise) and cut into rows of exactly the requested length.
/// The tokens that do not fill a row stay in the repacker and lead the next batch; nothing is
/// dropped. The length may change from one call to the next. [`Repacker::finish`] hands back
/// the last partial row, padded. It is a [`RowSink`]; its own methods have the trait's names
/// and signatures, so they need no import.
///
/// Pushing never copies tokens (batches are held by reference); popping copies each token at
/// most once, and not at all when the requested rows lie inside one pushed buffer.
///
/// ```
/// use seqwarm_batcher::{Batch, RepackerConfig};
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

impl Default for Repacker {
    fn default() -> Self {
        RepackerConfig::default().build()
    }
}

impl Repacker {
    /// Tokens held, waiting to fill a row.
    pub fn buffered_tokens(&self) -> usize {
        self.carried
    }

    /// Whether `rows` rows of `len` can be taken now.
    pub fn can_pop(&self, len: usize, rows: usize) -> bool {
        self.carried >= rows.saturating_mul(len)
    }

    /// Drops every buffered token; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let dropped = self.carried;
        self.queue.clear();
        self.carried = 0;
        dropped
    }

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

    /// The buffered tokens of each field, copied out for a checkpoint.
    pub fn carry(&self) -> RepackerCarry {
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

    /// Replaces what is buffered with a [`Repacker::carry`], keeping the token counters
    /// consistent (they count only tokens pushed after the restore).
    pub fn restore(&mut self, carry: &RepackerCarry) -> Result<(), BatchError> {
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

    /// Takes one document (and its labels), followed by `eos` when given; shared, not copied.
    pub fn push_document(
        &mut self,
        tokens: &Tensor,
        labels: Option<&Tensor>,
        eos: Option<i64>,
    ) -> Result<(), BatchError> {
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

    /// Takes exactly `rows` rows of `len` tokens, or `None` (taking nothing) when fewer than
    /// `rows * len` tokens are carried.
    pub fn pop(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError> {
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

    /// Takes `rows` rows of `row_len` tokens like [`Repacker::pop`], but keeps only the first
    /// `keep` columns of each: Composer's truncation of max-length rows, copying only the kept
    /// tokens (a zero-copy view when the rows lie in one pushed buffer). The cut tokens leave
    /// the repacker and count as handed out.
    pub fn pop_truncated(
        &mut self,
        row_len: usize,
        rows: usize,
        keep: usize,
    ) -> Result<Option<Batch>, BatchError> {
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

    /// Pushes `batch` and returns every full row of `len` now available (possibly none).
    pub fn repack(&mut self, batch: &Batch, len: usize) -> Result<Batch, BatchError> {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        self.push(batch)?;
        let rows = self.carried / len;
        Ok(self.pop(len, rows)?.unwrap_or_default())
    }

    /// Hands back up to `rows` rows of `len` from the carried tokens, the last one padded with
    /// [`RepackerConfig::pad`] (`attention_mask` 0, `labels` -100); adds an `attention_mask`
    /// field when the stream had none, so the padding is visible. `None` when nothing is
    /// carried; call it until then to take everything.
    pub fn finish(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError> {
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

    fn push_document(
        &mut self,
        tokens: &Tensor,
        labels: Option<&Tensor>,
        eos: Option<i64>,
    ) -> Result<(), BatchError> {
        Repacker::push_document(self, tokens, labels, eos)
    }

    fn push_run(
        &mut self,
        tokens: &Tensor,
        labels: Option<&Tensor>,
        start: usize,
        end: usize,
    ) -> Result<bool, BatchError> {
        self.push_span(tokens, labels, start, end).map(|()| true)
    }

    fn can_pop(&self, len: usize, rows: usize) -> bool {
        Repacker::can_pop(self, len, rows)
    }

    fn pop(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError> {
        Repacker::pop(self, len, rows)
    }

    fn pop_truncated(
        &mut self,
        row_len: usize,
        rows: usize,
        keep: usize,
    ) -> Result<Option<Batch>, BatchError> {
        Repacker::pop_truncated(self, row_len, rows, keep)
    }

    fn finish(&mut self, len: usize, rows: usize) -> Result<Option<Batch>, BatchError> {
        Repacker::finish(self, len, rows)
    }

    fn buffered_tokens(&self) -> usize {
        Repacker::buffered_tokens(self)
    }

    fn clear(&mut self) -> usize {
        Repacker::clear(self)
    }

    fn carry(&self) -> RepackerCarry {
        Repacker::carry(self)
    }

    fn restore(&mut self, carry: &RepackerCarry) -> Result<(), BatchError> {
        Repacker::restore(self, carry)
    }
}

#[allow(clippy::needless_bitwise_bool)] // branch-free on purpose, see below
/// The number of leading real tokens when the row is right-padded (ones, then only zeros);
/// `None` for any other mask.
fn right_padded_len(mask: Values<'_>) -> Option<usize> {
    fn scan<T: Copy + PartialEq + Default>(mask: &[T]) -> Option<usize> {
        // Branch-free folds over fixed chunks vectorize; an early-exit scan does not.
        const CHUNK: usize = 64;
        let zero = T::default();
        let mut real = 0;
        for chunk in mask.chunks_exact(CHUNK) {
            if !chunk.iter().fold(true, |all, &m| all & (m != zero)) {
                break;
            }
            real += CHUNK;
        }
        real += mask[real..]
            .iter()
            .position(|&m| m == zero)
            .unwrap_or(mask.len() - real);
        mask[real..]
            .iter()
            .fold(true, |all, &m| all & (m == zero))
            .then_some(real)
    }
    match mask {
        Values::I32(m) => scan(m),
        Values::I64(m) => scan(m),
    }
}

fn checked_i32(field: &str, value: i64) -> Result<i32, BatchError> {
    i32::try_from(value).map_err(|_| BatchError::ValueOutOfRange {
        field: field.into(),
        value,
        dtype: DType::I32,
    })
}

fn describe(schema: &[(Arc<str>, DType)]) -> Vec<String> {
    schema.iter().map(|(n, d)| format!("{n}:{d}")).collect()
}

fn gather_row<T: Element>(tensor: &Tensor, row: usize, keep: &[usize]) -> Bytes {
    let values: Vec<T> = tensor
        .typed_row::<T>(row)
        .map(|r| keep.iter().map(|&i| r[i]).collect())
        .unwrap_or_default();
    bytes_from_vec(values)
}

/// The first `keep` of every `row_len` elements of the concatenated runs, for `rows` rows.
fn gather_prefix<T: Element>(column: &[Bytes], rows: usize, row_len: usize, keep: usize) -> Bytes {
    let runs: Vec<&[T]> = column
        .iter()
        .map(|b| bytemuck::cast_slice::<u8, T>(b))
        .collect();
    let mut out: Vec<T> = Vec::with_capacity(rows * keep);
    let (mut run, mut offset) = (0usize, 0usize);
    for _ in 0..rows {
        // Copy `keep` elements, then skip `row_len - keep`, walking across runs.
        let mut wanted = keep;
        let mut skip = row_len - keep;
        while wanted > 0 || skip > 0 {
            let Some(current) = runs.get(run) else { break };
            let left = current.len() - offset;
            if left == 0 {
                run += 1;
                offset = 0;
                continue;
            }
            if wanted > 0 {
                let n = wanted.min(left);
                out.extend_from_slice(&current[offset..offset + n]);
                offset += n;
                wanted -= n;
            } else {
                let n = skip.min(left);
                offset += n;
                skip -= n;
            }
        }
    }
    bytes_from_vec(out)
}

/// Joins byte runs of `T` into `total` elements, filling the rest with `pad`. One run that is
/// already the whole result is shared, not copied.
fn concat<T: Element>(column: &[Bytes], total: usize, pad: T) -> Bytes {
    if let [only] = column
        && only.len() == total * size_of::<T>()
    {
        return only.clone();
    }
    let mut out: Vec<T> = Vec::with_capacity(total);
    for run in column {
        out.extend_from_slice(bytemuck::cast_slice(run));
    }
    out.resize(total, pad);
    bytes_from_vec(out)
}
