//! Tokenizers: the BPE encodings `tiktoken-rs` ships (no download at run time) and a
//! byte-level one.

use serde::{Deserialize, Serialize};

/// A tokenizer by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

impl Tokenizer {
    /// Every tokenizer, in documentation order.
    pub const ALL: [Tokenizer; 6] = [
        Self::Gpt2,
        Self::R50kBase,
        Self::P50kBase,
        Self::Cl100kBase,
        Self::O200kBase,
        Self::Bytes,
    ];

    /// The name on the command line and in manifests.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpt2 => "gpt2",
            Self::R50kBase => "r50k_base",
            Self::P50kBase => "p50k_base",
            Self::Cl100kBase => "cl100k_base",
            Self::O200kBase => "o200k_base",
            Self::Bytes => "bytes",
        }
    }

    /// The end-of-text id.
    pub fn eos_id(self) -> i32 {
        match self {
            Self::Gpt2 | Self::R50kBase | Self::P50kBase => 50_256,
            Self::Cl100kBase => 100_257,
            Self::O200kBase => 199_999,
            Self::Bytes => 256,
        }
    }

    /// Ids are below this.
    pub fn vocab_size(self) -> u64 {
        match self {
            Self::Gpt2 | Self::R50kBase => 50_257,
            Self::P50kBase => 50_281,
            Self::Cl100kBase => 100_277,
            Self::O200kBase => 200_019,
            Self::Bytes => 257,
        }
    }

    /// Token ids of `text` (special-token text is encoded as ordinary text).
    pub fn encode(self, text: &str) -> Vec<i32> {
        let bpe = match self {
            Self::Gpt2 | Self::R50kBase => tiktoken_rs::r50k_base_singleton(),
            Self::P50kBase => tiktoken_rs::p50k_base_singleton(),
            Self::Cl100kBase => tiktoken_rs::cl100k_base_singleton(),
            Self::O200kBase => tiktoken_rs::o200k_base_singleton(),
            Self::Bytes => return text.bytes().map(i32::from).collect(),
        };
        let ids = match self {
            // GPT-2's split pattern: the hand-written scanner and the piece cache.
            Self::Gpt2 | Self::R50kBase | Self::P50kBase => crate::pretokenize::encode(bpe, text),
            _ => bpe.encode_ordinary(text),
        };
        // Ranks are below the vocabulary size (< 2^31), so the conversion is exact.
        ids.into_iter().map(|r| r as i32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Tokenizer;

    #[test]
    fn gpt2_encodes_known_text() {
        // "Hello world" is [15496, 995] in GPT-2's vocabulary.
        assert_eq!(Tokenizer::Gpt2.encode("Hello world"), vec![15496, 995]);
        assert_eq!(Tokenizer::Bytes.encode("Hi"), vec![72, 105]);
        for t in [
            Tokenizer::Gpt2,
            Tokenizer::P50kBase,
            Tokenizer::Cl100kBase,
            Tokenizer::O200kBase,
        ] {
            let ids = t.encode("The quick brown fox jumps over the lazy dog.");
            assert!(!ids.is_empty() && ids.iter().all(|&i| i >= 0 && (i as u64) < t.vocab_size()));
        }
    }
}
