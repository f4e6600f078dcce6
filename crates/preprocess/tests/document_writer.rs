//! [`DocumentWriter`] against [`Preprocess::run`]: the same documents given one at a time (as
//! text or as ids) write the same shard bytes and manifest as a run over the file; order is
//! enforced; a writer reopened after a crash continues where the finished shards end.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use seqwarm_preprocess::{
    DocumentWriter, Manifest, OnError, Position, Preprocess, PreprocessError, Tokenizer,
};

fn temp(name: &str) -> PathBuf {
    seqwarm_testkit::temp_dir("docwriter", name)
}

fn settings(inputs: Vec<String>, output: &Path, tokenizer: Tokenizer) -> Preprocess {
    Preprocess::new(inputs, output)
        .with_tokenizer(tokenizer)
        .with_input_format(seqwarm_preprocess::InputFormat::Jsonl)
        .with_shard_tokens(200)
        .with_row_group_tokens(50)
        .with_threads(Some(2))
}

fn json_lines(documents: &[String]) -> String {
    let mut lines = String::new();
    for d in documents {
        lines.push_str(&serde_json::json!({ "text": d }).to_string());
        lines.push('\n');
    }
    lines
}

/// Writes `documents` as a JSON Lines file and preprocesses it; returns its path as the run
/// lists it.
fn run_over_file(documents: &[String], dir: &Path, tokenizer: Tokenizer) -> (String, Manifest) {
    let input = dir.join("input.jsonl");
    std::fs::write(&input, json_lines(documents)).unwrap();
    let path = input.display().to_string();
    let summary = settings(vec![path.clone()], &dir.join("cli"), tokenizer)
        .run(|_| {})
        .unwrap();
    (path, summary.manifest)
}

fn stream(
    documents: &[String],
    output: &Path,
    source: &str,
    tokenizer: Tokenizer,
) -> DocumentWriter {
    let mut writer = settings(Vec::new(), output, tokenizer)
        .document_writer(source)
        .unwrap();
    for (i, text) in documents.iter().enumerate() {
        writer
            .write_text(Position::in_stream(i as u64), text.clone())
            .unwrap();
    }
    writer
}

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

fn documents(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("Document {i}: {}", "some words here ".repeat(i % 7 + 1)))
        .collect()
}

/// The stream of a file's documents, named by the file's path, writes every file of the run:
/// shards, records and manifests, byte for byte.
#[test]
fn a_stream_of_a_files_documents_writes_the_runs_bytes() {
    let dir = temp("same-bytes");
    let docs = documents(60);
    let (path, manifest) = run_over_file(&docs, &dir, Tokenizer::Gpt2);
    assert!(
        manifest.shards.len() >= 3,
        "{} shards",
        manifest.shards.len()
    );
    let (streamed, _) = stream(&docs, &dir.join("py"), &path, Tokenizer::Gpt2)
        .finish(Position::stream_end())
        .unwrap();
    assert_eq!(streamed, manifest);
    assert_eq!(files_of(&dir.join("py")), files_of(&dir.join("cli")));
}

/// Ids from the tokenizer give the shards its text gives; ids that already end with the EOS
/// get no second one.
#[test]
fn ids_write_what_their_text_writes() {
    let dir = temp("ids");
    let docs = documents(30);
    let mut writer = settings(Vec::new(), &dir.join("ids"), Tokenizer::Gpt2)
        .document_writer("s")
        .unwrap();
    for (i, text) in docs.iter().enumerate() {
        let mut ids = Tokenizer::Gpt2.encode(text).unwrap();
        if i % 2 == 0 {
            ids.push(50_256);
        }
        writer
            .write_ids(Position::in_stream(i as u64), ids)
            .unwrap();
    }
    writer.finish(Position::stream_end()).unwrap();
    stream(&docs, &dir.join("text"), "s", Tokenizer::Gpt2)
        .finish(Position::stream_end())
        .unwrap();
    assert_eq!(files_of(&dir.join("ids")), files_of(&dir.join("text")));
}

#[test]
fn ids_outside_the_vocabulary_are_refused_with_document_and_offset() {
    let dir = temp("vocab");
    let mut writer = settings(Vec::new(), &dir, Tokenizer::Gpt2)
        .document_writer("tokens")
        .unwrap();
    writer
        .write_ids(Position::in_stream(0), vec![1, 2, 3])
        .unwrap();
    writer
        .write_ids(Position::in_stream(1), vec![1, 50_257, 3])
        .unwrap();
    let err = writer
        .finish(Position::stream_end())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tokens document 2") && err.contains("offset 1") && err.contains("50257"),
        "{err}"
    );
    let mut writer = settings(Vec::new(), &dir.join("negative"), Tokenizer::Gpt2)
        .document_writer("tokens")
        .unwrap();
    writer.write_ids(Position::in_stream(0), vec![-1]).unwrap();
    let err = writer
        .finish(Position::stream_end())
        .unwrap_err()
        .to_string();
    assert!(err.contains("token id -1 at offset 0"), "{err}");
}

#[test]
fn documents_out_of_order_or_twice_are_refused() {
    let dir = temp("order");
    for again in [3, 2] {
        let mut writer = settings(Vec::new(), &dir.join(again.to_string()), Tokenizer::Bytes)
            .document_writer("s")
            .unwrap();
        writer
            .write_text(Position::in_stream(3), "a".into())
            .unwrap();
        let err = writer
            .write_text(Position::in_stream(again), "b".into())
            .unwrap_err();
        assert!(
            matches!(&err, PreprocessError::Input { location, reason }
                if location == &format!("s document {}", again + 1) && reason.contains("input order")),
            "{err}"
        );
        // The error stopped the writer: going on would lose what it held.
        let err = writer
            .write_text(Position::in_stream(9), "c".into())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("an earlier error stopped this writer"),
            "{err}"
        );
    }
}

#[test]
fn a_bad_document_fails_or_is_counted() {
    let dir = temp("bad");
    let preprocess = || settings(Vec::new(), &dir.join("skip"), Tokenizer::Bytes);
    let mut writer = preprocess()
        .with_on_error(OnError::Skip)
        .document_writer("s")
        .unwrap();
    writer
        .write_text(Position::in_stream(0), "a".into())
        .unwrap();
    writer
        .bad_document(Position::in_stream(1), "s row 2".into(), "null".into())
        .unwrap();
    writer
        .write_text(Position::in_stream(2), "b".into())
        .unwrap();
    let (manifest, _) = writer.finish(Position::stream_end()).unwrap();
    assert_eq!((manifest.documents, manifest.skipped_documents), (2, 1));
    let mut writer = settings(Vec::new(), &dir.join("fail"), Tokenizer::Bytes)
        .document_writer("s")
        .unwrap();
    let err = writer
        .bad_document(Position::in_stream(0), "s row 1".into(), "null".into())
        .unwrap_err();
    assert_eq!(err.to_string(), "s row 1: null");
}

/// A writer dropped mid-way (a crash) leaves finished shards; a new writer given the same
/// documents again ignores those the shards hold and ends with the uninterrupted bytes.
#[test]
fn a_writer_reopened_after_a_crash_continues() {
    let dir = temp("crash");
    // 128 KiB documents: tokenizing waits for 4 MiB and writing for the next batch, so 80 of
    // them (10 MiB) leave a crash with finished shards and documents in flight.
    let docs: Vec<String> = (0..80)
        .map(|i| format!("{i} {}", "abcdefgh".repeat(16 << 10)))
        .collect();
    let whole = dir.join("whole");
    stream(&docs, &whole, "s", Tokenizer::Bytes)
        .finish(Position::stream_end())
        .unwrap();
    let out = dir.join("crashed");
    let written = stream(&docs[..70], &out, "s", Tokenizer::Bytes).shards();
    assert!(written > 0 && written < 70, "{written} shards written");
    let reopened = settings(Vec::new(), &out, Tokenizer::Bytes)
        .document_writer("s")
        .unwrap();
    assert_eq!(reopened.kept_shards(), written);
    assert_eq!(reopened.resume_at(), Position::in_stream(written as u64));
    drop(reopened);
    let (manifest, _) = stream(&docs, &out, "s", Tokenizer::Bytes)
        .finish(Position::stream_end())
        .unwrap();
    assert_eq!(files_of(&out), files_of(&whole));
    assert_eq!(manifest.documents, 80);
    // Inputs that end before the finished shards do are not the same inputs: refused.
    let short = settings(Vec::new(), &out, Tokenizer::Bytes)
        .document_writer("s")
        .unwrap();
    let err = short.finish(Position::in_stream(3)).unwrap_err();
    assert!(
        err.to_string().contains("these inputs end before that"),
        "{err}"
    );
    // Another source name is another run: refused, not mixed.
    let err = settings(Vec::new(), &out, Tokenizer::Bytes)
        .document_writer("other")
        .err()
        .unwrap();
    assert!(matches!(err, PreprocessError::Mismatch { .. }), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Any documents, shard and row-group sizes: the stream writes the run's bytes.
    #[test]
    fn streams_write_the_runs_bytes(
        docs in prop::collection::vec("[a-z \\u{e9}\\u{4e2d}]{0,40}", 1..40),
        shard_tokens in 1u64..120,
        row_group_tokens in 1usize..40,
    ) {
        let dir = seqwarm_testkit::temp_dir("docwriter", "prop");
        let input = dir.join("input.jsonl");
        std::fs::write(&input, json_lines(&docs)).unwrap();
        let path = input.display().to_string();
        let with = |p: Preprocess| p
            .with_tokenizer(Tokenizer::Gpt2)
            .with_shard_tokens(shard_tokens)
            .with_row_group_tokens(row_group_tokens)
            .with_threads(Some(1));
        let cli = with(Preprocess::new([path.clone()], dir.join("cli"))).run(|_| {}).unwrap();
        let mut writer = with(Preprocess::new(Vec::<String>::new(), dir.join("py")))
            .document_writer(&path)
            .unwrap();
        for (i, d) in docs.iter().enumerate() {
            writer.write_text(Position::in_stream(i as u64), d.clone()).unwrap();
        }
        let (manifest, _) = writer.finish(Position::stream_end()).unwrap();
        prop_assert_eq!(&manifest, &cli.manifest);
        prop_assert_eq!(files_of(&dir.join("py")), files_of(&dir.join("cli")));
    }
}

/// Workers share an output directory: one that starts (or resumes) removes its own stray
/// partial files, never a shard another worker is writing.
#[test]
fn a_worker_removes_only_its_own_partial_files() {
    let dir = temp("partials");
    std::fs::create_dir_all(&dir).unwrap();
    let theirs = dir.join("shard-w00000-00003.parquet.partial");
    let mine = dir.join("shard-w00001-00000.parquet.partial");
    std::fs::write(&theirs, b"being written").unwrap();
    std::fs::write(&mine, b"left by a crash").unwrap();
    let _writer = settings(Vec::new(), &dir, Tokenizer::Bytes)
        .with_worker(1, 2)
        .document_writer("s")
        .unwrap();
    assert!(theirs.exists());
    assert!(!mine.exists());
}
