//! Raw token files on the local disk (headerless `uint16`/`uint32` arrays, `.npy` files and
//! Megatron-LM's `.bin` + `.idx` pairs), memory-mapped whole: OLMo-core's, Dolma's, nanoGPT's
//! and Megatron's token files read where they lie.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use seqwarm_format::{
    FormatError, RawTokenLayout, TokenDtype, TokenScan, megatron_index, raw_token_layout,
    scan_tokens,
};
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
    /// A Megatron `.bin`'s documents, from its `.idx` (`None`: found by the EOS scan).
    megatron: Option<Megatron>,
}

#[derive(Debug, Clone)]
struct Megatron {
    document_ends: Vec<u64>,
    /// Megatron's `int32` ids, read as `uint32`: one of 2^31 or more is negative there.
    signed: bool,
}

impl RawTokenFiles {
    /// The files at `locations` (files, directories, globs; a directory's files sorted by
    /// name, hidden files and `.json` sidecars left out) as `dtype` ids. A `.bin` with an
    /// `.idx` beside it is a Megatron pair (its documents come from the index, which must
    /// match it), and so is a location that names the pair's common prefix, as Megatron's
    /// `--data-path` does. Object-store URLs are not read raw yet: they are refused by name.
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
            for path in expand_location(local)? {
                files.push(RawFile::open(path, dtype)?);
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
            let scan = Self::checked_scan(file, Some(eos_id), vocab_size)?;
            let ends = match (&file.megatron, &scan) {
                (Some(m), _) => &m.document_ends,
                (None, Some(scan)) => &scan.document_ends,
                (None, None) => unreachable!("every file without an index is scanned"),
            };
            index.push_file(ends, file.layout.tokens)?;
        }
        Ok(index)
    }

    /// Checks every id against `vocab_size` (and Megatron's `int32` ids against 2^31), one
    /// scan per file that needs it; an error names the file and byte offset.
    pub fn check_ids(&self, vocab_size: Option<u64>) -> Result<()> {
        for file in &self.files {
            Self::checked_scan(file, None, vocab_size)?;
        }
        Ok(())
    }

    /// One file's scan for documents ending in `eos_id` (when given and the file has no index)
    /// and for ids out of range; `None` when nothing needed reading.
    fn checked_scan(
        file: &RawFile,
        eos_id: Option<u32>,
        vocab_size: Option<u64>,
    ) -> Result<Option<TokenScan>> {
        let tokens = &file.bytes[file.layout.data_offset..];
        let signed = file.megatron.as_ref().is_some_and(|m| m.signed);
        let scan = match (eos_id, &file.megatron) {
            (Some(eos), None) => Some(scan_tokens(tokens, file.layout.dtype, eos)),
            // Boundaries known (or not wanted): the ids are scanned only to check them.
            _ if signed || vocab_size.is_some() => {
                Some(scan_tokens(tokens, file.layout.dtype, u32::MAX))
            }
            _ => None,
        };
        let max_id = scan.as_ref().map_or(0, |s| s.max_id);
        if let Some(vocab) = vocab_size
            && u64::from(max_id) >= vocab
        {
            return Err(Self::out_of_range(file, vocab, "outside the vocabulary").into());
        }
        if signed && max_id > i32::MAX as u32 {
            let bound = 1 << 31;
            return Err(Self::out_of_range(file, bound, "negative as Megatron's int32").into());
        }
        Ok(scan)
    }

    /// Checks a checkpoint's header against this run: its `format`, the settings it was
    /// written for and the files (names and token counts) it read.
    pub(crate) fn check_state<S: PartialEq + std::fmt::Debug>(
        &self,
        (format, expected_format): (&str, &str),
        (written_for, settings): (&S, &S),
        files: &[(String, u64)],
    ) -> Result<()> {
        let refuse = |reason: String| Err(LoaderError::State { reason });
        if format != expected_format {
            return refuse(format!("format {format:?} is not {expected_format:?}"));
        }
        if written_for != settings {
            return refuse(format!(
                "written for other settings: {written_for:?}, this run has {settings:?}"
            ));
        }
        let ours = self.names_and_tokens();
        if files != ours {
            return refuse(format!(
                "written for other files: {files:?}, this run reads {ours:?}"
            ));
        }
        Ok(())
    }

    /// Each file's name (not its directory) and token count: what a checkpoint records so that
    /// it is not resumed over other data.
    pub fn names_and_tokens(&self) -> Vec<(String, u64)> {
        self.files
            .iter()
            .map(|file| {
                let path = &file.path;
                let name = path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                );
                (name, file.layout.tokens)
            })
            .collect()
    }

    fn out_of_range(file: &RawFile, vocab: u64, what: &str) -> FormatError {
        let width = file.layout.dtype.width();
        let position = (0..file.layout.tokens)
            .find(|&t| u64::from(Self::token(file, t)) >= vocab)
            .unwrap_or(0);
        FormatError::RawTokens {
            file: file.path.display().to_string(),
            offset: file.layout.data_offset as u64 + position * width as u64,
            reason: format!(
                "token {} (token {position} of the file) is {what} [0, {vocab})",
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

impl RawFile {
    /// Maps `path` and reads its layout: a Megatron `.bin` when an `.idx` lies beside it (the
    /// index read and checked against the `.bin` now), else a raw array or `.npy` file.
    fn open(path: PathBuf, dtype: TokenDtype) -> Result<Self> {
        let map = |path: &Path| {
            map_whole(path).map_err(|source| LoaderError::LocalIo {
                file: path.display().to_string(),
                source,
            })
        };
        let bytes = map(&path)?;
        let name = path.display().to_string();
        let index_path = path.with_extension("idx");
        let is_bin = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("bin"));
        if is_bin && index_path.is_file() {
            let idx = map(&index_path)?;
            let index = megatron_index(
                &index_path.display().to_string(),
                &idx,
                bytes.len() as u64,
                Some(dtype),
            )?;
            let layout = RawTokenLayout {
                dtype,
                data_offset: 0,
                tokens: index.tokens,
            };
            return Ok(Self {
                path,
                bytes,
                layout,
                megatron: Some(Megatron {
                    document_ends: index.document_ends,
                    signed: index.signed,
                }),
            });
        }
        let layout = raw_token_layout(&name, &bytes, dtype)?;
        Ok(Self {
            path,
            bytes,
            layout,
            megatron: None,
        })
    }
}

/// The files of one location: a Megatron prefix (`corpus_text_document` for
/// `corpus_text_document.bin` + `.idx`, when nothing of that name exists) is its `.bin`;
/// anything else is listed as a file, directory or glob.
fn expand_location(location: &str) -> Result<Vec<PathBuf>> {
    let prefix = Path::new(location);
    let bin = PathBuf::from(format!("{location}.bin"));
    let idx = PathBuf::from(format!("{location}.idx"));
    if !prefix.exists() && bin.is_file() && idx.is_file() {
        return Ok(vec![bin]);
    }
    Ok(seqwarm_format::paths::expand(location, is_token_file)?)
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
