//! The fixed-length driver: raw token files in, OLMo-core's `NumpyFSLDataLoader` batches out
//! (`mode = chunk`), under its batch-size schedule when one is given. The sans-IO [`Chunks`]
//! decides every step; this reads the instances it names from the mapped files. Checkpoints
//! are the trainer's and loader's counters and the settings they hold for.

use seqwarm_format::TokenDtype;
use seqwarm_stage::{ChunkConfig, ChunkPosition, Chunks};
use serde::{Deserialize, Serialize};

use crate::error::{LoaderError, Result};
use crate::raw_files::RawTokenFiles;

/// The settings of a fixed-length run over raw token files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkSettings {
    /// The token files' width.
    pub token_dtype: TokenDtype,
    /// Ids at or over this are an error, when given.
    pub vocab_size: Option<u64>,
    /// The length, batch, seed, rank and batch-size schedule.
    pub run: ChunkConfig,
}

/// A fixed-length run's position, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkedState {
    /// Always `seqwarm-chunk-state`.
    pub format: String,
    /// The settings it holds for.
    pub settings: ChunkSettings,
    /// Each file's name and token count, so that a state is not resumed over other data.
    pub files: Vec<(String, u64)>,
    /// The counters.
    pub position: ChunkPosition,
}

const STATE_FORMAT: &str = "seqwarm-chunk-state";

/// One rank's batch of a fixed-length run: `rows` instances of `seq_len` tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkedBatch {
    /// The step since the start of training (all epochs).
    pub step: u64,
    /// The epoch (0-based).
    pub epoch: u64,
    /// Batches of this size taken before it in its epoch (OLMo-core's `batches_processed`).
    pub epoch_step: u64,
    /// The row length.
    pub seq_len: u64,
    /// The global batch of this step (tokens, all ranks); it changes with a batch schedule.
    pub global_batch_tokens: u64,
    /// The learning-rate factor against the configured batch, to multiply the base rate by.
    pub lr_multiplier: f64,
    /// The instances (OLMo-core's instance ids), one per row.
    pub instances: Vec<u32>,
    /// The token ids, row-major, `instances.len() * seq_len` of them.
    pub input_ids: Vec<i64>,
}

/// Batches of a fixed-length run, epoch after epoch, as an iterator.
#[derive(Debug)]
pub struct ChunkedLoader {
    files: RawTokenFiles,
    settings: ChunkSettings,
    chunks: Chunks,
    epochs: u64,
}

impl ChunkedLoader {
    /// Opens the files at `locations`, checks their ids against the vocabulary (when given)
    /// and the settings against them; `epochs` epochs (at least 1).
    pub fn open(locations: &[String], settings: ChunkSettings, epochs: u64) -> Result<Self> {
        if epochs == 0 {
            return Err(LoaderError::Config {
                field: "epochs",
                reason: "a fixed-length run reads whole epochs: give at least 1".into(),
            });
        }
        settings.run.validate()?;
        let files = RawTokenFiles::open(locations, settings.token_dtype)?;
        files.check_ids(settings.vocab_size)?;
        let tokens: Vec<u64> = (0..files.len()).map(|f| files.tokens_of(f)).collect();
        let chunks = Chunks::new(settings.run.clone(), &tokens, epochs)?;
        Ok(Self {
            files,
            settings,
            chunks,
            epochs,
        })
    }

    /// Continues from `state` (refused if it was written for other settings or other files).
    pub fn with_state(mut self, state: &ChunkedState) -> Result<Self> {
        self.files.check_state(
            (&state.format, STATE_FORMAT),
            (&state.settings, &self.settings),
            &state.files,
        )?;
        self.chunks = self.chunks.with_position(state.position.clone())?;
        Ok(self)
    }

    /// The position of the next batch, for a checkpoint.
    pub fn state(&self) -> ChunkedState {
        ChunkedState {
            format: STATE_FORMAT.into(),
            settings: self.settings.clone(),
            files: self.files.names_and_tokens(),
            position: self.chunks.position().clone(),
        }
    }

    /// The plan: instances per epoch and the settings.
    pub fn chunks(&self) -> &Chunks {
        &self.chunks
    }

    /// The step of the next batch since the start of training.
    pub fn next_step(&self) -> u64 {
        self.chunks.position().steps
    }

    /// Passes over the next batch without reading its tokens (a DataLoader worker skips the
    /// other workers' steps so). False at the end of the run; an error where OLMo-core's
    /// batch-size callback would fail.
    pub fn skip(&mut self) -> Result<bool> {
        match self.chunks.next_step() {
            None => Ok(false),
            Some(step) => step.map(|_| true).map_err(Into::into),
        }
    }

    /// The files read.
    pub fn files(&self) -> &RawTokenFiles {
        &self.files
    }

    /// The epochs this run reads.
    pub fn epochs(&self) -> u64 {
        self.epochs
    }
}

impl Iterator for ChunkedLoader {
    type Item = Result<ChunkedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = match self.chunks.next_step()? {
            Ok(step) => step,
            Err(e) => return Some(Err(e.into())),
        };
        let seq_len = self.settings.run.seq_len;
        let mut input_ids = Vec::with_capacity(seq_len as usize * step.rows.len());
        for &instance in &step.rows {
            let (file, start) = self.chunks.instance(instance);
            self.files
                .extend_tokens(file, start, seq_len, &mut input_ids);
        }
        Some(Ok(ChunkedBatch {
            step: step.step,
            epoch: step.epoch,
            epoch_step: step.epoch_step,
            seq_len,
            global_batch_tokens: step.global_batch_tokens,
            lr_multiplier: step.lr_multiplier,
            instances: step.rows,
            input_ids,
        }))
    }
}
