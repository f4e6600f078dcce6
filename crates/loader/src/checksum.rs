//! Checksums on the read path: seqwarm's row-group CRC32 from the footer
//! ([`seqwarm_format::checksum`]), checked against a row group's bytes before they are
//! decoded; and Parquet's page CRCs (verified by the page reader), whose failing page is found
//! for the error message.

use std::sync::Arc;

use bytes::Bytes;
use parquet::errors::ParquetError;
use parquet::file::serialized_reader::SerializedPageReader;
pub(crate) use seqwarm_format::checksum::row_group_range;
use seqwarm_format::checksum::{ROW_GROUP_CRC32_KEY, crc32};

use crate::catalog::{Shard, Unit};
use crate::error::{LoaderError, Result};
use crate::plain::ChunkAt;

/// Checks `bytes`, the row group's bytes, against the footer's CRC.
pub(crate) fn verify_row_group(
    shard: &Shard,
    unit: &Unit,
    expected: u32,
    bytes: &[u8],
) -> Result<()> {
    let actual = crc32(bytes);
    if actual == expected {
        return Ok(());
    }
    Err(LoaderError::Checksum {
        file: shard.file.display.clone(),
        row_group: unit.row_group,
        place: format!(
            "its {} bytes ({ROW_GROUP_CRC32_KEY} {expected:08x}, computed {actual:08x})",
            bytes.len()
        ),
    })
}

/// Whether the page reader refused a page for its CRC. Parquet reports it only as a message.
pub(crate) fn is_page_crc_error(error: &ParquetError) -> bool {
    error.to_string().contains("CRC checksum mismatch")
}

/// A failing page's error: which column and page, when its CRC failed.
pub(crate) fn page_error(shard: &Shard, unit: &Unit, column: &str, page: usize) -> LoaderError {
    LoaderError::Checksum {
        file: shard.file.display.clone(),
        row_group: unit.row_group,
        place: format!("page {page} of column `{column}`"),
    }
}

/// The first page of a column chunk (given its bytes, from `base`) that the page reader
/// refuses: what names the page when the decoder reports a CRC failure without one.
pub(crate) fn first_bad_page(
    base: u64,
    bytes: Bytes,
    column: &parquet::file::metadata::ColumnChunkMetaData,
    rows: usize,
) -> Option<usize> {
    let reader =
        SerializedPageReader::new(Arc::new(ChunkAt { base, bytes }), column, rows, None).ok()?;
    reader
        .enumerate()
        .find_map(|(index, page)| page.is_err().then_some(index))
}
