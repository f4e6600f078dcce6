//! The decomposition driver: raw token files in, OLMo-core's variable-sequence-length batches
//! out (`mode = decompose`). The sans-IO [`Decomposition`] decides every step; this reads the
//! pieces it names from the mapped files. Checkpoints are a position (epoch, step) and the
//! settings they hold for.

use seqwarm_format::TokenDtype;
use seqwarm_stage::{DecomposeConfig, DecomposedEpoch, Decomposition, PieceIndex};
use serde::{Deserialize, Serialize};

use crate::error::{LoaderError, Result};
use crate::raw_files::RawTokenFiles;

/// The settings of a decomposition run over raw token files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeSettings {
    /// The token files' width.
    pub token_dtype: TokenDtype,
    /// The id that ends every document (already in the files; never appended).
    pub eos_id: u32,
    /// The shortest piece, a power of 2 (OLMo-core's `min_sequence_length`).
    pub min: u64,
    /// The longest piece, a power of 2 (OLMo-core's `max_sequence_length`).
    pub max: u64,
    /// Ids at or over this are an error, when given.
    pub vocab_size: Option<u64>,
    /// The curriculum, batch size, seed and rank.
    pub run: DecomposeConfig,
}

impl DecomposeSettings {
    /// Checks what needs no data: the lengths, the batch, the rank, the curriculum's cycles,
    /// and an EOS id that the files' width can hold.
    pub fn validate(&self) -> Result<()> {
        if self.token_dtype == TokenDtype::Uint16 && self.eos_id > u32::from(u16::MAX) {
            return Err(LoaderError::Config {
                field: "eos_id",
                reason: format!(
                    "{} does not fit the files' uint16 ids: no document would ever end",
                    self.eos_id
                ),
            });
        }
        PieceIndex::new(self.min, self.max)?;
        self.run.global_batch_tokens(self.max)?;
        Ok(())
    }
}

/// A decomposition run's position, for a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposedState {
    /// Always `seqwarm-decompose-state`.
    pub format: String,
    /// The settings it holds for.
    pub settings: DecomposeSettings,
    /// Each file's name and token count, so that a state is not resumed over other data.
    pub files: Vec<(String, u64)>,
    /// The epoch of the next batch (0-based).
    pub epoch: u64,
    /// The step of the next batch within its epoch.
    pub step: u64,
}

const STATE_FORMAT: &str = "seqwarm-decompose-state";

/// One rank's batch of a decomposition run: `rows` pieces of `seq_len` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecomposedBatch {
    /// The step since the start of training (all epochs).
    pub step: u64,
    /// The epoch (0-based).
    pub epoch: u64,
    /// The step within the epoch (OLMo-core's `batches_processed` before this batch).
    pub epoch_step: u64,
    /// The row length.
    pub seq_len: u64,
    /// The pieces (OLMo-core's instance ids), one per row.
    pub pieces: Vec<u32>,
    /// The token ids, row-major, `pieces.len() * seq_len` of them.
    pub input_ids: Vec<i64>,
}

/// Batches of a decomposition run, epoch after epoch, as an iterator.
#[derive(Debug)]
pub struct DecomposedLoader {
    files: RawTokenFiles,
    settings: DecomposeSettings,
    decomposition: Decomposition,
    epochs: u64,
    current: Option<DecomposedEpoch>,
    epoch: u64,
    step: u64,
}

impl DecomposedLoader {
    /// Opens the files at `locations`, scans them for documents and checks the settings
    /// against them; `epochs` epochs (at least 1).
    pub fn open(locations: &[String], settings: DecomposeSettings, epochs: u64) -> Result<Self> {
        if epochs == 0 {
            return Err(LoaderError::Config {
                field: "epochs",
                reason: "decomposition runs whole epochs: give at least 1".into(),
            });
        }
        settings.validate()?;
        let files = RawTokenFiles::open(locations, settings.token_dtype)?;
        let index = files.piece_index(
            settings.eos_id,
            settings.min,
            settings.max,
            settings.vocab_size,
        )?;
        let decomposition = Decomposition::new(index, settings.run)?;
        Ok(Self {
            files,
            settings,
            decomposition,
            epochs,
            current: None,
            epoch: 0,
            step: 0,
        })
    }

    /// Continues from `state` (refused if it was written for other settings or other files).
    pub fn with_state(mut self, state: &DecomposedState) -> Result<Self> {
        self.files.check_state(
            (&state.format, STATE_FORMAT),
            (&state.settings, &self.settings),
            &state.files,
        )?;
        if state.step > self.decomposition.steps_per_epoch() {
            return Err(LoaderError::State {
                reason: format!(
                    "step {} is past the epoch's {} steps",
                    state.step,
                    self.decomposition.steps_per_epoch()
                ),
            });
        }
        self.epoch = state.epoch;
        self.step = state.step;
        self.current = None;
        Ok(self)
    }

    /// The position of the next batch, for a checkpoint.
    pub fn state(&self) -> DecomposedState {
        DecomposedState {
            format: STATE_FORMAT.into(),
            settings: self.settings.clone(),
            files: self.files.names_and_tokens(),
            epoch: self.epoch,
            step: self.step,
        }
    }

    /// The plan: the index, the batches per length, the steps per epoch.
    pub fn decomposition(&self) -> &Decomposition {
        &self.decomposition
    }

    /// The step of the next batch since the start of training (all epochs).
    pub fn next_step(&self) -> u64 {
        self.epoch * self.decomposition.steps_per_epoch() + self.step
    }

    /// Passes over the next batch without reading its tokens (a DataLoader worker skips the
    /// other workers' steps so). False at the end of the run.
    pub fn skip(&mut self) -> bool {
        self.roll_over();
        if self.epoch >= self.epochs {
            return false;
        }
        self.step += 1;
        true
    }

    /// Moves to the next epoch once this one's steps are done.
    fn roll_over(&mut self) {
        if self.step >= self.decomposition.steps_per_epoch() {
            self.epoch += 1;
            self.step = 0;
            self.current = None;
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

impl Iterator for DecomposedLoader {
    type Item = Result<DecomposedBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        let steps = self.decomposition.steps_per_epoch();
        self.roll_over();
        if self.epoch >= self.epochs {
            return None;
        }
        if self
            .current
            .as_ref()
            .is_none_or(|e| e.epoch() != self.epoch)
        {
            match self.decomposition.epoch(self.epoch) {
                Ok(epoch) => self.current = Some(epoch),
                Err(e) => return Some(Err(e.into())),
            }
        }
        let epoch = self.current.as_ref().expect("set above");
        let step = epoch.step(self.step).expect("below the epoch's steps");
        let mut input_ids = Vec::with_capacity((step.length as usize) * step.pieces.len());
        for &piece in step.pieces {
            let (file, start, len) = self.decomposition.index().piece(piece);
            self.files
                .extend_tokens(file as usize, start, len, &mut input_ids);
        }
        let batch = DecomposedBatch {
            step: self.epoch * steps + self.step,
            epoch: self.epoch,
            epoch_step: self.step,
            seq_len: step.length,
            pieces: step.pieces.to_vec(),
            input_ids,
        };
        self.step += 1;
        Some(Ok(batch))
    }
}
