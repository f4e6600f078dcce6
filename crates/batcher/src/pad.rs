//! [`PadValues`]: what fills the positions of a row that no token fills.

use crate::batch::{IGNORE_INDEX, fields};

/// Values used to pad the final partial row handed back by [`crate::RowSink::finish`] (and the
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
