//! The flat layout's fast path: a token column stored PLAIN (no dictionary) is read page by
//! page straight into the token buffer, without Arrow's decoder. Uncompressed pages are views
//! of the fetched bytes: the only copy is the final one into an aligned buffer, when a row
//! group spans several pages.

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Encoding, Type as PhysicalType};
use parquet::column::page::Page;
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;
use seqwarm_batcher::{DType, Tensor};

/// A column chunk's bytes, addressed by file offset (what the page reader asks for).
pub(crate) struct ChunkAt {
    pub base: u64,
    pub bytes: Bytes,
}

impl Length for ChunkAt {
    fn len(&self) -> u64 {
        self.base + self.bytes.len() as u64
    }
}

impl ChunkAt {
    /// The bytes of `range` (file offsets), when the chunk holds all of them.
    pub(crate) fn range(&self, range: &std::ops::Range<u64>) -> Option<Bytes> {
        let length = usize::try_from(range.end.checked_sub(range.start)?).ok()?;
        self.slice(range.start, Some(length)).ok()
    }

    fn slice(&self, start: u64, length: Option<usize>) -> parquet::errors::Result<Bytes> {
        let from = usize::try_from(start.checked_sub(self.base).ok_or_else(|| eof(start))?)
            .map_err(|_| eof(start))?;
        let to = match length {
            Some(n) => from.checked_add(n).ok_or_else(|| eof(start))?,
            None => self.bytes.len(),
        };
        if from > self.bytes.len() || to > self.bytes.len() {
            return Err(eof(start));
        }
        Ok(self.bytes.slice(from..to))
    }
}

fn eof(at: u64) -> ParquetError {
    ParquetError::EOF(format!("offset {at} is outside the fetched column chunk"))
}

impl ChunkReader for ChunkAt {
    type T = bytes::buf::Reader<Bytes>;
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(bytes::Buf::reader(self.slice(start, None)?))
    }
    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.slice(start, Some(length))
    }
}

/// How the fast path stores one token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Width {
    /// PLAIN `INT32`: the page's values are the tensor's bytes (as `int32`).
    Int32,
    /// `FIXED_LEN_BYTE_ARRAY(2)`, little-endian `uint16` (the flat layout's `uint16`
    /// encoding): widened into the tensor.
    Uint16,
}

impl Width {
    /// Bytes per token on disk.
    pub(crate) fn bytes(self) -> usize {
        match self {
            Self::Int32 => 4,
            Self::Uint16 => 2,
        }
    }
}

/// Whether a column chunk can take the fast path, and how wide its tokens are: INT32 (read
/// as `int32`) or FIXED_LEN_BYTE_ARRAY(2) (`uint16`, read as either dtype), no dictionary,
/// PLAIN values.
pub(crate) fn eligible(column: &ColumnChunkMetaData, dtype: DType) -> Option<Width> {
    let width = match column.column_type() {
        // PLAIN is little-endian; the tensor is native-endian.
        PhysicalType::INT32 if dtype == DType::I32 => Width::Int32,
        PhysicalType::FIXED_LEN_BYTE_ARRAY if column.column_descr().type_length() == 2 => {
            Width::Uint16
        }
        _ => return None,
    };
    (cfg!(target_endian = "little")
        && column.dictionary_page_offset().is_none()
        && column
            .encodings()
            .all(|e| matches!(e, Encoding::PLAIN | Encoding::RLE)))
    .then_some(width)
}

/// The values of a column chunk read on the fast path.
#[derive(Debug)]
pub(crate) enum PlainValues {
    /// `int32` tokens, the tensor's bytes as they were read.
    Int32(Tensor),
    /// Little-endian `uint16` tokens, widened later a chunk at a time (`narrow.rs`).
    Uint16(Bytes),
}

/// The tokens of one column chunk, given its bytes (fetched from `column.byte_range()`)
/// (`width` from [`eligible`]). `max_def_level` is the column's (0 for a required
/// column); nulls are reported as `Err` with the first null's row.
pub(crate) fn decode_plain(
    bytes: Bytes,
    column: &ColumnChunkMetaData,
    rows: usize,
    max_def_level: i16,
    width: Width,
) -> Result<PlainValues, PlainError> {
    let (base, _) = column.byte_range();
    let reader = SerializedPageReader::new(Arc::new(ChunkAt { base, bytes }), column, rows, None)
        .map_err(PlainError::Parquet)?;
    let mut pages: Vec<Bytes> = Vec::new();
    let mut values = 0usize;
    for (index, page) in reader.enumerate() {
        let page = page.map_err(|source| PlainError::Page { index, source })?;
        match page {
            Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if encoding != Encoding::PLAIN {
                    return Err(PlainError::NotPlain);
                }
                let data = if max_def_level > 0 {
                    // V1 pages prefix their definition levels with a 4-byte length; with no
                    // nulls (checked through the value count below) they can be skipped.
                    let len = buf
                        .get(..4)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                        .ok_or(PlainError::Malformed)?;
                    buf.slice((4 + len).min(buf.len())..)
                } else {
                    buf
                };
                values += num_values as usize;
                pages.push(data);
            }
            Page::DataPageV2 {
                buf,
                num_values,
                num_nulls,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                if encoding != Encoding::PLAIN {
                    return Err(PlainError::NotPlain);
                }
                if num_nulls > 0 {
                    return Err(PlainError::Nulls);
                }
                let skip = (def_levels_byte_len + rep_levels_byte_len) as usize;
                values += num_values as usize;
                pages.push(buf.slice(skip.min(buf.len())..));
            }
            Page::DictionaryPage { .. } => return Err(PlainError::NotPlain),
        }
    }
    let bytes_total: usize = pages.iter().map(Bytes::len).sum();
    let size = width.bytes();
    if values != rows || Some(bytes_total) != rows.checked_mul(size) {
        // Fewer value bytes than values means nulls (V1 pages), or a malformed chunk.
        return Err(
            if values.checked_mul(size).is_some_and(|n| bytes_total < n) {
                PlainError::Nulls
            } else {
                PlainError::Malformed
            },
        );
    }
    if width == Width::Uint16 {
        return Ok(PlainValues::Uint16(match pages.as_slice() {
            [only] => only.clone(),
            _ => Bytes::from(pages.concat()),
        }));
    }
    if let [only] = pages.as_slice() {
        // Copied once into aligned storage only when the page is not 4-byte aligned.
        return Tensor::vector_from_bytes(only.clone(), DType::I32)
            .map(PlainValues::Int32)
            .map_err(|_| PlainError::Malformed);
    }
    // Byte-wise concatenation is a plain memcpy per page; the allocator hands out 16-byte
    // aligned blocks, and `vector_from_bytes` re-aligns (copies) in the rare case it does not.
    let mut out: Vec<u8> = Vec::with_capacity(bytes_total);
    for page in &pages {
        out.extend_from_slice(page);
    }
    Tensor::vector_from_bytes(Bytes::from(out), DType::I32)
        .map(PlainValues::Int32)
        .map_err(|_| PlainError::Malformed)
}

/// Why the fast path could not read a chunk.
#[derive(Debug)]
pub(crate) enum PlainError {
    /// Not PLAIN after all: use the general reader.
    NotPlain,
    /// The column has nulls: the general reader reports them with their row.
    Nulls,
    /// Page data that does not add up.
    Malformed,
    /// The page reader could not open the chunk.
    Parquet(ParquetError),
    /// Page `index` (from 0) could not be read: its CRC failed, or its header is corrupt.
    Page {
        /// The page.
        index: usize,
        /// The page reader's error.
        source: ParquetError,
    },
}
