//! A Hugging Face tokenizer from its `tokenizer.json`: what most open models ship, read by the
//! `tokenizers` crate (the Python package's own Rust core), so that ids match the Python
//! package's `encode` exactly.

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{PreprocessError, Result};

/// A tokenizer read from a `tokenizer.json`.
///
/// Each document is encoded as the model's own pipeline does (`encode(text,
/// add_special_tokens=True)` in Python: normalizer, pre-tokenizer, model, and the
/// post-processor's special tokens, such as a BOS), with the file's truncation and padding
/// turned off (they would cut or pad documents; the loader packs them). The EOS id, appended
/// after each document unless `--no-eos` (or unless the post-processor already ended it with
/// that id, as T5's does), is the token given, else the `eos_token` of the
/// `tokenizer_config.json` beside the file. A BOS id is put before each document when one is
/// asked for (the token given, else the config's `bos_token` when it says `add_bos_token`, as
/// Llama's and Mistral's do) and the post-processor does not already begin documents with it:
/// one BOS, never two.
#[derive(Clone, Serialize, Deserialize)]
pub struct HuggingFace {
    /// The file it was read from, as given (not recorded in manifests: the same file may be
    /// elsewhere on another worker or on resume; its SHA-256 identifies it).
    #[serde(skip)]
    pub path: String,
    /// SHA-256 of the file's bytes (hex): what a resumed run compares, not the path.
    pub sha256: String,
    /// Ids are below this (one more than the largest id, added tokens included).
    pub vocab_size: u64,
    /// The end-of-text token and its id, when one is known.
    pub eos: Option<(String, i32)>,
    /// The beginning-of-text token and its id that seqwarm puts before each document: `None`
    /// when none is asked for, or when the post-processor already adds it. Not written when
    /// `None`, so manifests of older runs still compare equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos: Option<(String, i32)>,
    /// The tokenizer itself; absent in a tokenizer read back from a manifest.
    #[serde(skip)]
    inner: Option<Arc<tokenizers::Tokenizer>>,
}

impl PartialEq for HuggingFace {
    /// The same file contents and EOS, wherever the file is.
    fn eq(&self, other: &Self) -> bool {
        (&self.sha256, self.vocab_size, &self.eos, &self.bos)
            == (&other.sha256, other.vocab_size, &other.eos, &other.bos)
    }
}
impl Eq for HuggingFace {}

impl std::fmt::Debug for HuggingFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HuggingFace")
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .field("vocab_size", &self.vocab_size)
            .field("eos", &self.eos)
            .field("bos", &self.bos)
            .finish_non_exhaustive()
    }
}

impl HuggingFace {
    /// Reads `path` (a `tokenizer.json`). `eos_token` names the end-of-text token (else the
    /// `eos_token` of a `tokenizer_config.json` in the same directory, if there is one);
    /// `bos_token` a beginning-of-text token to put before each document (else the config's
    /// `bos_token` when its `add_bos_token` is true), unless the post-processor adds it.
    pub fn from_file(
        path: &Path,
        eos_token: Option<&str>,
        bos_token: Option<&str>,
    ) -> Result<Self> {
        let bad = |reason: String| PreprocessError::Config {
            field: "tokenizer",
            reason: format!("{}: {reason}", path.display()),
        };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|e| bad(format!("not a Hugging Face tokenizer.json: {e}")))?;
        inner
            .with_truncation(None)
            .map_err(|e| bad(format!("cannot turn truncation off: {e}")))?;
        inner.with_padding(None);
        let largest = inner.get_vocab(true).into_values().max().unwrap_or(0);
        if i32::try_from(largest).is_err() {
            return Err(bad(format!("token id {largest} does not fit in int32")));
        }
        let config = TokenizerConfig::beside(path).map_err(bad)?;
        // Below `largest`, which fits in i32.
        let id_of = |token: String, which: &str| match inner.token_to_id(&token) {
            Some(id) => Ok((token, id as i32)),
            None => Err(bad(format!(
                "the {which} token {token:?} is not in its vocabulary"
            ))),
        };
        let eos = eos_token
            .map(str::to_string)
            .or(config.eos)
            .map(|token| id_of(token, "EOS"))
            .transpose()?;
        let bos = match bos_token.map(str::to_string) {
            Some(token) => Some(token),
            None if config.add_bos => Some(config.bos.ok_or_else(|| {
                bad("its tokenizer_config.json says add_bos_token but names no bos_token".into())
            })?),
            None => None,
        };
        let bos = bos.map(|token| id_of(token, "BOS")).transpose()?;
        // The post-processor's own BOS (Llama's tokenizer.json has one): not a second.
        let bos = match bos {
            Some((token, id)) => {
                let empty = inner
                    .encode_fast("", true)
                    .map_err(|e| bad(format!("the tokenizer refused an empty text: {e}")))?;
                let added = empty
                    .get_ids()
                    .first()
                    .is_some_and(|&first| first as i32 == id);
                (!added).then_some((token, id))
            }
            None => None,
        };
        Ok(Self {
            path: path.display().to_string(),
            sha256: crate::digest::sha256_hex(&bytes),
            vocab_size: u64::from(largest) + 1,
            eos,
            bos,
            inner: Some(Arc::new(inner)),
        })
    }

    /// The ids of `text`, as the Python package's `encode(text).ids`.
    pub fn encode(&self, text: &str) -> std::result::Result<Vec<i32>, String> {
        let inner = self.inner.as_ref().ok_or_else(|| {
            format!(
                "{}: a tokenizer read back from a manifest cannot encode (read the file)",
                self.path
            )
        })?;
        let encoding = inner
            .encode_fast(text, true)
            .map_err(|e| format!("the tokenizer refused it: {e}"))?;
        // A post-processor's special ids come from the file, not the vocabulary: checked.
        let bos = self.bos.as_ref().map(|(_, id)| *id);
        let ids = encoding.get_ids().iter().map(|&id| {
            i32::try_from(id)
                .ok()
                .filter(|_| u64::from(id) < self.vocab_size)
                .ok_or_else(|| {
                    format!(
                        "the tokenizer gave id {id}, outside its vocabulary of {} (a \
                         post-processor's special token that is not in it?)",
                        self.vocab_size
                    )
                })
        });
        bos.map(Ok).into_iter().chain(ids).collect()
    }
}

/// What a `tokenizer_config.json` beside a `tokenizer.json` says about special tokens.
#[derive(Default)]
struct TokenizerConfig {
    /// `eos_token`.
    eos: Option<String>,
    /// `bos_token`.
    bos: Option<String>,
    /// `add_bos_token`: whether the model expects `bos` before each document.
    add_bos: bool,
}

impl TokenizerConfig {
    /// The `tokenizer_config.json` beside `tokenizer_json`, or nothing when there is none.
    fn beside(tokenizer_json: &Path) -> std::result::Result<Self, String> {
        let config = tokenizer_json.with_file_name("tokenizer_config.json");
        let Ok(text) = std::fs::read_to_string(&config) else {
            return Ok(Self::default());
        };
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| format!("{} does not parse: {e}", config.display()))?;
        Ok(Self {
            eos: token(&value, "eos_token"),
            bos: token(&value, "bos_token"),
            add_bos: value
                .get("add_bos_token")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// A special token of a `tokenizer_config.json`: a string, or a table with its `content`.
fn token(config: &serde_json::Value, key: &str) -> Option<String> {
    match config.get(key)? {
        serde_json::Value::String(token) => Some(token.clone()),
        table => table
            .get("content")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::HuggingFace;
    use crate::PreprocessError;

    /// A word-level tokenizer.json small enough to write by hand, truncating to two tokens.
    const WORDS: &str = r#"{"version": "1.0", "added_tokens": [], "normalizer": null,
        "truncation": {"direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0},
        "padding": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
        "decoder": null, "model": {"type": "WordLevel",
        "vocab": {"[UNK]": 0, "hello": 1, "world": 2, "</s>": 70000}, "unk_token": "[UNK]"}}"#;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("seqwarm-hf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn encodes_without_truncation_with_the_configured_eos() {
        let dir = dir("words");
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, WORDS).unwrap();
        let plain = HuggingFace::from_file(&path, None, None).unwrap();
        assert_eq!(plain.eos, None);
        assert_eq!(plain.vocab_size, 70_001);
        // The file truncates to 2 tokens; documents are never cut.
        assert_eq!(plain.encode("hello world oops hello"), Ok(vec![1, 2, 0, 1]));
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"eos_token": {"content": "</s>", "special": true}}"#,
        )
        .unwrap();
        let configured = HuggingFace::from_file(&path, None, None).unwrap();
        assert_eq!(configured.eos, Some(("</s>".into(), 70_000)));
        assert_ne!(configured, plain);
        let given = HuggingFace::from_file(&path, Some("hello"), None).unwrap();
        assert_eq!(given.eos, Some(("hello".into(), 1)));
        // Read back from a manifest, it compares equal but cannot encode.
        let back: HuggingFace =
            serde_json::from_str(&serde_json::to_string(&configured).unwrap()).unwrap();
        assert_eq!(back, configured);
        assert!(back.path.is_empty(), "the path is not recorded");
        assert!(back.encode("hello").unwrap_err().contains("manifest"));
    }

    #[test]
    fn bad_files_and_unknown_eos_tokens_are_named() {
        let dir = dir("bad");
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = HuggingFace::from_file(&path, None, None).unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::Config {
                    field: "tokenizer",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("tokenizer.json"), "{err}");
        std::fs::write(&path, WORDS).unwrap();
        let err = HuggingFace::from_file(&path, Some("<|eot|>"), None).unwrap_err();
        assert!(err.to_string().contains("<|eot|>"), "{err}");
        let missing = HuggingFace::from_file(&dir.join("absent.json"), None, None).unwrap_err();
        assert!(missing.to_string().contains("absent.json"), "{missing}");
    }

    #[test]
    fn a_bos_from_the_flag_or_the_config_once_even_with_a_post_processor_adding_it() {
        let dir = dir("bos");
        let path = dir.join("tokenizer.json");
        let words = WORDS.replace(r#""[UNK]": 0,"#, r#""[UNK]": 0, "<s>": 3,"#);
        std::fs::write(&path, &words).unwrap();
        let flag = HuggingFace::from_file(&path, None, Some("<s>")).unwrap();
        assert_eq!(flag.bos, Some(("<s>".into(), 3)));
        assert_eq!(flag.encode("hello world"), Ok(vec![3, 1, 2]));
        // The config asks for it only together with add_bos_token (as Llama's does).
        let config = dir.join("tokenizer_config.json");
        std::fs::write(&config, r#"{"bos_token": "<s>"}"#).unwrap();
        assert_eq!(HuggingFace::from_file(&path, None, None).unwrap().bos, None);
        std::fs::write(
            &config,
            r#"{"bos_token": {"content": "<s>"}, "add_bos_token": true}"#,
        )
        .unwrap();
        let configured = HuggingFace::from_file(&path, None, None).unwrap();
        assert_eq!(configured.encode("world"), Ok(vec![3, 2]));
        // A manifest of a run without a BOS has no `bos` key and still compares equal.
        let plain_json = serde_json::to_string(&flag).unwrap();
        assert!(plain_json.contains("bos"));
        std::fs::remove_file(&config).unwrap();
        let plain = HuggingFace::from_file(&path, None, None).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("bos"));
        assert_ne!(plain, flag);
        // A post-processor that already begins documents with it: one BOS, not two.
        let template = r#""post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [3], "tokens": ["<s>"]}}}"#;
        std::fs::write(&path, words.replace(r#""post_processor": null"#, template)).unwrap();
        let processed = HuggingFace::from_file(&path, None, Some("<s>")).unwrap();
        assert_eq!(processed.bos, None);
        assert_eq!(processed.encode("hello"), Ok(vec![3, 1]));
        // Unknown tokens and a config that asks for a BOS it does not name are refused.
        let err = HuggingFace::from_file(&path, None, Some("<bos>")).unwrap_err();
        assert!(err.to_string().contains("BOS token \"<bos>\""), "{err}");
        std::fs::write(&config, r#"{"add_bos_token": true}"#).unwrap();
        let err = HuggingFace::from_file(&path, None, None).unwrap_err();
        assert!(err.to_string().contains("names no bos_token"), "{err}");
    }
}
