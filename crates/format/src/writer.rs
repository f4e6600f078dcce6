//! Writing token shards in either layout (used by `seqwarm preprocess`, the demo corpus, tests
//! and benches).

use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, FixedSizeBinaryArray, Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use serde::{Deserialize, Serialize};

use crate::checksum::{CrcTee, ROW_GROUP_CRC32_KEY, encode_row_group_crcs, row_group_range};
use crate::error::FormatError;
use crate::flat::{DOCUMENT_LENGTHS_KEY, FLAT_LAYOUT_V1, LAYOUT_KEY, encode_document_lengths};

type Result<T> = std::result::Result<T, FormatError>;

/// The flat layout hands tokens to the Parquet writer in pieces of this many (the last of a
/// row group shorter), so that a huge document (one 49 MB line) is not copied whole into Arrow
/// arrays: the open row group's encoded page is then what grows with it, at the encoding's
/// bytes per token. A multiple of Parquet's 1 024-value mini-batch (see `write_document`).
const FLAT_CHUNK_TOKENS: usize = 1 << 20;

/// Which layout a [`ShardWriter`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputLayout {
    /// Hugging Face style: `input_ids: list<int32>`, one document per row.
    Rows,
    /// seqwarm's fast layout: `tokens: int32`, boundaries in the footer (`docs/formats.md`).
    #[default]
    Flat,
}

/// How a [`ShardWriter`] stores the token column. `docs/benchmarks.md` ("Shard encodings")
/// measures each in bytes per token against tokens per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShardEncoding {
    /// Dictionary-encoded and zstd-compressed `int32`: about 1.6-2 bytes per token on disk,
    /// decoded by Arrow (the default before `uint16`; any vocabulary).
    Zstd,
    /// PLAIN and uncompressed `int32` (flat layout): 4 bytes per token on disk, read straight
    /// into token buffers without Arrow's decoder (`docs/formats.md`).
    Plain,
    /// Flat layout, ids below 65 536: each token as 2 little-endian bytes (a Parquet
    /// `FIXED_LEN_BYTE_ARRAY(2)` column), PLAIN and uncompressed, one page per row group: the
    /// bytes of a raw `uint16` token file, inside Parquet, widened to `int32` on read at copy
    /// speed (`docs/formats.md`).
    Uint16,
    /// As [`ShardEncoding::Uint16`], each page LZ4-compressed (`LZ4_RAW`).
    Uint16Lz4,
    /// As [`ShardEncoding::Uint16`], each page zstd-compressed (level 1).
    Uint16Zstd,
}

impl ShardEncoding {
    /// The largest vocabulary [`ShardEncoding::Uint16`] holds.
    pub const UINT16_VOCABULARY: u64 = 1 << 16;

    /// The default encoding for token ids below `vocab_size` in `layout`: `uint16` where it
    /// fits (flat layout, at most 65 536 ids: as compact as a raw `uint16` file and the
    /// fastest to read), else dictionary + zstd.
    pub fn default_for(layout: OutputLayout, vocab_size: u64) -> Self {
        if layout == OutputLayout::Flat && vocab_size <= Self::UINT16_VOCABULARY {
            Self::Uint16
        } else {
            Self::Zstd
        }
    }

    /// The name on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Zstd => "zstd",
            Self::Plain => "plain",
            Self::Uint16 => "uint16",
            Self::Uint16Lz4 => "uint16_lz4",
            Self::Uint16Zstd => "uint16_zstd",
        }
    }

    /// Whether tokens are stored as 2-byte little-endian values.
    pub fn is_uint16(self) -> bool {
        matches!(self, Self::Uint16 | Self::Uint16Lz4 | Self::Uint16Zstd)
    }
}

/// What a finished shard holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// Documents written.
    pub documents: u64,
    /// Tokens written.
    pub tokens: u64,
    /// Row groups written.
    pub row_groups: u64,
    /// Documents in each row group, in order (what a manifest records so that a reader can
    /// plan without the footer).
    pub row_group_documents: Vec<u64>,
    /// Tokens in each row group, in order.
    pub row_group_tokens: Vec<u64>,
}

/// Writes documents into one Parquet shard. Row groups hold whole documents and close once
/// they reach `row_group_tokens` tokens; the CRC32 of every row group's bytes goes into the
/// footer ([`crate::checksum`]).
pub struct ShardWriter<W: Write + Send> {
    writer: ArrowWriter<CrcTee<W>>,
    schema: Arc<Schema>,
    layout: OutputLayout,
    encoding: ShardEncoding,
    row_group_tokens: usize,
    /// Tokens of the open row group not yet handed to the Parquet writer (flat layout: fewer
    /// than [`FLAT_CHUNK_TOKENS`]; rows layout: the whole row group).
    tokens: Vec<i32>,
    /// Tokens in the open row group, handed over or not.
    in_row_group: usize,
    /// [`FLAT_CHUNK_TOKENS`] (tests set another to compare with one write per row group).
    piece_tokens: usize,
    lengths: Vec<u64>,
    all_lengths: Vec<Vec<u64>>,
    crcs: Vec<u32>,
    summary: ShardSummary,
    file: String,
}

fn write_error(file: &str, e: impl std::fmt::Display) -> FormatError {
    FormatError::Write {
        file: file.into(),
        reason: e.to_string(),
    }
}

impl<W: Write + Send> ShardWriter<W> {
    /// A writer in `layout`, dictionary + zstd (any vocabulary); `file` names the output in
    /// errors.
    pub fn new(out: W, layout: OutputLayout, row_group_tokens: usize, file: &str) -> Result<Self> {
        Self::with_encoding(out, layout, row_group_tokens, ShardEncoding::Zstd, file)
    }

    /// A writer with a chosen token encoding.
    pub fn with_encoding(
        out: W,
        layout: OutputLayout,
        row_group_tokens: usize,
        encoding: ShardEncoding,
        file: &str,
    ) -> Result<Self> {
        if layout == OutputLayout::Rows && encoding.is_uint16() {
            return Err(write_error(
                file,
                "the uint16 encoding is for the flat layout only (rows shards are int32 lists)",
            ));
        }
        let field = match layout {
            OutputLayout::Flat if encoding.is_uint16() => {
                Field::new("tokens", DataType::FixedSizeBinary(2), false)
            }
            OutputLayout::Flat => Field::new("tokens", DataType::Int32, false),
            OutputLayout::Rows => Field::new(
                "input_ids",
                DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
                false,
            ),
        };
        let (compression, dictionary) = match encoding {
            ShardEncoding::Zstd => (Compression::ZSTD(ZstdLevel::default()), true),
            ShardEncoding::Plain | ShardEncoding::Uint16 => (Compression::UNCOMPRESSED, false),
            ShardEncoding::Uint16Lz4 => (Compression::LZ4_RAW, false),
            ShardEncoding::Uint16Zstd => (
                Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()),
                false,
            ),
        };
        let mut props = WriterProperties::builder()
            .set_compression(compression)
            .set_dictionary_enabled(dictionary)
            // Row groups are closed by this writer at document boundaries, never by size.
            .set_max_row_group_row_count(None)
            .set_max_row_group_bytes(None);
        if encoding != ShardEncoding::Zstd {
            // One page per row group: the loader's fast path then hands out the page's values
            // in place (arrow-rs would otherwise cut a page every 20 000 values, and the
            // pages would have to be concatenated).
            props = props
                .set_data_page_size_limit(usize::MAX)
                .set_data_page_row_count_limit(usize::MAX);
        }
        if encoding.is_uint16() {
            // Byte-wise minima and maxima of 2-byte values would mean nothing to a reader.
            props = props.set_statistics_enabled(EnabledStatistics::None);
        }
        let props = props.build();
        let schema = Arc::new(Schema::new(vec![field]));
        let mut writer = ArrowWriter::try_new(CrcTee::new(out), Arc::clone(&schema), Some(props))
            .map_err(|e| write_error(file, e))?;
        // The magic bytes: not part of any row group.
        writer.sync().map_err(|e| write_error(file, e))?;
        writer.inner_mut().cut();
        Ok(Self {
            writer,
            schema,
            layout,
            encoding,
            row_group_tokens: row_group_tokens.max(1),
            tokens: Vec::new(),
            in_row_group: 0,
            piece_tokens: FLAT_CHUNK_TOKENS,
            lengths: Vec::new(),
            all_lengths: Vec::new(),
            crcs: Vec::new(),
            summary: ShardSummary::default(),
            file: file.into(),
        })
    }

    /// Adds one document. With [`ShardEncoding::Uint16`], an id outside `0..65536` is an
    /// error (nothing of the document is written).
    pub fn write_document(&mut self, tokens: &[i32]) -> Result<()> {
        if self.encoding.is_uint16()
            && let Some(token) = tokens.iter().find(|&&t| u16::try_from(t).is_err())
        {
            return Err(write_error(
                &self.file,
                format!(
                    "document {} holds token id {token}, which the uint16 encoding cannot \
                     store (ids 0..65536); use --encoding zstd or plain",
                    self.summary.documents
                ),
            ));
        }
        if self.layout == OutputLayout::Flat {
            // Into the open row group in whole pieces, never a copy of the whole document. The
            // pieces are multiples of Parquet's mini-batch of 1 024 values counted from the row
            // group's start, so page boundaries (dictionary encoding) fall where one write of
            // the whole row group puts them: the bytes are the same.
            let mut rest = tokens;
            while !rest.is_empty() {
                let room = self.piece_tokens - self.tokens.len();
                let (now, later) = rest.split_at(room.min(rest.len()));
                self.tokens.extend_from_slice(now);
                rest = later;
                if self.tokens.len() == self.piece_tokens {
                    let piece = std::mem::take(&mut self.tokens);
                    self.write_flat_piece(&piece)?;
                }
            }
        } else {
            self.tokens.extend_from_slice(tokens);
        }
        self.in_row_group += tokens.len();
        self.lengths.push(tokens.len() as u64);
        self.summary.documents += 1;
        self.summary.tokens += tokens.len() as u64;
        if self.in_row_group >= self.row_group_tokens {
            self.flush_row_group()?;
        }
        Ok(())
    }

    /// Tokens of the open row group (flat layout) to the Parquet writer, which encodes them
    /// into the row group's page; the row group stays open.
    fn write_flat_piece(&mut self, tokens: &[i32]) -> Result<()> {
        if tokens.is_empty() {
            return Ok(());
        }
        let array: ArrayRef = if self.encoding.is_uint16() {
            // Checked in write_document: every id fits.
            let bytes: Vec<u8> = tokens
                .iter()
                .flat_map(|&t| (t as u16).to_le_bytes())
                .collect();
            Arc::new(
                FixedSizeBinaryArray::try_new(2, bytes.into(), None)
                    .map_err(|e| write_error(&self.file, e))?,
            )
        } else {
            Arc::new(Int32Array::from(tokens.to_vec()))
        };
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![array])
            .map_err(|e| write_error(&self.file, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| write_error(&self.file, e))
    }

    /// Tokens written so far (buffered included).
    pub fn tokens(&self) -> u64 {
        self.summary.tokens
    }

    fn flush_row_group(&mut self) -> Result<()> {
        if self.lengths.is_empty() {
            return Ok(());
        }
        let tokens = std::mem::take(&mut self.tokens);
        let lengths = std::mem::take(&mut self.lengths);
        self.in_row_group = 0;
        match self.layout {
            OutputLayout::Flat => self.write_flat_piece(&tokens)?,
            OutputLayout::Rows => {
                let mut builder = ListBuilder::new(Int32Builder::with_capacity(tokens.len()));
                let mut at = 0;
                for &len in &lengths {
                    let len = usize::try_from(len).unwrap_or(0);
                    builder.values().append_slice(&tokens[at..at + len]);
                    builder.append(true);
                    at += len;
                }
                let array: ArrayRef = Arc::new(builder.finish());
                let batch = RecordBatch::try_new(Arc::clone(&self.schema), vec![array])
                    .map_err(|e| write_error(&self.file, e))?;
                self.writer
                    .write(&batch)
                    .map_err(|e| write_error(&self.file, e))?;
            }
        }
        self.writer
            .flush()
            .map_err(|e| write_error(&self.file, e))?;
        self.checksum_row_group()?;
        self.summary.row_group_documents.push(lengths.len() as u64);
        self.summary
            .row_group_tokens
            .push(lengths.iter().sum::<u64>());
        self.all_lengths.push(lengths);
        self.summary.row_groups += 1;
        Ok(())
    }

    /// Records the CRC of the row group just flushed: the bytes the tee saw since the last
    /// one, which must be exactly the row group's column chunks.
    fn checksum_row_group(&mut self) -> Result<()> {
        self.writer.sync().map_err(|e| write_error(&self.file, e))?;
        let (written, crc) = self.writer.inner_mut().cut();
        let chunks = self
            .writer
            .flushed_row_groups()
            .last()
            .and_then(row_group_range);
        if chunks.as_ref() != Some(&written) {
            return Err(write_error(
                &self.file,
                format!(
                    "row group {} spans {chunks:?} but {written:?} was written for it; \
                     cannot checksum it",
                    self.crcs.len()
                ),
            ));
        }
        self.crcs.push(crc);
        Ok(())
    }

    /// Writes the last row group and the footer.
    pub fn finish(mut self) -> Result<ShardSummary> {
        self.flush_row_group()?;
        self.writer.append_key_value_metadata(KeyValue::new(
            ROW_GROUP_CRC32_KEY.into(),
            encode_row_group_crcs(&self.crcs),
        ));
        if self.layout == OutputLayout::Flat {
            self.writer.append_key_value_metadata(KeyValue::new(
                LAYOUT_KEY.into(),
                FLAT_LAYOUT_V1.to_string(),
            ));
            self.writer.append_key_value_metadata(KeyValue::new(
                DOCUMENT_LENGTHS_KEY.into(),
                encode_document_lengths(&self.all_lengths),
            ));
        }
        self.writer
            .close()
            .map_err(|e| write_error(&self.file, e))?;
        Ok(self.summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    /// Issue 22, point 9: one huge document (a 49 MB line) was copied whole into Arrow arrays
    /// (about 32 bytes a token at once). It now goes to the open row group in pieces: the
    /// shard still holds each row group as one page of whole documents, the same tokens.
    /// Pieces change no byte: the same documents written in pieces and in one write per row
    /// group (the writer before pieces) give the same file, in every encoding (dictionary
    /// encoding cuts its pages by Parquet's 1 024-value mini-batches).
    #[test]
    fn pieces_give_the_same_bytes_as_one_write_per_row_group() {
        let docs: Vec<Vec<i32>> = (0..40)
            .map(|d| {
                (0..=(d * 7_919 % 60_000))
                    .map(|i| (i * 31 + d) % 40_000)
                    .collect()
            })
            .collect();
        for encoding in [
            ShardEncoding::Uint16,
            ShardEncoding::Plain,
            ShardEncoding::Zstd,
        ] {
            let write = |piece_tokens: usize| {
                let mut out = Vec::new();
                let mut writer = ShardWriter::with_encoding(
                    &mut out,
                    OutputLayout::Flat,
                    900_000,
                    encoding,
                    "t",
                )
                .unwrap();
                writer.piece_tokens = piece_tokens;
                for doc in &docs {
                    writer.write_document(doc).unwrap();
                }
                writer.finish().unwrap();
                out
            };
            assert_eq!(write(3 * 1024), write(usize::MAX), "{encoding:?}");
        }
    }

    #[test]
    fn a_document_larger_than_a_piece_is_written_in_pieces_into_one_page() {
        let huge: Vec<i32> = (0..(FLAT_CHUNK_TOKENS * 2 + 12_345))
            .map(|i| (i % 50_000) as i32)
            .collect();
        let docs: Vec<Vec<i32>> = vec![vec![1, 2, 3], huge, vec![7; 10], vec![9; 5]];
        for encoding in [
            ShardEncoding::Uint16,
            ShardEncoding::Plain,
            ShardEncoding::Zstd,
        ] {
            let mut out = Vec::new();
            let mut writer =
                ShardWriter::with_encoding(&mut out, OutputLayout::Flat, 1_000, encoding, "t")
                    .unwrap();
            for doc in &docs {
                writer.write_document(doc).unwrap();
            }
            let summary = writer.finish().unwrap();
            // Row groups close at the first document boundary past 1 000 tokens.
            assert_eq!(summary.row_group_documents, vec![2, 2], "{encoding:?}");
            let bytes = bytes::Bytes::from(out);
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes.clone())
                .unwrap()
                .build()
                .unwrap();
            let mut tokens = Vec::new();
            for batch in reader {
                let column = batch.unwrap().column(0).clone();
                if let Some(fixed) = column.as_any().downcast_ref::<FixedSizeBinaryArray>() {
                    tokens.extend((0..fixed.len()).map(|i| {
                        i32::from(u16::from_le_bytes([fixed.value(i)[0], fixed.value(i)[1]]))
                    }));
                } else {
                    let ints = column.as_any().downcast_ref::<Int32Array>().unwrap();
                    tokens.extend(ints.values().iter().copied());
                }
            }
            assert_eq!(tokens, docs.concat(), "{encoding:?}");
            if encoding != ShardEncoding::Zstd {
                // One data page per row group, as the loader's fast path reads it.
                let file = SerializedFileReader::new(bytes).unwrap();
                for g in 0..file.num_row_groups() {
                    let mut pages = file
                        .get_row_group(g)
                        .unwrap()
                        .get_column_page_reader(0)
                        .unwrap();
                    let mut data_pages = 0;
                    while let Some(page) = pages.get_next_page().unwrap() {
                        if matches!(
                            page.page_type(),
                            parquet::basic::PageType::DATA_PAGE
                                | parquet::basic::PageType::DATA_PAGE_V2
                        ) {
                            data_pages += 1;
                        }
                    }
                    assert_eq!(data_pages, 1, "{encoding:?} row group {g}");
                }
            }
        }
    }
}
