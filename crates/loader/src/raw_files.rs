//! Raw token files on the local disk (headerless `uint16`/`uint32` arrays and `.npy` files),
//! memory-mapped whole: OLMo-core's, Dolma's and nanoGPT's token files read where they lie.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use seqwarm_format::{FormatError, RawTokenLayout, TokenDtype, raw_token_layout, scan_tokens};
use seqwarm_stage::PieceIndex;

use crate::error::{LoaderError, Result};
use crate::mapped::map_whole;

/// Local raw token files, in order, each mapped whole.
#[derive(Debug, Clone)]
pub struct RawTokenFiles {
    files: Vec<RawFile>,
}

#[derive(Debug, Clone)]
struct RawFile {
    path: PathBuf,
    bytes: Bytes,
    layout: RawTokenLayout,
}

impl RawTokenFiles {
    /// The files at `locations` (files, directories, globs; a directory's files sorted by
    /// name, hidden files and `.json` sidecars left out) as `dtype` ids. Object-store URLs are
    /// not read raw yet: they are refused by name.
    pub fn open(locations: &[String], dtype: TokenDtype) -> Result<Self> {
        let mut files = Vec::new();
        for location in locations {
            if location.contains("://") && !location.starts_with("file://") {
                return Err(LoaderError::Location {
                    location: location.clone(),
                    reason: "raw token files are read from the local disk only for now; \
                             copy them locally or convert them with `seqwarm preprocess`"
                        .into(),
                });
            }
            let local = location.strip_prefix("file://").unwrap_or(location);
            for path in seqwarm_format::paths::expand(local, is_token_file)? {
                let bytes = map_whole(&path).map_err(|source| LoaderError::LocalIo {
                    file: path.display().to_string(),
                    source,
                })?;
                let layout = raw_token_layout(&path.display().to_string(), &bytes, dtype)?;
                files.push(RawFile {
                    path,
                    bytes,
                    layout,
                });
            }
        }
        if files.is_empty() {
            return Err(LoaderError::Location {
                location: locations.join(", "),
                reason: "no token files found".into(),
            });
        }
        Ok(Self { files })
    }

    /// How many files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there is no file (never, once opened).
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// File `file`'s path.
    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// Tokens in file `file`.
    pub fn tokens_of(&self, file: usize) -> u64 {
        self.files[file].layout.tokens
    }

    /// Tokens in all files.
    pub fn tokens(&self) -> u64 {
        self.files.iter().map(|f| f.layout.tokens).sum()
    }

    /// Finds every document (one EOS scan per file) and cuts them into the pieces of
    /// `min..=max`; ids at or over `vocab_size` are an error naming the file and byte offset.
    pub fn piece_index(
        &self,
        eos_id: u32,
        min: u64,
        max: u64,
        vocab_size: Option<u64>,
    ) -> Result<PieceIndex> {
        let mut index = PieceIndex::new(min, max)?;
        for file in &self.files {
            let tokens = &file.bytes[file.layout.data_offset..];
            let scan = scan_tokens(tokens, file.layout.dtype, eos_id);
            if let Some(vocab) = vocab_size
                && u64::from(scan.max_id) >= vocab
            {
                return Err(Self::out_of_vocabulary(file, vocab).into());
            }
            index.push_file(&scan.document_ends, file.layout.tokens)?;
        }
        Ok(index)
    }

    fn out_of_vocabulary(file: &RawFile, vocab: u64) -> FormatError {
        let width = file.layout.dtype.width();
        let position = (0..file.layout.tokens)
            .find(|&t| u64::from(Self::token(file, t)) >= vocab)
            .unwrap_or(0);
        FormatError::RawTokens {
            file: file.path.display().to_string(),
            offset: file.layout.data_offset as u64 + position * width as u64,
            reason: format!(
                "token {} (token {position} of the file) is outside the vocabulary [0, {vocab})",
                Self::token(file, position)
            ),
        }
    }

    fn token(file: &RawFile, position: u64) -> u32 {
        let width = file.layout.dtype.width();
        let at = file.layout.data_offset + position as usize * width;
        let b = &file.bytes[at..at + width];
        match file.layout.dtype {
            TokenDtype::Uint16 => u32::from(u16::from_le_bytes([b[0], b[1]])),
            TokenDtype::Uint32 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        }
    }

    /// Appends `len` tokens of file `file` from token `start` to `out`.
    pub fn extend_tokens(&self, file: usize, start: u64, len: u64, out: &mut Vec<i64>) {
        let file = &self.files[file];
        let width = file.layout.dtype.width();
        let from = file.layout.data_offset + start as usize * width;
        let bytes = &file.bytes[from..from + len as usize * width];
        match file.layout.dtype {
            TokenDtype::Uint16 => out.extend(
                bytes
                    .chunks_exact(2)
                    .map(|b| i64::from(u16::from_le_bytes([b[0], b[1]]))),
            ),
            TokenDtype::Uint32 => out.extend(
                bytes
                    .chunks_exact(4)
                    .map(|b| i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
            ),
        }
    }
}

/// A directory's token files: not hidden, not a JSON or index sidecar.
fn is_token_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // OLMo-core's `.csv.gz` metadata, seqwarm's `.json` manifests, Megatron's `.idx`.
    !name.starts_with('.') && !matches!(extension.as_str(), "json" | "idx" | "gz")
}
