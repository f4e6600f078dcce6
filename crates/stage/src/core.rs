//! [`WarmupCore`]: the sans-IO warmup stage. Documents in, batches of the scheduled shape out.
//!
//! No I/O, no async: the async drivers ([`crate::EpochPlan`] under the loader, the
//! `WarmupStream` adapter) poll their inputs and drive this state machine, and tests drive it
//! directly with in-memory documents.

use seqwarm_batcher::{Batch, DType, RowSink, Tensor, Tokens, fields};
use seqwarm_schedule::Progress;
use serde::{Deserialize, Serialize};

use crate::config::Warmup;
use crate::documents::{Documents, Origin};
use crate::error::{Result, StageError};
use crate::kept_steps::{InputHint, KeptSteps};
use crate::last_batch::LastBatch;
use crate::mode::Mode;
use crate::shape::StepShape;
use crate::shuffle::{Doc, Shuffle, ShuffleState};
use crate::sink::{ModeCarry, ModeSink};
use crate::stats::{MAX_COUNT, Stats};

/// One emitted batch and where training stands after it.
#[derive(Debug, Clone)]
pub struct ScheduledBatch {
    /// 0-based index of this batch (optimizer step) since the start of training.
    pub step: u64,
    /// The epoch being read when the batch was emitted (0 outside an epoch plan); tokens
    /// carried over an epoch boundary lead the next epoch's first batch.
    pub epoch: u64,
    /// The scheduled sequence length for this step.
    pub seq_len: usize,
    /// The batch; every sequence field has `seq_len` columns.
    pub batch: Batch,
    /// Real (non-padding) tokens in the batch.
    pub tokens: u64,
    /// Progress after this batch (what the schedule reads for the next one).
    pub progress: Progress,
}

/// A [`WarmupCore`] at a batch boundary, for a checkpoint: progress, the carried tokens, the
/// shuffle buffer and the counters. Opaque; serialize it with serde. The unread rest of the
/// current run of documents is not in it: [`WarmupCore::position`] says where to read again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreState<C = ModeCarry> {
    progress: Progress,
    step: u64,
    carry: C,
    shuffle: Option<ShuffleState>,
    stats: Stats,
    finished: bool,
    /// The epoch of the last documents taken in: what a batch made of held tokens says after
    /// a resume, before anything new is read (left out at 0, as states before it were).
    #[serde(default, skip_serializing_if = "is_zero")]
    epoch: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl CoreState<ModeCarry> {
    /// The token ids the state holds (carried, and in the shuffle buffer): what a resume
    /// emits without reading them again, so a loader checks them against its vocabulary.
    pub fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.carry
            .token_ids()
            .chain(self.shuffle.iter().flat_map(ShuffleState::token_ids))
    }
}

impl<C> CoreState<C> {
    /// A state from its parts (an elastic resume's combination of several ranks' states).
    pub(crate) fn from_parts(
        progress: Progress,
        step: u64,
        carry: C,
        shuffle: Option<ShuffleState>,
        stats: Stats,
        epoch: u64,
    ) -> Self {
        Self {
            progress,
            step,
            carry,
            shuffle,
            stats,
            finished: false,
            epoch,
        }
    }
    /// The epoch of the last documents taken in.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Batches emitted when the state was taken.
    pub fn step(&self) -> u64 {
        self.step
    }
    /// The sink's carried tokens.
    pub(crate) fn carry(&self) -> &C {
        &self.carry
    }
    /// The shuffle buffer, when there is one.
    pub(crate) fn shuffle(&self) -> Option<&ShuffleState> {
        self.shuffle.as_ref()
    }
    /// Progress when the state was taken.
    pub fn progress(&self) -> Progress {
        self.progress
    }
    /// The counters when the state was taken.
    pub fn stats(&self) -> Stats {
        self.stats
    }
    /// Whether the stage had emitted its last batch.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// The sans-IO warmup state machine, generic over where tokens wait for their rows
/// ([`RowSink`]); [`WarmupCore::new`] picks the sink of the configured mode.
///
/// ```
/// use seqwarm_stage::{BatchSize, Documents, WarmupConfig, WarmupCore};
/// use seqwarm_schedule::ScheduleConfig;
///
/// let warmup = WarmupConfig::new(ScheduleConfig::linear(8, 32, 0.5, 8))
///     .with_batch_size(BatchSize::Rows(2))
///     .build()?;
/// let mut core = WarmupCore::new(warmup);
/// core.push(Documents::single((0..100).collect::<Vec<i32>>()))?;
/// let first = core.next_batch()?.unwrap();
/// assert_eq!((first.seq_len, first.batch.rows(), first.tokens), (8, 2, 16));
/// let mut last = first;
/// while let Some(batch) = core.next_batch()? {
///     last = batch;
/// }
/// assert!(core.finish()?.is_none()); // the leftover is dropped, and counted
/// let stats = core.stats();
/// assert_eq!(stats.tokens_in, 100);
/// assert_eq!(stats.tokens_out + stats.tokens_dropped, 100);
/// # let _ = last;
/// # Ok::<(), seqwarm_stage::StageError>(())
/// ```
pub struct WarmupCore<S: RowSink = ModeSink> {
    warmup: Warmup,
    progress: Progress,
    step: u64,
    sink: S,
    current: Option<Documents>,
    cursor: usize,
    shuffle: Option<Shuffle>,
    stats: Stats,
    finished: bool,
    /// The epoch of the last documents pushed: the epoch a batch says it was emitted in.
    epoch: u64,
    /// The sink's [`RowSink::tokens_handed_out`] when the last batch was emitted.
    handed_out_before: u64,
    /// The steps handed over; the others are counted, not built (`None`: all).
    kept: Option<KeptSteps>,
    /// Whether [`Documents::placeholders`] were taken in since the last skipped step: no kept
    /// batch may be built until a skipped one has taken them.
    placeholders: bool,
}

impl<S: RowSink> std::fmt::Debug for WarmupCore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmupCore")
            .field("mode", &self.warmup.mode())
            .field("step", &self.step)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl WarmupCore<ModeSink> {
    /// A core in its initial state, with the sink of `warmup`'s mode.
    pub fn new(warmup: Warmup) -> Self {
        let sink = ModeSink::for_warmup(&warmup);
        Self::with_sink(warmup, sink)
    }
}

impl<S: RowSink> WarmupCore<S> {
    /// A core in its initial state around `sink` (a custom [`RowSink`]; `warmup`'s mode still
    /// decides how rows are taken from it and cut).
    pub fn with_sink(warmup: Warmup, sink: S) -> Self {
        let shuffle = (warmup.shuffle_buffer() > 0)
            .then(|| Shuffle::new(warmup.shuffle_buffer(), warmup.shuffle_seed()));
        // What a sink handed out before it came here is no batch of this core's.
        let handed_out_before = sink.tokens_handed_out().unwrap_or(0);
        Self {
            warmup,
            progress: Progress::default(),
            step: 0,
            sink,
            current: None,
            cursor: 0,
            shuffle,
            stats: Stats::default(),
            finished: false,
            epoch: 0,
            handed_out_before,
            kept: None,
            placeholders: false,
        }
    }

    /// Hands over only `kept`'s steps (`None`: all of them, the default). Each other step is
    /// still emitted, in order and with its step number, counted and scheduled as always, but
    /// in the row modes without its fields (an empty [`Batch`]): its tokens are dropped by
    /// count ([`RowSink::skip`]), never copied. The batches of kept steps are unchanged.
    pub fn set_kept_steps(&mut self, kept: Option<KeptSteps>) {
        self.kept = kept.filter(|k| !k.is_all());
    }

    /// Whether placeholders are buffered: the current, skipped step has not taken them yet,
    /// so a checkpoint now would carry their zeros as tokens (a driver pushes them only when
    /// it can complete the step without waiting; [`InputHint::Skipped`]).
    pub fn holds_placeholders(&self) -> bool {
        self.placeholders
    }

    /// Whether `step` is handed over.
    fn keeps(&self, step: u64) -> bool {
        self.kept.is_none_or(|k| k.contains(step))
    }

    /// With [`WarmupCore::set_kept_steps`]: what the next input is for, where input can be
    /// dropped by count (the row modes, no shuffle buffer, a sink that skips); `None`
    /// otherwise. Counts what the current step still takes beyond what is buffered (the
    /// unread rest of the current run included).
    pub fn input_hint(&self) -> Option<InputHint> {
        self.kept?;
        if self.finished
            || self.shuffle.is_some()
            || self.warmup.mode().is_packing()
            || !self.sink.skips_by_count()
        {
            return None;
        }
        let (documents, unread) = self.unread_in_run();
        let buffered = (self.sink.buffered_tokens() as u64)
            .saturating_add(unread)
            .saturating_add(eos_tokens(&self.warmup, documents as usize));
        let wanted = self.next_shape().tokens_in().saturating_sub(buffered);
        let tokens = usize::try_from(wanted).unwrap_or(usize::MAX);
        Some(if self.keeps(self.step) {
            InputHint::Kept { tokens }
        } else {
            InputHint::Skipped { tokens }
        })
    }

    /// The settings.
    pub fn warmup(&self) -> &Warmup {
        &self.warmup
    }

    /// Progress so far.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// Batches emitted so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// Counters so far, with the tokens buffered now.
    pub fn stats(&self) -> Stats {
        Stats {
            tokens_buffered: self.buffered_tokens() as u64,
            ..self.stats
        }
    }

    pub(crate) fn stats_mut(&mut self) -> &mut Stats {
        &mut self.stats
    }

    /// Whether the last batch has been emitted ([`WarmupCore::finish`] returned `None`).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Whether the current run of documents is used up, so that more input is needed.
    pub fn needs_input(&self) -> bool {
        self.current.as_ref().is_none_or(|d| self.cursor >= d.len())
    }

    /// Where the next unread document comes from (for checkpoints): the current run's origin
    /// advanced by the documents taken from it; `None` before the first run.
    pub fn position(&self) -> Option<Origin> {
        self.current.as_ref().map(|d| {
            let o = d.origin();
            Origin {
                first_document: o.first_document + self.cursor as u64,
                ..o
            }
        })
    }

    /// The shape of the next batch.
    pub fn next_shape(&self) -> StepShape {
        self.warmup.shape_at(&self.progress)
    }

    /// Takes a run of documents. Any documents left in the previous run are taken into the
    /// stage first, so nothing is lost.
    pub fn push(&mut self, documents: Documents) -> Result<()> {
        if documents.is_placeholder() {
            self.check_placeholders(&documents)?;
        }
        if let Some(previous) = self.current.take() {
            let cursor = std::mem::take(&mut self.cursor);
            self.take_documents(&previous, cursor, previous.len())?;
        }
        self.epoch = documents.origin().epoch;
        self.current = Some(documents);
        self.cursor = 0;
        Ok(())
    }

    /// Placeholders fit where only the current, skipped step takes them: all of them go into
    /// its rows (whole documents within what it still takes), none into a kept step's.
    fn check_placeholders(&mut self, documents: &Documents) -> Result<()> {
        let tokens = documents.token_count() as u64 + eos_tokens(&self.warmup, documents.len());
        match self.input_hint() {
            Some(InputHint::Skipped { tokens: wanted }) if tokens <= wanted as u64 => {
                self.placeholders = true;
                Ok(())
            }
            hint => Err(StageError::Documents {
                reason: format!(
                    "{tokens} placeholder tokens pushed at step {} where {hint:?}: only a \
                     skipped step's input may be placeholders",
                    self.step
                ),
            }),
        }
    }

    /// Refuses to build a kept step's batch while placeholders are buffered (a driver bug:
    /// zeros would be handed over as tokens).
    fn refuse_placeholders(&self) -> Result<()> {
        if self.placeholders && self.keeps(self.step) {
            return Err(StageError::Documents {
                reason: format!(
                    "placeholder tokens would reach kept step {}: only a skipped step's input \
                     may be placeholders",
                    self.step
                ),
            });
        }
        Ok(())
    }

    /// The next full batch, or `None` when more input is needed.
    pub fn next_batch(&mut self) -> Result<Option<ScheduledBatch>> {
        if self.finished {
            return Ok(None);
        }
        let shape = self.next_shape();
        loop {
            if let Some(skipped) = self.try_skip(&shape)? {
                return Ok(Some(skipped));
            }
            self.refuse_placeholders()?;
            if let Some(batch) = self.try_pop(&shape)? {
                return Ok(Some(self.emit(batch, shape.seq_len)));
            }
            if !self.feed(&shape)? {
                return Ok(None);
            }
        }
    }

    /// After the input has ended: the remaining full batches, then the final partial one
    /// (padded, with `keep_last`; otherwise its tokens are dropped and counted), then `None`
    /// for good.
    pub fn finish(&mut self) -> Result<Option<ScheduledBatch>> {
        if self.finished {
            return Ok(None);
        }
        self.end_of_input()?;
        if let Some(batch) = self.next_batch()? {
            return Ok(Some(batch));
        }
        let shape = self.next_shape();
        self.refuse_placeholders()?;
        let last = match self.warmup.last_batch() {
            LastBatch::Drop => None,
            LastBatch::Padded => {
                let Some(last) = self.sink.finish(shape.row_len_in, shape.rows_in)? else {
                    self.finished = true;
                    return Ok(None);
                };
                // More may follow (`finish` is called until it gives nothing).
                return self.emit_last(last);
            }
            LastBatch::FullRows => {
                // Composer's drop_last=False over group_texts: the complete rows, fewer than a
                // batch (a whole batch would have been popped above); the rest is dropped.
                let rows = self.sink.buffered_tokens() / shape.row_len_in.max(1);
                if rows > 0 {
                    self.sink.pop(shape.row_len_in, rows)?
                } else {
                    None
                }
            }
        };
        self.finished = true;
        self.stats.tokens_dropped += self.sink.clear() as u64;
        match last {
            Some(last) => self.emit_last(last),
            None => Ok(None),
        }
    }

    /// The final partial batch, cut as every batch of the mode, emitted.
    fn emit_last(&mut self, last: Batch) -> Result<Option<ScheduledBatch>> {
        let shape = self.next_shape();
        let batch = match self.warmup.mode().composer_cut() {
            Some(cut) => self.cut(&last, shape.seq_len, cut)?,
            None => last,
        };
        let len = batch.seq_len();
        Ok(Some(self.emit(batch, len)))
    }

    /// Lets a finished core take input again (a run resumed from its end with more epochs);
    /// everything was emitted or dropped when it finished.
    pub fn reopen(&mut self) {
        self.finished = false;
    }

    /// Drops everything taken in but not emitted (the carry and the shuffle buffer) and the
    /// unread rest of the current run, counting it all as dropped; the stage then continues
    /// with the next run pushed. An epoch plan does this where every rank ends an epoch.
    pub fn drop_buffered(&mut self) {
        self.placeholders = false;
        let mut dropped = self.sink.clear() as u64;
        if let Some(shuffle) = &mut self.shuffle {
            dropped += shuffle.tokens() as u64 + eos_tokens(&self.warmup, shuffle.len());
            shuffle.clear();
        }
        if let Some(current) = self.current.take() {
            let (from, to) = (self.cursor, current.len());
            let unread = current.tokens_in(from, to) as u64 + eos_tokens(&self.warmup, to - from);
            // Read but never used: taken in and dropped at once, so the counts still add up.
            self.stats.documents += (to - from) as u64;
            self.stats.tokens_in += unread;
            dropped += unread;
        }
        self.cursor = 0;
        self.stats.tokens_dropped += dropped;
    }

    /// Counts `documents` documents of `tokens` tokens (EOS not counted) that were never read
    /// (what a rank had not reached of its share when a multi-rank epoch ended) as taken in
    /// and dropped, so that every token of the epoch is emitted or counted and the counters
    /// still add up.
    pub(crate) fn drop_unread(&mut self, documents: u64, tokens: u64) {
        let eos = if self.warmup.eos_id().is_some() {
            documents
        } else {
            0
        };
        let tokens = tokens.saturating_add(eos);
        self.stats.documents = self.stats.documents.saturating_add(documents);
        self.stats.tokens_in = self.stats.tokens_in.saturating_add(tokens);
        self.stats.tokens_dropped = self.stats.tokens_dropped.saturating_add(tokens);
    }

    /// The documents of the current run not yet taken in, and their tokens (EOS not counted).
    pub(crate) fn unread_in_run(&self) -> (u64, u64) {
        self.current.as_ref().map_or((0, 0), |d| {
            let from = self.cursor.min(d.len());
            ((d.len() - from) as u64, d.tokens_in(from, d.len()) as u64)
        })
    }

    fn emit(&mut self, batch: Batch, seq_len: usize) -> ScheduledBatch {
        // A packer counts its rows' real tokens as it writes them: no pass over the mask (and
        // no mask needed).
        // A cut (a mode that cuts rows, over a custom packer sink) leaves fewer than the sink
        // handed out: the batch counts them then.
        let handed_out = self
            .sink
            .tokens_handed_out()
            .map(|total| total - std::mem::replace(&mut self.handed_out_before, total));
        let tokens = match handed_out {
            Some(tokens) if self.warmup.mode().is_packing() => tokens,
            _ => batch.token_count() as u64,
        };
        self.progress.advance(batch.rows() as u64, tokens);
        self.stats.batches += 1;
        self.stats.tokens_out += tokens;
        self.next_step(seq_len, batch, tokens)
    }

    fn next_step(&mut self, seq_len: usize, batch: Batch, tokens: u64) -> ScheduledBatch {
        let step = self.step;
        if !self.keeps(step) {
            // A skipped step takes every placeholder (they were pushed within what it took).
            self.placeholders = false;
        }
        self.step += 1;
        ScheduledBatch {
            step,
            epoch: self.epoch,
            seq_len,
            batch,
            tokens,
            progress: self.progress,
        }
    }

    /// A step that is not kept, its tokens dropped by count when the sink has them all:
    /// emitted without fields, counted as the batch it would have been (a full row-mode
    /// batch: `rows_out x seq_len` tokens out, the rest of what it took cut).
    fn try_skip(&mut self, shape: &StepShape) -> Result<Option<ScheduledBatch>> {
        if self.keeps(self.step)
            || self.warmup.mode().is_packing()
            || !self.sink.can_pop(shape.row_len_in, shape.rows_in)
        {
            return Ok(None);
        }
        let taken = usize::try_from(shape.tokens_in()).unwrap_or(usize::MAX);
        if !self.sink.skip(taken)? {
            return Ok(None);
        }
        let tokens = shape.tokens_out();
        self.stats.tokens_cut += shape.tokens_in() - tokens;
        self.progress.advance(shape.rows_out as u64, tokens);
        self.stats.batches += 1;
        self.stats.tokens_out += tokens;
        if let Some(total) = self.sink.tokens_handed_out() {
            self.handed_out_before = total;
        }
        Ok(Some(self.next_step(
            shape.seq_len,
            Batch::default(),
            tokens,
        )))
    }

    fn cut(&mut self, batch: &Batch, len: usize, cut: seqwarm_batcher::Cut) -> Result<Batch> {
        let batch = self.with_full_mask(batch)?;
        let before = batch.token_count();
        let out = batch.set_sequence_length(len, cut)?;
        self.stats.tokens_cut += (before - out.token_count()) as u64;
        Ok(out)
    }

    fn try_pop(&mut self, shape: &StepShape) -> Result<Option<Batch>> {
        let (len, rows, row_len) = (shape.seq_len, shape.rows_in, shape.row_len_in);
        match self.warmup.mode() {
            Mode::Truncate if len < row_len => {
                // Composer's truncation, copying only the kept columns.
                let cut = self.sink.pop_truncated(row_len, rows, len)?;
                if cut.is_some() {
                    self.stats.tokens_cut += (rows * (row_len - len)) as u64;
                }
                Ok(cut)
            }
            mode => match (self.sink.pop(row_len, rows)?, mode.composer_cut()) {
                (Some(batch), Some(cut)) => Ok(Some(self.cut(&batch, len, cut)?)),
                (popped, _) => Ok(popped),
            },
        }
    }

    /// Composer's `preserve_end_of_sequence` needs an `attention_mask`; rows concatenated
    /// from documents have no padding, so the mask is all ones.
    fn with_full_mask(&self, batch: &Batch) -> Result<Batch> {
        if self.warmup.mode() != Mode::TruncateKeepEos
            || batch.get(fields::ATTENTION_MASK).is_some()
        {
            return Ok(batch.clone());
        }
        let dtype = batch.input_ids().map_or(DType::I64, Tensor::dtype);
        let mask = Tensor::full(dtype, batch.rows(), batch.seq_len(), 1)?;
        Ok(batch.clone().with_field(fields::ATTENTION_MASK, mask)?)
    }

    fn buffered_tokens(&self) -> usize {
        let shuffled = self.shuffle.as_ref().map_or(0, |s| {
            s.tokens() + eos_tokens(&self.warmup, s.len()) as usize
        });
        self.sink.buffered_tokens() + shuffled
    }

    /// Moves documents from the current run towards the sink until the next batch can be
    /// taken. Returns false when there was nothing to move.
    fn feed(&mut self, shape: &StepShape) -> Result<bool> {
        let Some(current) = self.current.clone() else {
            return Ok(false);
        };
        if self.cursor >= current.len() {
            return Ok(false);
        }
        let (len, rows) = (shape.row_len_in, shape.rows_in);
        if self.shuffle.is_none() && self.warmup.eos_id().is_none() {
            // Fast path: a whole span of documents pushed as one shared buffer, when the sink
            // does not need the boundaries.
            let deficit = (rows * len)
                .saturating_sub(self.sink.buffered_tokens())
                .max(1);
            let end = current
                .end_for_tokens(self.cursor, deficit)
                .max(self.cursor + 1)
                .min(current.len());
            let (start, stop) = (current.tokens_in(0, self.cursor), current.tokens_in(0, end));
            if self.sink.push_run(
                Tokens::new(current.tokens()).with_labels(current.labels()),
                start..stop,
            )? {
                self.count_taken(&current, self.cursor, end);
                self.cursor = end;
                return Ok(true);
            }
        }
        while self.cursor < current.len() {
            let i = self.cursor;
            self.cursor += 1;
            self.take_documents(&current, i, i + 1)?;
            if self.sink.can_pop(len, rows) {
                break;
            }
        }
        Ok(true)
    }

    fn count_taken(&mut self, docs: &Documents, from: usize, to: usize) {
        self.stats.documents += (to - from) as u64;
        self.stats.tokens_in +=
            docs.tokens_in(from, to) as u64 + eos_tokens(&self.warmup, to - from);
        self.stats.empty_documents += (from..to)
            .filter(|&i| docs.span(i).is_some_and(|(a, b)| a == b))
            .count() as u64;
    }

    /// Documents `from..to` of `docs` into the shuffle buffer or the sink.
    fn take_documents(&mut self, docs: &Documents, from: usize, to: usize) -> Result<()> {
        for i in from..to {
            let Some((start, end)) = docs.span(i) else {
                continue;
            };
            self.count_taken(docs, i, i + 1);
            let Some(shuffle) = &mut self.shuffle else {
                // In place in its run: a sink may hand out consecutive documents as a view.
                let run = Tokens::new(docs.tokens()).with_labels(docs.labels());
                self.sink
                    .push_document_in(run, start..end, self.warmup.eos_id())?;
                continue;
            };
            let Some(doc) = docs.range(i, i + 1) else {
                continue;
            };
            if let Some(doc) = shuffle.push(doc) {
                self.send_to_sink(&doc)?;
            }
        }
        Ok(())
    }

    fn send_to_sink(&mut self, (tokens, labels): &Doc) -> Result<()> {
        self.sink.push_document(
            Tokens::new(tokens).with_labels(labels.as_ref()),
            self.warmup.eos_id(),
        )?;
        Ok(())
    }

    /// The input (of the run, or of a rank's share of an epoch) has all arrived: the rest of
    /// the current run and the shuffle buffer go to the sink now, and the sink packs what it
    /// has (best fit: a partial window), rather than wait for documents that will not come. A
    /// push after it starts the input again.
    pub(crate) fn end_of_input(&mut self) -> Result<()> {
        self.flush_input()?;
        self.sink.end_of_input();
        Ok(())
    }

    /// Moves the rest of the current run and the whole shuffle buffer into the sink.
    fn flush_input(&mut self) -> Result<()> {
        if let Some(current) = self.current.clone() {
            let cursor = std::mem::replace(&mut self.cursor, current.len());
            self.take_documents(&current, cursor, current.len())?;
        }
        while let Some(doc) = self.shuffle.as_mut().and_then(Shuffle::pop_random) {
            self.send_to_sink(&doc)?;
        }
        Ok(())
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> CoreState<S::Carry> {
        CoreState {
            progress: self.progress,
            step: self.step,
            carry: self.sink.carry(),
            shuffle: self.shuffle.as_ref().map(Shuffle::state),
            stats: self.stats,
            finished: self.finished,
            epoch: self.epoch,
        }
    }

    /// Restores a checkpoint taken with [`WarmupCore::state`] into a fresh core.
    pub fn restore(&mut self, state: &CoreState<S::Carry>) -> Result<()> {
        let p = state.progress;
        let counts = [
            ("progress.steps", p.steps),
            ("progress.samples", p.samples),
            ("progress.tokens", p.tokens),
            ("step", state.step),
        ];
        if let Some((name, value)) = counts
            .into_iter()
            .chain(state.stats.counters())
            .find(|&(_, value)| value > MAX_COUNT)
        {
            return Err(StageError::State {
                reason: format!("`{name}` is {value}, beyond any real run"),
            });
        }
        self.progress = state.progress;
        self.step = state.step;
        self.stats = Stats {
            tokens_buffered: 0,
            ..state.stats
        };
        self.finished = state.finished;
        self.epoch = state.epoch;
        self.placeholders = false;
        self.sink
            .restore(&state.carry)
            .map_err(|e| StageError::State {
                reason: format!("the carried tokens do not restore: {e}"),
            })?;
        match (&mut self.shuffle, &state.shuffle) {
            (Some(shuffle), Some(saved)) => shuffle.restore(saved)?,
            (None, None) => {}
            _ => {
                return Err(StageError::State {
                    reason: "the checkpoint's shuffle-buffer setting differs".into(),
                });
            }
        }
        if !self.stats().is_balanced() {
            return Err(StageError::State {
                reason: format!(
                    "the counters do not add up ({} tokens in, {} out, {} cut, {} dropped, {} carried)",
                    self.stats.tokens_in,
                    self.stats.tokens_out,
                    self.stats.tokens_cut,
                    self.stats.tokens_dropped,
                    self.buffered_tokens()
                ),
            });
        }
        Ok(())
    }
}

/// EOS tokens the stage adds to `documents` documents.
fn eos_tokens(warmup: &Warmup, documents: usize) -> u64 {
    if warmup.eos_id().is_some() {
        documents as u64
    } else {
        0
    }
}
