//! Bounded fuzzing of `preprocess` input: arbitrary bytes as text (split on a separator or
//! not) and as JSON Lines, with bad input skipped. Whatever the bytes, a run never panics,
//! and the manifest's counts are what the shards hold (no token lost silently).
//!
//! The committed corpus (`tests/fuzz-corpus/inputs.jsonl`, one `{"format", "separator",
//! "hex"}` per line: inputs that once failed, or that reach the odd corners) runs first, then
//! `PROPTEST_CASES` (default 64) random inputs. A failure found here becomes a corpus line.

use std::path::Path;

use parquet::file::reader::{FileReader, SerializedFileReader};
use proptest::prelude::*;
use seqwarm_format::OnError;
use seqwarm_format::flat::{DOCUMENT_LENGTHS_KEY, decode_document_lengths};
use seqwarm_preprocess::{InputFormat, Preprocess, Tokenizer};

/// One input file and how to read it.
#[derive(Debug, Clone, serde::Deserialize)]
struct Case {
    format: String,
    separator: Option<String>,
    hex: String,
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Tokens and documents the flat shards in `dir` hold, from their footers.
fn shards_hold(dir: &Path) -> (u64, u64) {
    let (mut tokens, mut documents) = (0, 0);
    for (name, bytes) in seqwarm_testkit::parquet_files(dir) {
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let metadata = reader.metadata().file_metadata();
        tokens += u64::try_from(metadata.num_rows()).unwrap();
        let lengths = metadata
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|k| k.key == DOCUMENT_LENGTHS_KEY))
            .and_then(|k| k.value.as_deref())
            .unwrap_or_else(|| panic!("{name} has no document lengths"));
        let lengths = decode_document_lengths(lengths).unwrap();
        documents += lengths.iter().map(|g| g.len() as u64).sum::<u64>();
        let in_lengths: u64 = lengths.iter().flatten().sum();
        assert_eq!(
            in_lengths,
            u64::try_from(metadata.num_rows()).unwrap(),
            "{name}"
        );
    }
    (tokens, documents)
}

fn check(case: &Case, id: usize) {
    let dir = seqwarm_testkit::temp_dir("pre-fuzz", &id.to_string());
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let (name, format) = match case.format.as_str() {
        "jsonl" => ("input.jsonl", InputFormat::Jsonl),
        _ => ("input.txt", InputFormat::Text),
    };
    let bytes = decode_hex(&case.hex);
    std::fs::write(input.join(name), &bytes).unwrap();
    let out = dir.join("out");
    let summary = Preprocess::new([input.display().to_string()], &out)
        .with_tokenizer(Tokenizer::Bytes)
        .with_input_format(format)
        .with_separator(case.separator.clone())
        .with_on_error(OnError::Skip)
        .with_shard_tokens(256)
        .with_row_group_tokens(64)
        .with_threads(Some(1))
        .run(|_| {})
        .unwrap_or_else(|e| panic!("{case:?}: {e}"));
    let manifest = &summary.manifest;
    assert_eq!(
        shards_hold(&out),
        (manifest.tokens, manifest.documents),
        "{case:?}"
    );
    // Bytes become at most one token each, plus one EOS per document.
    assert!(
        manifest.tokens <= bytes.len() as u64 + manifest.documents,
        "{case:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_committed_corpus_runs_clean() {
    let corpus = include_str!("fuzz-corpus/inputs.jsonl");
    let mut n = 0;
    for (i, line) in corpus.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let case: Case = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i}: {e}"));
        check(&case, 10_000 + i);
        n += 1;
    }
    assert!(n >= 5, "the corpus has {n} inputs");
}

/// Bytes that reach the interesting paths: text, separators, invalid UTF-8, JSON syntax.
fn input_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => "[a-z ]{0,12}".prop_map(String::into_bytes),
        2 => Just(b"\n\n".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"\r\n".to_vec()),
        1 => any::<u8>().prop_map(|b| vec![b]),
        1 => Just(vec![0xff, 0xfe]),
        1 => Just(vec![0xe2, 0x82]),
        1 => Just(b"{\"text\": \"".to_vec()),
        1 => Just(b"\"}\n".to_vec()),
        1 => Just(b"{\"text\": 3}\n".to_vec()),
        1 => Just(b"\\u00e9\\ud800".to_vec()),
        1 => Just(vec![0]),
    ];
    proptest::collection::vec(piece, 0..60).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64)
    ))]

    #[test]
    fn arbitrary_input_never_panics_and_the_counts_hold(
        bytes in input_bytes(),
        format in prop_oneof![Just("text"), Just("jsonl")],
        separator in prop_oneof![Just(None), Just(Some("\n\n".to_string())), Just(Some("\n".to_string()))],
        id in any::<u32>(),
    ) {
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().concat();
        check(&Case { format: format.into(), separator, hex }, id as usize);
    }
}
