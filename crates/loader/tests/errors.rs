//! Bad input gives a typed error naming the file (and row group, column, row); a policy can
//! skip and count bad shards instead. Nothing panics.

mod common;

use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use futures_util::StreamExt;
use parquet::arrow::ArrowWriter;
use seqwarm_loader::{
    BatchSize, LoaderBuilder, LoaderError, Mode, OnError, Result, ScheduledBatch, WarmupConfig,
};
use seqwarm_schedule::ScheduleConfig;

fn warmup() -> WarmupConfig {
    let schedule = ScheduleConfig::linear(8, 32, 0.5, 20).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(2))
}

async fn run(
    builder: LoaderBuilder,
) -> Result<(Vec<ScheduledBatch>, seqwarm_loader::Stats, Vec<String>)> {
    let mut loader = builder.build().await?;
    let mut out = Vec::new();
    while let Some(b) = loader.next().await {
        out.push(b?);
    }
    Ok((out, loader.stats(), loader.skipped()))
}

async fn error_for(location: &std::path::Path) -> LoaderError {
    run(LoaderBuilder::new(
        [location.display().to_string()],
        warmup(),
    ))
    .await
    .err()
    .unwrap_or_else(|| panic!("{} should fail", location.display()))
}

fn write_batch(path: &std::path::Path, batch: &RecordBatch) {
    seqwarm_testkit::write_parquet(path, batch, None);
}

#[tokio::test]
async fn missing_path_names_it() {
    let err = error_for(std::path::Path::new("/nonexistent/shards")).await;
    assert!(matches!(err, LoaderError::Location { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/shards"), "{err}");
}

#[tokio::test]
async fn empty_directory_has_no_shards() {
    let dir = common::temp_dir("empty-dir");
    let err = error_for(&dir).await;
    assert!(matches!(err, LoaderError::NoShards { .. }), "{err:?}");
    // A folder of text says how to make shards of it.
    assert!(err.to_string().contains("seqwarm preprocess"), "{err}");
}

#[tokio::test]
async fn non_parquet_and_truncated_files_are_named() {
    let dir = common::temp_dir("not-parquet");
    let text = dir.join("notes.parquet");
    std::fs::write(&text, "this is not parquet at all, just some text").unwrap();
    let err = error_for(&text).await;
    assert!(matches!(err, LoaderError::NotParquet { .. }), "{err:?}");
    assert!(err.to_string().contains("notes.parquet"), "{err}");

    let good = dir.join("good.parquet");
    common::write_rows(&good, &common::documents(100, 50, 1), 10);
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = error_for(&cut).await;
    assert!(matches!(err, LoaderError::NotParquet { .. }), "{err:?}");
    assert!(err.to_string().contains("cut.parquet"), "{err}");
}

#[tokio::test]
async fn missing_and_mistyped_columns_are_named() {
    let dir = common::temp_dir("columns");
    let other = dir.join("other.parquet");
    let text: ArrayRef = Arc::new(StringArray::from(vec!["a", "b"]));
    write_batch(
        &other,
        &RecordBatch::try_from_iter([("text", text)]).unwrap(),
    );
    let err = error_for(&other).await;
    assert!(matches!(err, LoaderError::MissingColumn { .. }), "{err:?}");
    assert!(err.to_string().contains("text"), "{err}");

    let typed = dir.join("typed.parquet");
    let strings: ArrayRef = Arc::new(StringArray::from(vec!["1 2 3"]));
    write_batch(
        &typed,
        &RecordBatch::try_from_iter([("input_ids", strings)]).unwrap(),
    );
    let err = error_for(&typed).await;
    assert!(
        matches!(err, LoaderError::ColumnType { ref column, .. } if column == "input_ids"),
        "{err:?}"
    );
    assert!(err.to_string().contains("typed.parquet"), "{err}");
}

#[tokio::test]
async fn null_document_names_row_group_and_row() {
    let dir = common::temp_dir("nulls");
    let path = dir.join("nulls.parquet");
    let mut builder = ListBuilder::new(Int32Builder::new());
    builder.values().append_slice(&[1, 2, 3]);
    builder.append(true);
    builder.append(false); // null document
    let array: ArrayRef = Arc::new(builder.finish());
    write_batch(
        &path,
        &RecordBatch::try_from_iter([("input_ids", array)]).unwrap(),
    );
    let err = error_for(&path).await;
    match &err {
        LoaderError::Null {
            row_group,
            row,
            column,
            ..
        } => assert_eq!((*row_group, *row, column.as_str()), (0, 1, "input_ids")),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("nulls.parquet row group 0 row 1"),
        "{err}"
    );
}

#[tokio::test]
async fn empty_shard_is_an_error() {
    let dir = common::temp_dir("empty-shard");
    let path = dir.join("empty.parquet");
    common::write_rows(&path, &[], 10);
    let err = error_for(&path).await;
    assert!(matches!(err, LoaderError::EmptyShard { .. }), "{err:?}");
}

#[tokio::test]
async fn token_outside_vocabulary_is_located() {
    let dir = common::temp_dir("vocab");
    let path = dir.join("vocab.parquet");
    let mut docs = common::documents(30, 20, 2);
    docs[17][3] = 60_000;
    common::write_rows(&path, &docs, 10);
    let err =
        run(LoaderBuilder::new([path.display().to_string()], warmup())
            .with_vocab_size(Some(50_257)))
        .await
        .err()
        .unwrap();
    match &err {
        LoaderError::TokenOutOfRange {
            row_group,
            row,
            token,
            ..
        } => assert_eq!((*row_group, *row, *token), (1, 7, 60_000)),
        other => panic!("{other:?}"),
    }
    // Negative ids in a flat int64 column too.
    let flat = dir.join("flat.parquet");
    let tokens: ArrayRef = Arc::new(Int64Array::from(vec![5, 6, -1, 7]));
    write_batch(
        &flat,
        &RecordBatch::try_from_iter([("tokens", tokens)]).unwrap(),
    );
    let err = error_for(&flat).await;
    assert!(
        matches!(
            err,
            LoaderError::TokenOutOfRange {
                row: 2,
                token: -1,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn skip_policy_counts_bad_shards_and_keeps_the_good_ones() {
    let dir = common::temp_dir("skip");
    let docs = common::documents(60, 30, 5);
    common::write_rows(&dir.join("a_good.parquet"), &docs, 20);
    std::fs::write(dir.join("b_bad.parquet"), "garbage").unwrap();
    let builder = LoaderBuilder::new([dir.display().to_string()], warmup().with_keep_last(true))
        .with_shuffle_units(false)
        .with_on_error(OnError::Skip);
    let (batches, stats, skipped) = run(builder).await.unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].contains("b_bad.parquet"), "{skipped:?}");
    let tokens: usize = docs.iter().map(Vec::len).sum();
    assert_eq!(stats.tokens_out as usize, tokens);
    assert!(!batches.is_empty());
    // The same directory fails under the default policy.
    let err = run(LoaderBuilder::new([dir.display().to_string()], warmup()))
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("b_bad.parquet"), "{err}");
}

/// A shard cut short after the loader opened it: an I/O error naming it, whether row groups
/// are mapped (each read checks the file's size first: touching a mapped page past the end of
/// the file would raise SIGBUS) or read into buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_truncated_mid_run_is_an_io_error_mapped_or_read() {
    use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
    let docs = common::documents(2_000, 60, 11);
    for encoding in [ShardEncoding::Uint16, ShardEncoding::Plain] {
        for map in [true, false] {
            let dir = common::temp_dir(&format!("shrink-{encoding:?}-{map}"));
            for (name, part) in [("a", &docs[..1_000]), ("b", &docs[1_000..])] {
                let file = std::fs::File::create(dir.join(format!("{name}.parquet"))).unwrap();
                let mut writer =
                    ShardWriter::with_encoding(file, OutputLayout::Flat, 8_000, encoding, name)
                        .unwrap();
                for d in part {
                    writer.write_document(d).unwrap();
                }
                writer.finish().unwrap();
            }
            let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup())
                .with_shuffle_units(false)
                .with_memory_map(map)
                .build()
                .await
                .unwrap();
            let b = dir.join("b.parquet");
            let size = std::fs::metadata(&b).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&b)
                .and_then(|f| f.set_len(size / 3))
                .unwrap();
            let mut batches = 0usize;
            let err = loop {
                match loader.next().await {
                    Some(Ok(_)) => batches += 1,
                    Some(Err(e)) => break e,
                    None => panic!("{encoding:?} map {map}: no error for the truncated shard"),
                }
            };
            assert!(batches > 0, "{encoding:?} map {map}: shard a streams first");
            assert!(matches!(err, LoaderError::Io { .. }), "{err:?}");
            assert!(err.to_string().contains("b.parquet"), "{err}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_deleted_mid_run_is_an_io_error_or_skipped() {
    let dir = common::temp_dir("vanish");
    let docs = common::documents(200, 40, 6);
    common::write_rows(&dir.join("a.parquet"), &docs[..100], 10);
    common::write_rows(&dir.join("b.parquet"), &docs[100..], 10);
    for policy in [OnError::Fail, OnError::Skip] {
        let builder = LoaderBuilder::new([dir.display().to_string()], warmup())
            .with_shuffle_units(false)
            .with_on_error(policy);
        let mut loader = builder.build().await.unwrap();
        let _ = std::fs::rename(dir.join("b.parquet"), dir.join("b.moved"));
        let mut result = Ok(0usize);
        while let Some(b) = loader.next().await {
            match b {
                Ok(_) => result = result.map(|n| n + 1),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        std::fs::rename(dir.join("b.moved"), dir.join("b.parquet")).unwrap();
        match policy {
            OnError::Fail => {
                let err = result.err().unwrap();
                assert!(matches!(err, LoaderError::Io { .. }), "{err:?}");
                assert!(err.to_string().contains("b.parquet"), "{err}");
            }
            OnError::Skip => {
                assert!(result.unwrap() > 0);
                assert_eq!(loader.stats().units_skipped, 10);
            }
        }
    }
}

#[tokio::test]
async fn inconsistent_flat_metadata_is_named() {
    use parquet::file::metadata::KeyValue;
    let dir = common::temp_dir("bad-metadata");
    // Lengths that add up to 4 for a row group of 5; lengths whose sum wraps around 2^64 to
    // exactly 5 (reported as such, not as inconsistent offsets further down).
    let cases = [(vec![2, 2], "add up to 4"), (vec![u64::MAX, 6], "overflow")];
    for (i, (lengths, says)) in cases.into_iter().enumerate() {
        let path = dir.join(format!("flat-{i}.parquet"));
        let tokens: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![1, 2, 3, 4, 5]));
        let batch = RecordBatch::try_from_iter([("tokens", tokens)]).unwrap();
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.append_key_value_metadata(KeyValue::new(
            seqwarm_format::flat::DOCUMENT_LENGTHS_KEY.into(),
            seqwarm_format::flat::encode_document_lengths(&[lengths]),
        ));
        writer.close().unwrap();
        let err = error_for(&path).await;
        assert!(matches!(err, LoaderError::Metadata { .. }), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }
}

/// Settings out of range are refused with the setting's name before anything is read, and
/// none of them hangs or panics (each was found by an adversarial pass over the CLI).
#[tokio::test]
async fn settings_out_of_range_are_refused_by_name() {
    let dir = common::temp_dir("ranges");
    common::write_rows(&dir.join("a.parquet"), &common::documents(20, 30, 1), 5);
    let location = dir.display().to_string();
    let huge = usize::MAX;
    let cases: Vec<(LoaderBuilder, &str)> = vec![
        (
            LoaderBuilder::new([&location], warmup().with_eos_id(Some(60_000)))
                .with_vocab_size(Some(50_257)),
            "eos_id",
        ),
        (
            LoaderBuilder::new([&location], warmup().with_eos_id(Some(-1))),
            "eos_id",
        ),
        (
            LoaderBuilder::new([&location], warmup().with_pad_id(70_000))
                .with_vocab_size(Some(50_257)),
            "pad_id",
        ),
        (
            LoaderBuilder::new([&location], warmup()).with_prefetch(seqwarm_loader::Prefetch {
                concurrency: 2,
                queue: huge,
                ..seqwarm_loader::Prefetch::default()
            }),
            "prefetch_queue",
        ),
        (
            LoaderBuilder::new([&location], warmup()).with_io_threads(0),
            "io_threads",
        ),
        (
            LoaderBuilder::new([&location], warmup()).with_rank(0, huge),
            "world_size",
        ),
        (
            LoaderBuilder::new([&location], warmup().with_batch_size(BatchSize::Rows(huge))),
            "batch_size",
        ),
    ];
    for (builder, field) in cases {
        let err = run(builder).await.expect_err(field);
        assert!(
            matches!(err, LoaderError::Config { field: f, .. } if f == field),
            "{field}: {err:?}"
        );
    }
}

/// A shard as seqwarm writes it, with a CRC32 per row group in its footer: a flipped bit in
/// row group 1 is a checksum error naming the file and the row group, whichever the layout
/// and encoding (so on both the general reader and the PLAIN fast path), and with checking
/// off the same file no longer fails for its checksum.
#[tokio::test]
async fn a_flipped_bit_in_a_seqwarm_shard_fails_its_row_group_checksum() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};

    let dir = common::temp_dir("crc");
    let docs = common::documents(90, 40, 5);
    let cases = [
        (OutputLayout::Flat, ShardEncoding::Plain),
        (OutputLayout::Flat, ShardEncoding::Uint16),
        (OutputLayout::Flat, ShardEncoding::Uint16Zstd),
        (OutputLayout::Flat, ShardEncoding::Zstd),
        (OutputLayout::Rows, ShardEncoding::Zstd),
    ];
    for (layout, encoding) in cases {
        let path = dir.join(format!("{layout:?}-{encoding:?}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = ShardWriter::with_encoding(file, layout, 600, encoding, "test").unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        assert!(writer.finish().unwrap().row_groups >= 3);
        let clean = run(LoaderBuilder::new([path.display().to_string()], warmup())).await;
        assert!(clean.is_ok(), "{layout:?} {encoding:?}: {:?}", clean.err());

        // Flip one bit in the middle of row group 1's bytes.
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let (start, length) = reader.metadata().row_group(1).column(0).byte_range();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[usize::try_from(start + length / 2).unwrap()] ^= 0x04;
        std::fs::write(&path, bytes).unwrap();

        let err = error_for(&path).await;
        assert!(
            matches!(&err, LoaderError::Checksum { row_group: 1, .. }),
            "{layout:?} {encoding:?}: {err:?}"
        );
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        let unchecked =
            run(LoaderBuilder::new([path.display().to_string()], warmup())
                .with_verify_checksums(false))
            .await;
        assert!(
            !matches!(unchecked, Err(LoaderError::Checksum { .. })),
            "{layout:?} {encoding:?}: {:?}",
            unchecked.err()
        );
    }
}

/// A mapped row group's checksum is checked once while its file stays mapped and unchanged;
/// a shard changed in place (same size) between epochs is mapped again and checked again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_changed_in_place_between_epochs_is_checked_again() {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
    use std::io::{Seek, SeekFrom, Write};

    let dir = common::temp_dir("crc-in-place");
    let path = dir.join("a.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer =
        ShardWriter::with_encoding(file, OutputLayout::Flat, 600, ShardEncoding::Uint16, "a")
            .unwrap();
    for d in &common::documents(300, 40, 8) {
        writer.write_document(d).unwrap();
    }
    let groups = writer.finish().unwrap().row_groups;
    assert!(groups >= 8, "{groups} row groups");
    let last = usize::try_from(groups - 1).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let (start, length) = reader.metadata().row_group(last).column(0).byte_range();
    let mut loader = LoaderBuilder::new([path.display().to_string()], warmup())
        .with_shuffle_units(false)
        .with_epochs(Some(2))
        .with_prefetch(seqwarm_loader::Prefetch {
            concurrency: 1,
            queue: 1,
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    let mut flipped = false;
    let err = loop {
        match loader.next().await {
            Some(Ok(batch)) if batch.epoch == 1 => {
                if !flipped {
                    flipped = true;
                    // The second epoch has begun: its last row group is not read yet. Change
                    // one bit of it in place, after the file's time stamp can have moved on.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let mut f = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .open(&path)
                        .unwrap();
                    let at = start + length / 2;
                    let mut byte = [0u8];
                    f.seek(SeekFrom::Start(at)).unwrap();
                    std::io::Read::read_exact(&mut f, &mut byte).unwrap();
                    f.seek(SeekFrom::Start(at)).unwrap();
                    f.write_all(&[byte[0] ^ 0x04]).unwrap();
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break e,
            None => panic!("the changed row group streamed without a checksum error"),
        }
    };
    assert!(
        matches!(&err, LoaderError::Checksum { row_group, .. } if *row_group == last),
        "{err:?}"
    );
}
