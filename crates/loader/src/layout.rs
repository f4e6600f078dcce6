//! Shard layouts: which columns hold tokens and document boundaries, and their decoding from
//! Arrow arrays into [`Documents`] without per-token copies.

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type,
};
use arrow_array::{Array, ArrayRef, OffsetSizeTrait, RecordBatch};
use arrow_schema::{DataType, Schema};
use bytes::Bytes;
use seqwarm_batcher::{DType, Tensor};
use serde::{Deserialize, Serialize};

use seqwarm_stage::Documents;

use crate::error::{LoaderError, Result};

/// How a shard stores its tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LayoutKind {
    /// Rows if the file has the `input_ids` column, else flat if it has the `tokens` column.
    #[default]
    Auto,
    /// Hugging Face style: one document per row, tokens in a `list<int>` column.
    Rows,
    /// seqwarm's fast layout: one token per row in a flat integer column, documents marked by
    /// a boolean `document_start` column. See `docs/formats.md`.
    Flat,
}

/// Layout and column names of the shards.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardLayout {
    /// Which layout to expect.
    pub kind: LayoutKind,
    /// The list column of the rows layout.
    pub input_ids: String,
    /// An optional list column of per-token labels (rows layout), moved with the tokens.
    pub labels: Option<String>,
    /// An optional list column of per-token attention masks (rows layout): positions where it
    /// is 0 are padding and are dropped on read.
    pub attention_mask: Option<String>,
    /// The flat token column of the fast layout.
    pub tokens: String,
    /// The boolean document-start column of the fast layout. When a file lacks it, each row
    /// group is read as one document.
    pub document_start: String,
}

impl Default for ShardLayout {
    fn default() -> Self {
        Self {
            kind: LayoutKind::Auto,
            input_ids: "input_ids".into(),
            labels: None,
            attention_mask: None,
            tokens: "tokens".into(),
            document_start: "document_start".into(),
        }
    }
}

/// A layout checked against one file's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvedLayout {
    pub flat: bool,
    pub token_column: String,
    pub labels_column: Option<String>,
    pub attention_mask_column: Option<String>,
    pub document_start_column: Option<String>,
}

impl ResolvedLayout {
    /// Top-level columns to read.
    pub(crate) fn columns(&self) -> Vec<&str> {
        let mut out = vec![self.token_column.as_str()];
        out.extend(self.labels_column.as_deref());
        out.extend(self.attention_mask_column.as_deref());
        out.extend(self.document_start_column.as_deref());
        out
    }
}

const TOKEN_TYPES: &str = "int8/16/32/64 or uint8/16/32";
const FLAT_TOKEN_TYPES: &str =
    "int8/16/32/64, uint8/16/32, or fixed_size_binary[2] (little-endian uint16)";

/// The flat layout's `uint16` encoding: each token 2 little-endian bytes.
const UINT16_BYTES: DataType = DataType::FixedSizeBinary(2);

fn is_token_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    )
}

impl ShardLayout {
    /// Checks this layout against a file's Arrow schema.
    pub(crate) fn resolve(&self, file: &str, schema: &Schema) -> Result<ResolvedLayout> {
        let available = || {
            schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let find = |name: &str| schema.field_with_name(name).ok();
        let missing = |column: &str| LoaderError::MissingColumn {
            file: file.into(),
            column: column.into(),
            available: available(),
        };
        let flat = match self.kind {
            LayoutKind::Rows => false,
            LayoutKind::Flat => true,
            LayoutKind::Auto => {
                if find(&self.input_ids).is_some() {
                    false
                } else if find(&self.tokens).is_some() {
                    true
                } else {
                    return Err(missing(&format!("{}` or `{}", self.input_ids, self.tokens)));
                }
            }
        };
        let list_of_tokens = |column: &str| -> Result<()> {
            let field = find(column).ok_or_else(|| missing(column))?;
            match field.data_type() {
                DataType::List(item) | DataType::LargeList(item)
                    if is_token_type(item.data_type()) =>
                {
                    Ok(())
                }
                other => Err(LoaderError::ColumnType {
                    file: file.into(),
                    column: column.into(),
                    found: other.to_string(),
                    expected: "list<int> or large_list<int> (int8/16/32/64 or uint8/16/32 values)",
                }),
            }
        };
        if flat {
            let field = find(&self.tokens).ok_or_else(|| missing(&self.tokens))?;
            if !is_token_type(field.data_type()) && field.data_type() != &UINT16_BYTES {
                return Err(LoaderError::ColumnType {
                    file: file.into(),
                    column: self.tokens.clone(),
                    found: field.data_type().to_string(),
                    expected: FLAT_TOKEN_TYPES,
                });
            }
            let document_start = match find(&self.document_start) {
                Some(f) if f.data_type() == &DataType::Boolean => Some(self.document_start.clone()),
                Some(f) => {
                    return Err(LoaderError::ColumnType {
                        file: file.into(),
                        column: self.document_start.clone(),
                        found: f.data_type().to_string(),
                        expected: "boolean",
                    });
                }
                None => None,
            };
            Ok(ResolvedLayout {
                flat: true,
                token_column: self.tokens.clone(),
                labels_column: None,
                attention_mask_column: None,
                document_start_column: document_start,
            })
        } else {
            list_of_tokens(&self.input_ids)?;
            for column in self.labels.iter().chain(&self.attention_mask) {
                list_of_tokens(column)?;
            }
            Ok(ResolvedLayout {
                flat: false,
                token_column: self.input_ids.clone(),
                labels_column: self.labels.clone(),
                attention_mask_column: self.attention_mask.clone(),
                document_start_column: None,
            })
        }
    }
}

/// Where a decoded array sits, for error messages.
pub(crate) struct Place<'a> {
    pub file: &'a str,
    pub row_group: usize,
}

/// Decoding options.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecodeOptions {
    pub dtype: DType,
    pub vocab_size: Option<u64>,
    /// Negative values are legal (labels use -100); only the dtype's range is checked.
    pub signed: bool,
}

/// Decodes one row group's record batch into documents.
pub(crate) fn decode(
    place: &Place<'_>,
    batch: &RecordBatch,
    layout: &ResolvedLayout,
    document_lengths: Option<&[u64]>,
    options: DecodeOptions,
) -> Result<Documents> {
    let column = |name: &str| -> Result<&ArrayRef> {
        batch
            .column_by_name(name)
            .ok_or_else(|| LoaderError::MissingColumn {
                file: place.file.into(),
                column: name.into(),
                available: batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    };
    let tokens_array = column(&layout.token_column)?;
    if layout.flat {
        let n = tokens_array.len();
        let tokens = to_tensor(
            place,
            &layout.token_column,
            tokens_array.as_ref(),
            options,
            |i| i,
        )?;
        let mut offsets = vec![0usize];
        if let Some(lengths) = document_lengths {
            // Lengths were checked against the row count when the footer was read.
            offsets = offsets_from_lengths(lengths);
            offsets.pop();
        } else if let Some(name) = &layout.document_start_column {
            let starts = column(name)?;
            if let Some(row) = first_null(starts.as_ref()) {
                return Err(null(place, name, row));
            }
            let starts = starts.as_boolean();
            offsets.extend(starts.values().set_indices().filter(|&i| i > 0));
        }
        offsets.push(n);
        offsets.dedup();
        if n == 0 {
            offsets = vec![0];
        }
        return Documents::new(tokens, offsets)
            .map_err(|e| internal(place, &layout.token_column, &e));
    }
    let (tokens, offsets) = match tokens_array.data_type() {
        DataType::LargeList(_) => {
            list_tokens::<i64>(place, &layout.token_column, tokens_array, options)?
        }
        _ => list_tokens::<i32>(place, &layout.token_column, tokens_array, options)?,
    };
    // A per-token list column aligned with the tokens (same length in every row).
    let aligned = |name: &str| -> Result<Tensor> {
        let array = column(name)?;
        let plain = DecodeOptions {
            vocab_size: None,
            signed: true,
            ..options
        };
        let (values, value_offsets) = match array.data_type() {
            DataType::LargeList(_) => list_tokens::<i64>(place, name, array, plain)?,
            _ => list_tokens::<i32>(place, name, array, plain)?,
        };
        if let Some(row) = (1..offsets.len())
            .find(|&i| offsets[i] - offsets[i - 1] != value_offsets[i] - value_offsets[i - 1])
        {
            return Err(LoaderError::LengthMismatch {
                file: place.file.into(),
                row_group: place.row_group,
                row: row - 1,
                column: name.into(),
                len: value_offsets[row] - value_offsets[row - 1],
                expected: offsets[row] - offsets[row - 1],
            });
        }
        Ok(values)
    };
    let mut labels = match &layout.labels_column {
        Some(name) => Some(aligned(name)?),
        None => None,
    };
    let (mut tokens, mut offsets) = (tokens, offsets.clone());
    if let Some(name) = &layout.attention_mask_column {
        let mask = aligned(name)?.to_vec_i64();
        if mask.contains(&0) {
            // Padding inside stored rows: drop it, so it never becomes training tokens.
            (tokens, labels, offsets) = drop_padding(&tokens, labels.as_ref(), &offsets, &mask);
        }
    }
    let mut documents =
        Documents::new(tokens, offsets).map_err(|e| internal(place, &layout.token_column, &e))?;
    if let (Some(labels), Some(name)) = (labels, &layout.labels_column) {
        documents = documents
            .with_labels(labels)
            .map_err(|e| internal(place, name, &e))?;
    }
    Ok(documents)
}

/// Document offsets `[0, l0, l0 + l1, …]` from document lengths.
pub(crate) fn offsets_from_lengths(lengths: &[u64]) -> Vec<usize> {
    let mut offsets = Vec::with_capacity(lengths.len() + 1);
    offsets.push(0);
    let mut at = 0usize;
    for &len in lengths {
        // The catalog checked that the lengths add up to the row count, so nothing saturates
        // here; saturating keeps a wrong length from wrapping into a valid-looking offset.
        at = at.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        offsets.push(at);
    }
    offsets
}

/// Keeps the positions whose mask is non-zero, in tokens and labels, and shrinks the offsets.
fn drop_padding(
    tokens: &Tensor,
    labels: Option<&Tensor>,
    offsets: &[usize],
    mask: &[i64],
) -> (Tensor, Option<Tensor>, Vec<usize>) {
    let keep = |values: Vec<i64>| -> Vec<i64> {
        values
            .into_iter()
            .zip(mask)
            .filter(|(_, m)| **m != 0)
            .map(|(v, _)| v)
            .collect()
    };
    let rebuild = |t: &Tensor| -> Tensor {
        let kept = keep(t.to_vec_i64());
        match t.dtype() {
            // Values came from this tensor's dtype, so the narrowing is exact.
            DType::I32 => Tensor::vector(kept.into_iter().map(|v| v as i32).collect::<Vec<_>>()),
            DType::I64 => Tensor::vector(kept),
        }
    };
    let mut new_offsets = Vec::with_capacity(offsets.len());
    new_offsets.push(0);
    for w in offsets.windows(2) {
        let real = mask[w[0]..w[1]].iter().filter(|&&m| m != 0).count();
        new_offsets.push(new_offsets.last().copied().unwrap_or(0) + real);
    }
    (rebuild(tokens), labels.map(rebuild), new_offsets)
}

/// Offsets or labels that do not fit the tokens they describe.
fn internal(place: &Place<'_>, column: &str, why: &seqwarm_stage::StageError) -> LoaderError {
    LoaderError::ColumnType {
        file: place.file.into(),
        column: column.into(),
        found: format!("inconsistent offsets ({why})"),
        expected: "valid list offsets",
    }
}

fn null(place: &Place<'_>, column: &str, row: usize) -> LoaderError {
    LoaderError::Null {
        file: place.file.into(),
        row_group: place.row_group,
        row,
        column: column.into(),
    }
}

fn first_null(array: &dyn Array) -> Option<usize> {
    if array.null_count() == 0 {
        return None;
    }
    (0..array.len()).find(|&i| array.is_null(i))
}

/// A list column's values as one token tensor plus document offsets (relative to 0).
fn list_tokens<O: OffsetSizeTrait>(
    place: &Place<'_>,
    column: &str,
    array: &ArrayRef,
    options: DecodeOptions,
) -> Result<(Tensor, Vec<usize>)> {
    if let Some(row) = first_null(array.as_ref()) {
        return Err(null(place, column, row));
    }
    let list = array.as_list::<O>();
    let raw = list.value_offsets();
    let base = raw.first().map_or(0, |o| o.as_usize());
    let offsets: Vec<usize> = raw.iter().map(|o| o.as_usize() - base).collect();
    let end = offsets.last().copied().unwrap_or(0);
    let values = list.values().slice(base, end);
    // Errors inside the values name the document (list row), not the value index.
    let row_of = |value_index: usize| {
        offsets
            .partition_point(|&o| o <= value_index)
            .saturating_sub(1)
    };
    let tokens = to_tensor(place, column, values.as_ref(), options, row_of)?;
    Ok((tokens, offsets))
}

/// An integer array as a 1-D tensor of `options.dtype`: shared when the types match,
/// converted (with range checks) otherwise. `row_of` maps a value index to the row to report.
fn to_tensor(
    place: &Place<'_>,
    column: &str,
    array: &dyn Array,
    options: DecodeOptions,
    row_of: impl Fn(usize) -> usize,
) -> Result<Tensor> {
    if let Some(i) = first_null(array) {
        return Err(null(place, column, row_of(i)));
    }
    let out_of_range = |i: usize, token: i64| LoaderError::TokenOutOfRange {
        file: place.file.into(),
        row_group: place.row_group,
        row: row_of(i),
        column: column.into(),
        token,
        vocab_size: options.vocab_size.unwrap_or(match options.dtype {
            DType::I32 => 1 << 31,
            DType::I64 => u64::MAX,
        }),
    };
    // Inclusive lower bound: 0 for token ids, the dtype's minimum for signed columns.
    let lowest: i64 = match (options.signed, options.dtype) {
        (false, _) => 0,
        (true, DType::I32) => i64::from(i32::MIN),
        (true, DType::I64) => i64::MIN,
    };
    // Exclusive upper bound on token ids: the vocabulary, else what the dtype holds.
    let limit: i128 = match (options.vocab_size, options.dtype) {
        (Some(v), _) => i128::from(v),
        (None, DType::I32) => i128::from(i32::MAX) + 1,
        (None, DType::I64) => i128::from(i64::MAX) + 1,
    };
    macro_rules! check {
        ($values:expr) => {{
            let values = $values;
            // A by-value fold vectorizes (`Iterator::min` over references does not); locate
            // the offender only on failure.
            if let Some((lo, hi)) = min_max(values) {
                if i64::from(lo) < lowest || i128::from(i64::from(hi)) >= limit {
                    if let Some((i, &v)) = values
                        .iter()
                        .enumerate()
                        .find(|&(_, &v)| i64::from(v) < lowest || i128::from(i64::from(v)) >= limit)
                    {
                        return Err(out_of_range(i, i64::from(v)));
                    }
                }
            }
        }};
    }
    // Without a vocabulary, a same-width read cannot overflow: skip the scan (it costs about
    // a tenth of the decode). Negative ids then pass through unchecked.
    let checked = options.vocab_size.is_some() && !options.signed;
    let tensor = match array.data_type() {
        DataType::Int32 => {
            let values = array.as_primitive::<Int32Type>().values();
            if checked || options.dtype == DType::I64 {
                check!(values.as_ref());
            }
            match options.dtype {
                DType::I32 => shared(place, column, values.inner().clone().into(), DType::I32)?,
                DType::I64 => {
                    Tensor::vector(values.iter().map(|&v| i64::from(v)).collect::<Vec<_>>())
                }
            }
        }
        DataType::Int64 => {
            let values = array.as_primitive::<Int64Type>().values();
            if checked || options.dtype == DType::I32 {
                check!(values.as_ref());
            }
            match options.dtype {
                // In range after the check above, so the narrowing is exact.
                DType::I32 => Tensor::vector(values.iter().map(|&v| v as i32).collect::<Vec<_>>()),
                DType::I64 => shared(place, column, values.inner().clone().into(), DType::I64)?,
            }
        }
        DataType::Int8 => widen(
            array.as_primitive::<Int8Type>().values().as_ref(),
            options.dtype,
            lowest,
            limit,
            &out_of_range,
        )?,
        DataType::Int16 => widen(
            array.as_primitive::<Int16Type>().values().as_ref(),
            options.dtype,
            lowest,
            limit,
            &out_of_range,
        )?,
        DataType::UInt8 => widen(
            array.as_primitive::<UInt8Type>().values().as_ref(),
            options.dtype,
            lowest,
            limit,
            &out_of_range,
        )?,
        DataType::UInt16 => widen(
            array.as_primitive::<UInt16Type>().values().as_ref(),
            options.dtype,
            lowest,
            limit,
            &out_of_range,
        )?,
        DataType::UInt32 => widen(
            array.as_primitive::<UInt32Type>().values().as_ref(),
            options.dtype,
            lowest,
            limit,
            &out_of_range,
        )?,
        // The flat layout's uint16 encoding (no nulls: checked above).
        t if t == &UINT16_BYTES => {
            let values: Vec<u16> = array
                .as_fixed_size_binary()
                .values()
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            widen(&values, options.dtype, lowest, limit, &out_of_range)?
        }
        other => {
            return Err(LoaderError::ColumnType {
                file: place.file.into(),
                column: column.into(),
                found: other.to_string(),
                expected: TOKEN_TYPES,
            });
        }
    };
    Ok(tensor)
}

/// An Arrow buffer shared as a tensor. It is aligned and sized for `dtype` by construction; if
/// it ever were not, that is reported, not papered over.
fn shared(place: &Place<'_>, column: &str, bytes: Bytes, dtype: DType) -> Result<Tensor> {
    Tensor::vector_from_bytes(bytes, dtype).map_err(|e| LoaderError::ColumnType {
        file: place.file.into(),
        column: column.into(),
        found: format!("a value buffer that does not hold {dtype} values ({e})"),
        expected: "an integer column",
    })
}

fn widen<T: Copy + Into<i64>>(
    values: &[T],
    dtype: DType,
    lowest: i64,
    limit: i128,
    out_of_range: &dyn Fn(usize, i64) -> LoaderError,
) -> Result<Tensor> {
    if let Some((i, v)) = values
        .iter()
        .map(|&v| v.into())
        .enumerate()
        .find(|&(_, v): &(usize, i64)| v < lowest || i128::from(v) >= limit)
    {
        return Err(out_of_range(i, v));
    }
    Ok(match dtype {
        DType::I32 => Tensor::vector(values.iter().map(|&v| v.into() as i32).collect::<Vec<_>>()),
        DType::I64 => Tensor::vector(values.iter().map(|&v| v.into()).collect::<Vec<_>>()),
    })
}

/// Smallest and largest value, `None` for an empty slice.
fn min_max<T: Copy + Ord + Into<i64>>(values: &[T]) -> Option<(T, T)> {
    let first = *values.first()?;
    Some(
        values
            .iter()
            .fold((first, first), |(lo, hi), &v| (lo.min(v), hi.max(v))),
    )
}
