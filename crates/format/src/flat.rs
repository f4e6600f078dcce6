//! seqwarm's fast ("flat") shard format: metadata keys and the document-length encoding.
//!
//! A flat shard stores one token per Parquet row in an integer column (`tokens`). Document
//! boundaries live in the file's key-value metadata rather than in a second column, because
//! decoding a boolean column in arrow-rs costs about half as much again as the tokens
//! themselves (see docs/benchmarks.md): the footer is read once per shard, the boundaries
//! cost nothing per row group. Row groups always start at a document boundary, so each row
//! group can be read, shuffled and assigned to a rank on its own. See docs/formats.md.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Key naming the layout and its version; value [`FLAT_LAYOUT_V1`].
pub const LAYOUT_KEY: &str = "seqwarm.layout";
/// The flat layout, version 1.
pub const FLAT_LAYOUT_V1: &str = "flat-v1";
/// Key holding the document lengths of every row group, see [`encode_document_lengths`].
pub const DOCUMENT_LENGTHS_KEY: &str = "seqwarm.document_lengths";

fn push_leb128(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Encodes per-row-group document lengths: for each row group, LEB128 of its document count
/// then LEB128 of each length; the bytes base64-encoded (about 2 bytes per document).
pub fn encode_document_lengths(row_groups: &[Vec<u64>]) -> String {
    let mut bytes = Vec::new();
    for lengths in row_groups {
        push_leb128(&mut bytes, lengths.len() as u64);
        for &len in lengths {
            push_leb128(&mut bytes, len);
        }
    }
    STANDARD.encode(bytes)
}

/// Decodes [`encode_document_lengths`]' output; `None` when malformed.
pub fn decode_document_lengths(text: &str) -> Option<Vec<Vec<u64>>> {
    let bytes = STANDARD.decode(text).ok()?;
    let mut at = 0;
    let mut out = Vec::new();
    while at < bytes.len() {
        let count = usize::try_from(read_leb128(&bytes, &mut at)?).ok()?;
        let mut lengths = Vec::with_capacity(count.min(bytes.len()));
        for _ in 0..count {
            lengths.push(read_leb128(&bytes, &mut at)?);
        }
        out.push(lengths);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{decode_document_lengths, encode_document_lengths};

    proptest! {
        #[test]
        fn document_lengths_round_trip(groups in proptest::collection::vec(proptest::collection::vec(0u64..1_000_000_000, 0..50), 0..10)) {
            let text = encode_document_lengths(&groups);
            prop_assert_eq!(decode_document_lengths(&text), Some(groups));
        }

        /// Any footer value decodes or is refused, never panics; what decodes re-encodes to
        /// the same lengths (bounded fuzzing of the footer's one hand-written decoder).
        #[test]
        fn arbitrary_footer_values_decode_or_are_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
            text in ".{0,40}",
        ) {
            use base64::Engine;
            let encoded = base64::engine::general_purpose::STANDARD.encode(&bytes);
            for value in [encoded.as_str(), text.as_str()] {
                if let Some(groups) = decode_document_lengths(value) {
                    prop_assert_eq!(decode_document_lengths(&encode_document_lengths(&groups)), Some(groups));
                }
            }
        }
    }

    #[test]
    fn malformed_input_is_rejected() {
        assert_eq!(decode_document_lengths("not base64!"), None);
        // A count of 2 followed by one length only.
        assert_eq!(
            decode_document_lengths(&base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                [2u8, 5]
            )),
            None
        );
    }
}
