//! Named token tensors and Composer's `set_batch_sequence_length`.

use std::sync::Arc;

use crate::BatchError;
use crate::tensor::{DType, Element, Shape, Tensor, Values, bytes_from_vec};

/// Conventional field names.
pub mod fields {
    /// Token ids; every batch has them.
    pub const INPUT_IDS: &str = "input_ids";
    /// 1 for real tokens, 0 for padding.
    pub const ATTENTION_MASK: &str = "attention_mask";
    /// Training targets; -100 is ignored by the loss.
    pub const LABELS: &str = "labels";
    /// Segment type ids (BERT-style).
    pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
    /// Positions, restarting at each packed document.
    pub const POSITION_IDS: &str = "position_ids";
    /// Per-token document index within a packed row (1-based; 0 = padding).
    pub const SEGMENT_IDS: &str = "segment_ids";
}

/// The label value that cross-entropy losses ignore (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// How [`Batch::set_sequence_length`] shortens a batch, as in Composer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Keep the first `len` tokens of every row; drop the rest.
    Truncate {
        /// Move each row's last real token (per `attention_mask`) into the cut row.
        preserve_end_of_sequence: bool,
    },
    /// Re-flow all tokens into rows of `len`; the tail that does not fill a row is dropped.
    Reshape,
}

/// A batch: named integer tensors in insertion order, sequence-shaped `[rows, seq]` or
/// per-sample `[rows]`.
///
/// Fields share [`bytes::Bytes`] buffers, so cloning a batch and cutting it are cheap.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Batch {
    fields: Vec<(Arc<str>, Tensor)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field; its row count must match the fields already present.
    pub fn with_field(
        mut self,
        name: impl Into<Arc<str>>,
        tensor: Tensor,
    ) -> Result<Self, BatchError> {
        self.insert(name, tensor)?;
        Ok(self)
    }

    /// Adds a field; its row count must match the fields already present.
    pub fn insert(&mut self, name: impl Into<Arc<str>>, tensor: Tensor) -> Result<(), BatchError> {
        let name = name.into();
        if self.get(&name).is_some() {
            return Err(BatchError::DuplicateField {
                field: name.to_string(),
            });
        }
        if let Some((_, first)) = self.fields.first()
            && first.rows() != tensor.rows()
        {
            return Err(BatchError::RowMismatch {
                field: name.to_string(),
                rows: tensor.rows(),
                expected: first.rows(),
            });
        }
        self.fields.push((name, tensor));
        Ok(())
    }

    /// A batch of just `input_ids` from row-major values.
    pub fn from_input_ids<T: Element>(
        values: Vec<T>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, BatchError> {
        Self::new().with_field(fields::INPUT_IDS, Tensor::from_vec(values, rows, cols)?)
    }

    /// The field called `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, t)| t)
    }

    /// The `input_ids` field.
    pub fn input_ids(&self) -> Option<&Tensor> {
        self.get(fields::INPUT_IDS)
    }

    /// Fields in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Tensor)> {
        self.fields.iter().map(|(n, t)| (&**n, t))
    }

    /// Field names in insertion order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.fields.iter().map(|(n, _)| &**n)
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the batch has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Rows (samples) in the batch.
    pub fn rows(&self) -> usize {
        self.fields.first().map_or(0, |(_, t)| t.rows())
    }

    /// The batch's sequence length by Composer's rule: the columns of the first
    /// sequence-shaped field, or 0 when there is none.
    pub fn seq_len(&self) -> usize {
        self.fields.iter().find_map(|(_, t)| t.cols()).unwrap_or(0)
    }

    /// Real tokens: the ones of `attention_mask` when present, else every `input_ids` entry.
    pub fn token_count(&self) -> usize {
        if let Some(mask) = self.get(fields::ATTENTION_MASK) {
            return (0..mask.rows())
                .filter_map(|r| mask.row(r))
                .map(|row| match row {
                    Values::I32(v) => v.iter().filter(|&&m| m != 0).count(),
                    Values::I64(v) => v.iter().filter(|&&m| m != 0).count(),
                })
                .sum();
        }
        self.input_ids().map_or(0, Tensor::numel)
    }

    /// Composer's `set_batch_sequence_length(batch, len, truncate, preserve_end_of_sequence)`,
    /// exactly: the same output for every input, and an error in exactly the cases where
    /// Composer raises.
    ///
    /// When `len` is at least [`Batch::seq_len`] the batch comes back unchanged and unchecked,
    /// as in Composer. Truncation is a zero-copy view unless `preserve_end_of_sequence` moves
    /// tokens; reshape is zero-copy for contiguous fields.
    ///
    /// ```
    /// use seqwarm_batcher::{Batch, Cut};
    ///
    /// let batch = Batch::from_input_ids((0..12i64).collect(), 2, 6)?;
    /// let cut = batch.set_sequence_length(4, Cut::Truncate { preserve_end_of_sequence: false })?;
    /// assert_eq!(cut.input_ids().unwrap().to_rows_i64(), vec![vec![0, 1, 2, 3], vec![6, 7, 8, 9]]);
    /// let reshaped = batch.set_sequence_length(5, Cut::Reshape)?;
    /// assert_eq!(reshaped.input_ids().unwrap().to_rows_i64(), vec![vec![0, 1, 2, 3, 4], vec![5, 6, 7, 8, 9]]);
    /// # Ok::<(), seqwarm_batcher::BatchError>(())
    /// ```
    pub fn set_sequence_length(&self, len: usize, cut: Cut) -> Result<Batch, BatchError> {
        if len == 0 {
            return Err(BatchError::InvalidLength { len });
        }
        if len >= self.seq_len() {
            return Ok(self.clone());
        }
        match cut {
            Cut::Truncate {
                preserve_end_of_sequence: false,
            } => self.truncate(len),
            Cut::Truncate {
                preserve_end_of_sequence: true,
            } => self.truncate_preserving_eos(len),
            Cut::Reshape => self.reshape(len),
        }
    }

    fn truncate(&self, len: usize) -> Result<Batch, BatchError> {
        let mut out = Vec::with_capacity(self.fields.len());
        for (name, tensor) in &self.fields {
            require_sequence(name, tensor, "truncation")?;
            out.push((name.clone(), tensor.narrow_cols(len)));
        }
        Ok(Batch { fields: out })
    }

    fn truncate_preserving_eos(&self, len: usize) -> Result<Batch, BatchError> {
        let mask = self
            .get(fields::ATTENTION_MASK)
            .ok_or_else(|| BatchError::MissingField {
                field: fields::ATTENTION_MASK.into(),
                operation: "preserve_end_of_sequence",
            })?;
        if mask.cols().is_none() {
            return Err(BatchError::NotSequenceShaped {
                field: fields::ATTENTION_MASK.into(),
                shape: mask.shape().dims(),
                operation: "preserve_end_of_sequence",
            });
        }
        // eos_idx = attention_mask.sum(dim=1) - 1: possibly -1, which indexes from the end as
        // in PyTorch.
        let eos: Vec<i64> = (0..mask.rows())
            .map(|r| {
                mask.row(r)
                    .map_or(0, |row| row.to_vec_i64().iter().sum::<i64>())
                    - 1
            })
            .collect();
        let mut out = Vec::with_capacity(self.fields.len());
        for (name, tensor) in &self.fields {
            require_sequence(name, tensor, "truncation")?;
            let cut = match tensor.dtype() {
                DType::I32 => restore_eos::<i32>(name, tensor, len, &eos)?,
                DType::I64 => restore_eos::<i64>(name, tensor, len, &eos)?,
            };
            out.push((name.clone(), cut));
        }
        Ok(Batch { fields: out })
    }

    fn reshape(&self, len: usize) -> Result<Batch, BatchError> {
        let ids = self.input_ids().ok_or_else(|| BatchError::MissingField {
            field: fields::INPUT_IDS.into(),
            operation: "reshape (truncate = false)",
        })?;
        let expected = ids.shape();
        for (name, tensor) in &self.fields {
            if tensor.shape() != expected {
                return Err(BatchError::ShapeMismatch {
                    field: name.to_string(),
                    shape: tensor.shape().dims(),
                    expected: expected.dims(),
                    operation: "reshape needs every field shaped like input_ids",
                });
            }
        }
        let rows = ids.numel() / len;
        let fields = self
            .fields
            .iter()
            .map(|(name, tensor)| (name.clone(), tensor.reshape_prefix(rows, len)))
            .collect();
        Ok(Batch { fields })
    }

    /// Rows `start..end` of every field, without copying.
    pub fn slice_rows(&self, start: usize, end: usize) -> Option<Batch> {
        let fields = self
            .fields
            .iter()
            .map(|(n, t)| Some((n.clone(), t.slice_rows(start, end)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Batch { fields })
    }

    /// The batch with every field made contiguous (ready to hand to a framework).
    #[must_use]
    pub fn contiguous(&self) -> Batch {
        Batch {
            fields: self
                .fields
                .iter()
                .map(|(n, t)| (n.clone(), t.contiguous()))
                .collect(),
        }
    }

    /// `cu_seqlens` for variable-length attention over the flattened batch, from the
    /// `segment_ids` field of a packed batch: the offsets (into the row-major flattening) at
    /// which each run of one segment id starts, plus the total. Padding runs (id 0) count as
    /// segments of their own, so the runs cover every token and no run crosses a row.
    pub fn cu_seqlens(&self) -> Option<Vec<i64>> {
        let segments = self.get(fields::SEGMENT_IDS)?;
        let cols = segments.cols()?;
        let mut out = vec![0i64];
        for r in 0..segments.rows() {
            let row = segments.row(r)?;
            let base = (r * cols) as i64;
            for c in 1..cols {
                if row.get(c) != row.get(c - 1) {
                    out.push(base + c as i64);
                }
            }
            out.push(base + cols as i64);
        }
        Some(out)
    }
}

fn require_sequence(
    name: &str,
    tensor: &Tensor,
    operation: &'static str,
) -> Result<(), BatchError> {
    match tensor.shape() {
        Shape::Matrix { .. } => Ok(()),
        shape @ Shape::Vector { .. } => Err(BatchError::NotSequenceShaped {
            field: name.to_string(),
            shape: shape.dims(),
            operation,
        }),
    }
}

/// PyTorch-style index: negative counts from the end.
fn wrap_index(name: &str, row: usize, index: i64, cols: usize) -> Result<usize, BatchError> {
    let wrapped = if index < 0 {
        index + cols as i64
    } else {
        index
    };
    if wrapped < 0 || wrapped >= cols as i64 {
        return Err(BatchError::IndexOutOfRange {
            field: name.to_string(),
            row,
            index,
            seq_len: cols,
        });
    }
    Ok(wrapped as usize)
}

fn restore_eos<T: Element>(
    name: &str,
    tensor: &Tensor,
    len: usize,
    eos: &[i64],
) -> Result<Tensor, BatchError> {
    let cols = tensor.cols().unwrap_or(0);
    let cut_cols = len.min(cols);
    let mut values: Vec<T> = Vec::with_capacity(tensor.rows() * cut_cols);
    for (r, &eos_index) in eos.iter().enumerate() {
        let Some(row) = tensor.typed_row::<T>(r) else {
            break;
        };
        let eos_value = row[wrap_index(name, r, eos_index, cols)?];
        let start = values.len();
        values.extend_from_slice(&row[..cut_cols]);
        // eos_idx.clamp(max=len - 1), then PyTorch indexing into the cut row.
        let target = wrap_index(name, r, eos_index.min(len as i64 - 1), cut_cols)?;
        values[start + target] = eos_value;
    }
    Tensor::from_bytes(bytes_from_vec(values), T::DTYPE, tensor.rows(), cut_cols)
}
