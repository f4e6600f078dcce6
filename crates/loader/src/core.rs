//! The sans-IO warmup core: documents in, batches of the scheduled shape out.
//!
//! No I/O and no async: the async adapters ([`crate::WarmupStream`], [`crate::Loader`]) poll
//! their inputs and drive this state machine, and tests drive it directly.

use seqwarm_batcher::{
    Batch, Cut, DType, DocumentPacker, PackerCarry, PackerConfig, PadValues, Repacker,
    RepackerConfig, Tensor,
};
use seqwarm_schedule::Progress;
use serde::{Deserialize, Serialize};

use crate::config::{Mode, WarmupConfig};
use crate::documents::{Documents, Origin};
use crate::error::{LoaderError, Result};
use crate::rng::SplitMix64;

/// One emitted batch and where training stands after it.
#[derive(Debug, Clone)]
pub struct ScheduledBatch {
    /// 0-based index of this batch (optimizer step) since the start of training.
    pub step: u64,
    /// The scheduled sequence length for this step.
    pub seq_len: usize,
    /// The batch; every sequence field has `seq_len` columns.
    pub batch: Batch,
    /// Real (non-padding) tokens in the batch.
    pub tokens: u64,
    /// Progress after this batch (what the schedule reads for the next one).
    pub progress: Progress,
}

/// Counters of a warmup stage; nothing is dropped without being counted here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Documents taken in.
    pub documents: u64,
    /// Documents with no tokens.
    pub empty_documents: u64,
    /// Tokens taken in (EOS tokens added by the stage included).
    pub tokens_in: u64,
    /// Batches emitted.
    pub batches: u64,
    /// Real tokens emitted.
    pub tokens_out: u64,
    /// Tokens cut by Composer's truncate/reshape (as Composer does).
    pub tokens_cut: u64,
    /// Tokens left over at the end (final partial batch dropped, or an epoch boundary in a
    /// multi-rank run).
    pub tokens_dropped: u64,
    /// Row groups skipped under the skip-and-count policy.
    pub units_skipped: u64,
    /// Row groups read a second time in an epoch so that every rank emits as many batches.
    pub units_repeated: u64,
}

/// Tokens carried between batches, as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Carry {
    /// The row builder's carried tokens, per field.
    Rows {
        /// `(field, dtype, tokens)`.
        fields: Vec<(String, DType, Vec<i64>)>,
    },
    /// The document packer's buffered pieces.
    Pack(PackerCarry),
}

/// Documents waiting in the shuffle buffer, as stored in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShuffleState {
    /// The generator's state.
    pub rng: u64,
    /// Token dtype.
    pub dtype: Option<DType>,
    /// `(tokens, labels)` per buffered document, in buffer order.
    pub documents: Vec<(Vec<i64>, Option<Vec<i64>>)>,
}

/// Everything the core holds at a batch boundary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreState {
    /// Progress so far.
    pub progress: Progress,
    /// Batches emitted so far.
    pub step: u64,
    /// Carried tokens.
    pub carry: Carry,
    /// The shuffle buffer, when shuffling.
    pub shuffle: Option<ShuffleState>,
    /// Counters.
    pub stats: Stats,
}

enum Sink {
    Rows(Repacker),
    Pack(DocumentPacker),
}

type Doc = (Tensor, Option<Tensor>);

struct Shuffle {
    capacity: usize,
    rng: SplitMix64,
    documents: Vec<Doc>,
}

/// The sans-IO warmup state machine.
pub struct WarmupCore {
    config: WarmupConfig,
    progress: Progress,
    step: u64,
    sink: Sink,
    current: Option<Documents>,
    cursor: usize,
    shuffle: Option<Shuffle>,
    stats: Stats,
    /// Rows of a final batch larger than one batch, handed out over several calls.
    tail: Option<Batch>,
    done: bool,
}

impl std::fmt::Debug for WarmupCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmupCore")
            .field("mode", &self.config.mode)
            .field("step", &self.step)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl WarmupCore {
    /// A core in its initial state.
    pub fn new(config: WarmupConfig) -> Result<Self> {
        config.validate()?;
        let pad = PadValues {
            input_ids: config.pad_id,
            ..PadValues::default()
        };
        let sink = match config.mode {
            Mode::Pack { strategy } => Sink::Pack(
                PackerConfig::default()
                    .with_strategy(strategy)
                    .with_mask_document_boundaries(config.mask_document_boundaries)
                    .with_pad_values(pad)
                    .build(),
            ),
            _ => Sink::Rows(RepackerConfig::default().with_pad_values(pad).build()),
        };
        let shuffle = (config.shuffle_buffer > 0).then(|| Shuffle {
            capacity: config.shuffle_buffer,
            rng: SplitMix64::from_parts(&[config.shuffle_seed, 0x5A4F]),
            documents: Vec::new(),
        });
        Ok(Self {
            config,
            progress: Progress::default(),
            step: 0,
            sink,
            current: None,
            cursor: 0,
            shuffle,
            stats: Stats::default(),
            tail: None,
            done: false,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &WarmupConfig {
        &self.config
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Batches emitted so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Whether the current run of documents is used up, so that more input is needed.
    pub fn needs_input(&self) -> bool {
        self.current.as_ref().is_none_or(|d| self.cursor >= d.len())
    }

    /// Where the next unread document comes from (for checkpoints): the current run's origin
    /// advanced by the documents taken from it.
    pub fn position(&self) -> Option<Origin> {
        self.current.as_ref().map(|d| {
            let o = d.origin();
            Origin {
                first_document: o.first_document + self.cursor as u64,
                ..o
            }
        })
    }

    /// The (length, rows) of the next batch.
    pub fn next_shape(&self) -> (usize, usize) {
        let len =
            usize::try_from(self.config.schedule.seq_len(&self.progress)).unwrap_or(usize::MAX);
        (len, self.config.rows_at(len))
    }

    fn max_len(&self) -> usize {
        usize::try_from(self.config.schedule.max_len()).unwrap_or(usize::MAX)
    }

    /// Takes a run of documents. Any documents left in the previous run are moved into the
    /// stage first, so nothing is lost.
    pub fn push(&mut self, documents: Documents) -> Result<()> {
        if let Some(previous) = self.current.take() {
            let cursor = std::mem::take(&mut self.cursor);
            for i in cursor..previous.len() {
                self.take_document(&previous, i)?;
            }
        }
        self.current = Some(documents);
        self.cursor = 0;
        Ok(())
    }

    /// The next full batch, or `None` when more input is needed.
    pub fn next_batch(&mut self) -> Result<Option<ScheduledBatch>> {
        if self.done {
            return Ok(None);
        }
        let (len, rows) = self.next_shape();
        loop {
            if let Some(batch) = self.try_pop(len, rows)? {
                return Ok(Some(self.emit(batch, len)));
            }
            if !self.feed(len, rows)? {
                return Ok(None);
            }
        }
    }

    /// After the input has ended: the remaining full batches, then the final partial one
    /// (with `keep_last`; otherwise its tokens are counted as dropped), then `None`.
    pub fn finish(&mut self) -> Result<Option<ScheduledBatch>> {
        if let Some(tail) = self.tail.take() {
            return Ok(Some(self.emit_tail(tail)));
        }
        if self.done {
            return Ok(None);
        }
        self.flush_input()?;
        if let Some(batch) = self.next_batch()? {
            return Ok(Some(batch));
        }
        self.done = true;
        let (len, _) = self.next_shape();
        let max = self.max_len();
        let last = match &mut self.sink {
            Sink::Rows(r) if !self.config.keep_last => {
                self.stats.tokens_dropped += r.carried_tokens() as u64;
                None
            }
            Sink::Pack(p) if !self.config.keep_last => {
                self.stats.tokens_dropped += p.buffered_tokens() as u64;
                None
            }
            Sink::Rows(r) if self.config.mode.is_composer() => match r.finish(max)? {
                Some(b) => Some(self.cut(&b, len)?),
                None => None,
            },
            Sink::Rows(r) => r.finish(len)?,
            Sink::Pack(p) => p.finish(len)?,
        };
        Ok(last.map(|b| self.emit_tail(b)))
    }

    /// Drops everything buffered and the rest of the current run, counting the tokens.
    pub(crate) fn discard_buffered(&mut self) {
        let mut dropped = match &mut self.sink {
            Sink::Rows(r) => {
                let n = r.carried_tokens();
                *r = r.config().build();
                n
            }
            Sink::Pack(p) => {
                let n = p.buffered_tokens();
                *p = p.config().build();
                n
            }
        };
        if let Some(s) = &mut self.shuffle {
            dropped += s.documents.iter().map(|(t, _)| t.numel()).sum::<usize>();
            s.documents.clear();
        }
        if let Some(current) = self.current.take()
            && let Some((start, _)) = current.span(self.cursor)
        {
            dropped += current.token_count() - start;
        }
        self.cursor = 0;
        self.stats.tokens_dropped += dropped as u64;
    }

    fn emit_tail(&mut self, batch: Batch) -> ScheduledBatch {
        let (_, rows) = self.next_shape();
        let len = batch.seq_len();
        if batch.rows() > rows {
            let head = batch.slice_rows(0, rows);
            self.tail = batch.slice_rows(rows, batch.rows());
            if let Some(head) = head {
                return self.emit(head, len);
            }
        }
        self.emit(batch, len)
    }

    fn emit(&mut self, batch: Batch, len: usize) -> ScheduledBatch {
        let tokens = batch.token_count() as u64;
        self.progress.advance(batch.rows() as u64, tokens);
        self.stats.batches += 1;
        self.stats.tokens_out += tokens;
        let step = self.step;
        self.step += 1;
        ScheduledBatch {
            step,
            seq_len: len,
            batch,
            tokens,
            progress: self.progress,
        }
    }

    fn cut(&mut self, batch: &Batch, len: usize) -> Result<Batch> {
        let cut = match self.config.mode {
            Mode::Truncate {
                preserve_end_of_sequence,
            } => Cut::Truncate {
                preserve_end_of_sequence,
            },
            _ => Cut::Reshape,
        };
        let before = batch.token_count();
        let out = batch.set_sequence_length(len, cut)?;
        self.stats.tokens_cut += (before - out.token_count()) as u64;
        Ok(out)
    }

    fn try_pop(&mut self, len: usize, rows: usize) -> Result<Option<Batch>> {
        let max = self.max_len();
        let composer = self.config.mode.is_composer();
        let plain_truncate = matches!(
            self.config.mode,
            Mode::Truncate {
                preserve_end_of_sequence: false
            }
        );
        if let (Sink::Rows(r), true) = (&mut self.sink, plain_truncate && len < max) {
            // Composer's truncation, copying only the kept columns.
            let cut = r.pop_truncated(max, rows, len)?;
            if cut.is_some() {
                self.stats.tokens_cut += (rows * (max - len)) as u64;
            }
            return Ok(cut);
        }
        let popped = match &mut self.sink {
            Sink::Rows(r) if composer => r.pop(max, rows)?,
            Sink::Rows(r) => r.pop(len, rows)?,
            Sink::Pack(p) => p.pop(len, rows)?,
        };
        match popped {
            Some(b) if composer => {
                let b = self.with_full_mask(b)?;
                Ok(Some(self.cut(&b, len)?))
            }
            other => Ok(other),
        }
    }

    /// Composer's `preserve_end_of_sequence` needs an `attention_mask`; rows concatenated
    /// from documents have no padding, so the mask is all ones.
    fn with_full_mask(&self, batch: Batch) -> Result<Batch> {
        let preserve = matches!(
            self.config.mode,
            Mode::Truncate {
                preserve_end_of_sequence: true
            }
        );
        if !preserve || batch.get(seqwarm_batcher::fields::ATTENTION_MASK).is_some() {
            return Ok(batch);
        }
        let dtype = batch.input_ids().map_or(DType::I64, Tensor::dtype);
        let mask = Tensor::full(dtype, batch.rows(), batch.seq_len(), 1)?;
        Ok(batch.with_field(seqwarm_batcher::fields::ATTENTION_MASK, mask)?)
    }

    fn buffered(&self) -> usize {
        match &self.sink {
            Sink::Rows(r) => r.carried_tokens(),
            Sink::Pack(p) => p.buffered_tokens(),
        }
    }

    /// Moves documents from the current run towards the sink until the next batch could be
    /// complete. Returns false when there was nothing to move.
    fn feed(&mut self, len: usize, rows: usize) -> Result<bool> {
        let Some(current) = self.current.clone() else {
            return Ok(false);
        };
        if self.cursor >= current.len() {
            return Ok(false);
        }
        let row_len = if self.config.mode.is_composer() {
            self.max_len()
        } else {
            len
        };
        let target = rows.saturating_mul(row_len);
        let window = match self.config.mode {
            Mode::Pack {
                strategy: seqwarm_batcher::PackStrategy::BestFitDecreasing { window },
            } => Some(window),
            _ => None,
        };
        // Fast path: whole runs of documents pushed as one shared buffer.
        if let (Sink::Rows(repacker), None, None) =
            (&mut self.sink, &self.shuffle, self.config.eos_id)
        {
            let deficit = target.saturating_sub(repacker.carried_tokens()).max(1);
            let end = current.end_for_tokens(self.cursor, deficit);
            let end = end.max(self.cursor + 1).min(current.len());
            if let Some((start, stop)) = current.token_span(self.cursor, end) {
                repacker.push_span(current.tokens(), current.labels(), start, stop)?;
                let n = (stop - start) as u64;
                self.stats.documents += (end - self.cursor) as u64;
                self.stats.tokens_in += n;
                self.stats.empty_documents += (self.cursor..end)
                    .filter(|&i| current.span(i).is_some_and(|(a, b)| a == b))
                    .count() as u64;
            }
            self.cursor = end;
            return Ok(true);
        }
        let mut moved = 0usize;
        while self.cursor < current.len() {
            let i = self.cursor;
            self.cursor += 1;
            self.take_document(&current, i)?;
            moved += 1;
            let enough = match window {
                Some(w) => moved >= w,
                None => self.buffered() >= target,
            };
            if enough {
                break;
            }
        }
        Ok(moved > 0)
    }

    /// Document `i` of `docs` into the shuffle buffer or the sink.
    fn take_document(&mut self, docs: &Documents, i: usize) -> Result<()> {
        let Some((tokens, labels)) = docs.range(i, i + 1) else {
            return Ok(());
        };
        self.stats.documents += 1;
        if tokens.numel() == 0 {
            self.stats.empty_documents += 1;
        }
        let doc = (tokens, labels);
        match &mut self.shuffle {
            Some(shuffle) => {
                shuffle.documents.push(doc);
                if shuffle.documents.len() > shuffle.capacity {
                    let j = shuffle.rng.below(shuffle.documents.len());
                    let out = shuffle.documents.swap_remove(j);
                    self.send_to_sink(&out)?;
                }
                Ok(())
            }
            None => self.send_to_sink(&doc),
        }
    }

    fn send_to_sink(&mut self, (tokens, labels): &Doc) -> Result<()> {
        let eos = self.config.eos_id;
        self.stats.tokens_in += (tokens.numel() + usize::from(eos.is_some())) as u64;
        match &mut self.sink {
            Sink::Rows(r) => {
                r.push_tokens(tokens, labels.as_ref())?;
                if let Some(eos) = eos {
                    let t = token_tensor(tokens.dtype(), eos)?;
                    let l = match labels {
                        Some(l) => Some(token_tensor(l.dtype(), eos)?),
                        None => None,
                    };
                    r.push_tokens(&t, l.as_ref())?;
                }
            }
            Sink::Pack(p) => match eos {
                None => p.push_document(tokens)?,
                Some(eos) => {
                    let mut values = tokens.to_vec_i64();
                    values.push(eos);
                    p.push_document(&vector_of(tokens.dtype(), values)?)?;
                }
            },
        }
        Ok(())
    }

    /// Moves the rest of the current run and the whole shuffle buffer into the sink.
    fn flush_input(&mut self) -> Result<()> {
        if let Some(current) = self.current.take() {
            let cursor = std::mem::take(&mut self.cursor);
            for i in cursor..current.len() {
                self.take_document(&current, i)?;
            }
        }
        if let Some(mut shuffle) = self.shuffle.take() {
            while !shuffle.documents.is_empty() {
                let j = shuffle.rng.below(shuffle.documents.len());
                let doc = shuffle.documents.swap_remove(j);
                self.send_to_sink(&doc)?;
            }
            self.shuffle = Some(shuffle);
        }
        Ok(())
    }

    /// Snapshot at a batch boundary. The unread rest of the current run is not included:
    /// [`WarmupCore::position`] says where to read it again.
    pub fn state(&self) -> CoreState {
        let carry = match &self.sink {
            Sink::Rows(r) => Carry::Rows {
                fields: r
                    .carried()
                    .map(|b| {
                        b.iter()
                            .map(|(n, t)| (n.to_string(), t.dtype(), t.to_vec_i64()))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            Sink::Pack(p) => Carry::Pack(p.carry()),
        };
        let shuffle = self.shuffle.as_ref().map(|s| ShuffleState {
            rng: s.rng.0,
            dtype: s.documents.first().map(|(t, _)| t.dtype()),
            documents: s
                .documents
                .iter()
                .map(|(t, l)| (t.to_vec_i64(), l.as_ref().map(Tensor::to_vec_i64)))
                .collect(),
        });
        CoreState {
            progress: self.progress,
            step: self.step,
            carry,
            shuffle,
            stats: self.stats,
        }
    }

    /// Restores a snapshot taken with [`WarmupCore::state`] into a fresh core.
    pub fn restore(&mut self, state: &CoreState) -> Result<()> {
        self.progress = state.progress;
        self.step = state.step;
        self.stats = state.stats;
        match (&mut self.sink, &state.carry) {
            (Sink::Rows(r), Carry::Rows { fields }) => {
                if !fields.is_empty() {
                    let mut batch = Batch::new();
                    for (name, dtype, values) in fields {
                        let n = values.len();
                        let t = match dtype {
                            DType::I32 => Tensor::from_vec(narrow(values)?, 1, n)?,
                            DType::I64 => Tensor::from_vec(values.clone(), 1, n)?,
                        };
                        batch.insert(name.as_str(), t)?;
                    }
                    r.restore(&batch)?;
                }
            }
            (Sink::Pack(p), Carry::Pack(carry)) => p.restore(carry)?,
            _ => {
                return Err(LoaderError::State {
                    reason: "the checkpoint was taken in another mode".into(),
                });
            }
        }
        match (&mut self.shuffle, &state.shuffle) {
            (Some(s), Some(saved)) => {
                s.rng = SplitMix64(saved.rng);
                let dtype = saved.dtype.unwrap_or(DType::I32);
                s.documents = saved
                    .documents
                    .iter()
                    .map(|(t, l)| {
                        Ok((
                            vector_of(dtype, t.clone())?,
                            match l {
                                Some(l) => Some(vector_of(dtype, l.clone())?),
                                None => None,
                            },
                        ))
                    })
                    .collect::<Result<_>>()?;
            }
            (None, None) => {}
            _ => {
                return Err(LoaderError::State {
                    reason: "the checkpoint's shuffle-buffer setting differs".into(),
                });
            }
        }
        Ok(())
    }
}

fn narrow(values: &[i64]) -> Result<Vec<i32>> {
    values
        .iter()
        .map(|&v| {
            i32::try_from(v).map_err(|_| LoaderError::State {
                reason: format!("token {v} does not fit i32"),
            })
        })
        .collect()
}

fn vector_of(dtype: DType, values: Vec<i64>) -> Result<Tensor> {
    Ok(match dtype {
        DType::I32 => Tensor::vector(narrow(&values)?),
        DType::I64 => Tensor::vector(values),
    })
}

fn token_tensor(dtype: DType, token: i64) -> Result<Tensor> {
    vector_of(dtype, vec![token])
}
