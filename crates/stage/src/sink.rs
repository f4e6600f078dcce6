//! [`ModeSink`]: the row sink each [`Mode`] uses, as one type, so that the loader's stage is
//! one concrete `WarmupCore<ModeSink>` whatever the mode chosen at run time.

use std::ops::Range;

use seqwarm_batcher::{
    BatchError, DocumentPacker, PackStrategy, PackerCarry, PackerConfig, PadValues, Popped,
    Repacker, RepackerCarry, RepackerConfig, RowSink, Tokens,
};
use serde::{Deserialize, Serialize};

use crate::config::Warmup;
use crate::mode::Mode;

/// The repacker (`truncate`, `truncate-keep-eos`, `reshape`, `repack`) or the document packer
/// (`pack-greedy`, `pack-bestfit`).
#[derive(Debug)]
pub enum ModeSink {
    /// Documents concatenated; rows cut wherever they fall.
    Rows(Repacker),
    /// Rows built from whole or split documents.
    Pack(DocumentPacker),
}

/// What a [`ModeSink`] carries between batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "sink")]
pub enum ModeCarry {
    /// The repacker's tokens.
    Rows(RepackerCarry),
    /// The packer's pieces.
    Pack(PackerCarry),
}

impl ModeCarry {
    /// The carry as pieces that can go to different ranks, with their token counts: the
    /// packer's pieces and ready rows one by one ([`seqwarm_batcher::PackerCarry::items`]);
    /// the repacker's carried run whole (less than a batch, and a run: its order is its
    /// meaning).
    pub(crate) fn items(&self) -> Vec<(u64, ModeCarry)> {
        match self {
            Self::Rows(rows) => {
                let tokens = rows.token_ids().count() as u64;
                if tokens == 0 {
                    Vec::new()
                } else {
                    vec![(tokens, self.clone())]
                }
            }
            Self::Pack(pack) => pack
                .items()
                .into_iter()
                .map(|(tokens, carry)| (tokens as u64, Self::Pack(carry)))
                .collect(),
        }
    }

    /// The carried token ids.
    pub fn token_ids(&self) -> Box<dyn Iterator<Item = i64> + '_> {
        match self {
            Self::Rows(rows) => Box::new(rows.token_ids()),
            Self::Pack(pack) => Box::new(pack.token_ids()),
        }
    }

    /// Several sinks' carries as one, in the order given (an elastic resume's rank taking
    /// over several ranks' tokens); with none, the empty carry of `like`'s sink.
    pub fn concat<'a>(
        carries: impl IntoIterator<Item = &'a ModeCarry>,
        like: &ModeCarry,
    ) -> Result<ModeCarry, BatchError> {
        let carries: Vec<&ModeCarry> = carries.into_iter().collect();
        match like {
            ModeCarry::Rows(_) => {
                let rows = carries.iter().map(|c| match c {
                    ModeCarry::Rows(r) => Ok(r),
                    ModeCarry::Pack(_) => Err(mismatch()),
                });
                let rows = rows.collect::<Result<Vec<_>, _>>()?;
                Ok(ModeCarry::Rows(RepackerCarry::concat(rows)?))
            }
            ModeCarry::Pack(_) => {
                let packs = carries.iter().map(|c| match c {
                    ModeCarry::Pack(p) => Ok(p),
                    ModeCarry::Rows(_) => Err(mismatch()),
                });
                let packs = packs.collect::<Result<Vec<_>, _>>()?;
                Ok(ModeCarry::Pack(PackerCarry::concat(packs)?))
            }
        }
    }
}

fn mismatch() -> BatchError {
    BatchError::InvalidCarry {
        reason: "a repacker's and a document packer's carries cannot be combined".into(),
    }
}

impl ModeSink {
    /// The sink `warmup`'s mode uses.
    pub fn for_warmup(warmup: &Warmup) -> Self {
        let pad = PadValues {
            input_ids: warmup.pad_id(),
            ..PadValues::default()
        };
        let strategy = match warmup.mode() {
            Mode::PackGreedy => PackStrategy::Greedy,
            Mode::PackBestfit => PackStrategy::BestFitDecreasing {
                window: warmup.pack_window(),
            },
            _ => return Self::Rows(RepackerConfig::default().with_pad_values(pad).build()),
        };
        Self::Pack(
            PackerConfig::default()
                .with_strategy(strategy)
                .with_mask_document_boundaries(warmup.mask_document_boundaries())
                .with_pad_values(pad)
                .with_max_segments(warmup.max_segments_per_row())
                .with_fields(warmup.pack_fields())
                .build(),
        )
    }
}

/// Dispatch to the sink inside.
macro_rules! each {
    ($self:expr, $sink:ident => $body:expr) => {
        match $self {
            ModeSink::Rows($sink) => $body,
            ModeSink::Pack($sink) => $body,
        }
    };
}

impl RowSink for ModeSink {
    type Carry = ModeCarry;

    fn push_document(&mut self, doc: Tokens<'_>, eos: Option<i64>) -> Result<(), BatchError> {
        each!(self, s => s.push_document(doc, eos))
    }

    fn push_document_in(
        &mut self,
        run: Tokens<'_>,
        span: Range<usize>,
        eos: Option<i64>,
    ) -> Result<(), BatchError> {
        each!(self, s => s.push_document_in(run, span, eos))
    }

    fn push_run(&mut self, run: Tokens<'_>, span: Range<usize>) -> Result<bool, BatchError> {
        each!(self, s => s.push_run(run, span))
    }

    fn skip(&mut self, tokens: usize) -> Result<bool, BatchError> {
        each!(self, s => s.skip(tokens))
    }

    fn skips_by_count(&self) -> bool {
        each!(self, s => s.skips_by_count())
    }

    fn can_pop(&self, len: usize, rows: usize) -> bool {
        each!(self, s => s.can_pop(len, rows))
    }

    fn pop(&mut self, len: usize, rows: usize) -> Popped {
        each!(self, s => s.pop(len, rows))
    }

    fn pop_truncated(&mut self, row_len: usize, rows: usize, keep: usize) -> Popped {
        each!(self, s => s.pop_truncated(row_len, rows, keep))
    }

    fn finish(&mut self, len: usize, rows: usize) -> Popped {
        each!(self, s => s.finish(len, rows))
    }

    fn end_of_input(&mut self) {
        each!(self, s => s.end_of_input());
    }

    fn buffered_tokens(&self) -> usize {
        each!(self, s => s.buffered_tokens())
    }

    fn clear(&mut self) -> usize {
        each!(self, s => s.clear())
    }

    fn tokens_handed_out(&self) -> Option<u64> {
        each!(self, s => s.tokens_handed_out())
    }

    fn carry(&self) -> ModeCarry {
        match self {
            Self::Rows(s) => ModeCarry::Rows(s.carry()),
            Self::Pack(s) => ModeCarry::Pack(s.carry()),
        }
    }

    fn restore(&mut self, carry: &ModeCarry) -> Result<(), BatchError> {
        match (self, carry) {
            (Self::Rows(s), ModeCarry::Rows(c)) => s.restore(c),
            (Self::Pack(s), ModeCarry::Pack(c)) => s.restore(c),
            (_, carry) => Err(BatchError::CarryMismatch {
                expected: "the carry of this mode's sink",
                got: match carry {
                    ModeCarry::Rows(_) => "a repacker's carry",
                    ModeCarry::Pack(_) => "a document packer's carry",
                },
            }),
        }
    }
}
