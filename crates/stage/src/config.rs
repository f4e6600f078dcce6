//! What the warmup stage does: [`WarmupConfig`] (plain settings, serde, with the library's
//! defaults) and [`Warmup`], the same settings checked against each other.

use seqwarm_batcher::PackFields;
use seqwarm_schedule::{Schedule, ScheduleConfig};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};
use crate::last_batch::LastBatch;
use crate::mode::Mode;
use crate::sizing::BatchSize;

/// The most tokens one step may take (4 Gi: 16 GiB of `i32` ids), so that a batch size cannot
/// overflow or ask for more memory than any machine has.
pub const MAX_STEP_TOKENS: usize = 1 << 32;

/// Documents per best-fit window when none is configured.
pub const DEFAULT_PACK_WINDOW: usize = 256;

/// The warmup stage's settings, each with the library's default.
///
/// Plain data: build it with [`WarmupConfig::new`] and the `with_*` setters, or deserialize
/// it (every key optional), then check it with [`WarmupConfig::build`].
///
/// ```
/// use seqwarm_stage::{BatchSize, Mode, WarmupConfig};
/// use seqwarm_schedule::ScheduleConfig;
///
/// let warmup = WarmupConfig::new(ScheduleConfig::linear(64, 1024, 0.3, 10_000).with_step(64))
///     .with_mode(Mode::Reshape)
///     .with_batch_size(BatchSize::Rows(16))
///     .build()?;
/// assert_eq!(warmup.max_len(), 1024);
/// let bad = WarmupConfig::default().with_batch_size(BatchSize::Tokens(512)).build();
/// assert!(bad.unwrap_err().to_string().contains("batch_size"));
/// # Ok::<(), seqwarm_stage::StageError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarmupConfig {
    schedule: ScheduleConfig,
    mode: Mode,
    pack_window: usize,
    max_segments_per_row: Option<usize>,
    pack_fields: PackFields,
    batch_size: BatchSize,
    eos_id: Option<i64>,
    pad_id: i64,
    keep_last: LastBatch,
    mask_document_boundaries: bool,
    shuffle_buffer: usize,
    shuffle_seed: Option<u64>,
}

/// The default schedule ([`ScheduleConfig::default`]), lossless `repack`, 8 rows per batch, no
/// EOS token, padding id 0, the last partial batch dropped (and counted), document boundaries
/// masked in the labels of packed rows, no document shuffle.
impl Default for WarmupConfig {
    fn default() -> Self {
        Self {
            schedule: ScheduleConfig::default(),
            mode: Mode::default(),
            pack_window: DEFAULT_PACK_WINDOW,
            max_segments_per_row: None,
            pack_fields: PackFields::ALL,
            batch_size: BatchSize::default(),
            eos_id: None,
            pad_id: 0,
            keep_last: LastBatch::Drop,
            mask_document_boundaries: true,
            shuffle_buffer: 0,
            shuffle_seed: None,
        }
    }
}

impl WarmupConfig {
    /// The defaults with this schedule (a [`ScheduleConfig`], a built `Schedule`, or a ramp
    /// builder).
    pub fn new(schedule: impl Into<ScheduleConfig>) -> Self {
        Self {
            schedule: schedule.into(),
            ..Self::default()
        }
    }

    /// Sets the schedule.
    #[must_use]
    pub fn with_schedule(mut self, schedule: impl Into<ScheduleConfig>) -> Self {
        self.schedule = schedule.into();
        self
    }
    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Documents considered together by [`Mode::PackBestfit`].
    #[must_use]
    pub fn with_pack_window(mut self, documents: usize) -> Self {
        self.pack_window = documents;
        self
    }
    /// At most this many document segments in one packed row (the pack modes), so that
    /// `cu_seqlens` has a small size fixed by the batch's shape
    /// ([`seqwarm_batcher::fixed_cu_seqlens_len`]); `None` (the default): no limit.
    #[must_use]
    pub fn with_max_segments_per_row(mut self, segments: Option<usize>) -> Self {
        self.max_segments_per_row = segments;
        self
    }
    /// The fields packed rows carry besides `input_ids` (the pack modes; default all):
    /// each left out is one write of the batch less ([`PackFields`]).
    #[must_use]
    pub fn with_pack_fields(mut self, fields: PackFields) -> Self {
        self.pack_fields = fields;
        self
    }
    /// Sets the batch sizing.
    #[must_use]
    pub fn with_batch_size(mut self, batch_size: BatchSize) -> Self {
        self.batch_size = batch_size;
        self
    }
    /// Appends this token after every document (Composer's and GPT-2's EOS convention). The
    /// loader leaves it out for shards whose manifest says their documents already end with
    /// it (`seqwarm_loader::Catalog::eos_to_append`).
    #[must_use]
    pub fn with_eos_id(mut self, eos: Option<i64>) -> Self {
        self.eos_id = eos;
        self
    }
    /// Padding id for the final partial batch and packed rows.
    #[must_use]
    pub fn with_pad_id(mut self, pad: i64) -> Self {
        self.pad_id = pad;
        self
    }
    /// Emit the final partial batch (padded) instead of dropping it
    /// ([`LastBatch::Padded`] or [`LastBatch::Drop`]).
    #[must_use]
    pub fn with_keep_last(mut self, keep: bool) -> Self {
        self.keep_last = keep.into();
        self
    }
    /// What becomes of the tokens left at the end, fewer than a batch ([`LastBatch`]; Composer's
    /// `drop_last=False` is [`LastBatch::FullRows`]).
    #[must_use]
    pub fn with_last_batch(mut self, last: LastBatch) -> Self {
        self.keep_last = last;
        self
    }
    /// Mask labels across document boundaries in the pack modes.
    #[must_use]
    pub fn with_mask_document_boundaries(mut self, mask: bool) -> Self {
        self.mask_document_boundaries = mask;
        self
    }
    /// Shuffle documents through a buffer of this many (0 = off), seeded by `seed`.
    #[must_use]
    pub fn with_shuffle_buffer(mut self, documents: usize, seed: u64) -> Self {
        self.shuffle_buffer = documents;
        self.shuffle_seed = Some(seed);
        self
    }
    /// Seeds the document shuffle with `seed` when no seed of its own was set (the loader
    /// passes its own seed this way).
    #[must_use]
    pub fn with_default_shuffle_seed(mut self, seed: u64) -> Self {
        self.shuffle_seed.get_or_insert(seed);
        self
    }

    /// The schedule.
    pub fn schedule(&self) -> &ScheduleConfig {
        &self.schedule
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }
    /// The batch sizing.
    pub fn batch_size(&self) -> BatchSize {
        self.batch_size
    }
    /// The EOS token appended after every document, if any.
    pub fn eos_id(&self) -> Option<i64> {
        self.eos_id
    }
    /// The padding id.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }
    /// The fields packed rows carry besides `input_ids`.
    pub fn pack_fields(&self) -> PackFields {
        self.pack_fields
    }

    /// Checks the settings against each other and builds the schedule.
    pub fn build(&self) -> Result<Warmup> {
        let schedule = self.schedule.build()?;
        let max_len = usize::try_from(schedule.max_len()).map_err(|_| StageError::Config {
            field: "schedule.max",
            reason: format!("{} does not fit in memory", schedule.max_len()),
        })?;
        match self.batch_size {
            BatchSize::Rows(0) => {
                return Err(StageError::Config {
                    field: "batch_size",
                    reason: "rows per batch must be >= 1".into(),
                });
            }
            BatchSize::Tokens(budget) if budget < max_len => {
                return Err(StageError::Config {
                    field: "batch_size",
                    reason: format!(
                        "a budget of {budget} tokens cannot hold one row at the maximum length {max_len}"
                    ),
                });
            }
            _ => {}
        }
        let step_tokens = match self.batch_size {
            BatchSize::Rows(rows) => rows.checked_mul(max_len),
            BatchSize::Tokens(budget) => Some(budget),
        };
        if step_tokens.is_none_or(|t| t > MAX_STEP_TOKENS) {
            return Err(StageError::Config {
                field: "batch_size",
                reason: format!(
                    "{} at length {max_len} is more than {MAX_STEP_TOKENS} tokens in one step",
                    self.batch_size
                ),
            });
        }
        if self.pack_window == 0 {
            return Err(StageError::Config {
                field: "pack_window",
                reason: "best-fit window must be >= 1 document".into(),
            });
        }
        if self.pack_fields != PackFields::ALL && !self.mode.is_packing() {
            return Err(StageError::Config {
                field: "pack_fields",
                reason: format!(
                    "chooses the fields of packed rows; mode {} does not pack (use pack-greedy \
                     or pack-bestfit)",
                    self.mode
                ),
            });
        }
        if let Some(segments) = self.max_segments_per_row {
            if segments == 0 {
                return Err(StageError::Config {
                    field: "max_segments_per_row",
                    reason: "a packed row holds at least 1 segment".into(),
                });
            }
            if !self.mode.is_packing() {
                return Err(StageError::Config {
                    field: "max_segments_per_row",
                    reason: format!(
                        "limits the segments of packed rows; mode {} does not pack (use \
                         pack-greedy or pack-bestfit)",
                        self.mode
                    ),
                });
            }
        }
        if self.keep_last == LastBatch::FullRows && !self.mode.is_composer() {
            return Err(StageError::Config {
                field: "keep_last",
                reason: format!(
                    "\"full-rows\" is Composer's drop_last=False, for its modes (truncate, \
                     truncate-keep-eos, reshape); mode {} has no rows of the maximum length to \
                     complete (use true to emit the last batch padded)",
                    self.mode
                ),
            });
        }
        for (field, id) in [("eos_id", self.eos_id), ("pad_id", Some(self.pad_id))] {
            if let Some(id) = id.filter(|&id| id < 0) {
                return Err(StageError::Config {
                    field,
                    reason: format!("{id} is not a token id (ids are >= 0)"),
                });
            }
        }
        Ok(Warmup {
            config: self.clone(),
            schedule,
            max_len,
        })
    }
}

/// A checked [`WarmupConfig`] with its built schedule: what the stage runs on. Made by
/// [`WarmupConfig::build`].
#[derive(Debug, Clone)]
pub struct Warmup {
    config: WarmupConfig,
    schedule: Schedule,
    max_len: usize,
}

impl Warmup {
    /// The settings.
    pub fn config(&self) -> &WarmupConfig {
        &self.config
    }
    /// The schedule.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }
    /// The mode.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }
    /// The batch sizing.
    pub fn batch_size(&self) -> BatchSize {
        self.config.batch_size
    }
    /// The longest length the schedule yields.
    pub fn max_len(&self) -> usize {
        self.max_len
    }
    /// The EOS token appended after every document, if any.
    pub fn eos_id(&self) -> Option<i64> {
        self.config.eos_id
    }
    /// The padding id.
    pub fn pad_id(&self) -> i64 {
        self.config.pad_id
    }
    /// Whether anything of the final partial batch is emitted.
    pub fn keep_last(&self) -> bool {
        self.config.keep_last.keeps()
    }
    /// What becomes of the tokens left at the end, fewer than a batch.
    pub fn last_batch(&self) -> LastBatch {
        self.config.keep_last
    }
    /// Whether packed rows mask labels across document boundaries.
    pub fn mask_document_boundaries(&self) -> bool {
        self.config.mask_document_boundaries
    }
    /// Documents considered together by [`Mode::PackBestfit`].
    pub fn pack_window(&self) -> usize {
        self.config.pack_window
    }
    /// The most document segments in one packed row, if limited.
    pub fn max_segments_per_row(&self) -> Option<usize> {
        self.config.max_segments_per_row
    }
    /// The fields packed rows carry besides `input_ids`.
    pub fn pack_fields(&self) -> PackFields {
        self.config.pack_fields
    }
    /// `cu_seqlens` entries of a packed batch at `seq_len` at the most: the fixed size its
    /// metadata is padded to ([`seqwarm_batcher::fixed_cu_seqlens_len`] of the step's shape).
    pub fn fixed_cu_seqlens_len(&self, seq_len: usize) -> usize {
        let shape = self.shape(seq_len);
        seqwarm_batcher::fixed_cu_seqlens_len(
            shape.rows_out,
            shape.seq_len,
            self.config.max_segments_per_row,
        )
    }
    /// Documents in the shuffle buffer (0 = off).
    pub fn shuffle_buffer(&self) -> usize {
        self.config.shuffle_buffer
    }
    /// The shuffle buffer's seed.
    pub fn shuffle_seed(&self) -> u64 {
        self.config.shuffle_seed.unwrap_or(0)
    }

    /// The mode's name for logs and tables, with the best-fit window (`pack-bestfit256`).
    pub fn mode_label(&self) -> String {
        match self.config.mode {
            Mode::PackBestfit => format!("{}{}", Mode::PackBestfit, self.config.pack_window),
            mode => mode.to_string(),
        }
    }
}
