//! The built-in encodings (hand-written split scanners, the piece cache, the `O(n log n)`
//! merge) give `tiktoken`'s ids exactly: `tiktoken-rs` (tiktoken's own core) is the reference,
//! on fuzzed Unicode (any scalar value, and text made of the characters each pattern tells
//! apart) and on long runs of one character, which are quadratic in some BPE implementations
//! and which `tiktoken-rs` itself can only take up to a size (its regex overflows its stack
//! on a few MB of spaces; seqwarm's own path has no regex).

use proptest::prelude::*;
use seqwarm_preprocess::Tokenizer;

/// Characters every split pattern tells apart: cases, letters without case, marks, numbers of
/// every kind, whitespace of every kind, newlines, apostrophes and contraction letters.
const PARTS: &[&str] = &[
    " ",
    "  ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\u{a0}",
    "\u{3000}",
    "\u{2028}",
    "\u{85}",
    "\u{b}",
    "a",
    "Z",
    "é",
    "É",
    "ß",
    "Ω",
    "ω",
    "字",
    "ǅ",
    "ʰ",
    "ー",
    "\u{301}",
    "\u{20dd}",
    "1",
    "٣",
    "Ⅷ",
    "½",
    "²",
    "'",
    "s",
    "S",
    "ſ",
    "t",
    "ll",
    "LL",
    "ve",
    "re",
    "RE",
    "m",
    "d",
    "!",
    "?",
    ".",
    "/",
    "-",
    "_",
    "😀",
    "\u{0}",
    "\u{feff}",
    "\u{200d}",
    "<|endoftext|>",
];

fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
    tokenizer
        .encode(text)
        .unwrap()
        .into_iter()
        .map(|id| u32::try_from(id).unwrap())
        .collect()
}

fn check(text: &str) {
    let pairs: [(Tokenizer, &tiktoken_rs::CoreBPE); 4] = [
        (Tokenizer::Gpt2, tiktoken_rs::r50k_base_singleton()),
        (Tokenizer::P50kBase, tiktoken_rs::p50k_base_singleton()),
        (Tokenizer::Cl100kBase, tiktoken_rs::cl100k_base_singleton()),
        (Tokenizer::O200kBase, tiktoken_rs::o200k_base_singleton()),
    ];
    for (tokenizer, reference) in pairs {
        assert_eq!(
            ids(&tokenizer, text),
            reference.encode_ordinary(text),
            "{} on {text:?}",
            tokenizer.name()
        );
    }
}

fn text_of_parts() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PARTS), 0..120).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256)
    ))]

    #[test]
    fn any_unicode(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn the_characters_the_patterns_tell_apart(text in text_of_parts()) {
        check(&text);
    }

    #[test]
    fn runs_of_one_character(
        part in prop::sample::select(PARTS),
        count in 1usize..3000,
        before in text_of_parts(),
        after in text_of_parts(),
    ) {
        check(&format!("{before}{}{after}", part.repeat(count)));
    }
}

/// Long runs: ids equal to `tiktoken-rs`'s at a size it still takes, and a size it cannot
/// (it panics) encoded without error, in time linear up to a log factor (this test would take
/// minutes with a quadratic merge).
#[test]
fn long_runs() {
    for part in ["a", " ", "7", "!", "\n", "字", "\u{301}"] {
        check(&part.repeat(20_000));
        for tokenizer in [Tokenizer::Gpt2, Tokenizer::Cl100kBase, Tokenizer::O200kBase] {
            let text = part.repeat(200_000);
            let ids = ids(&tokenizer, &text);
            assert!(!ids.is_empty() && ids.len() <= text.len(), "{part:?}");
        }
    }
}
