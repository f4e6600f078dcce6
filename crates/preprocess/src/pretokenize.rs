//! The split patterns of the built-in encodings (GPT-2's, for `r50k_base` and `p50k_base`;
//! `cl100k_base`'s; `o200k_base`'s) as hand-written scanners, and the encoder that uses them
//! with a cache of pieces already encoded.
//!
//! BPE first splits text with a regular expression (GPT-2's is
//! `'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s`) and
//! encodes each piece on its own. In `tiktoken` (and `tiktoken-rs`) that backtracking regex is
//! most of the time, and every piece is merged again although most pieces of real text are
//! words seen many times before. Here each split is a scanner over the same character classes
//! (taken from `regex-syntax`, the tables the regex itself uses) that takes, at each position,
//! the first alternative that matches as the backtracking regex would; each distinct piece is
//! merged once per thread ([`crate::bpe_merge`]) and remembered ([`crate::piece_cache`]). The
//! ids are `tiktoken`'s exactly: the tests compare the pieces with the regexes' and the ids with
//! `tiktoken-rs`'s on generated text, fuzzed Unicode, long runs and real text.

use std::cell::RefCell;
use std::sync::LazyLock;

use regex_syntax::hir::{Class, HirKind};
use rustc_hash::FxHashMap;

use crate::bpe_merge::Ranks;
use crate::piece_cache::PieceCache;

/// The character classes of the pattern, beyond ASCII: sorted, disjoint inclusive ranges.
struct Classes {
    letters: Vec<(char, char)>,
    numbers: Vec<(char, char)>,
    spaces: Vec<(char, char)>,
    /// `o200k_base` tells letters apart by case: `\p{Lu}` and `\p{Lt}`...
    upper: Vec<(char, char)>,
    /// ... `\p{Ll}` ...
    lower: Vec<(char, char)>,
    /// ... `\p{Lm}` and `\p{Lo}` (either case) ...
    caseless: Vec<(char, char)>,
    /// ... and marks, `\p{M}` (either case, and no letter).
    marks: Vec<(char, char)>,
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
        upper: ranges(r"[\p{Lu}\p{Lt}]")?,
        lower: ranges(r"\p{Ll}")?,
        caseless: ranges(r"[\p{Lm}\p{Lo}]")?,
        marks: ranges(r"\p{M}")?,
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
        less_last_char(text, at, end)
    }

    /// The end of the run of characters from byte `start` whose kind satisfies `keep`.
    fn run_end(&self, text: &str, start: usize, keep: impl Fn(Kind) -> bool) -> usize {
        run_end(text, start, |c| keep(self.kind(c)))
    }
}

/// The end of the run of characters from byte `start` for which `keep` holds.
fn run_end(text: &str, start: usize, keep: impl Fn(char) -> bool) -> usize {
    text[start..]
        .char_indices()
        .find(|&(_, c)| !keep(c))
        .map_or(text.len(), |(i, _)| start + i)
}

/// The end of at most three characters from byte `at` for which `keep` holds (`\p{N}{1,3}`).
fn up_to_three(text: &str, at: usize, keep: impl Fn(char) -> bool) -> usize {
    text[at..]
        .char_indices()
        .take(3)
        .take_while(|&(_, c)| keep(c))
        .last()
        .map_or(at, |(i, c)| at + i + c.len_utf8())
}

/// The end of a whitespace run `at..end` followed by more text, as `\s+(?!\S)` then `\s`
/// take it: the run less its last character (which then leads the next piece), or the one
/// character.
fn less_last_char(text: &str, at: usize, end: usize) -> usize {
    let last = text[..end]
        .char_indices()
        .next_back()
        .map_or(at, |(i, _)| i);
    if last > at { last } else { end }
}

/// The length of the contraction `(?i:[sdmt]|ll|ve|re)` at the start of `after` (the text
/// after an apostrophe), if there is one. Case-insensitive as the regex is: Unicode's simple
/// case folding also maps `ſ` (U+017F) to `s`.
fn contraction_len(after: &str) -> Option<usize> {
    let mut chars = after.chars();
    let first = chars.next()?;
    let second = chars.next().map(|c| c.to_ascii_lowercase());
    match first.to_ascii_lowercase() {
        's' | 'd' | 'm' | 't' => Some(1),
        'ſ' => Some(first.len_utf8()),
        'l' if second == Some('l') => Some(2),
        'v' | 'r' if second == Some('e') => Some(2),
        _ => None,
    }
}

impl Classes {
    /// The end of the piece that starts at byte `at` of `text` under `cl100k_base`'s pattern,
    /// `'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s`:
    /// the first alternative that matches, as the backtracking regex takes it.
    fn cl100k_piece_end(&self, text: &str, at: usize) -> usize {
        let rest = &text[at..];
        let mut chars = rest.char_indices().map(|(i, c)| (at + i, c));
        let Some((_, first)) = chars.next() else {
            return text.len();
        };
        let next = chars.next();
        let is_newline = |c: char| c == '\r' || c == '\n';
        // 1. Contractions.
        if first == '\''
            && let Some(len) = contraction_len(&rest[1..])
        {
            return at + 1 + len;
        }
        let kind = self.kind(first);
        // 2. Letters, after at most one character that is no newline, letter or number.
        if kind == Kind::Letter {
            return self.run_end(text, at, |k| k == Kind::Letter);
        }
        if !is_newline(first)
            && kind != Kind::Number
            && let Some((i, c)) = next
            && self.kind(c) == Kind::Letter
        {
            return self.run_end(text, i, |k| k == Kind::Letter);
        }
        // 3. One to three numbers.
        if kind == Kind::Number {
            return up_to_three(text, at, |c| self.kind(c) == Kind::Number);
        }
        // 4. An optional space, a run of neither spaces, letters nor numbers, then newlines.
        let others = match (first, next) {
            (' ', Some((i, c))) if self.kind(c) == Kind::Other => Some(i),
            _ if kind == Kind::Other => Some(at),
            _ => None,
        };
        if let Some(start) = others {
            let end = self.run_end(text, start, |k| k == Kind::Other);
            return text[end..]
                .char_indices()
                .find(|&(_, c)| !is_newline(c))
                .map_or(text.len(), |(i, _)| end + i);
        }
        // 5-8. Whitespace: the run to the end of the text; else up to its last newline; else
        // the run less its last character (which then leads the next piece); else one.
        let end = self.run_end(text, at, |k| k == Kind::Space);
        if end == text.len() {
            return end;
        }
        if let Some(newline) = text[at..end].rfind(is_newline) {
            return at + newline + 1;
        }
        less_last_char(text, at, end)
    }
}

/// A character's class under `o200k_base`'s pattern.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Case {
    /// `\p{Lu}`, `\p{Lt}`: in `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]` only.
    Upper,
    /// `\p{Ll}`: in `[\p{Ll}\p{Lm}\p{Lo}\p{M}]` only.
    Lower,
    /// `\p{Lm}`, `\p{Lo}`: in both, and a letter.
    Caseless,
    /// `\p{M}`: in both, but no letter (so also in `[^\s\p{L}\p{N}]`).
    Mark,
    Number,
    Space,
    Other,
}

impl Case {
    /// In `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]`.
    fn upper_side(self) -> bool {
        matches!(self, Self::Upper | Self::Caseless | Self::Mark)
    }
    /// In `[\p{Ll}\p{Lm}\p{Lo}\p{M}]`.
    fn lower_side(self) -> bool {
        matches!(self, Self::Lower | Self::Caseless | Self::Mark)
    }
    /// In `[^\s\p{L}\p{N}]`.
    fn other_side(self) -> bool {
        matches!(self, Self::Mark | Self::Other)
    }
}

impl Classes {
    fn case(&self, c: char) -> Case {
        if c.is_ascii() {
            return match c {
                'a'..='z' => Case::Lower,
                'A'..='Z' => Case::Upper,
                '0'..='9' => Case::Number,
                ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r' => Case::Space,
                _ => Case::Other,
            };
        }
        if in_ranges(&self.lower, c) {
            Case::Lower
        } else if in_ranges(&self.upper, c) {
            Case::Upper
        } else if in_ranges(&self.caseless, c) {
            Case::Caseless
        } else if in_ranges(&self.marks, c) {
            Case::Mark
        } else if in_ranges(&self.numbers, c) {
            Case::Number
        } else if in_ranges(&self.spaces, c) {
            Case::Space
        } else {
            Case::Other
        }
    }

    /// The end of the run from byte `start` of characters whose class satisfies `keep`.
    fn case_run_end(&self, text: &str, start: usize, keep: impl Fn(Case) -> bool) -> usize {
        run_end(text, start, |c| keep(self.case(c)))
    }

    /// Where `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` (`upper_first`:
    /// `...+[...]*`) matching from byte `start` ends, as the backtracking regex finds it.
    fn cased_word_end(&self, text: &str, start: usize, upper_first: bool) -> Option<usize> {
        let upper_end = self.case_run_end(text, start, Case::upper_side);
        let lower_end = self.case_run_end(text, upper_end, Case::lower_side);
        if upper_first {
            return (upper_end > start).then_some(lower_end);
        }
        if lower_end > upper_end {
            return Some(lower_end);
        }
        // The upper run gives back characters until one can start the lower run: the last
        // caseless letter or mark in it, which the lower run then ends after (what follows it
        // in the upper run is upper case only, and what follows the run is neither).
        text[start..upper_end]
            .char_indices()
            .rev()
            .find(|&(_, c)| self.case(c).lower_side())
            .map(|(i, c)| start + i + c.len_utf8())
    }

    /// The end of the piece that starts at byte `at` of `text` under `o200k_base`'s pattern:
    /// `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?`,
    /// the same with `+` and `*` swapped, `\p{N}{1,3}`, ` ?[^\s\p{L}\p{N}]+[\r\n/]*`,
    /// `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`: the first alternative that matches.
    fn o200k_piece_end(&self, text: &str, at: usize) -> usize {
        let rest = &text[at..];
        let Some(first) = rest.chars().next() else {
            return text.len();
        };
        let after_first = at + first.len_utf8();
        let case = self.case(first);
        let is_newline = |c: char| c == '\r' || c == '\n';
        // 1-2. A word by case, after at most one character that is no newline, letter or
        // number, then a contraction.
        let may_lead = !is_newline(first)
            && !matches!(
                case,
                Case::Upper | Case::Lower | Case::Caseless | Case::Number
            );
        let second = text[after_first..].chars().next();
        let cased = |c: char| {
            let case = self.case(c);
            case.upper_side() || case.lower_side()
        };
        // A word starts with a cased character, after the leading one or not.
        let word_ahead = cased(first) || (may_lead && second.is_some_and(cased));
        for upper_first in [false, true].into_iter().filter(|_| word_ahead) {
            let word = may_lead
                .then(|| self.cased_word_end(text, after_first, upper_first))
                .flatten()
                .or_else(|| self.cased_word_end(text, at, upper_first));
            if let Some(end) = word {
                let contraction = text[end..]
                    .strip_prefix('\'')
                    .and_then(contraction_len)
                    .map_or(0, |len| 1 + len);
                return end + contraction;
            }
        }
        // 3. One to three numbers.
        if case == Case::Number {
            return up_to_three(text, at, |c| self.case(c) == Case::Number);
        }
        // 4. An optional space, a run of neither spaces, letters nor numbers, then newlines
        // and slashes.
        let others = if first == ' ' && second.is_some_and(|c| self.case(c).other_side()) {
            Some(after_first)
        } else {
            case.other_side().then_some(at)
        };
        if let Some(start) = others {
            let end = self.case_run_end(text, start, Case::other_side);
            return text[end..]
                .char_indices()
                .find(|&(_, c)| !matches!(c, '\r' | '\n' | '/'))
                .map_or(text.len(), |(i, _)| end + i);
        }
        // 5-7. Whitespace: up to its last newline; else the run to the end of the text; else
        // the run less its last character (which then leads the next piece); else all of it.
        let end = self.case_run_end(text, at, |c| c == Case::Space);
        if let Some(newline) = text[at..end].rfind(is_newline) {
            return at + newline + 1;
        }
        if end == text.len() {
            return end;
        }
        less_last_char(text, at, end)
    }
}

/// A split pattern this module scans by hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// GPT-2's (`r50k_base`, `p50k_base`).
    Gpt2,
    /// `cl100k_base`'s.
    Cl100k,
    /// `o200k_base`'s.
    O200k,
}

impl Classes {
    /// The pieces of `text` under `pattern`, in order.
    fn pieces<'t>(&self, text: &'t str, pattern: Pattern) -> impl Iterator<Item = &'t str> {
        let mut at = 0;
        std::iter::from_fn(move || {
            (at < text.len()).then(|| {
                let start = at;
                at = match pattern {
                    Pattern::Gpt2 => self.piece_end(text, at),
                    Pattern::Cl100k => self.cl100k_piece_end(text, at),
                    Pattern::O200k => self.o200k_piece_end(text, at),
                };
                &text[start..at]
            })
        })
    }
}

thread_local! {
    /// Per encoding (the address of its `Ranks`, a static), its pieces.
    static CACHE: RefCell<FxHashMap<usize, PieceCache>> = RefCell::new(FxHashMap::default());
}

/// `bpe.encode_ordinary(text)`, for an encoding whose split pattern is `pattern` and whose
/// merge ranks are `ranks`: the same ids, several times faster on real text, in `O(n log n)`
/// time however long a piece is.
pub(crate) fn encode(
    bpe: &tiktoken_rs::CoreBPE,
    ranks: &Ranks,
    text: &str,
    pattern: Pattern,
) -> Vec<u32> {
    let Some(classes) = CLASSES.as_ref() else {
        return bpe.encode_ordinary(text);
    };
    CACHE.with_borrow_mut(|caches| {
        let cache = caches
            .entry(std::ptr::from_ref(ranks) as usize)
            .or_default();
        let mut out = Vec::with_capacity(text.len() / 3);
        for piece in classes.pieces(text, pattern) {
            cache.encode_into(piece, &mut out, |piece| {
                ranks.encode_piece(piece.as_bytes())
            });
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::{CLASSES, Pattern};
    use crate::Tokenizer;

    /// The ids `tokenizer` gives `text` (through the scanners, the cache and the merge).
    fn ids(tokenizer: &Tokenizer, text: &str) -> Vec<u32> {
        tokenizer
            .encode(text)
            .unwrap()
            .into_iter()
            .map(|id| id as u32)
            .collect()
    }

    fn split(text: &str, pattern: Pattern) -> Vec<&str> {
        CLASSES.as_ref().unwrap().pieces(text, pattern).collect()
    }

    /// tiktoken's `o200k_base` pattern.
    const O200K: &str = concat!(
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        "|",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    );

    /// tiktoken's `cl100k_base` pattern.
    const CL100K: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

    /// Text from every class the pattern tells apart, including the cases the regex decides by
    /// backtracking (runs of spaces before a word, a run at the end).
    const ALPHABET: &[&str] = &[
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "\u{a0}",
        "\u{3000}",
        "\u{2028}",
        "a",
        "Z",
        "é",
        "ß",
        "Ω",
        "字",
        "ǅ",
        "ʰ",
        "1",
        "٣",
        "Ⅷ",
        "½",
        "²",
        "'",
        "'s",
        "'t",
        "'re",
        "'ve",
        "'m",
        "'ll",
        "'d",
        "'S",
        "!",
        "?!",
        ".",
        "-",
        "_",
        "😀",
        "\u{301}",
        "\u{0}",
        "\u{feff}",
        "don't",
        " hello",
        "x'",
        "''",
        "ſ",
        "'ſ",
        "'LL",
        "'Ve",
        "'RE",
        "\r",
        "\n\n",
        " \n ",
        "\t\n",
        "12345",
        "٣٣٣٣",
        "a1",
        "!a",
        "\u{a0}b",
        "\n\r",
        " !",
        "?\r\n",
        "'x",
        "Hello",
        "HTML",
        "camelCase",
        "ǅx",
        "ʰa",
        "Aʰ",
        "字a",
        "A字",
        "e\u{301}",
        "E\u{301}x",
        "\u{301}\u{301}",
        "/",
        "!/\n/",
        "Ab's",
        "ABC'LL",
        "xyz'd",
        "\u{1f600}a",
        " \u{301}",
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
            assert_eq!(
                ids(&Tokenizer::Gpt2, &text),
                bpe.encode_ordinary(&text),
                "{text:?}"
            );
            assert_eq!(split(&text, Pattern::Gpt2).concat(), text);
        }
    }

    #[test]
    fn the_same_pieces_as_the_regex() {
        same_as_the_regex(
            r"'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s",
            Pattern::Gpt2,
            None,
            1000..1400,
        );
    }

    /// `pattern` splits like the regex `regex` on generated text, and (given) `tokenizer`'s
    /// ids are `tiktoken-rs`'s.
    fn same_as_the_regex(
        regex: &str,
        pattern: Pattern,
        tokenizer: Option<(&Tokenizer, &tiktoken_rs::CoreBPE)>,
        seeds: std::ops::Range<u64>,
    ) {
        let regex = fancy_regex::Regex::new(regex).unwrap();
        for seed in seeds {
            let text = generated(seed, 1 + seed as usize % 80);
            let expected: Vec<&str> = regex
                .find_iter(&text)
                .map(|m| m.unwrap().as_str())
                .collect();
            assert_eq!(split(&text, pattern), expected, "{text:?}");
            if let Some((tokenizer, bpe)) = tokenizer {
                assert_eq!(
                    ids(tokenizer, &text),
                    bpe.encode_ordinary(&text),
                    "{text:?}"
                );
            }
        }
    }

    #[test]
    fn the_same_ids_on_this_crates_sources() {
        let bpe = tiktoken_rs::p50k_base_singleton();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            assert_eq!(ids(&Tokenizer::P50kBase, &text), bpe.encode_ordinary(&text));
            let cl100k = tiktoken_rs::cl100k_base_singleton();
            assert_eq!(
                ids(&Tokenizer::Cl100kBase, &text),
                cl100k.encode_ordinary(&text)
            );
        }
    }

    #[test]
    fn cl100k_the_same_pieces_and_ids_as_the_regex() {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        same_as_the_regex(
            CL100K,
            Pattern::Cl100k,
            Some((&Tokenizer::Cl100kBase, bpe)),
            0..3000,
        );
    }

    #[test]
    fn o200k_the_same_pieces_and_ids_as_the_regex() {
        let bpe = tiktoken_rs::o200k_base_singleton();
        same_as_the_regex(
            O200K,
            Pattern::O200k,
            Some((&Tokenizer::O200kBase, bpe)),
            0..4000,
        );
    }
}
