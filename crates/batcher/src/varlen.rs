//! Variable-length attention metadata of a packed batch ([`Batch::varlen`]): FlashAttention's
//! `cu_seqlens`, optionally padded to a size fixed by the batch's shape, the number of real
//! entries, and `max_seqlen`.
//!
//! A compiled model (or a captured CUDA graph) recompiles for every new input shape, and the
//! number of segments in a packed batch changes from batch to batch. Padded to
//! [`fixed_cu_seqlens_len`] entries with the **sentinel** (the batch's total token count, the
//! last real entry, repeated), `cu_seqlens` has a shape that depends only on `rows x len`: the
//! extra entries describe sequences of length zero, which varlen attention kernels skip.

use crate::batch::{Batch, fields};
use crate::error::BatchError;

/// `cu_seqlens` entries of a packed batch of `rows` rows of `len` tokens at the most, when no
/// row holds more than `max_segments` segments (`None`: no limit). A row's runs of one
/// `segment_ids` value are its segments plus at most one run of padding, and never more than
/// its `len` positions; plus the leading 0.
pub fn fixed_cu_seqlens_len(rows: usize, len: usize, max_segments: Option<usize>) -> usize {
    let runs_per_row = max_segments.map_or(len, |s| s.saturating_add(1).min(len));
    rows.saturating_mul(runs_per_row.max(1)).saturating_add(1)
}

/// Variable-length attention metadata of one packed batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Varlen {
    /// Offsets into the row-major flattened batch at which each run of one `segment_ids` value
    /// starts (padding runs included), then the total; when a fixed size was asked for,
    /// followed by the sentinel (the total again) up to that size.
    pub cu_seqlens: Vec<i64>,
    /// The real entries at the front of `cu_seqlens` (runs + 1).
    pub count: usize,
    /// The longest run: what varlen kernels take as `max_seqlen`. Never more than the row
    /// length, which is the bound to pass where a value that changes only with the schedule
    /// is wanted (a compiled model specialises on it).
    pub max_seqlen: usize,
}

impl Batch {
    /// The variable-length attention metadata of a packed batch (one with `segment_ids`),
    /// `cu_seqlens` padded with the sentinel to `fixed_len` entries when given
    /// ([`fixed_cu_seqlens_len`] of the batch's shape); `Ok(None)` for a batch without
    /// `segment_ids`. Fails when the batch has more runs than `fixed_len` holds.
    ///
    /// ```
    /// use seqwarm_batcher::{Batch, Tensor, fixed_cu_seqlens_len};
    ///
    /// // Two rows of 4: segments [1, 1, 2, 0] and [1, 1, 1, 1].
    /// let segments = Tensor::from_vec(vec![1i32, 1, 2, 0, 1, 1, 1, 1], 2, 4)?;
    /// let batch = Batch::new().with_field("segment_ids", segments)?;
    /// let size = fixed_cu_seqlens_len(2, 4, Some(2));
    /// let varlen = batch.varlen(Some(size))?.unwrap();
    /// assert_eq!(varlen.cu_seqlens, [0, 2, 3, 4, 8, 8, 8]);
    /// assert_eq!((varlen.count, varlen.max_seqlen), (5, 4));
    /// # Ok::<(), seqwarm_batcher::BatchError>(())
    /// ```
    pub fn varlen(&self, fixed_len: Option<usize>) -> Result<Option<Varlen>, BatchError> {
        let Some(mut cu_seqlens) = self.cu_seqlens() else {
            return Ok(None);
        };
        let count = cu_seqlens.len();
        let max_seqlen = cu_seqlens
            .windows(2)
            .map(|w| (w[1] - w[0]) as usize)
            .max()
            .unwrap_or(0);
        if let Some(size) = fixed_len {
            if count > size {
                return Err(BatchError::TooManySegments {
                    field: fields::SEGMENT_IDS.into(),
                    entries: count,
                    size,
                });
            }
            let total = cu_seqlens.last().copied().unwrap_or(0);
            cu_seqlens.resize(size, total);
        }
        Ok(Some(Varlen {
            cu_seqlens,
            count,
            max_seqlen,
        }))
    }
}
