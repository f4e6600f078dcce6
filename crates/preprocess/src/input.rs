//! Input files and the documents in them: plain text (one document per file, or split on a
//! separator), JSON Lines (one object per line), or a Parquet string column.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{PreprocessError, Result, io_at};
pub use seqwarm_format::OnError;

/// How input files are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// By extension: .jsonl/.json/.ndjson as JSON Lines, .parquet as Parquet, else text.
    #[default]
    Auto,
    /// Plain UTF-8 text: one document per file, or split on a separator.
    Text,
    /// One JSON object per line; the document is one string field.
    Jsonl,
    /// Parquet with a string column, one document per row.
    Parquet,
}

/// Where documents come from in the files, and how they are split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// How files are read.
    pub input_format: InputFormat,
    /// JSON Lines field holding the text.
    pub text_field: String,
    /// Parquet column holding the text.
    pub text_column: String,
    /// Split text files into documents on this string (`\n` and `\t` escapes understood).
    pub separator: Option<String>,
}

impl Default for Reading {
    fn default() -> Self {
        Self {
            input_format: InputFormat::Auto,
            text_field: "text".into(),
            text_column: "text".into(),
            separator: None,
        }
    }
}

/// A document, or a bad input with its place and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A document's text.
    Document(String),
    /// A bad input: `location` (`file:line`, `file: row N`) and what is wrong.
    Bad {
        /// Where.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\t", "\t")
}

/// Expands input paths, directories and globs into a sorted, de-duplicated list of files.
pub fn list_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let found = seqwarm_format::paths::expand(input, |_| true).map_err(|e| {
            let missing = !seqwarm_format::paths::is_glob(input) && !Path::new(input).exists();
            PreprocessError::Input {
                location: input.clone(),
                reason: if missing {
                    "no such file or directory".into()
                } else {
                    e.to_string()
                },
            }
        })?;
        files.extend(found);
    }
    files.sort();
    files.dedup();
    if files.is_empty() {
        return Err(PreprocessError::NoInputs {
            inputs: inputs.join(" "),
        });
    }
    Ok(files)
}

/// The pieces of `bytes` between occurrences of `separator` (all of it when there is none),
/// each with its byte offset. Splitting the bytes before decoding keeps one bad byte to its
/// own document.
fn split_bytes<'a>(bytes: &'a [u8], separator: Option<&[u8]>) -> Vec<(usize, &'a [u8])> {
    let Some(sep) = separator.filter(|s| !s.is_empty()) else {
        return vec![(0, bytes)];
    };
    let mut pieces = Vec::new();
    let (mut start, mut at) = (0, 0);
    while at + sep.len() <= bytes.len() {
        if bytes[at..].starts_with(sep) {
            pieces.push((start, &bytes[start..at]));
            at += sep.len();
            start = at;
        } else {
            at += 1;
        }
    }
    pieces.push((start, &bytes[start..]));
    pieces
}

/// The 1-based line of byte `at`.
fn line_at(bytes: &[u8], at: usize) -> usize {
    #[allow(clippy::naive_bytecount)] // only for a bad document
    let newlines = bytes[..at.min(bytes.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    newlines + 1
}

fn format_of(path: &Path, format: InputFormat) -> InputFormat {
    if format != InputFormat::Auto {
        return format;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jsonl" | "json" | "ndjson") => InputFormat::Jsonl,
        Some("parquet") => InputFormat::Parquet,
        _ => InputFormat::Text,
    }
}

/// Every document of `path`, in order (line numbers 1-based). An unreadable file is an error;
/// a bad document is a [`Read::Bad`] in its place.
pub fn read_file(path: &Path, reading: &Reading) -> Result<Vec<Read>> {
    let name = path.display();
    match format_of(path, reading.input_format) {
        InputFormat::Text | InputFormat::Auto => {
            let bytes = std::fs::read(path).map_err(io_at(path))?;
            let separator = reading.separator.as_deref().map(unescape);
            let pieces = split_bytes(&bytes, separator.as_deref().map(str::as_bytes));
            Ok(pieces
                .into_iter()
                .filter_map(|(start, piece)| match std::str::from_utf8(piece) {
                    // Blank pieces between separators are not documents.
                    Ok(t) if separator.is_some() && t.trim().is_empty() => None,
                    Ok(t) => Some(Read::Document(t.to_string())),
                    Err(e) => {
                        // Only this document is bad: its neighbours are read as usual.
                        let at = start + e.valid_up_to();
                        Some(Read::Bad {
                            location: format!("{name}:{}", line_at(&bytes, at)),
                            reason: format!("invalid UTF-8 (byte {at})"),
                        })
                    }
                })
                .collect())
        }
        InputFormat::Jsonl => {
            let file = std::fs::File::open(path).map_err(io_at(path))?;
            let mut out = Vec::new();
            for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
                let location = format!("{name}:{}", i + 1);
                let bytes = line.map_err(io_at(path))?;
                let Ok(text) = std::str::from_utf8(&bytes) else {
                    out.push(Read::Bad {
                        location,
                        reason: "invalid UTF-8".into(),
                    });
                    continue;
                };
                if text.trim().is_empty() {
                    continue;
                }
                out.push(match serde_json::from_str::<serde_json::Value>(text) {
                    Ok(v) => match v.get(&reading.text_field).and_then(|t| t.as_str()) {
                        Some(t) => Read::Document(t.to_string()),
                        None => Read::Bad {
                            location,
                            reason: format!("no string field `{}`", reading.text_field),
                        },
                    },
                    Err(e) => Read::Bad {
                        location,
                        reason: format!("invalid JSON: {e}"),
                    },
                });
            }
            Ok(out)
        }
        InputFormat::Parquet => read_parquet(path, &reading.text_column),
    }
}

fn read_parquet(path: &Path, column: &str) -> Result<Vec<Read>> {
    let name = path.display().to_string();
    let bad = |reason: String| PreprocessError::Input {
        location: name.clone(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(io_at(path))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a readable Parquet file: {e}")))?;
    let index = builder
        .schema()
        .index_of(column)
        .map_err(|_| bad(format!("no column `{column}`")))?;
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| bad(format!("cannot read `{column}`: {e}")))?;
    let mut out = Vec::new();
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(format!("cannot decode `{column}`: {e}")))?;
        let array = batch.column(0);
        let strings = strings_of(array.as_ref()).ok_or_else(|| {
            bad(format!(
                "column `{column}` has type {}; expected a string column",
                array.data_type()
            ))
        })?;
        for s in strings {
            row += 1;
            out.push(match s {
                Some(t) => Read::Document(t),
                None => Read::Bad {
                    location: format!("{name}: row {row}"),
                    reason: format!("`{column}` is null"),
                },
            });
        }
    }
    Ok(out)
}

/// The values of a string column (plain, large, or dictionary-encoded), `None` for nulls;
/// `None` for a column that is not strings.
fn strings_of(array: &dyn arrow_array::Array) -> Option<Vec<Option<String>>> {
    use arrow_array::cast::AsArray;
    use arrow_schema::DataType;
    let owned = |s: Option<&str>| s.map(str::to_string);
    Some(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().map(owned).collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().map(owned).collect(),
        DataType::Utf8View => array.as_string_view().iter().map(owned).collect(),
        DataType::Dictionary(_, _) => {
            let dictionary = array.as_any_dictionary();
            let values = strings_of(dictionary.values().as_ref())?;
            let keys = dictionary.normalized_keys();
            (0..array.len())
                .map(|i| {
                    if array.is_null(i) {
                        None
                    } else {
                        keys.get(i).and_then(|&k| values.get(k).cloned().flatten())
                    }
                })
                .collect()
        }
        _ => return None,
    })
}
