//! Token runs as raw bytes: joining them into rows, taking the kept prefix of each row,
//! gathering the real tokens of a row, and reading padding masks. The repacker's copies,
//! each a plain slice copy per run.

use std::sync::Arc;

use bytes::Bytes;

use crate::BatchError;
use crate::tensor::{DType, Element, Tensor, Values, bytes_from_vec};

#[allow(clippy::needless_bitwise_bool)] // branch-free on purpose, see below
/// The number of leading real tokens when the row is right-padded (ones, then only zeros);
/// `None` for any other mask.
pub(crate) fn right_padded_len(mask: Values<'_>) -> Option<usize> {
    fn scan<T: Copy + PartialEq + Default>(mask: &[T]) -> Option<usize> {
        // Branch-free folds over fixed chunks vectorize; an early-exit scan does not.
        const CHUNK: usize = 64;
        let zero = T::default();
        let mut real = 0;
        for chunk in mask.chunks_exact(CHUNK) {
            if !chunk.iter().fold(true, |all, &m| all & (m != zero)) {
                break;
            }
            real += CHUNK;
        }
        real += mask[real..]
            .iter()
            .position(|&m| m == zero)
            .unwrap_or(mask.len() - real);
        mask[real..]
            .iter()
            .fold(true, |all, &m| all & (m == zero))
            .then_some(real)
    }
    match mask {
        Values::I32(m) => scan(m),
        Values::I64(m) => scan(m),
    }
}

pub(crate) fn checked_i32(field: &str, value: i64) -> Result<i32, BatchError> {
    i32::try_from(value).map_err(|_| BatchError::ValueOutOfRange {
        field: field.into(),
        value,
        dtype: DType::I32,
    })
}

pub(crate) fn describe(schema: &[(Arc<str>, DType)]) -> Vec<String> {
    schema.iter().map(|(n, d)| format!("{n}:{d}")).collect()
}

pub(crate) fn gather_row<T: Element>(tensor: &Tensor, row: usize, keep: &[usize]) -> Bytes {
    let values: Vec<T> = tensor
        .typed_row::<T>(row)
        .map(|r| keep.iter().map(|&i| r[i]).collect())
        .unwrap_or_default();
    bytes_from_vec(values)
}

/// The first `keep` of every `row_len` elements of the concatenated runs, for `rows` rows.
pub(crate) fn gather_prefix<T: Element>(
    column: &[Bytes],
    rows: usize,
    row_len: usize,
    keep: usize,
) -> Bytes {
    let runs: Vec<&[T]> = column
        .iter()
        .map(|b| bytemuck::cast_slice::<u8, T>(b))
        .collect();
    let mut out: Vec<T> = Vec::with_capacity(rows * keep);
    let (mut run, mut offset) = (0usize, 0usize);
    for _ in 0..rows {
        // Copy `keep` elements, then skip `row_len - keep`, walking across runs.
        let mut wanted = keep;
        let mut skip = row_len - keep;
        while wanted > 0 || skip > 0 {
            let Some(current) = runs.get(run) else { break };
            let left = current.len() - offset;
            if left == 0 {
                run += 1;
                offset = 0;
                continue;
            }
            if wanted > 0 {
                let n = wanted.min(left);
                out.extend_from_slice(&current[offset..offset + n]);
                offset += n;
                wanted -= n;
            } else {
                let n = skip.min(left);
                offset += n;
                skip -= n;
            }
        }
    }
    bytes_from_vec(out)
}

/// Joins byte runs of `T` into `total` elements, filling the rest with `pad`. One run that is
/// already the whole result is shared, not copied.
pub(crate) fn concat<T: Element>(column: &[Bytes], total: usize, pad: T) -> Bytes {
    if let [only] = column
        && only.len() == total * size_of::<T>()
    {
        return only.clone();
    }
    let mut out: Vec<T> = Vec::with_capacity(total);
    for run in column {
        out.extend_from_slice(bytemuck::cast_slice(run));
    }
    out.resize(total, pad);
    bytes_from_vec(out)
}
