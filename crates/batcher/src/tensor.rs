//! Integer tensors over shared, zero-copy byte buffers.

use bytemuck::Pod;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::BatchError;

/// Element type of a token tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DType {
    /// 32-bit signed integers (enough for any tokenizer vocabulary; half the bytes).
    I32,
    /// 64-bit signed integers (PyTorch's `long`, what Composer hands around).
    I64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I32 => 4,
            Self::I64 => 8,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::I32 => "i32",
            Self::I64 => "i64",
        })
    }
}

/// An element type a [`Tensor`] can hold: `i32` or `i64`.
pub trait Element: Pod + Send + Sync + Into<i64> + TryFrom<i64> + Default {
    /// The matching [`DType`].
    const DTYPE: DType;
    /// The largest value.
    const MAX: i64;
    /// `i` as an element; callers check `i <= Self::MAX` first (a position within a row).
    fn from_index(i: usize) -> Self;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;
    const MAX: i64 = i32::MAX as i64;
    fn from_index(i: usize) -> Self {
        i as i32
    }
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
    const MAX: i64 = i64::MAX;
    fn from_index(i: usize) -> Self {
        i as i64
    }
}

/// A borrowed view of a tensor's typed storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Values<'a> {
    /// `i32` storage.
    I32(&'a [i32]),
    /// `i64` storage.
    I64(&'a [i64]),
}

impl Values<'_> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::I32(v) => v.len(),
            Self::I64(v) => v.len(),
        }
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Element `i` widened to `i64`.
    pub fn get(&self, i: usize) -> Option<i64> {
        match self {
            Self::I32(v) => v.get(i).map(|&x| i64::from(x)),
            Self::I64(v) => v.get(i).copied(),
        }
    }
    /// All elements widened to `i64`.
    pub fn to_vec_i64(&self) -> Vec<i64> {
        match self {
            Self::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::I64(v) => v.to_vec(),
        }
    }
}

/// The logical shape of a [`Tensor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A 1-D tensor: a per-sample field (one value per row) or a document's tokens.
    Vector {
        /// Elements.
        len: usize,
    },
    /// A 2-D, sequence-shaped `[rows, cols]` tensor.
    Matrix {
        /// Rows (samples).
        rows: usize,
        /// Columns (sequence positions).
        cols: usize,
    },
}

impl Shape {
    /// The dimensions, PyTorch-style.
    pub fn dims(&self) -> Vec<usize> {
        match *self {
            Self::Vector { len } => vec![len],
            Self::Matrix { rows, cols } => vec![rows, cols],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Vector {
        len: usize,
    },
    /// Row-major with `row_stride >= cols` elements between row starts, so that cutting
    /// columns is a zero-copy view.
    Matrix {
        rows: usize,
        cols: usize,
        row_stride: usize,
    },
}

/// A 1-D or 2-D integer tensor over a shared [`Bytes`] buffer.
///
/// Cloning, slicing rows and cutting columns never copy tokens: they share the buffer. The
/// buffer is always aligned for the element type (constructors copy a misaligned buffer once).
#[derive(Clone)]
pub struct Tensor {
    data: Bytes,
    dtype: DType,
    layout: Layout,
}

struct PodVec<T>(Vec<T>);
impl<T: Pod> AsRef<[u8]> for PodVec<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

/// Wraps a typed vector as [`Bytes`] without copying it; the result is aligned for `T`.
pub fn bytes_from_vec<T: Element>(values: Vec<T>) -> Bytes {
    Bytes::from_owner(PodVec(values))
}

fn aligned(data: Bytes, dtype: DType) -> Bytes {
    if (data.as_ptr() as usize).is_multiple_of(dtype.size()) {
        return data;
    }
    // Rare: a buffer from an unaligned source. One copy into aligned storage.
    match dtype {
        DType::I32 => bytes_from_vec::<i32>(bytemuck::pod_collect_to_vec(&data)),
        DType::I64 => bytes_from_vec::<i64>(bytemuck::pod_collect_to_vec(&data)),
    }
}

impl Tensor {
    /// A `[rows, cols]` tensor from row-major values.
    pub fn from_vec<T: Element>(
        values: Vec<T>,
        rows: usize,
        cols: usize,
    ) -> Result<Self, BatchError> {
        Self::from_bytes(bytes_from_vec(values), T::DTYPE, rows, cols)
    }

    /// A 1-D tensor (a per-sample field, or one document's tokens).
    pub fn vector<T: Element>(values: Vec<T>) -> Self {
        let len = values.len();
        Self {
            data: bytes_from_vec(values),
            dtype: T::DTYPE,
            layout: Layout::Vector { len },
        }
    }

    /// A `[rows, cols]` tensor over native-endian bytes, without copying them when aligned.
    pub fn from_bytes(
        data: Bytes,
        dtype: DType,
        rows: usize,
        cols: usize,
    ) -> Result<Self, BatchError> {
        let elements = rows.checked_mul(cols).ok_or(BatchError::BufferSize {
            field: "<tensor>".into(),
            bytes: data.len(),
            elements: usize::MAX,
            dtype,
        })?;
        check_size(&data, dtype, elements)?;
        Ok(Self {
            data: aligned(data, dtype),
            dtype,
            layout: Layout::Matrix {
                rows,
                cols,
                row_stride: cols,
            },
        })
    }

    /// A 1-D tensor over native-endian bytes, without copying them when aligned.
    pub fn vector_from_bytes(data: Bytes, dtype: DType) -> Result<Self, BatchError> {
        if !data.len().is_multiple_of(dtype.size()) {
            return Err(BatchError::BufferSize {
                field: "<tensor>".into(),
                bytes: data.len(),
                elements: data.len() / dtype.size(),
                dtype,
            });
        }
        let len = data.len() / dtype.size();
        Ok(Self {
            data: aligned(data, dtype),
            dtype,
            layout: Layout::Vector { len },
        })
    }

    /// A `[rows, cols]` tensor filled with `value`.
    pub fn full(dtype: DType, rows: usize, cols: usize, value: i64) -> Result<Self, BatchError> {
        match dtype {
            DType::I32 => {
                let v = i32::try_from(value).map_err(|_| BatchError::ValueOutOfRange {
                    field: "<fill>".into(),
                    value,
                    dtype,
                })?;
                Self::from_vec(vec![v; rows * cols], rows, cols)
            }
            DType::I64 => Self::from_vec(vec![value; rows * cols], rows, cols),
        }
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Logical shape.
    pub fn shape(&self) -> Shape {
        match self.layout {
            Layout::Vector { len } => Shape::Vector { len },
            Layout::Matrix { rows, cols, .. } => Shape::Matrix { rows, cols },
        }
    }

    /// Rows: the first dimension (a vector's length).
    pub fn rows(&self) -> usize {
        match self.layout {
            Layout::Vector { len } => len,
            Layout::Matrix { rows, .. } => rows,
        }
    }

    /// Columns of a sequence-shaped tensor; `None` for a vector.
    pub fn cols(&self) -> Option<usize> {
        match self.layout {
            Layout::Vector { .. } => None,
            Layout::Matrix { cols, .. } => Some(cols),
        }
    }

    /// Number of logical elements.
    pub fn numel(&self) -> usize {
        match self.layout {
            Layout::Vector { len } => len,
            Layout::Matrix { rows, cols, .. } => rows * cols,
        }
    }

    /// Whether the elements are stored densely in row-major order (ready to hand to a
    /// framework as one buffer).
    pub fn is_contiguous(&self) -> bool {
        match self.layout {
            Layout::Vector { .. } => true,
            Layout::Matrix {
                rows,
                cols,
                row_stride,
            } => rows <= 1 || row_stride == cols,
        }
    }

    /// Elements between consecutive entries along each dimension, PyTorch-style (`[row
    /// stride, 1]` for a matrix; a matrix whose columns were cut keeps its original row
    /// stride, which is how it stays a zero-copy view).
    pub fn strides(&self) -> Vec<usize> {
        match self.layout {
            Layout::Vector { .. } => vec![1],
            Layout::Matrix { row_stride, .. } => vec![row_stride, 1],
        }
    }

    /// The raw storage (including any stride gaps).
    pub fn storage(&self) -> Values<'_> {
        match self.dtype {
            DType::I32 => Values::I32(bytemuck::cast_slice(&self.data)),
            DType::I64 => Values::I64(bytemuck::cast_slice(&self.data)),
        }
    }

    /// The shared buffer behind this tensor (including stride gaps).
    pub fn buffer(&self) -> &Bytes {
        &self.data
    }

    /// Where row `row` starts in the storage, and its length (a vector is one row).
    fn row_range(&self, row: usize) -> Option<(usize, usize)> {
        match self.layout {
            Layout::Vector { len } => (row == 0).then_some((0, len)),
            Layout::Matrix {
                rows,
                cols,
                row_stride,
            } => (row < rows).then_some((row * row_stride, cols)),
        }
    }

    /// Row `row` of a matrix, or the whole vector for row 0 of a vector.
    pub fn row(&self, row: usize) -> Option<Values<'_>> {
        let (start, len) = self.row_range(row)?;
        Some(match self.storage() {
            Values::I32(v) => Values::I32(&v[start..start + len]),
            Values::I64(v) => Values::I64(&v[start..start + len]),
        })
    }

    /// Row `row` as a typed slice; `None` when out of range or `T` is not the dtype.
    pub fn typed_row<T: Element>(&self, row: usize) -> Option<&[T]> {
        if T::DTYPE != self.dtype {
            return None;
        }
        let (start, len) = self.row_range(row)?;
        let all: &[T] = bytemuck::cast_slice(&self.data);
        all.get(start..start + len)
    }

    /// Bytes of elements `start..end` of row `row`, without copying.
    pub(crate) fn row_span_bytes(&self, row: usize, start: usize, end: usize) -> Option<Bytes> {
        let (row_start, cols) = self.row_range(row)?;
        if start > end || end > cols {
            return None;
        }
        let size = self.dtype.size();
        Some(
            self.data
                .slice((row_start + start) * size..(row_start + end) * size),
        )
    }

    /// Element at `(row, col)` of a matrix (or `(i, 0)` of a vector), widened to `i64`.
    pub fn get(&self, row: usize, col: usize) -> Option<i64> {
        match self.layout {
            Layout::Vector { len } => {
                if col == 0 && row < len {
                    self.storage().get(row)
                } else {
                    None
                }
            }
            Layout::Matrix { .. } => self.row(row)?.get(col),
        }
    }

    /// All elements in row-major order, widened to `i64`.
    pub fn to_vec_i64(&self) -> Vec<i64> {
        let mut out = Vec::with_capacity(self.numel());
        for r in 0..self.row_count_for_iteration() {
            if let Some(row) = self.row(r) {
                out.extend(row.to_vec_i64());
            }
        }
        out
    }

    /// Matrix rows as nested vectors (a vector gives one row per element).
    pub fn to_rows_i64(&self) -> Vec<Vec<i64>> {
        match self.layout {
            Layout::Vector { .. } => self.to_vec_i64().into_iter().map(|x| vec![x]).collect(),
            Layout::Matrix { rows, .. } => (0..rows)
                .map(|r| self.row(r).map(|v| v.to_vec_i64()).unwrap_or_default())
                .collect(),
        }
    }

    fn row_count_for_iteration(&self) -> usize {
        match self.layout {
            Layout::Vector { .. } => 1,
            Layout::Matrix { rows, .. } => rows,
        }
    }

    /// A dense copy if strided, else a cheap clone.
    #[must_use]
    pub fn contiguous(&self) -> Tensor {
        if self.is_contiguous() {
            return self.trimmed();
        }
        match self.dtype {
            DType::I32 => self.gather::<i32>(),
            DType::I64 => self.gather::<i64>(),
        }
    }

    /// The dense row-major bytes of this tensor (zero-copy when already contiguous).
    pub fn to_contiguous_bytes(&self) -> Bytes {
        self.contiguous().data
    }

    fn trimmed(&self) -> Tensor {
        let bytes = self.numel() * self.dtype.size();
        let layout = match self.layout {
            Layout::Matrix { rows, cols, .. } => Layout::Matrix {
                rows,
                cols,
                row_stride: cols,
            },
            v @ Layout::Vector { .. } => v,
        };
        Tensor {
            data: self.data.slice(..bytes.min(self.data.len())),
            dtype: self.dtype,
            layout,
        }
    }

    fn gather<T: Element>(&self) -> Tensor {
        let (rows, cols, stride) = match self.layout {
            Layout::Matrix {
                rows,
                cols,
                row_stride,
            } => (rows, cols, row_stride),
            Layout::Vector { .. } => return self.clone(),
        };
        let src: &[T] = bytemuck::cast_slice(&self.data);
        let mut out = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            out.extend_from_slice(&src[r * stride..r * stride + cols]);
        }
        Tensor {
            data: bytes_from_vec(out),
            dtype: self.dtype,
            layout: Layout::Matrix {
                rows,
                cols,
                row_stride: cols,
            },
        }
    }

    /// The first `cols` columns of a matrix (all of them if it has fewer), without copying.
    /// A vector is returned unchanged.
    #[must_use]
    pub fn narrow_cols(&self, cols: usize) -> Tensor {
        match self.layout {
            Layout::Vector { .. } => self.clone(),
            Layout::Matrix {
                rows,
                cols: have,
                row_stride,
            } => {
                let cols = cols.min(have);
                let used = if rows == 0 {
                    0
                } else {
                    ((rows - 1) * row_stride + cols) * self.dtype.size()
                };
                Tensor {
                    data: self.data.slice(..used),
                    dtype: self.dtype,
                    layout: Layout::Matrix {
                        rows,
                        cols,
                        row_stride,
                    },
                }
            }
        }
    }

    /// Rows `start..end` of a matrix (elements of a vector), without copying.
    pub fn slice_rows(&self, start: usize, end: usize) -> Option<Tensor> {
        if start > end || end > self.rows() {
            return None;
        }
        let size = self.dtype.size();
        Some(match self.layout {
            Layout::Vector { .. } => Tensor {
                data: self.data.slice(start * size..end * size),
                dtype: self.dtype,
                layout: Layout::Vector { len: end - start },
            },
            Layout::Matrix {
                cols, row_stride, ..
            } => {
                let rows = end - start;
                let used = if rows == 0 {
                    0
                } else {
                    (rows - 1) * row_stride + cols
                };
                let from = start * row_stride * size;
                Tensor {
                    data: self.data.slice(from..from + used * size),
                    dtype: self.dtype,
                    layout: Layout::Matrix {
                        rows,
                        cols,
                        row_stride,
                    },
                }
            }
        })
    }

    /// Views the first `rows * cols` elements (row-major) as `[rows, cols]`; copies only when
    /// this tensor is strided.
    pub(crate) fn reshape_prefix(&self, rows: usize, cols: usize) -> Tensor {
        let dense = self.contiguous();
        let bytes = rows * cols * self.dtype.size();
        Tensor {
            data: dense.data.slice(..bytes),
            dtype: self.dtype,
            layout: Layout::Matrix {
                rows,
                cols,
                row_stride: cols,
            },
        }
    }
}

fn check_size(data: &Bytes, dtype: DType, elements: usize) -> Result<(), BatchError> {
    if elements.checked_mul(dtype.size()) == Some(data.len()) {
        Ok(())
    } else {
        Err(BatchError::BufferSize {
            field: "<tensor>".into(),
            bytes: data.len(),
            elements,
            dtype,
        })
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype)
            .field("shape", &self.shape().dims())
            .field("contiguous", &self.is_contiguous())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Tensor {
    /// Equal when dtype, shape and elements are equal (storage layout does not matter).
    fn eq(&self, other: &Self) -> bool {
        self.dtype == other.dtype
            && self.shape() == other.shape()
            && self.to_vec_i64() == other.to_vec_i64()
    }
}
