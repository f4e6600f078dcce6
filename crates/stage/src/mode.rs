//! [`Mode`]: how documents become batches of the scheduled length.

use seqwarm_batcher::Cut;
use serde::{Deserialize, Serialize};

/// How documents become batches of the scheduled length.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Composer's pipeline with `truncate = true`: documents concatenated into rows of the
    /// maximum length, each row cut to the scheduled length (the rest dropped and counted).
    Truncate,
    /// [`Mode::Truncate`] with Composer's `preserve_end_of_sequence`: each row's last real
    /// token is moved into the cut row.
    TruncateKeepEos,
    /// Composer's pipeline with `truncate = false`: rows of the maximum length re-flowed into
    /// rows of the scheduled length (the tail of each batch dropped and counted).
    Reshape,
    /// Lossless: documents concatenated and cut into rows of exactly the scheduled length;
    /// nothing is dropped, the remainder leads the next batch.
    #[default]
    Repack,
    /// Document packing, greedy: documents in order, split where a row ends, with
    /// `position_ids`, `segment_ids` and boundary-masked `labels`.
    PackGreedy,
    /// Document packing, best fit decreasing over a window of documents: only documents
    /// longer than a row are split, at the cost of some padding.
    PackBestfit,
}

impl Mode {
    /// Every mode, in documentation order.
    pub const ALL: [Mode; 6] = [
        Self::Truncate,
        Self::TruncateKeepEos,
        Self::Reshape,
        Self::Repack,
        Self::PackGreedy,
        Self::PackBestfit,
    ];

    /// The name in config files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncate => "truncate",
            Self::TruncateKeepEos => "truncate-keep-eos",
            Self::Reshape => "reshape",
            Self::Repack => "repack",
            Self::PackGreedy => "pack-greedy",
            Self::PackBestfit => "pack-bestfit",
        }
    }

    /// Whether this mode first builds rows of the maximum length (Composer's pipeline).
    pub fn is_composer(self) -> bool {
        matches!(self, Self::Truncate | Self::TruncateKeepEos | Self::Reshape)
    }

    /// Whether this mode packs documents (and so emits padding and per-document fields).
    pub fn is_packing(self) -> bool {
        matches!(self, Self::PackGreedy | Self::PackBestfit)
    }

    /// Composer's cut of max-length rows, in the Composer modes.
    pub fn composer_cut(self) -> Option<Cut> {
        match self {
            Self::Truncate => Some(Cut::Truncate {
                preserve_end_of_sequence: false,
            }),
            Self::TruncateKeepEos => Some(Cut::Truncate {
                preserve_end_of_sequence: true,
            }),
            Self::Reshape => Some(Cut::Reshape),
            Self::Repack | Self::PackGreedy | Self::PackBestfit => None,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
