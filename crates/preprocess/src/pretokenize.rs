//! GPT-2's pre-tokenizer (the `r50k_base` and `p50k_base` split pattern) as a hand-written
//! scanner, and the encoder that uses it with a cache of pieces already encoded.
//!
//! BPE first splits text with a regular expression,
//! `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`, and
//! encodes each piece on its own. In `tiktoken` (and `tiktoken-rs`, which `encode` used) that
//! backtracking regex is most of the time, and every piece is merged again although most
//! pieces of real text are words seen many times before. Here the split is a scanner over the
//! same character classes (taken from `regex-syntax`, the tables the regex itself uses), and
//! each distinct piece is encoded once per thread by `tiktoken-rs` and remembered. The ids are
//! `tiktoken`'s exactly: the tests compare both on generated and on real text.

use std::cell::RefCell;
use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};
use rustc_hash::FxHashMap;

/// The character classes of the pattern, beyond ASCII: sorted, disjoint inclusive ranges.
struct Classes {
    letters: Vec<(char, char)>,
    numbers: Vec<(char, char)>,
    spaces: Vec<(char, char)>,
}

/// `None` if `regex-syntax` could not give a class (then the regex path is used instead).
static CLASSES: LazyLock<Option<Classes>> = LazyLock::new(|| {
    let ranges = |pattern: &str| -> Option<Vec<(char, char)>> {
        let hir = regex_syntax::ParserBuilder::new()
            .build()
            .parse(pattern)
            .ok()?;
        match hir.kind() {
            HirKind::Class(Class::Unicode(class)) => Some(
                class
                    .ranges()
                    .iter()
                    .map(|r| (r.start(), r.end()))
                    .collect(),
            ),
            _ => None,
        }
    };
    Some(Classes {
        letters: ranges(r"\p{L}")?,
        numbers: ranges(r"\p{N}")?,
        spaces: ranges(r"\s")?,
    })
});

fn in_ranges(ranges: &[(char, char)], c: char) -> bool {
    let at = ranges.partition_point(|&(_, end)| end < c);
    ranges.get(at).is_some_and(|&(start, _)| start <= c)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Letter,
    Number,
    Space,
    Other,
}

impl Classes {
    fn kind(&self, c: char) -> Kind {
        if c.is_ascii() {
            return match c {
                'a'..='z' | 'A'..='Z' => Kind::Letter,
                '0'..='9' => Kind::Number,
                ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' => Kind::Space,
                _ => Kind::Other,
            };
        }
        if in_ranges(&self.letters, c) {
            Kind::Letter
        } else if in_ranges(&self.numbers, c) {
            Kind::Number
        } else if in_ranges(&self.spaces, c) {
            Kind::Space
        } else {
            Kind::Other
        }
    }

    /// The end of the piece that starts at byte `at` of `text` (`at < text.len()`).
    fn piece_end(&self, text: &str, at: usize) -> usize {
        let rest = &text[at..];
        let mut chars = rest.char_indices().map(|(i, c)| (at + i, c));
        let Some((_, first)) = chars.next() else {
            return text.len();
        };
        // 1. Contractions.
        if first == '\'' {
            let after = &rest[1..];
            for suffix in ["s", "d", "m", "t", "ll", "ve", "re"] {
                if after.starts_with(suffix) {
                    return at + 1 + suffix.len();
                }
            }
        }
        // 2-4. An optional space, then a run of one class (letters, numbers, or neither
        // letters, numbers nor spaces).
        let (class_start, class) = if first == ' ' {
            match chars.clone().next() {
                Some((i, c)) if self.kind(c) != Kind::Space => (Some(i), self.kind(c)),
                _ => (None, Kind::Space),
            }
        } else {
            (Some(at), self.kind(first))
        };
        if let (Some(start), true) = (class_start, class != Kind::Space) {
            return self.run_end(text, start, |k| k == class);
        }
        // 5-7. Whitespace: the run to the end of the text; else the run less its last
        // character (which then leads the next piece); else the one character.
        let end = self.run_end(text, at, |k| k == Kind::Space);
        if end == text.len() {
            return end;
        }
        let last = text[..end]
            .char_indices()
            .next_back()
            .map_or(at, |(i, _)| i);
        if last > at { last } else { end }
    }

    /// The end of the run of characters from byte `start` whose kind satisfies `keep`.
    fn run_end(&self, text: &str, start: usize, keep: impl Fn(Kind) -> bool) -> usize {
        text[start..]
            .char_indices()
            .find(|&(_, c)| !keep(self.kind(c)))
            .map_or(text.len(), |(i, _)| start + i)
    }
}

impl Classes {
    /// The pieces of `text` under GPT-2's pattern, in order.
    fn pieces<'t>(&self, text: &'t str) -> impl Iterator<Item = &'t str> {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < text.len()).then(|| {
                let start = at;
                at = self.piece_end(text, at);
                &text[start..at]
            })
        })
    }
}

/// Pieces remembered per thread at most; the cache starts afresh beyond it (a corpus of
/// unique strings must not grow it without bound): with `CACHE_PIECE_BYTES`, about 25 MiB.
const CACHE_PIECES: usize = 1 << 18;
/// Longer pieces (rare: long words, long runs of punctuation or digits) are not remembered.
const CACHE_PIECE_BYTES: usize = 32;

/// Each piece's ids under one encoding.
type Pieces = FxHashMap<Box<str>, Box<[u32]>>;

thread_local! {
    /// Per encoding (the address of its `CoreBPE`, a static singleton), its pieces.
    static CACHE: RefCell<FxHashMap<usize, Pieces>> = RefCell::new(FxHashMap::default());
}

/// `bpe.encode_ordinary(text)`, for an encoding whose split pattern is GPT-2's: the same ids,
/// several times faster on real text.
pub(crate) fn encode(bpe: &tiktoken_rs::CoreBPE, text: &str) -> Vec<u32> {
    let Some(classes) = CLASSES.as_ref() else {
        return bpe.encode_ordinary(text);
    };
    CACHE.with_borrow_mut(|caches| {
        let cache = caches.entry(std::ptr::from_ref(bpe) as usize).or_default();
        let mut out = Vec::with_capacity(text.len() / 3);
        for piece in classes.pieces(text) {
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                continue;
            }
            let ids = bpe.encode_ordinary(piece);
            out.extend_from_slice(&ids);
            if piece.len() > CACHE_PIECE_BYTES {
                continue;
            }
            if cache.len() >= CACHE_PIECES {
                cache.clear();
            }
            cache.insert(piece.into(), ids.into_boxed_slice());
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::{CLASSES, encode};

    fn split(text: &str) -> Vec<&str> {
        CLASSES.as_ref().unwrap().pieces(text).collect()
    }

    /// Text from every class the pattern tells apart, including the cases the regex decides by
    /// backtracking (runs of spaces before a word, a run at the end).
    const ALPHABET: &[&str] = &[
        " ", "  ", "\n", "\t", "\r\n", "\u{a0}", "\u{3000}", "\u{2028}", "a", "Z", "é", "ß", "Ω",
        "字", "ǅ", "ʰ", "1", "٣", "Ⅷ", "½", "²", "'", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
        "'S", "!", "?!", ".", "-", "_", "😀", "\u{301}", "\u{0}", "\u{feff}", "don't", " hello",
        "x'", "''",
    ];

    fn generated(seed: u64, n: usize) -> String {
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ALPHABET[(state >> 33) as usize % ALPHABET.len()]
            })
            .collect()
    }

    #[test]
    fn the_same_ids_as_the_regex_on_generated_text() {
        let bpe = tiktoken_rs::r50k_base_singleton();
        for seed in 0..2000 {
            let text = generated(seed, 1 + seed as usize % 60);
            assert_eq!(encode(bpe, &text), bpe.encode_ordinary(&text), "{text:?}");
            assert_eq!(split(&text).concat(), text);
        }
    }

    #[test]
    fn the_same_pieces_as_the_regex() {
        let pattern = fancy_regex::Regex::new(
            r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s",
        )
        .unwrap();
        for seed in 1000..1400 {
            let text = generated(seed, 1 + seed as usize % 80);
            let expected: Vec<&str> = pattern
                .find_iter(&text)
                .map(|m| m.unwrap().as_str())
                .collect();
            assert_eq!(split(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn the_same_ids_on_this_crates_sources() {
        let bpe = tiktoken_rs::p50k_base_singleton();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert_eq!(encode(bpe, &text), bpe.encode_ordinary(&text));
        }
    }
}
