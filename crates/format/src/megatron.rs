//! Megatron-LM's indexed datasets (`prefix.bin` + `prefix.idx`, `MMIDIDX` version 1, as
//! `megatron/core/datasets/indexed_dataset.py` writes them): the `.bin` is a headerless array
//! of token ids, the `.idx` gives each sequence's length and byte offset, and which sequences
//! make each document. Documents come from the index, not from an EOS (Megatron appends one only
//! with `--append-eod`).
//!
//! Sans IO: [`megatron_index`] reads an `.idx` file's bytes and checks them against the size of
//! its `.bin`, so that a stale or mismatched pair is an error before any token is read.

use crate::error::FormatError;
use crate::raw_tokens::TokenDtype;

/// The magic an `.idx` file starts with.
pub const MEGATRON_INDEX_MAGIC: &[u8] = b"MMIDIDX\x00\x00";

/// A Megatron `.idx` file, checked against its `.bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MegatronIndex {
    /// The `.bin`'s token width: Megatron's `uint16` (code 8) or `int32` (code 4, read as
    /// `uint32`: the same bits for every id a vocabulary has).
    pub dtype: TokenDtype,
    /// Whether the ids are Megatron's signed `int32` (an id of 2^31 or more is then negative:
    /// the reader refuses it).
    pub signed: bool,
    /// Tokens in the `.bin`.
    pub tokens: u64,
    /// The end (in tokens, exclusive) of every document, in order.
    pub document_ends: Vec<u64>,
}

/// Megatron's dtype codes (`DType` in `indexed_dataset.py`) that hold token ids.
fn dtype_of(code: u8) -> Option<(TokenDtype, bool)> {
    match code {
        8 => Some((TokenDtype::Uint16, false)),
        4 => Some((TokenDtype::Uint32, true)),
        _ => None,
    }
}

/// A little-endian reader over the `.idx` bytes that names the offset of what is missing.
struct Cursor<'a> {
    file: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FormatError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(index_error(
                self.file,
                self.bytes.len() as u64,
                format!(
                    "cut short: {what} needs {n} bytes from byte {}, the file has {}",
                    self.at,
                    self.bytes.len()
                ),
            ));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u64(&mut self, what: &str) -> Result<u64, FormatError> {
        let b = self.take(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }
}

fn index_error(file: &str, offset: u64, reason: impl Into<String>) -> FormatError {
    FormatError::RawTokens {
        file: file.to_string(),
        offset,
        reason: reason.into(),
    }
}

/// Reads a Megatron `.idx` file (`idx_file` names it in errors) and checks it against its
/// `.bin` of `bin_len` bytes: the magic and version, a token dtype, sequences laid back to back
/// from byte 0 to the end of the `.bin` (Megatron's builder writes them so; anything else is a
/// pair that does not match), and document indices that run from 0 to the last sequence.
/// `expected`, when given, is the width the run was told the tokens have.
pub fn megatron_index(
    idx_file: &str,
    idx: &[u8],
    bin_len: u64,
    expected: Option<TokenDtype>,
) -> Result<MegatronIndex, FormatError> {
    let err = |offset: usize, reason: String| index_error(idx_file, offset as u64, reason);
    let mut cursor = Cursor {
        file: idx_file,
        bytes: idx,
        at: 0,
    };
    if cursor.take(MEGATRON_INDEX_MAGIC.len(), "the magic")? != MEGATRON_INDEX_MAGIC {
        return Err(err(0, "not a Megatron index (no MMIDIDX magic)".into()));
    }
    let version = cursor.u64("the version")?;
    if version != 1 {
        return Err(err(9, format!("index version {version} is unknown (1 is)")));
    }
    let code = cursor.take(1, "the dtype code")?[0];
    let (dtype, signed) = dtype_of(code).ok_or_else(|| {
        err(
            17,
            format!("dtype code {code} does not hold token ids (8: uint16 and 4: int32 do)"),
        )
    })?;
    if let Some(expected) = expected
        && expected != dtype
    {
        return Err(err(
            17,
            format!("the index says {dtype} tokens, the run says {expected}"),
        ));
    }
    let sequences = cursor.u64("the sequence count")?;
    let documents = cursor.u64("the document count")?;
    let arrays_at = cursor.at;
    let sequences_n = usize::try_from(sequences).unwrap_or(usize::MAX);
    let documents_n = usize::try_from(documents).unwrap_or(usize::MAX);
    let lengths = cursor.take(sequences_n.saturating_mul(4), "the sequence lengths")?;
    let pointers = cursor.take(sequences_n.saturating_mul(8), "the sequence pointers")?;
    let pointers_at = arrays_at + lengths.len();
    let indices = cursor.take(documents_n.saturating_mul(8), "the document indices")?;
    let indices_at = pointers_at + pointers.len();
    // What may follow: nothing, or one mode byte per sequence (multimodal datasets).
    let rest = idx.len() - cursor.at;
    if rest != 0 && rest != sequences_n {
        return Err(err(
            cursor.at,
            format!(
                "{rest} bytes after the document indices: the index does not hold what its counts say"
            ),
        ));
    }
    let width = dtype.width() as u64;
    let mut expected_pointer = 0u64;
    let mut ends = Vec::with_capacity(sequences_n);
    for (i, (length, pointer)) in lengths
        .chunks_exact(4)
        .zip(pointers.chunks_exact(8))
        .enumerate()
    {
        let length = i32::from_le_bytes(length.try_into().expect("4 bytes"));
        let pointer = u64::from_le_bytes(pointer.try_into().expect("8 bytes"));
        let length = u64::try_from(length).map_err(|_| {
            err(
                arrays_at + 4 * i,
                format!("sequence {i} has length {length}"),
            )
        })?;
        if pointer != expected_pointer {
            return Err(err(
                pointers_at + 8 * i,
                format!(
                    "sequence {i} starts at byte {pointer} of the .bin, not at {expected_pointer} \
                     where the one before it ends: the .idx does not match its .bin"
                ),
            ));
        }
        expected_pointer = pointer + length * width;
        ends.push(expected_pointer / width);
    }
    if expected_pointer != bin_len {
        return Err(err(
            pointers_at,
            format!(
                "the sequences end at byte {expected_pointer}, the .bin has {bin_len} bytes: the \
                 .idx does not match its .bin"
            ),
        ));
    }
    let mut previous = None::<u64>;
    let mut document_ends = Vec::with_capacity(documents_n.saturating_sub(1));
    for (d, index) in indices.chunks_exact(8).enumerate() {
        let index = u64::from_le_bytes(index.try_into().expect("8 bytes"));
        let at = indices_at + 8 * d;
        match previous {
            None if index != 0 => {
                return Err(err(
                    at,
                    format!("the document indices start at {index}, not 0"),
                ));
            }
            Some(p) if index < p || index > sequences => {
                return Err(err(
                    at,
                    format!(
                        "document index {d} is {index}: not between {p} and the {sequences} sequences"
                    ),
                ));
            }
            // An empty document (two equal indices) holds no token: nothing to end.
            Some(p) if index > p => document_ends.push(ends[index as usize - 1]),
            _ => {}
        }
        previous = Some(index);
    }
    if previous.unwrap_or(0) != sequences {
        return Err(err(
            indices_at,
            format!(
                "the document indices end at {}, not at the {sequences} sequences",
                previous.unwrap_or(0)
            ),
        ));
    }
    Ok(MegatronIndex {
        dtype,
        signed,
        tokens: bin_len / width,
        document_ends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `.idx` as Megatron's builder writes it: `documents` of sequences of these lengths.
    pub(crate) fn idx_bytes(code: u8, documents: &[&[i32]]) -> Vec<u8> {
        let width: i64 = if code == 8 { 2 } else { 4 };
        let lengths: Vec<i32> = documents.iter().flat_map(|d| d.iter().copied()).collect();
        let mut out = MEGATRON_INDEX_MAGIC.to_vec();
        out.extend(1u64.to_le_bytes());
        out.push(code);
        out.extend((lengths.len() as u64).to_le_bytes());
        out.extend((documents.len() as u64 + 1).to_le_bytes());
        for l in &lengths {
            out.extend(l.to_le_bytes());
        }
        let mut pointer = 0i64;
        for l in &lengths {
            out.extend(pointer.to_le_bytes());
            pointer += i64::from(*l) * width;
        }
        let mut index = 0i64;
        out.extend(index.to_le_bytes());
        for d in documents {
            index += d.len() as i64;
            out.extend(index.to_le_bytes());
        }
        out
    }

    #[test]
    fn documents_end_where_their_last_sequence_ends() {
        let idx = idx_bytes(8, &[&[3, 2], &[4], &[1, 1, 1]]);
        let index = megatron_index("a.idx", &idx, 12 * 2, None).unwrap();
        assert_eq!(index.dtype, TokenDtype::Uint16);
        assert!(!index.signed);
        assert_eq!(index.tokens, 12);
        assert_eq!(index.document_ends, vec![5, 9, 12]);
        let index = megatron_index("a.idx", &idx_bytes(4, &[&[3], &[2]]), 20, None).unwrap();
        assert_eq!((index.dtype, index.signed), (TokenDtype::Uint32, true));
    }

    #[test]
    fn a_mismatched_pair_is_an_error_naming_the_index_and_offset() {
        let idx = idx_bytes(8, &[&[3, 2], &[4]]);
        let error = megatron_index("c.idx", &idx, 17, None)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("c.idx") && error.contains("does not match its .bin"),
            "{error}"
        );
        let error = megatron_index("c.idx", &idx[..idx.len() - 3], 18, None).unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
        let error = megatron_index("c.idx", &idx, 18, Some(TokenDtype::Uint32)).unwrap_err();
        assert!(error.to_string().contains("the run says uint32"), "{error}");
        let mut bad_pointer = idx.clone();
        // The second sequence's pointer (after the magic, version, code, two counts and
        // three lengths).
        let at = 9 + 8 + 1 + 16 + 3 * 4 + 8;
        bad_pointer[at] = 7;
        let error = megatron_index("c.idx", &bad_pointer, 18, None).unwrap_err();
        assert!(
            error.to_string().contains(&format!("at byte {at}")),
            "{error}"
        );
        let mut bad_code = idx.clone();
        bad_code[17] = 6;
        let error = megatron_index("c.idx", &bad_code, 18, None).unwrap_err();
        assert!(error.to_string().contains("dtype code 6"), "{error}");
        let error = megatron_index("c.idx", b"MMIDIDX", 18, None).unwrap_err();
        assert!(error.to_string().contains("cut short"), "{error}");
    }

    #[test]
    fn any_bytes_give_an_index_or_an_error_never_a_panic() {
        let idx = idx_bytes(8, &[&[3, 2], &[4], &[1]]);
        for cut in 0..idx.len() {
            let _ = megatron_index("p.idx", &idx[..cut], 20, None);
        }
        for at in 0..idx.len() {
            for value in [0u8, 1, 0x7f, 0xff] {
                let mut changed = idx.clone();
                changed[at] = value;
                let _ = megatron_index("p.idx", &changed, 20, None);
            }
        }
    }
}
