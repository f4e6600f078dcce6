//! The preprocessing library driven directly (no binary): bad inputs, resumes after a crash,
//! worker manifests.

use std::path::{Path, PathBuf};

use seqwarm_preprocess::{OnError, Preprocess, PreprocessError, Tokenizer, merge_manifests};

fn temp(name: &str) -> PathBuf {
    seqwarm_testkit::temp_dir("pre", name)
}

fn run(inputs: &Path, output: &Path) -> Preprocess {
    Preprocess::new([inputs.display().to_string()], output)
        .with_tokenizer(Tokenizer::Bytes)
        .with_separator(Some("\\n\\n".into()))
        .with_shard_tokens(64)
        .with_row_group_tokens(16)
}

fn shards_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    seqwarm_testkit::parquet_files(dir)
}

#[test]
fn one_bad_byte_costs_one_document_and_is_counted_as_one() {
    let dir = temp("bad-byte");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut text = Vec::new();
    for d in 0..20 {
        text.extend_from_slice(format!("document {d} says hello").as_bytes());
        if d == 7 {
            text.extend_from_slice(b" \xff broken");
        }
        text.extend_from_slice(b"\n\n");
    }
    std::fs::write(input.join("a.txt"), &text).unwrap();
    let err = run(&input, &dir.join("fail")).run(|_| {}).unwrap_err();
    assert!(
        matches!(&err, PreprocessError::Input { location, .. } if location.ends_with("a.txt:15")),
        "{err}"
    );
    let summary = run(&input, &dir.join("skip"))
        .with_on_error(OnError::Skip)
        .run(|_| {})
        .unwrap();
    assert_eq!(summary.manifest.documents, 19);
    assert_eq!(summary.manifest.skipped_documents, 1);
}

#[test]
fn a_prefix_cannot_leave_the_output_directory() {
    let dir = temp("prefix");
    std::fs::write(dir.join("a.txt"), "hello\n\nworld").unwrap();
    for prefix in ["../escape", "a/b", ""] {
        let err = run(&dir.join("a.txt"), &dir.join("out"))
            .with_prefix(prefix)
            .run(|_| {})
            .unwrap_err();
        assert!(
            matches!(
                err,
                PreprocessError::Config {
                    field: "prefix",
                    ..
                }
            ),
            "{prefix}: {err}"
        );
    }
    assert!(!dir.join("escape-w00000-00000.parquet").exists());
}

#[test]
fn a_torn_shard_record_is_redone_not_fatal() {
    let dir = temp("torn");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let text = (0..60)
        .map(|d| format!("paragraph {d} of some text\n\n"))
        .collect::<Vec<_>>()
        .concat();
    std::fs::write(input.join("a.txt"), text).unwrap();
    let out = dir.join("out");
    run(&input, &out).run(|_| {}).unwrap();
    let shards = shards_of(&out);
    assert!(shards.len() >= 3, "{} shards", shards.len());
    // A crash while writing the second record would have left it empty.
    std::fs::write(out.join(format!("{}.json", shards[1].0)), b"").unwrap();
    std::fs::remove_file(out.join(&shards[2].0)).unwrap();
    run(&input, &out).run(|_| {}).unwrap();
    assert_eq!(shards_of(&out), shards);
}

#[test]
fn dictionary_encoded_text_columns_read() {
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, RecordBatch};

    let dir = temp("dictionary");
    let texts = ["alpha", "beta", "alpha", "gamma"];
    let array: DictionaryArray<Int32Type> = texts.iter().copied().collect();
    let batch = RecordBatch::try_from_iter([("text", Arc::new(array) as ArrayRef)]).unwrap();
    let path = dir.join("texts.parquet");
    seqwarm_testkit::write_parquet(&path, &batch, None);
    let summary = Preprocess::new([path.display().to_string()], dir.join("out"))
        .with_tokenizer(Tokenizer::Bytes)
        .with_eos(false)
        .run(|_| {})
        .unwrap();
    assert_eq!(summary.manifest.documents, 4);
    let bytes: u64 = texts.iter().map(|t| t.len() as u64).sum();
    assert_eq!(summary.manifest.tokens, bytes);
}

#[test]
fn merging_workers_with_other_settings_names_the_setting_and_both_values() {
    let dir = temp("merge");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in 0..2 {
        std::fs::write(input.join(format!("{f}.txt")), "some text\n\nmore text").unwrap();
    }
    let out = dir.join("out");
    run(&input, &out).with_worker(0, 2).run(|_| {}).unwrap();
    run(&input, &out)
        .with_worker(1, 2)
        .with_shard_tokens(96)
        .run(|_| {})
        .unwrap();
    let err = merge_manifests(std::slice::from_ref(&out), &out.join("manifest.json")).unwrap_err();
    assert!(
        err.to_string()
            .contains("`shard_tokens` is 64 for worker 0 and 96 for worker 1"),
        "{err}"
    );
}

#[test]
fn a_merged_manifest_that_cannot_be_written_names_the_file() {
    let dir = temp("merge-unwritable");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("a.txt"), "some text\n\nmore text").unwrap();
    let out = dir.join("out");
    run(&input, &out).with_worker(0, 1).run(|_| {}).unwrap();
    // Its directory is a file (a read-only or full output fails the same way, by name; tests
    // run as root here, where permissions do not stop a write).
    let blocker = dir.join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let target = blocker.join("manifest.json");
    let err = merge_manifests(std::slice::from_ref(&out), &target).unwrap_err();
    assert!(
        matches!(err, seqwarm_preprocess::PreprocessError::Io { .. })
            && err.to_string().contains(&target.display().to_string()),
        "{err}"
    );
}

/// Shard records hold a digest of the settings, not the input list: their size does not grow
/// with the number of inputs, and a resumed run with one input more is refused.
#[test]
fn shard_records_stay_small_with_many_inputs() {
    let dir = temp("many-inputs");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    for i in 0..400 {
        std::fs::write(
            input.join(format!("a-long-input-file-name-{i:05}.txt")),
            format!("text {i}"),
        )
        .unwrap();
    }
    let out = dir.join("out");
    let preprocess = || {
        Preprocess::new([input.display().to_string()], &out)
            .with_tokenizer(Tokenizer::Bytes)
            .with_shard_tokens(500)
            .with_row_group_tokens(100)
    };
    let summary = preprocess().run(|_| {}).unwrap();
    assert_eq!(summary.manifest.settings.inputs.len(), 400);
    let shards = shards_of(&out);
    assert!(shards.len() >= 4, "{} shards", shards.len());
    for (name, _) in &shards {
        let record = std::fs::metadata(out.join(format!("{name}.json")))
            .unwrap()
            .len();
        assert!(record < 1024, "{name}.json is {record} bytes");
    }
    // Resuming with the same inputs keeps everything; with one more, it is refused.
    preprocess().run(|_| {}).unwrap();
    assert_eq!(shards_of(&out), shards);
    std::fs::write(input.join("another.txt"), "more").unwrap();
    let err = preprocess().run(|_| {}).unwrap_err();
    assert!(matches!(err, PreprocessError::Mismatch { .. }), "{err}");
}

/// A resumed run's manifest counts every skipped document once: the ones before the resume
/// point come from the finished shards' records, the rest from the resumed run.
#[test]
fn skipped_documents_are_counted_once_across_a_resume() {
    let dir = temp("skips-resume");
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut text = Vec::new();
    for d in 0..80 {
        text.extend_from_slice(format!("paragraph {d} of some text").as_bytes());
        if d % 20 == 5 {
            text.extend_from_slice(b" \xff");
        }
        text.extend_from_slice(b"\n\n");
    }
    std::fs::write(input.join("a.txt"), &text).unwrap();
    let out = dir.join("out");
    let full = run(&input, &out)
        .with_on_error(OnError::Skip)
        .run(|_| {})
        .unwrap();
    assert_eq!(full.manifest.skipped_documents, 4);
    let shards = shards_of(&out);
    assert!(shards.len() >= 6, "{} shards", shards.len());
    // A crash after the third shard: the later shards, their records and the manifests gone.
    for (name, _) in &shards[3..] {
        std::fs::remove_file(out.join(name)).unwrap();
        std::fs::remove_file(out.join(format!("{name}.json"))).unwrap();
    }
    for entry in std::fs::read_dir(&out).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("manifest") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let resumed = run(&input, &out)
        .with_on_error(OnError::Skip)
        .run(|_| {})
        .unwrap();
    assert_eq!(shards_of(&out), shards);
    assert_eq!(resumed.manifest.skipped_documents, 4);
    assert_eq!(resumed.manifest.documents, full.manifest.documents);
}
