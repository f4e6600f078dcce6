//! Raw token files, as pretraining teams already keep them: a little-endian array of `uint16`
//! or `uint32` token ids with no header (OLMo-core's and Dolma's `.npy` arrays, nanoGPT's
//! `.bin`: raw despite their names), or a NumPy `.npy` file with its header. Documents end with
//! EOS. What a file is comes from its bytes (the `.npy` magic), never from its extension.
//!
//! Sans IO: these functions read a file's bytes (a memory map, in the loader) and find the
//! documents with a vectorised EOS scan.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::FormatError;

/// The width of a raw file's token ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// Little-endian `uint16` (vocabularies up to 65 536, GPT-2's among them).
    Uint16,
    /// Little-endian `uint32`.
    Uint32,
}

impl TokenDtype {
    /// Bytes per token.
    pub fn width(self) -> usize {
        match self {
            Self::Uint16 => 2,
            Self::Uint32 => 4,
        }
    }
}

impl fmt::Display for TokenDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Uint16 => "uint16",
            Self::Uint32 => "uint32",
        })
    }
}

impl FromStr for TokenDtype {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uint16" | "u16" => Ok(Self::Uint16),
            "uint32" | "u32" => Ok(Self::Uint32),
            other => Err(format!(
                "unknown token dtype `{other}`; use uint16 or uint32"
            )),
        }
    }
}

/// Where a raw file's tokens are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawTokenLayout {
    /// Their width.
    pub dtype: TokenDtype,
    /// The byte offset of the first token (0 without a header).
    pub data_offset: usize,
    /// How many tokens.
    pub tokens: u64,
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

fn raw_error(file: &str, offset: u64, reason: impl Into<String>) -> FormatError {
    FormatError::RawTokens {
        file: file.to_string(),
        offset,
        reason: reason.into(),
    }
}

/// The layout of a raw token file from its bytes: a NumPy `.npy` header (checked against
/// `dtype` and the file's size) when the file starts with the `.npy` magic, else a headerless
/// array of `dtype`. `file` names it in errors.
pub fn raw_token_layout(
    file: &str,
    bytes: &[u8],
    dtype: TokenDtype,
) -> Result<RawTokenLayout, FormatError> {
    let (data_offset, declared) = if bytes.starts_with(NPY_MAGIC) {
        let (offset, header_dtype, count) = npy_header(file, bytes)?;
        if header_dtype != dtype {
            return Err(raw_error(
                file,
                8,
                format!("the .npy header says {header_dtype}, the run says {dtype}"),
            ));
        }
        (offset, Some(count))
    } else {
        (0, None)
    };
    let payload = (bytes.len() - data_offset) as u64;
    let width = dtype.width() as u64;
    if !payload.is_multiple_of(width) {
        return Err(raw_error(
            file,
            bytes.len() as u64,
            format!(
                "{payload} bytes of tokens is not a whole number of {dtype} ids: the file is \
                 truncated or not {dtype}"
            ),
        ));
    }
    let tokens = payload / width;
    if let Some(count) = declared
        && count != tokens
    {
        return Err(raw_error(
            file,
            data_offset as u64,
            format!("the .npy header says {count} tokens, the file holds {tokens}"),
        ));
    }
    Ok(RawTokenLayout {
        dtype,
        data_offset,
        tokens,
    })
}

/// Parses a `.npy` header (versions 1-3): its data offset, dtype and element count. Only 1-D,
/// C-order, little-endian unsigned 16- or 32-bit arrays are token files.
fn npy_header(file: &str, bytes: &[u8]) -> Result<(usize, TokenDtype, u64), FormatError> {
    let too_short = || raw_error(file, bytes.len() as u64, "a .npy header cut short");
    let major = *bytes.get(6).ok_or_else(too_short)?;
    let (length, start) = match major {
        1 => {
            let b = bytes.get(8..10).ok_or_else(too_short)?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10)
        }
        2 | 3 => {
            let b = bytes.get(8..12).ok_or_else(too_short)?;
            (u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize, 12)
        }
        other => {
            return Err(raw_error(
                file,
                6,
                format!(".npy version {other} is unknown"),
            ));
        }
    };
    let header = bytes.get(start..start + length).ok_or_else(too_short)?;
    let header = std::str::from_utf8(header)
        .map_err(|_| raw_error(file, start as u64, "the .npy header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let bad = |what: &str| raw_error(file, start as u64, format!("the .npy header: {what}"));
    let descr = field("descr").ok_or_else(|| bad("no 'descr'"))?;
    let dtype = if descr.starts_with("'<u2'") || descr.starts_with("'|u2'") {
        TokenDtype::Uint16
    } else if descr.starts_with("'<u4'") {
        TokenDtype::Uint32
    } else {
        return Err(bad(&format!(
            "dtype {} is not a little-endian uint16 or uint32",
            descr.split(',').next().unwrap_or(descr)
        )));
    };
    if !field("fortran_order")
        .ok_or_else(|| bad("no 'fortran_order'"))?
        .starts_with("False")
    {
        return Err(bad("Fortran order"));
    }
    let shape = field("shape").ok_or_else(|| bad("no 'shape'"))?;
    let inner = shape
        .strip_prefix('(')
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| bad("an unreadable 'shape'"))?;
    let dims: Vec<&str> = inner
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let [count] = dims.as_slice() else {
        return Err(bad(&format!("shape ({inner}) is not 1-D")));
    };
    let count = count
        .parse::<u64>()
        .map_err(|_| bad(&format!("shape ({inner}) is not a count")))?;
    Ok((start + length, dtype, count))
}

/// What one pass over a file's tokens finds: the end (one past the EOS) of every document, and
/// the largest id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenScan {
    /// One past each EOS, in tokens from the first token.
    pub document_ends: Vec<u64>,
    /// The largest token id (0 for an empty file).
    pub max_id: u32,
}

/// Tokens compared per step of the scan: wide enough for the compiler's vector compares.
const SCAN_LANES: usize = 64;

/// Finds every EOS and the largest id in `tokens` (the bytes after the header) in one pass.
/// Documents are long next to a chunk of 64 tokens, so most chunks hold no EOS: each chunk is
/// first reduced (any EOS? the largest id?) with branch-free operations the compiler turns into
/// vector instructions, and only a chunk with an EOS is walked token by token.
pub fn scan_tokens(tokens: &[u8], dtype: TokenDtype, eos: u32) -> TokenScan {
    match dtype {
        TokenDtype::Uint16 => {
            // An EOS id that does not fit 16 bits is never found in uint16 files.
            let eos16 = u16::try_from(eos).ok();
            let (ends, max_id) =
                scan::<2, u16>(tokens, eos16, |b| u16::from_le_bytes([b[0], b[1]]));
            TokenScan {
                document_ends: ends,
                max_id: u32::from(max_id),
            }
        }
        TokenDtype::Uint32 => {
            let (ends, max_id) = scan::<4, u32>(tokens, Some(eos), |b| {
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            });
            TokenScan {
                document_ends: ends,
                max_id,
            }
        }
    }
}

fn scan<const W: usize, T: Copy + Ord + Default>(
    tokens: &[u8],
    eos: Option<T>,
    read: impl Fn(&[u8; W]) -> T + Copy,
) -> (Vec<u64>, T) {
    let id = |b: &[u8]| read(b.try_into().expect("W bytes"));
    let mut ends = Vec::new();
    let mut max_id = T::default();
    let mut chunks = tokens.chunks_exact(SCAN_LANES * W);
    let mut base = 0u64;
    for chunk in &mut chunks {
        let mut hit = false;
        let mut chunk_max = T::default();
        for token in chunk.chunks_exact(W) {
            let t = id(token);
            hit |= Some(t) == eos;
            chunk_max = chunk_max.max(t);
        }
        max_id = max_id.max(chunk_max);
        if hit {
            for (i, token) in chunk.chunks_exact(W).enumerate() {
                if Some(id(token)) == eos {
                    ends.push(base + i as u64 + 1);
                }
            }
        }
        base += SCAN_LANES as u64;
    }
    for (i, token) in chunks.remainder().chunks_exact(W).enumerate() {
        let t = id(token);
        max_id = max_id.max(t);
        if Some(t) == eos {
            ends.push(base + i as u64 + 1);
        }
    }
    (ends, max_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn npy(descr: &str, shape: &str, payload: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header.as_bytes());
        out.extend(payload);
        out
    }

    #[test]
    fn a_headerless_file_is_raw_whatever_its_name() {
        let bytes = [1u8, 0, 2, 0, 3, 0];
        let layout = raw_token_layout("part-0.npy", &bytes, TokenDtype::Uint16).unwrap();
        assert_eq!((layout.data_offset, layout.tokens), (0, 3));
    }

    #[test]
    fn a_npy_header_is_read_and_checked() {
        let payload = [5u8, 0, 0, 0, 7, 0, 0, 0];
        let file = npy("<u4", "(2,)", &payload);
        let layout = raw_token_layout("a.npy", &file, TokenDtype::Uint32).unwrap();
        assert_eq!(layout.data_offset, file.len() - 8);
        assert_eq!(layout.tokens, 2);
        let lies = npy("<u4", "(3,)", &payload);
        let error = raw_token_layout("a.npy", &lies, TokenDtype::Uint32).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("says 3 tokens, the file holds 2"),
            "{error}"
        );
        let wrong = raw_token_layout("a.npy", &file, TokenDtype::Uint16).unwrap_err();
        assert!(wrong.to_string().contains("says uint32"), "{wrong}");
        let float = raw_token_layout("a.npy", &npy("<f4", "(2,)", &payload), TokenDtype::Uint32);
        assert!(float.unwrap_err().to_string().contains("'<f4'"));
        let two_d = raw_token_layout("a.npy", &npy("<u4", "(1, 2)", &payload), TokenDtype::Uint32);
        assert!(two_d.unwrap_err().to_string().contains("not 1-D"));
        let cut = raw_token_layout("a.npy", &file[..9], TokenDtype::Uint32).unwrap_err();
        assert!(cut.to_string().contains("cut short"), "{cut}");
    }

    #[test]
    fn a_truncated_file_names_its_size() {
        let error = raw_token_layout("x.bin", &[1, 0, 2], TokenDtype::Uint16).unwrap_err();
        assert!(
            error.to_string().starts_with("x.bin at byte 3: 3 bytes"),
            "{error}"
        );
    }

    proptest! {
        /// The chunked scan finds exactly the EOS positions and the maximum a plain loop finds.
        #[test]
        fn the_scan_is_a_plain_loop(ids in proptest::collection::vec(0u32..6, 0..400), wide in any::<bool>()) {
            let (dtype, bytes): (TokenDtype, Vec<u8>) = if wide {
                (TokenDtype::Uint32, ids.iter().flat_map(|&i| i.to_le_bytes()).collect())
            } else {
                (TokenDtype::Uint16, ids.iter().flat_map(|&i| (i as u16).to_le_bytes()).collect())
            };
            let scan = scan_tokens(&bytes, dtype, 5);
            let ends: Vec<u64> = ids.iter().enumerate().filter(|&(_, &i)| i == 5).map(|(p, _)| p as u64 + 1).collect();
            prop_assert_eq!(scan.document_ends, ends);
            prop_assert_eq!(scan.max_id, ids.iter().copied().max().unwrap_or(0));
        }
    }
}
