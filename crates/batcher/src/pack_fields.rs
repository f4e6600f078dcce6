//! [`PackFields`]: which fields of a packed row the document packer writes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::BatchError;
use crate::batch::fields;

/// The fields a [`crate::DocumentPacker`] writes besides `input_ids` (always written).
///
/// Each field is one more write of the whole batch, so asking only for what the model reads
/// is the cheapest packing there is: a model that takes `cu_seqlens` from `segment_ids` (or
/// `position_ids`, as Hugging Face's flattening collator does) needs no `attention_mask`; one
/// that shifts its own targets needs no `labels`. Without `attention_mask` the packed batch's
/// real tokens are still counted exactly (the packer counts them; padding is not a token).
///
/// Given as a list of field names (config files, the CLI's `--pack-fields`, the Python
/// keyword); `input_ids` may be named or not. The default is every field.
///
/// ```
/// use seqwarm_batcher::PackFields;
///
/// let fields = PackFields::from_names(["input_ids", "labels", "position_ids"])?;
/// assert!(fields.labels && fields.position_ids && !fields.segment_ids);
/// assert_eq!(fields.names(), ["input_ids", "labels", "position_ids"]);
/// assert!(PackFields::from_names(["cu_seqlens"]).is_err());
/// # Ok::<(), seqwarm_batcher::BatchError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::struct_excessive_bools)] // a set: one independent flag per field, no states
pub struct PackFields {
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: bool,
    /// The tokens, with -100 at each segment's first token when document boundaries are
    /// masked, and on padding.
    pub labels: bool,
    /// Positions restarting at 0 at each segment.
    pub position_ids: bool,
    /// 1-based segment number within the row, 0 on padding: what [`crate::Batch::varlen`]
    /// turns into `cu_seqlens`.
    pub segment_ids: bool,
}

impl PackFields {
    /// Every field (the default).
    pub const ALL: Self = Self {
        attention_mask: true,
        labels: true,
        position_ids: true,
        segment_ids: true,
    };

    /// `input_ids` alone.
    pub const INPUT_IDS_ONLY: Self = Self {
        attention_mask: false,
        labels: false,
        position_ids: false,
        segment_ids: false,
    };

    /// The fields named; an unknown name is an error that lists the known ones.
    pub fn from_names<S: AsRef<str>>(
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, BatchError> {
        let mut out = Self::INPUT_IDS_ONLY;
        for name in names {
            match name.as_ref() {
                fields::INPUT_IDS => {}
                fields::ATTENTION_MASK => out.attention_mask = true,
                fields::LABELS => out.labels = true,
                fields::POSITION_IDS => out.position_ids = true,
                fields::SEGMENT_IDS => out.segment_ids = true,
                other => {
                    return Err(BatchError::UnknownField {
                        field: other.into(),
                        known: Self::ALL.names().join(", "),
                    });
                }
            }
        }
        Ok(out)
    }

    /// The fields written, in the order of the packed batch (`input_ids` first).
    pub fn names(&self) -> Vec<&'static str> {
        [
            (true, fields::INPUT_IDS),
            (self.attention_mask, fields::ATTENTION_MASK),
            (self.labels, fields::LABELS),
            (self.position_ids, fields::POSITION_IDS),
            (self.segment_ids, fields::SEGMENT_IDS),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

impl Default for PackFields {
    fn default() -> Self {
        Self::ALL
    }
}

impl Serialize for PackFields {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for PackFields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        Self::from_names(&names).map_err(serde::de::Error::custom)
    }
}
