//! seqwarm's own row-group checksums: a CRC32 of each row group's bytes, in the footer.
//!
//! Parquet pages may carry a CRC32 in their headers, and the loader verifies them when they
//! do, but arrow-rs cannot write them (its page writer leaves the field empty). So that the
//! shards seqwarm writes are protected too, [`crate::ShardWriter`] records a CRC32 (IEEE, as
//! Parquet's own) of every row group's column-chunk bytes under [`ROW_GROUP_CRC32_KEY`], and
//! the loader checks a row group against it before decoding: a flipped bit is an error that
//! names the file and row group, never changed tokens.
//!
//! The value is one lowercase hexadecimal CRC per row group, comma-separated, in row-group
//! order. A row group's bytes run from its first column chunk's start to its last one's end.

use std::io::Write;
use std::ops::Range;

use parquet::file::metadata::RowGroupMetaData;

/// Key holding the CRC32 of every row group's bytes ([`encode_row_group_crcs`]).
pub const ROW_GROUP_CRC32_KEY: &str = "seqwarm.row_group_crc32";

/// The CRC32 of `bytes` (IEEE polynomial, as Parquet's page checksums).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A row group's bytes, which its CRC covers: from its first column chunk's start to its last
/// one's end. `None` when the footer's ranges overflow (a corrupt footer).
pub fn row_group_range(row_group: &RowGroupMetaData) -> Option<Range<u64>> {
    let mut range: Option<Range<u64>> = None;
    for column in row_group.columns() {
        let (start, length) = column.byte_range();
        let end = start.checked_add(length)?;
        range = Some(match range {
            Some(r) => r.start.min(start)..r.end.max(end),
            None => start..end,
        });
    }
    range
}

/// The footer value for `crcs`, one per row group.
pub fn encode_row_group_crcs(crcs: &[u32]) -> String {
    crcs.iter()
        .map(|c| format!("{c:08x}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The CRCs of a footer value; `None` when it is not one.
pub fn decode_row_group_crcs(text: &str) -> Option<Vec<u32>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',')
        .map(|c| {
            (c.len() == 8)
                .then(|| u32::from_str_radix(c, 16).ok())
                .flatten()
        })
        .collect()
}

/// A writer that hashes what passes through it, in segments cut by [`CrcTee::cut`]: what the
/// shard writer puts under its Parquet writer to checksum each row group as it is written,
/// without reading the file back.
pub(crate) struct CrcTee<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    /// Where the current segment starts, and the bytes written so far.
    segment_start: u64,
    written: u64,
}

impl<W: Write> CrcTee<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: crc32fast::Hasher::new(),
            segment_start: 0,
            written: 0,
        }
    }

    /// Ends the current segment: its byte range and CRC. The caller flushes every buffer above
    /// this writer first, so that the segment holds exactly what was written before.
    pub(crate) fn cut(&mut self) -> (Range<u64>, u32) {
        let hasher = std::mem::take(&mut self.hasher);
        let range = self.segment_start..self.written;
        self.segment_start = self.written;
        (range, hasher.finalize())
    }
}

impl<W: Write> Write for CrcTee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn segments_hash_exactly_what_was_written_between_cuts() {
        let mut tee = CrcTee::new(Vec::new());
        tee.write_all(b"PAR1").unwrap();
        let (magic, _) = tee.cut();
        tee.write_all(b"row group one").unwrap();
        tee.write_all(b" and more").unwrap();
        let (range, crc) = tee.cut();
        assert_eq!((magic, range.clone()), (0..4, 4..26));
        assert_eq!(crc, crc32(&tee.inner[4..26]));
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    proptest! {
        #[test]
        fn crcs_round_trip(crcs in proptest::collection::vec(any::<u32>(), 0..50)) {
            prop_assert_eq!(decode_row_group_crcs(&encode_row_group_crcs(&crcs)), Some(crcs));
        }

        #[test]
        fn any_text_decodes_or_is_refused(text in ".{0,40}") {
            let _ = decode_row_group_crcs(&text);
        }
    }
}
