//! A preprocessed directory's `manifest.json` (written by `seqwarm-preprocess`), as the loader
//! reads it: each shard's name, size and row groups' documents and tokens, which is all the
//! epoch plan needs. With it, a shard's footer is read when the shard is first read, not at
//! startup (20 000 shards: one request instead of 20 000), and checked then against what the
//! manifest said.
//!
//! A manifest entry is used only for a listed file of the same name and size in the
//! manifest's directory; every other file, and every file of a manifest without row-group
//! counts (written before they were recorded), has its footer read at startup as before.

use std::collections::HashMap;

use serde::Deserialize;

/// The file name a preprocessed directory's manifest has.
pub(crate) const MANIFEST_FILE: &str = "manifest.json";

/// The manifest formats this reader understands (`seqwarm_preprocess::MANIFEST_FORMAT`).
const FORMATS: [&str; 1] = ["seqwarm-manifest-v1"];

/// What the manifest says of one shard's row groups: `(documents, tokens)` each, in order.
pub(crate) type RowGroupCounts = Vec<(u64, u64)>;

#[derive(Deserialize)]
struct File {
    format: String,
    #[serde(default)]
    settings: Option<Settings>,
    shards: Vec<Entry>,
}

/// The one setting of the run that wrote the shards that the loader must know.
#[derive(Deserialize)]
struct Settings {
    /// The id the preprocessor appended after every document (`None`: `--no-eos`).
    #[serde(default)]
    eos_id: Option<i64>,
}

#[derive(Deserialize)]
struct Entry {
    file: String,
    documents: u64,
    tokens: u64,
    row_groups: u64,
    bytes: u64,
    #[serde(default)]
    row_group_documents: Vec<u64>,
    #[serde(default)]
    row_group_tokens: Vec<u64>,
}

/// The shards a manifest describes well enough to skip their footers at startup, by file name.
#[derive(Debug, Default)]
pub(crate) struct Manifest {
    shards: HashMap<String, (u64, RowGroupCounts)>,
    /// Every shard name the manifest lists, described well enough or not.
    listed: std::collections::HashSet<String>,
    /// The id every document of its shards already ends with, if the run appended one.
    eos_id: Option<i64>,
}

impl Manifest {
    /// Parses `bytes`; `Err` says why it is not a manifest this reader understands.
    pub(crate) fn parse(bytes: &[u8]) -> Result<Self, String> {
        let file: File = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if !FORMATS.contains(&file.format.as_str()) {
            return Err(format!(
                "format `{}` is not one of {FORMATS:?}",
                file.format
            ));
        }
        let listed = file.shards.iter().map(|e| e.file.clone()).collect();
        let eos_id = file.settings.and_then(|s| s.eos_id);
        let shards = file
            .shards
            .into_iter()
            .filter_map(|e| {
                // Only complete, self-consistent entries; the rest take the footer path. A row
                // group without tokens is not a unit (the footer path drops it): such a shard
                // is read from its footer too.
                let n = usize::try_from(e.row_groups).ok()?;
                let sum = |v: &[u64]| v.iter().try_fold(0u64, |a, &b| a.checked_add(b));
                let consistent = n > 0
                    && e.row_group_documents.len() == n
                    && e.row_group_tokens.len() == n
                    && e.row_group_tokens.iter().all(|&t| t > 0)
                    && sum(&e.row_group_documents) == Some(e.documents)
                    && sum(&e.row_group_tokens) == Some(e.tokens);
                consistent.then(|| {
                    let counts = e.row_group_documents.into_iter().zip(e.row_group_tokens);
                    (e.file, (e.bytes, counts.collect()))
                })
            })
            .collect();
        Ok(Self {
            shards,
            listed,
            eos_id,
        })
    }

    /// The id that every document of shard `name` already ends with, when the manifest lists
    /// the shard and its run appended one.
    pub(crate) fn eos_of(&self, name: &str) -> Option<i64> {
        self.eos_id.filter(|_| self.listed.contains(name))
    }

    /// The size the manifest gives shard `name`, when it describes its row groups.
    pub(crate) fn size_of(&self, name: &str) -> Option<u64> {
        self.shards.get(name).map(|(bytes, _)| *bytes)
    }

    /// The row groups of shard `name` when the manifest lists it with `size` bytes.
    pub(crate) fn row_groups(&self, name: &str, size: u64) -> Option<&RowGroupCounts> {
        self.shards
            .get(name)
            .filter(|(bytes, _)| *bytes == size)
            .map(|(_, counts)| counts)
    }
}

#[cfg(test)]
mod tests {
    use super::Manifest;

    #[test]
    fn only_complete_entries_of_a_known_format_are_used() {
        let text = r#"{"format": "seqwarm-manifest-v1", "settings": {}, "shards": [
            {"file": "a.parquet", "documents": 3, "tokens": 10, "row_groups": 2, "bytes": 99,
             "row_group_documents": [1, 2], "row_group_tokens": [4, 6], "end": {}},
            {"file": "old.parquet", "documents": 3, "tokens": 10, "row_groups": 1, "bytes": 50},
            {"file": "bad.parquet", "documents": 3, "tokens": 10, "row_groups": 2, "bytes": 50,
             "row_group_documents": [1, 1], "row_group_tokens": [4, 6]},
            {"file": "empty.parquet", "documents": 3, "tokens": 10, "row_groups": 2, "bytes": 50,
             "row_group_documents": [1, 2], "row_group_tokens": [10, 0]},
            {"file": "huge.parquet", "documents": 3, "tokens": 1, "row_groups": 2, "bytes": 50,
             "row_group_documents": [1, 2], "row_group_tokens": [18446744073709551615, 2]}
        ]}"#;
        let manifest = Manifest::parse(text.as_bytes()).unwrap();
        assert_eq!(
            manifest.row_groups("a.parquet", 99),
            Some(&vec![(1, 4), (2, 6)])
        );
        assert_eq!(manifest.row_groups("a.parquet", 98), None, "another size");
        assert_eq!(manifest.row_groups("old.parquet", 50), None, "no counts");
        assert_eq!(
            manifest.row_groups("bad.parquet", 50),
            None,
            "counts disagree"
        );
        let other = text.replace("seqwarm-manifest-v1", "seqwarm-manifest-v9");
        assert!(
            Manifest::parse(other.as_bytes())
                .unwrap_err()
                .contains("v9")
        );
        assert!(Manifest::parse(b"[1, 2]").is_err());
    }
}
