//! Tokenizers: the BPE encodings `tiktoken-rs` ships (no download at run time; their ranks,
//! encoded by seqwarm's own scanners and merge), a byte-level one, and any Hugging Face
//! `tokenizer.json`.

use serde::{Deserialize, Serialize};

use crate::hugging_face::HuggingFace;
use std::sync::LazyLock;

use crate::bpe_merge::Ranks;
use crate::pretokenize::Pattern;

/// A tokenizer: one of the built-in encodings by name, or a Hugging Face `tokenizer.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    /// GPT-2's BPE (`r50k_base`), 50 257 ids, EOS 50256.
    Gpt2,
    /// `r50k_base` (same as gpt2).
    R50kBase,
    /// `p50k_base` (Codex), EOS 50256.
    P50kBase,
    /// `cl100k_base` (GPT-3.5/4), EOS 100257.
    Cl100kBase,
    /// `o200k_base` (GPT-4o), EOS 199999.
    O200kBase,
    /// One token per UTF-8 byte (0..=255), EOS 256.
    Bytes,
    /// A Hugging Face `tokenizer.json` ([`HuggingFace::from_file`]).
    HuggingFace(HuggingFace),
}

impl Tokenizer {
    /// Every built-in tokenizer, in documentation order.
    pub const BUILT_IN: [Tokenizer; 6] = [
        Self::Gpt2,
        Self::R50kBase,
        Self::P50kBase,
        Self::Cl100kBase,
        Self::O200kBase,
        Self::Bytes,
    ];

    /// A built-in tokenizer by name, else the `tokenizer.json` at `given`, with its end-of-text
    /// and beginning-of-text tokens (`eos_token`, `bos_token`: only for a `tokenizer.json`;
    /// see [`HuggingFace::from_file`]).
    pub fn resolve(
        given: &str,
        eos_token: Option<&str>,
        bos_token: Option<&str>,
    ) -> crate::Result<Self> {
        let special = [("eos_token", eos_token), ("bos_token", bos_token)]
            .into_iter()
            .find_map(|(name, token)| token.map(|_| name));
        let config = |reason: String| crate::PreprocessError::Config {
            field: "tokenizer",
            reason,
        };
        if let Some(named) = Self::BUILT_IN.iter().find(|t| t.name() == given) {
            if let Some(name) = special {
                return Err(config(format!(
                    "{name} is for a tokenizer.json; {given} has its own special tokens"
                )));
            }
            return Ok(named.clone());
        }
        let path = std::path::Path::new(given);
        if !path.is_file() {
            return Err(config(format!(
                "{given:?}: neither a built-in tokenizer ({}) nor a tokenizer.json file",
                Self::BUILT_IN
                    .iter()
                    .map(Tokenizer::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(Self::HuggingFace(HuggingFace::from_file(
            path, eos_token, bos_token,
        )?))
    }

    /// The name on the command line and in manifests (a `tokenizer.json`: its path).
    pub fn name(&self) -> &str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::R50kBase => "r50k_base",
            Self::P50kBase => "p50k_base",
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
            Self::Bytes => "bytes",
            Self::HuggingFace(hf) => &hf.path,
        }
    }

    /// The end-of-text id, when the tokenizer has one (a `tokenizer.json` may name none).
    pub fn eos_id(&self) -> Option<i32> {
        match self {
            Self::Gpt2 | Self::R50kBase | Self::P50kBase => Some(50_256),
            Self::Cl100kBase => Some(100_257),
            Self::O200kBase => Some(199_999),
            Self::Bytes => Some(256),
            Self::HuggingFace(hf) => hf.eos.as_ref().map(|(_, id)| *id),
        }
    }

    /// Ids are below this.
    pub fn vocab_size(&self) -> u64 {
        match self {
            Self::Gpt2 | Self::R50kBase => 50_257,
            Self::P50kBase => 50_281,
            Self::Cl100kBase => 100_277,
            Self::O200kBase => 200_019,
            Self::Bytes => 257,
            Self::HuggingFace(hf) => hf.vocab_size,
        }
    }

    /// Token ids of `text`: for the built-in encodings, special-token text is encoded as
    /// ordinary text; a `tokenizer.json` encodes as its model does ([`HuggingFace`]). An error
    /// says why a tokenizer refused the text.
    pub fn encode(&self, text: &str) -> Result<Vec<i32>, String> {
        static R50K: LazyLock<Ranks> =
            LazyLock::new(|| Ranks::of(tiktoken_rs::r50k_base_singleton(), 50_257));
        static P50K: LazyLock<Ranks> =
            LazyLock::new(|| Ranks::of(tiktoken_rs::p50k_base_singleton(), 50_281));
        static CL100K: LazyLock<Ranks> =
            LazyLock::new(|| Ranks::of(tiktoken_rs::cl100k_base_singleton(), 100_277));
        static O200K: LazyLock<Ranks> =
            LazyLock::new(|| Ranks::of(tiktoken_rs::o200k_base_singleton(), 200_019));
        let (bpe, ranks, pattern) = match self {
            Self::Gpt2 | Self::R50kBase => {
                (tiktoken_rs::r50k_base_singleton(), &*R50K, Pattern::Gpt2)
            }
            Self::P50kBase => (tiktoken_rs::p50k_base_singleton(), &*P50K, Pattern::Gpt2),
            Self::Cl100kBase => (
                tiktoken_rs::cl100k_base_singleton(),
                &*CL100K,
                Pattern::Cl100k,
            ),
            Self::O200kBase => (tiktoken_rs::o200k_base_singleton(), &*O200K, Pattern::O200k),
            Self::Bytes => return Ok(text.bytes().map(i32::from).collect()),
            Self::HuggingFace(hf) => return hf.encode(text),
        };
        // The split pattern scanned by hand, the piece cache and the merge.
        let ids = crate::pretokenize::encode(bpe, ranks, text, pattern);
        // Ranks are below the vocabulary size (< 2^31), so the conversion is exact; a byte
        // without a rank (`u32::MAX`, none in these encodings) is refused.
        ids.into_iter()
            .map(|r| i32::try_from(r).map_err(|_| "a byte that is no token of the encoding".into()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Tokenizer;

    #[test]
    fn gpt2_encodes_known_text() {
        // "Hello world" is [15496, 995] in GPT-2's vocabulary.
        assert_eq!(Tokenizer::Gpt2.encode("Hello world"), Ok(vec![15496, 995]));
        assert_eq!(Tokenizer::Bytes.encode("Hi"), Ok(vec![72, 105]));
        for t in [
            Tokenizer::Gpt2,
            Tokenizer::P50kBase,
            Tokenizer::Cl100kBase,
            Tokenizer::O200kBase,
        ] {
            let ids = t
                .encode("The quick brown fox jumps over the lazy dog.")
                .unwrap();
            assert!(!ids.is_empty() && ids.iter().all(|&i| i >= 0 && (i as u64) < t.vocab_size()));
        }
    }
}
