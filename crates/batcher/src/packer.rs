//! Document-aware packing: rows of the scheduled length built from whole or split documents.
//!
//! About 600 lines: one type, its config, its checkpoint carry and its `RowSink`
//! implementation, which read best together; the byte-level copies are in `runs.rs`.

use std::collections::{BTreeSet, VecDeque};
use std::ops::Range;

use bytes::Bytes;

use crate::BatchError;
use crate::batch::{Batch, IGNORE_INDEX, fields};
use crate::pack_fields::PackFields;
use crate::pad::PadValues;
use crate::sink::{Popped, RowSink, Tokens};
use crate::tensor::{DType, Element, Shape, Tensor, bytes_from_vec};

/// How documents are assigned to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackStrategy {
    /// Concatenate documents in order and cut rows wherever they fall: no padding, but most
    /// documents that cross a row boundary are split.
    Greedy,
    /// Best-fit-decreasing over a window of documents (Ding et al. 2024, "Fewer Truncations
    /// Improve Language Modeling"): documents longer than a row are cut into row-sized chunks,
    /// the chunks sorted longest first, and each put in the fullest row it still fits. Only
    /// documents longer than a row are split; the cost is some padding.
    BestFitDecreasing {
        /// Documents considered together; larger packs tighter and holds more in memory.
        window: usize,
    },
}

/// Configuration of a [`DocumentPacker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackerConfig {
    /// The packing algorithm.
    pub strategy: PackStrategy,
    /// Set `labels` to -100 where the token is predicted from another document: the first
    /// token of every segment that does not start its row. Default: true.
    pub mask_document_boundaries: bool,
    /// Padding values for the end of rows.
    pub pad: PadValues,
    /// At most this many segments (pieces of documents) in one row; the rest of a row that
    /// reaches it is padding. With it a row has at most `max_segments + 1` runs of one
    /// `segment_ids` value, so [`Batch::varlen`] can give `cu_seqlens` a small fixed size.
    /// `None` (the default): no limit.
    pub max_segments: Option<usize>,
    /// The fields written besides `input_ids`. Default: all.
    pub fields: PackFields,
}

impl Default for PackerConfig {
    fn default() -> Self {
        Self {
            strategy: PackStrategy::Greedy,
            mask_document_boundaries: true,
            pad: PadValues::default(),
            max_segments: None,
            fields: PackFields::ALL,
        }
    }
}

impl PackerConfig {
    /// Sets the strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: PackStrategy) -> Self {
        self.strategy = strategy;
        self
    }
    /// Sets [`PackerConfig::mask_document_boundaries`].
    #[must_use]
    pub fn with_mask_document_boundaries(mut self, mask: bool) -> Self {
        self.mask_document_boundaries = mask;
        self
    }
    /// Sets the padding values.
    #[must_use]
    pub fn with_pad_values(mut self, pad: PadValues) -> Self {
        self.pad = pad;
        self
    }
    /// Sets [`PackerConfig::max_segments`] (a limit of 0 is taken as 1).
    #[must_use]
    pub fn with_max_segments(mut self, segments: Option<usize>) -> Self {
        self.max_segments = segments.map(|s| s.max(1));
        self
    }
    /// Sets the fields written besides `input_ids` ([`PackerConfig::fields`]).
    #[must_use]
    pub fn with_fields(mut self, fields: PackFields) -> Self {
        self.fields = fields;
        self
    }
    /// Builds the packer.
    pub fn build(self) -> DocumentPacker {
        DocumentPacker {
            config: self,
            dtype: None,
            pending: VecDeque::new(),
            pending_tokens: 0,
            ready: VecDeque::new(),
            ready_len: 0,
            input_ended: false,
            stats: PackerStats::default(),
        }
    }
}

/// Counters of a [`DocumentPacker`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PackerStats {
    /// Documents pushed (empty ones included).
    pub documents: u64,
    /// Documents whose tokens ended up in more than one row.
    pub documents_split: u64,
    /// Tokens pushed.
    pub tokens_in: u64,
    /// Real tokens handed out.
    pub tokens_out: u64,
    /// Padding positions handed out.
    pub padding: u64,
    /// Rows handed out.
    pub rows: u64,
}

/// One buffered piece of a document, as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PieceState {
    /// The piece's tokens.
    tokens: Vec<i64>,
    /// Whether its document was already counted as split.
    split: bool,
}

/// Everything a [`DocumentPacker`] holds between calls, serializable for checkpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PackerCarry {
    /// Token dtype, once known.
    dtype: Option<DType>,
    /// Pieces not yet assigned to a row, in order.
    pending: Vec<PieceState>,
    /// Rows already assigned by best fit, not yet handed out.
    ready: Vec<Vec<PieceState>>,
    /// The row length `ready` was packed for.
    ready_len: usize,
}

impl PackerCarry {
    /// The carry as pieces that can go separately (an elastic resume spreading what one rank
    /// held over several): each pending piece, and each ready row, as a carry of its own, with
    /// its token count. [`PackerCarry::concat`] of any of them, in this order, is lossless.
    pub fn items(&self) -> Vec<(usize, PackerCarry)> {
        let pending = self.pending.iter().map(|piece| {
            let carry = PackerCarry {
                dtype: self.dtype,
                pending: vec![piece.clone()],
                ready: Vec::new(),
                ready_len: 0,
            };
            (piece.tokens.len(), carry)
        });
        let ready = self.ready.iter().map(|row| {
            let carry = PackerCarry {
                dtype: self.dtype,
                pending: Vec::new(),
                ready: vec![row.clone()],
                ready_len: self.ready_len,
            };
            (row.iter().map(|p| p.tokens.len()).sum(), carry)
        });
        ready.chain(pending).collect()
    }

    /// The token ids of every piece held (pending or in ready rows), for checking a
    /// checkpoint against a vocabulary.
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.pending
            .iter()
            .chain(self.ready.iter().flatten())
            .flat_map(|piece| piece.tokens.iter().copied())
    }

    /// The carries of several packers as one, in the order given: their pending pieces one
    /// carry after another, and their ready rows likewise (what an elastic resume gives a
    /// rank that takes over several ranks' tokens). Ready rows packed for different lengths,
    /// or pieces of different dtypes, are refused.
    pub fn concat<'a>(
        carries: impl IntoIterator<Item = &'a PackerCarry>,
    ) -> Result<PackerCarry, BatchError> {
        let mut out = PackerCarry::default();
        for carry in carries {
            carry.check()?;
            let invalid = |reason: &str| BatchError::InvalidCarry {
                reason: reason.into(),
            };
            match (out.dtype, carry.dtype) {
                (Some(a), Some(b)) if a != b => {
                    return Err(invalid("carries of different token dtypes"));
                }
                (None, Some(b)) => out.dtype = Some(b),
                _ => {}
            }
            if !carry.ready.is_empty() {
                if !out.ready.is_empty() && out.ready_len != carry.ready_len {
                    return Err(invalid("ready rows packed for different lengths"));
                }
                out.ready_len = carry.ready_len;
                out.ready.extend(carry.ready.iter().cloned());
            }
            out.pending.extend(carry.pending.iter().cloned());
        }
        Ok(out)
    }

    /// Refuses a carry that no packer could have written: pieces without a dtype, empty
    /// pieces, or ready rows longer than the length they were packed for.
    fn check(&self) -> Result<(), BatchError> {
        let invalid = |reason: String| Err(BatchError::InvalidCarry { reason });
        let pieces = self.pending.iter().chain(self.ready.iter().flatten());
        if self.dtype.is_none() && pieces.clone().next().is_some() {
            return invalid("pieces without a token dtype".into());
        }
        if pieces.clone().any(|p| p.tokens.is_empty()) {
            return invalid("an empty piece".into());
        }
        for (i, row) in self.ready.iter().enumerate() {
            let len: usize = row.iter().map(|p| p.tokens.len()).sum();
            if row.is_empty() || len > self.ready_len {
                return invalid(format!(
                    "ready row {i} holds {len} tokens in {} pieces, for rows of {}",
                    row.len(),
                    self.ready_len
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Piece {
    tokens: Bytes,
    len: usize,
    /// Whether the document has already been counted as split.
    split: bool,
    /// The buffer the piece lies in, when it came with one ([`RowSink::push_document_in`]):
    /// consecutive pieces of one buffer become one view of it instead of a copy.
    run: Option<Bytes>,
}

impl Piece {
    fn split_at(&mut self, at: usize, size: usize) -> Piece {
        let head = Piece {
            tokens: self.tokens.slice(..at * size),
            len: at,
            split: true,
            run: self.run.clone(),
        };
        self.tokens = self.tokens.slice(at * size..);
        self.len -= at;
        self.split = true;
        head
    }
}

/// Packs documents into rows of a (possibly changing) sequence length.
///
/// Every row is `len` tokens with fields `input_ids`, `attention_mask`, `labels`,
/// `position_ids` (restarting at 0 at each segment) and `segment_ids` (1-based index of the
/// segment within its row, 0 on padding); [`Batch::cu_seqlens`] turns the latter into
/// FlashAttention-style offsets; [`PackerConfig::fields`] leaves out the fields not asked for.
/// Tokens are copied once, from the pushed buffers into the rows, and every field is written in
/// the same pass. Its streaming verbs are those of [`RowSink`].
///
/// ```
/// use seqwarm_batcher::{PackStrategy, PackerConfig, RowSink, Tensor, Tokens};
///
/// let mut packer = PackerConfig::default()
///     .with_strategy(PackStrategy::BestFitDecreasing { window: 8 })
///     .build();
/// for doc in [vec![1i32, 2, 3], vec![4, 5], vec![6, 7, 8, 9, 10]] {
///     packer.push_document(Tokens::new(&Tensor::vector(doc)), None)?;
/// }
/// let batch = packer.finish(5, 2)?.unwrap();
/// assert_eq!(batch.input_ids().unwrap().to_rows_i64(), vec![vec![6, 7, 8, 9, 10], vec![1, 2, 3, 4, 5]]);
/// assert_eq!(batch.get("position_ids").unwrap().to_rows_i64()[1], vec![0, 1, 2, 0, 1]);
/// assert_eq!(batch.get("labels").unwrap().to_rows_i64()[1], vec![1, 2, 3, -100, 5]);
/// assert_eq!(packer.stats().documents_split, 0);
/// # Ok::<(), seqwarm_batcher::BatchError>(())
/// ```
#[derive(Debug)]
pub struct DocumentPacker {
    config: PackerConfig,
    dtype: Option<DType>,
    pending: VecDeque<Piece>,
    pending_tokens: usize,
    /// Rows already assigned by best-fit at `ready_len`.
    ready: VecDeque<Vec<Piece>>,
    ready_len: usize,
    /// No more documents will come: best fit packs a partial window.
    input_ended: bool,
    stats: PackerStats,
}

impl DocumentPacker {
    /// Counters so far.
    pub fn stats(&self) -> PackerStats {
        self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &PackerConfig {
        &self.config
    }

    fn size(&self) -> usize {
        self.dtype.map_or(8, DType::size)
    }

    /// Rows packed for another length go back to the front of the queue, in order.
    fn dissolve_if_len_changed(&mut self, len: usize) {
        if self.ready_len == len || self.ready.is_empty() {
            self.ready_len = len;
            return;
        }
        let pieces: Vec<Piece> = self.ready.drain(..).flatten().collect();
        for piece in pieces.into_iter().rev() {
            self.pending_tokens += piece.len;
            self.pending.push_front(piece);
        }
        self.ready_len = len;
    }

    fn greedy_row(&mut self, len: usize) -> Vec<Piece> {
        let size = self.size();
        let mut row = Vec::new();
        let mut room = len;
        let cap = self.config.max_segments.unwrap_or(usize::MAX);
        while room > 0 && row.len() < cap {
            let Some(front) = self.pending.front_mut() else {
                break;
            };
            if front.len <= room {
                room -= front.len;
                if let Some(piece) = self.pending.pop_front() {
                    self.pending_tokens -= piece.len;
                    row.push(piece);
                }
            } else {
                if !front.split {
                    self.stats.documents_split += 1;
                }
                let head = front.split_at(room, size);
                self.pending_tokens -= head.len;
                row.push(head);
                room = 0;
            }
        }
        row
    }

    fn pack_window(&mut self, len: usize, window: usize) {
        let size = self.size();
        let take = window.min(self.pending.len());
        let cap = self.config.max_segments.unwrap_or(usize::MAX);
        let mut chunks: Vec<Piece> = Vec::new();
        for mut piece in self.pending.drain(..take) {
            self.pending_tokens -= piece.len;
            if piece.len > len && !piece.split {
                self.stats.documents_split += 1;
            }
            while piece.len > len {
                chunks.push(piece.split_at(len, size));
            }
            chunks.push(piece);
        }
        // Longest first; ties keep document order (stable sort).
        let mut order: Vec<usize> = (0..chunks.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(chunks[i].len));
        // Bins keyed by (room left, bin index): the best fit is the first key with room >= need.
        let mut bins: Vec<Vec<usize>> = Vec::new();
        let mut by_room: BTreeSet<(usize, usize)> = BTreeSet::new();
        for &i in &order {
            let need = chunks[i].len;
            let found = by_room.range((need, 0)..).next().copied();
            let (room, bin) = if let Some(key) = found {
                by_room.remove(&key);
                key
            } else {
                bins.push(Vec::new());
                (len, bins.len() - 1)
            };
            bins[bin].push(i);
            // A row holding its most segments takes no more, whatever its room.
            if room > need && bins[bin].len() < cap {
                by_room.insert((room - need, bin));
            }
        }
        let mut slots: Vec<Option<Piece>> = chunks.into_iter().map(Some).collect();
        for bin in bins {
            let row: Vec<Piece> = bin.into_iter().filter_map(|i| slots[i].take()).collect();
            self.ready.push_back(row);
        }
        self.ready_len = len;
    }

    /// One document's tokens (its EOS already appended), with the buffer they lie in.
    fn push_piece(&mut self, tokens: &Tensor, run: Option<Bytes>) -> Result<(), BatchError> {
        let document = self.stats.documents;
        let Shape::Vector { len } = tokens.shape() else {
            return Err(BatchError::ShapeMismatch {
                field: format!("document {document}"),
                shape: tokens.shape().dims(),
                expected: vec![tokens.numel()],
                operation: "a document is a 1-D token tensor",
            });
        };
        match self.dtype {
            None => self.dtype = Some(tokens.dtype()),
            Some(expected) if expected != tokens.dtype() => {
                return Err(BatchError::DTypeMismatch {
                    document,
                    expected,
                    got: tokens.dtype(),
                });
            }
            Some(_) => {}
        }
        self.stats.documents += 1;
        self.stats.tokens_in += len as u64;
        // Input again after its end (a stage reopened for another epoch): best fit waits for
        // whole windows again.
        self.input_ended = false;
        if len > 0 {
            self.pending_tokens += len;
            self.pending.push_back(Piece {
                tokens: tokens.buffer().clone(),
                len,
                split: false,
                run,
            });
        }
        Ok(())
    }

    fn emit(&mut self, packed: &[Vec<Piece>], len: usize) -> Result<Batch, BatchError> {
        match self.dtype.unwrap_or(DType::I64) {
            DType::I32 => self.emit_typed::<i32>(packed, len),
            DType::I64 => self.emit_typed::<i64>(packed, len),
        }
    }

    fn emit_typed<T: Element>(
        &mut self,
        packed: &[Vec<Piece>],
        len: usize,
    ) -> Result<Batch, BatchError> {
        let rows = packed.len();
        let total = rows * len;
        let cast = |field: &str, v: i64| {
            T::try_from(v).map_err(|_| BatchError::ValueOutOfRange {
                field: field.into(),
                value: v,
                dtype: T::DTYPE,
            })
        };
        let pad_id = cast(fields::INPUT_IDS, self.config.pad.input_ids)?;
        let pad_label = cast(fields::LABELS, self.config.pad.labels)?;
        let ignore = cast(fields::LABELS, IGNORE_INDEX)?;
        let (zero, one) = (cast("", 0)?, cast("", 1)?);
        // Positions and segment numbers are below the row length: check it fits once.
        cast(fields::POSITION_IDS, i64::try_from(len).unwrap_or(i64::MAX))?;
        let want = self.config.fields;
        let with = |on: bool| if on { total } else { 0 };
        // Greedy rows of consecutive documents of one buffer are that buffer's slice.
        let shared = shared_view(packed, total * size_of::<T>());
        let mut ids: Vec<T> = Vec::with_capacity(if shared.is_some() { 0 } else { total });
        let mut labels: Vec<T> = Vec::with_capacity(with(want.labels));
        let mut mask: Vec<T> = Vec::with_capacity(with(want.attention_mask));
        let mut positions: Vec<T> = Vec::with_capacity(with(want.position_ids));
        let mut segments: Vec<T> = Vec::with_capacity(with(want.segment_ids));
        let mut real = 0usize;
        // One pass: each field is written as its row is, only the fields asked for.
        for (r, row) in packed.iter().enumerate() {
            let (row_start, end) = (r * len, (r + 1) * len);
            let mut at = row_start;
            for (s, piece) in row.iter().enumerate() {
                let tokens: &[T] = bytemuck::cast_slice(&piece.tokens);
                if shared.is_none() {
                    ids.extend_from_slice(tokens);
                }
                if want.labels {
                    labels.extend_from_slice(tokens);
                    if self.config.mask_document_boundaries && at > row_start {
                        labels[at] = ignore;
                    }
                }
                at += piece.len;
                if want.attention_mask {
                    mask.resize(at, one);
                }
                if want.position_ids {
                    positions.extend((0..piece.len).map(T::from_index));
                }
                if want.segment_ids {
                    segments.resize(at, cast(fields::SEGMENT_IDS, s as i64 + 1)?);
                }
                real += piece.len;
            }
            if shared.is_none() {
                ids.resize(end, pad_id);
            }
            if want.labels {
                labels.resize(end, pad_label);
            }
            if want.attention_mask {
                mask.resize(end, zero);
            }
            if want.position_ids {
                positions.resize(end, zero);
            }
            if want.segment_ids {
                segments.resize(end, zero);
            }
        }
        self.stats.rows += rows as u64;
        self.stats.tokens_out += real as u64;
        self.stats.padding += (total - real) as u64;
        let tensor = |v: Vec<T>| Tensor::from_bytes(bytes_from_vec(v), T::DTYPE, rows, len);
        let ids = match shared {
            Some(view) => Tensor::from_bytes(view, T::DTYPE, rows, len)?,
            None => tensor(ids)?,
        };
        let mut batch = Batch::new().with_field(fields::INPUT_IDS, ids)?;
        for (on, name, values) in [
            (want.attention_mask, fields::ATTENTION_MASK, mask),
            (want.labels, fields::LABELS, labels),
            (want.position_ids, fields::POSITION_IDS, positions),
            (want.segment_ids, fields::SEGMENT_IDS, segments),
        ] {
            if on {
                batch.insert(name, tensor(values)?)?;
            }
        }
        Ok(batch)
    }
}

/// The pieces of `packed`, in row order, as one view of the buffer they lie in, when they are
/// consecutive in one buffer and fill `bytes` exactly (no padding).
fn shared_view(packed: &[Vec<Piece>], bytes: usize) -> Option<Bytes> {
    let mut pieces = packed.iter().flatten();
    let first = pieces.next()?;
    let run = first.run.as_ref()?;
    let base = run.as_ptr() as usize;
    let start = first.tokens.as_ptr() as usize;
    let mut end = start + first.tokens.len();
    for piece in pieces {
        let same_run = piece
            .run
            .as_ref()
            .is_some_and(|r| r.as_ptr() == run.as_ptr() && r.len() == run.len());
        if !same_run || piece.tokens.as_ptr() as usize != end {
            return None;
        }
        end += piece.tokens.len();
    }
    (end - start == bytes && start >= base && end <= base + run.len())
        .then(|| run.slice(start - base..end - base))
}

/// `tokens` followed by `eos`, in `tokens`' dtype.
fn append(tokens: &Tensor, eos: i64) -> Result<Tensor, BatchError> {
    let mut values = tokens.to_vec_i64();
    values.push(eos);
    Ok(match tokens.dtype() {
        DType::I32 => Tensor::vector(
            values
                .into_iter()
                .map(|v| {
                    i32::try_from(v).map_err(|_| BatchError::ValueOutOfRange {
                        field: fields::INPUT_IDS.into(),
                        value: v,
                        dtype: DType::I32,
                    })
                })
                .collect::<Result<Vec<i32>, _>>()?,
        ),
        DType::I64 => Tensor::vector(values),
    })
}

impl RowSink for DocumentPacker {
    type Carry = PackerCarry;

    /// Accepts one document: a 1-D token tensor (shared, not copied), followed by `eos` when
    /// given (the document is then copied once, with it). All documents must share one dtype.
    /// The packer derives each row's `labels` from its tokens, so `labels` are not used.
    fn push_document(&mut self, doc: Tokens<'_>, eos: Option<i64>) -> Result<(), BatchError> {
        match eos {
            None => self.push_piece(doc.ids, None),
            Some(eos) => self.push_piece(&append(doc.ids, eos)?, None),
        }
    }

    /// Keeps the run's buffer with the document (no EOS to append: a copy is made then), so
    /// that greedy rows of consecutive documents are handed out as a view of it.
    fn push_document_in(
        &mut self,
        run: Tokens<'_>,
        span: Range<usize>,
        eos: Option<i64>,
    ) -> Result<(), BatchError> {
        let ids = match run.ids.slice_rows(span.start, span.end) {
            Some(ids) if eos.is_none() && matches!(run.ids.shape(), Shape::Vector { .. }) => ids,
            _ => {
                return crate::sink::push_slice(self, run, span, eos);
            }
        };
        self.push_piece(&ids, Some(run.ids.buffer().clone()))
    }

    /// Whether `rows` rows of `len` can be taken now: greedy, `rows * len` tokens buffered;
    /// best fit, `rows` rows already packed at `len` or a whole window of pieces waiting.
    fn can_pop(&self, len: usize, rows: usize) -> bool {
        match self.config.strategy {
            PackStrategy::Greedy => self.pending_tokens >= rows.saturating_mul(len),
            PackStrategy::BestFitDecreasing { window } => {
                let (ready, dissolved) = if self.ready_len == len {
                    (self.ready.len(), 0)
                } else {
                    (0, self.ready.iter().map(Vec::len).sum())
                };
                let waiting = self.pending.len() + dissolved;
                ready >= rows || waiting >= window.max(1) || (self.input_ended && waiting > 0)
            }
        }
    }

    /// Best fit packs a partial window from now on.
    fn end_of_input(&mut self) {
        self.input_ended = true;
    }

    /// Takes exactly `rows` rows of `len`, or `None` when more documents are needed first
    /// (greedy: fewer than `rows * len` tokens buffered; best-fit: fewer than a window of
    /// documents, until the input has ended).
    fn pop(&mut self, len: usize, rows: usize) -> Popped {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        self.dissolve_if_len_changed(len);
        match self.config.strategy {
            PackStrategy::Greedy => {
                if self.pending_tokens < rows * len {
                    return Ok(None);
                }
                let packed: Vec<Vec<Piece>> = (0..rows).map(|_| self.greedy_row(len)).collect();
                self.emit(&packed, len).map(Some)
            }
            PackStrategy::BestFitDecreasing { window } => {
                let window = window.max(1);
                while self.ready.len() < rows {
                    // A partial window is packed only once no more documents can come.
                    let enough = self.pending.len() >= window || self.input_ended;
                    if self.pending.is_empty() || !enough {
                        return Ok(None);
                    }
                    self.pack_window(len, window);
                }
                let packed: Vec<Vec<Piece>> = self.ready.drain(..rows).collect();
                self.emit(&packed, len).map(Some)
            }
        }
    }

    /// After the input has ended: up to `rows` rows of `len` from what is buffered (rows not
    /// full are padded), or `None` when nothing is buffered; call it until then to take
    /// everything. Best fit packs every remaining piece on the first call.
    fn finish(&mut self, len: usize, rows: usize) -> Popped {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        self.dissolve_if_len_changed(len);
        let mut packed: Vec<Vec<Piece>> = Vec::new();
        match self.config.strategy {
            PackStrategy::Greedy => {
                while self.pending_tokens > 0 && packed.len() < rows {
                    packed.push(self.greedy_row(len));
                }
            }
            PackStrategy::BestFitDecreasing { window } => {
                while !self.pending.is_empty() {
                    self.pack_window(len, window.max(1));
                }
                let take = rows.min(self.ready.len());
                packed.extend(self.ready.drain(..take));
            }
        }
        if packed.is_empty() {
            return Ok(None);
        }
        self.emit(&packed, len).map(Some)
    }

    /// Tokens pushed but not yet handed out.
    fn buffered_tokens(&self) -> usize {
        self.pending_tokens + self.ready.iter().flatten().map(|p| p.len).sum::<usize>()
    }

    /// The real tokens of every row handed out (what `attention_mask` would count).
    fn tokens_handed_out(&self) -> Option<u64> {
        Some(self.stats.tokens_out)
    }

    /// Drops everything buffered; returns how many tokens that was.
    fn clear(&mut self) -> usize {
        let dropped = self.buffered_tokens();
        self.pending.clear();
        self.pending_tokens = 0;
        self.ready.clear();
        dropped
    }

    /// Everything buffered, copied out for a checkpoint.
    fn carry(&self) -> PackerCarry {
        let export = |p: &Piece| PieceState {
            tokens: match self.dtype {
                Some(DType::I32) => bytemuck::cast_slice::<u8, i32>(&p.tokens)
                    .iter()
                    .map(|&x| i64::from(x))
                    .collect(),
                _ => bytemuck::cast_slice::<u8, i64>(&p.tokens).to_vec(),
            },
            split: p.split,
        };
        PackerCarry {
            dtype: self.dtype,
            pending: self.pending.iter().map(export).collect(),
            ready: self
                .ready
                .iter()
                .map(|r| r.iter().map(export).collect())
                .collect(),
            ready_len: self.ready_len,
        }
    }

    /// Replaces the buffered state with a checkpoint's (counters other than buffered tokens
    /// are left as they are).
    fn restore(&mut self, carry: &PackerCarry) -> Result<(), BatchError> {
        carry.check()?;
        if let Some(cap) = self.config.max_segments
            && let Some((i, row)) = carry.ready.iter().enumerate().find(|(_, r)| r.len() > cap)
        {
            return Err(BatchError::InvalidCarry {
                reason: format!(
                    "ready row {i} holds {} segments; this packer allows {cap} per row",
                    row.len()
                ),
            });
        }
        let dtype = carry.dtype;
        let import = |p: &PieceState| -> Result<Piece, BatchError> {
            let tokens = match dtype {
                Some(DType::I32) => bytes_from_vec(
                    p.tokens
                        .iter()
                        .map(|&x| {
                            i32::try_from(x).map_err(|_| BatchError::ValueOutOfRange {
                                field: fields::INPUT_IDS.into(),
                                value: x,
                                dtype: DType::I32,
                            })
                        })
                        .collect::<Result<Vec<i32>, _>>()?,
                ),
                _ => bytes_from_vec(p.tokens.clone()),
            };
            Ok(Piece {
                tokens,
                len: p.tokens.len(),
                split: p.split,
                run: None,
            })
        };
        self.dtype = dtype;
        self.pending = carry.pending.iter().map(import).collect::<Result<_, _>>()?;
        self.pending_tokens = self.pending.iter().map(|p| p.len).sum();
        self.ready = carry
            .ready
            .iter()
            .map(|r| r.iter().map(import).collect::<Result<Vec<_>, _>>())
            .collect::<Result<_, _>>()?;
        self.ready_len = carry.ready_len;
        Ok(())
    }
}
