//! The one config-file reader of every subcommand: TOML (`.toml`) or JSON (anything else),
//! keys spelled as the flags (`batch-tokens`) or as the library (`batch_tokens`). The top level
//! holds `shards`, the loader's settings, a `[schedule]` table and, for `train`, a `[train]`
//! table; each part is checked by its owner, so an unknown key anywhere is an error that names
//! the key and the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{Map, Value};

/// A config file, split into its parts.
#[derive(Debug, Clone, Default)]
pub struct ConfigFile {
    /// Where it was read from, for messages.
    pub path: Option<PathBuf>,
    /// `shards`.
    pub shards: Vec<String>,
    /// The `[schedule]` table.
    pub schedule: Option<Map<String, Value>>,
    /// The `[train]` table (read by `train`; the other commands leave it to it).
    #[cfg_attr(not(feature = "train"), allow(dead_code))]
    pub train: Option<Map<String, Value>>,
    /// Everything else: the loader's settings.
    pub loader: Map<String, Value>,
}

impl ConfigFile {
    /// Reads `path`, or an empty config when there is none.
    pub fn read(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let mut top = read_table(path)?;
        let shards = match top.remove("shards") {
            None => Vec::new(),
            Some(v) => serde_json::from_value(v).with_context(|| {
                format!("{}: `shards` must be a list of locations", path.display())
            })?,
        };
        let table = |top: &mut Map<String, Value>,
                     key: &str|
         -> anyhow::Result<Option<Map<String, Value>>> {
            match top.remove(key) {
                None => Ok(None),
                Some(Value::Object(map)) => Ok(Some(map)),
                Some(_) => anyhow::bail!("{}: `{key}` must be a table", path.display()),
            }
        };
        Ok(Self {
            schedule: table(&mut top, "schedule")?,
            train: table(&mut top, "train")?,
            shards,
            loader: top,
            path: Some(path.clone()),
        })
    }

    /// Names the file in an error about its contents.
    pub fn context(&self) -> String {
        match &self.path {
            Some(p) => format!("invalid config {}", p.display()),
            None => "invalid settings".into(),
        }
    }
}

/// A schedule file on its own (`--schedule-config`): the keys of a `[schedule]` table.
pub fn read_table(path: &Path) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let value: Value = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?
    } else {
        serde_json::from_str(&text).with_context(|| format!("invalid config {}", path.display()))?
    };
    match normalized(value) {
        Value::Object(map) => Ok(map),
        _ => anyhow::bail!("{}: expected a table of settings", path.display()),
    }
}

/// Keys spelled as flags (`batch-tokens`) in the library's spelling (`batch_tokens`), at every
/// level; values (mode names such as `pack-bestfit`) are left alone.
fn normalized(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k.replace('-', "_"), normalized(v)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_and_keys_normalized() {
        let dir = std::env::temp_dir().join(format!("seqwarm-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(
            &path,
            "shards = [\"a/\"]\nmode = \"pack-bestfit\"\npack-window = 8\n[schedule]\ntotal-curriculum-step = 5\n[train]\neval-every = 3\n",
        )
        .unwrap();
        let file = ConfigFile::read(Some(&path)).unwrap();
        assert_eq!(file.shards, ["a/"]);
        assert_eq!(file.loader["mode"], "pack-bestfit");
        assert_eq!(file.loader["pack_window"], 8);
        assert_eq!(file.schedule.unwrap()["total_curriculum_step"], 5);
        assert_eq!(file.train.unwrap()["eval_every"], 3);
        std::fs::write(&path, "schedule = 3\n").unwrap();
        let err = ConfigFile::read(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("`schedule` must be a table"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
