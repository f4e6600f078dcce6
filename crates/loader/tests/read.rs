//! Reading shards in both layouts; every token arrives, in order, through every path.

mod common;

use futures_util::StreamExt;
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, ScheduledBatch, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

fn warmup(mode: Mode) -> WarmupConfig {
    let schedule = ScheduleConfig::linear(16, 64, 0.5, 40).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(BatchSize::Rows(4))
}

async fn collect(builder: LoaderBuilder) -> (Vec<ScheduledBatch>, seqwarm_loader::Stats) {
    let mut loader = builder.build().await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = loader.next().await {
        out.push(b.unwrap());
    }
    (out, loader.stats())
}

fn flat_tokens(batches: &[ScheduledBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.batch.input_ids().unwrap().to_vec_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_flat_layouts_deliver_every_token_in_order() {
    let dir = common::temp_dir("layouts");
    let docs = common::documents(300, 90, 1);
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    common::write_rows(&dir.join("rows.parquet"), &docs, 37);
    common::write_flat(&dir.join("flat.parquet"), &docs, 2_000);
    common::write_flat_start_column(&dir.join("flat_column.parquet"), &docs, 2_000);
    for file in ["rows.parquet", "flat.parquet", "flat_column.parquet"] {
        let builder = LoaderBuilder::new(
            [dir.join(file).display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false);
        let (batches, stats) = collect(builder).await;
        let mut got = flat_tokens(&batches);
        // keep_last pads the final row: drop the padding by the attention mask.
        let last = batches.last().unwrap();
        if let Some(mask) = last.batch.get("attention_mask") {
            let pad = mask.to_vec_i64().iter().filter(|&&m| m == 0).count();
            got.truncate(got.len() - pad);
        }
        common::assert_same_tokens(&got, &expected, file);
        assert_eq!(stats.tokens_dropped, 0);
        assert_eq!(stats.documents, 300);
        for b in &batches[..batches.len() - 1] {
            assert_eq!(b.batch.seq_len(), b.seq_len);
            assert_eq!(b.batch.rows(), 4);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_writer_output_reads_back_in_both_layouts() {
    let dir = common::temp_dir("writer");
    let docs = common::documents(500, 120, 2);
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    for layout in [
        seqwarm_format::OutputLayout::Flat,
        seqwarm_format::OutputLayout::Rows,
    ] {
        let path = dir.join(format!("{layout:?}.parquet"));
        let mut writer = seqwarm_format::ShardWriter::new(
            std::fs::File::create(&path).unwrap(),
            layout,
            3_000,
            "test",
        )
        .unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        let summary = writer.finish().unwrap();
        assert_eq!(summary.documents, 500);
        assert_eq!(summary.tokens as usize, expected.len());
        assert!(summary.row_groups > 5);
        let builder = LoaderBuilder::new(
            [path.display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false);
        let mut loader = builder.build().await.unwrap();
        assert_eq!(loader.catalog().unit_count() as u64, summary.row_groups);
        let mut got = Vec::new();
        while let Some(b) = loader.next().await {
            let b = b.unwrap();
            got.extend(common::real_tokens(&b.batch));
        }
        common::assert_same_tokens(&got, &expected, &format!("{layout:?}"));
        assert_eq!(loader.stats().documents, 500);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hf_rows_with_labels_and_padding_masks() {
    use std::sync::Arc;

    use arrow_array::builder::{Int64Builder, ListBuilder};
    use arrow_array::{ArrayRef, RecordBatch};

    let dir = common::temp_dir("hf");
    let docs = common::documents(40, 30, 3);
    let width = docs.iter().map(Vec::len).max().unwrap();
    let (mut ids, mut mask, mut labels) = (
        ListBuilder::new(Int64Builder::new()),
        ListBuilder::new(Int64Builder::new()),
        ListBuilder::new(Int64Builder::new()),
    );
    for d in &docs {
        // Right-padded to a common width, as a padded HF dataset stores them.
        for i in 0..width {
            let real = i < d.len();
            ids.values()
                .append_value(if real { i64::from(d[i]) } else { 0 });
            mask.values().append_value(i64::from(real));
            labels
                .values()
                .append_value(if real { i64::from(d[i]) + 7 } else { -100 });
        }
        ids.append(true);
        mask.append(true);
        labels.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("input_ids", Arc::new(ids.finish()) as ArrayRef),
        ("attention_mask", Arc::new(mask.finish()) as ArrayRef),
        ("labels", Arc::new(labels.finish()) as ArrayRef),
    ])
    .unwrap();
    let path = dir.join("hf.parquet");
    seqwarm_testkit::write_parquet(&path, &batch, None);

    let layout = seqwarm_loader::ShardLayout {
        labels: Some("labels".into()),
        attention_mask: Some("attention_mask".into()),
        ..Default::default()
    };
    let builder =
        LoaderBuilder::new([path.display().to_string()], warmup(Mode::Repack)).with_layout(layout);
    let (batches, stats) = collect(builder).await;
    let total: usize = docs.iter().map(Vec::len).sum();
    assert_eq!(
        (stats.tokens_out + stats.tokens_dropped) as usize,
        total,
        "padding removed, nothing else"
    );
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    let got = flat_tokens(&batches);
    common::assert_same_tokens(&got, &expected[..got.len()], "hf rows");
    for b in &batches {
        let ids = b.batch.input_ids().unwrap().to_vec_i64();
        let labels = b.batch.get("labels").unwrap().to_vec_i64();
        assert!(
            ids.iter().zip(&labels).all(|(t, l)| l - t == 7),
            "labels moved with their tokens"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_conditions_by_steps_and_tokens() {
    let dir = common::temp_dir("limits");
    common::write_flat(
        &dir.join("a.parquet"),
        &common::documents(300, 80, 5),
        2_000,
    );
    let location = dir.display().to_string();
    let (by_steps, _) = collect(
        LoaderBuilder::new([location.clone()], warmup(Mode::Repack))
            .with_epochs(None)
            .with_max_steps(Some(250)),
    )
    .await;
    assert_eq!(
        by_steps.len(),
        250,
        "runs past one epoch until the step limit"
    );
    let (by_tokens, _) = collect(
        LoaderBuilder::new([location], warmup(Mode::Repack))
            .with_epochs(None)
            .with_max_tokens(Some(20_000)),
    )
    .await;
    let emitted: u64 = by_tokens.iter().map(|b| b.tokens).sum();
    let last = by_tokens.last().unwrap().tokens;
    assert!(
        emitted >= 20_000 && emitted - last < 20_000,
        "stops at the first batch reaching the budget"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_flat_shards_take_the_fast_path_and_read_the_same() {
    use parquet::file::reader::FileReader;
    use seqwarm_format::ShardEncoding;
    let dir = common::temp_dir("plain");
    let docs = common::documents(400, 150, 4);
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    // Every encoding, read as int32 and as int64, on the fast path and (with a vocabulary
    // check) the general reader: the same tokens.
    let cases = [
        ("plain.parquet", ShardEncoding::Plain),
        ("uint16.parquet", ShardEncoding::Uint16),
        ("uint16_lz4.parquet", ShardEncoding::Uint16Lz4),
        ("uint16_zstd.parquet", ShardEncoding::Uint16Zstd),
        ("zstd.parquet", ShardEncoding::Zstd),
    ];
    for ((name, encoding), (dtype, vocab)) in cases.into_iter().flat_map(|case| {
        [
            (seqwarm_batcher::DType::I32, None),
            (seqwarm_batcher::DType::I64, None),
            (seqwarm_batcher::DType::I32, Some(50_257)),
        ]
        .map(|read| (case, read))
    }) {
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = seqwarm_format::ShardWriter::with_encoding(
            file,
            seqwarm_format::OutputLayout::Flat,
            9_000,
            encoding,
            name,
        )
        .unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        writer.finish().unwrap();
        let builder = LoaderBuilder::new(
            [path.display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false)
        .with_dtype(dtype)
        .with_vocab_size(vocab);
        let mut loader = builder.build().await.unwrap();
        let mut got = Vec::new();
        while let Some(b) = loader.next().await {
            let b = b.unwrap();
            assert_eq!(
                b.batch.input_ids().map(seqwarm_batcher::Tensor::dtype),
                Some(dtype),
                "{name}"
            );
            got.extend(common::real_tokens(&b.batch));
        }
        common::assert_same_tokens(&got, &expected, &format!("{name} {dtype:?} {vocab:?}"));
        assert_eq!(loader.stats().documents, 400, "{name}");
    }
    let size = |name: &str| std::fs::metadata(dir.join(name)).unwrap().len();
    let tokens = expected.len() as u64;
    assert!(size("plain.parquet") > 4 * tokens);
    assert!((2 * tokens..2 * tokens + 4096).contains(&size("uint16.parquet")));
    assert!(size("uint16_zstd.parquet") < size("uint16.parquet"));
    // ShardWriter writes PLAIN row groups as one page each (read in place, no concatenation).
    for name in ["plain.parquet", "uint16.parquet"] {
        let reader = parquet::file::serialized_reader::SerializedFileReader::new(
            std::fs::File::open(dir.join(name)).unwrap(),
        )
        .unwrap();
        assert!(reader.metadata().num_row_groups() > 1);
        for g in 0..reader.metadata().num_row_groups() {
            let pages = reader
                .get_row_group(g)
                .unwrap()
                .get_column_page_reader(0)
                .unwrap()
                .count();
            assert_eq!(pages, 1, "{name} row group {g}");
        }
    }
}

/// The uint16 encoding stores ids below 65 536 only: a larger one is an error naming the
/// document, not a wrapped id.
#[test]
fn uint16_shards_refuse_ids_that_do_not_fit() {
    let mut writer = seqwarm_format::ShardWriter::with_encoding(
        Vec::new(),
        seqwarm_format::OutputLayout::Flat,
        100,
        seqwarm_format::ShardEncoding::Uint16,
        "big.parquet",
    )
    .unwrap();
    writer.write_document(&[1, 2, 65_535]).unwrap();
    for bad in [65_536, -1] {
        let err = writer.write_document(&[3, bad]).unwrap_err().to_string();
        assert!(
            err.contains("big.parquet")
                && err.contains("document 1")
                && err.contains(&bad.to_string()),
            "{err}"
        );
    }
    assert_eq!(writer.finish().unwrap().tokens, 3);
    assert!(
        seqwarm_format::ShardWriter::with_encoding(
            Vec::new(),
            seqwarm_format::OutputLayout::Rows,
            100,
            seqwarm_format::ShardEncoding::Uint16,
            "rows.parquet",
        )
        .is_err()
    );
}

/// A flat-v1 PLAIN shard from another writer, with many pages per row group: the fast path
/// concatenates them and reads the same tokens.
#[tokio::test]
async fn plain_shards_with_many_pages_per_row_group_read_the_same() {
    use arrow_array::{ArrayRef, Int32Array, RecordBatch};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use seqwarm_format::flat as format;

    let dir = common::temp_dir("plain-pages");
    let docs = common::documents(300, 120, 9);
    let path = dir.join("pages.parquet");
    let props = WriterProperties::builder()
        .set_dictionary_enabled(false)
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .set_data_page_row_count_limit(1000)
        .set_write_batch_size(500)
        .build();
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "tokens",
        arrow_schema::DataType::Int32,
        false,
    )]));
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(&path).unwrap(),
        schema.clone(),
        Some(props),
    )
    .unwrap();
    let mut lengths = Vec::new();
    for group in docs.chunks(100) {
        let tokens: Vec<i32> = group.iter().flatten().copied().collect();
        let array: ArrayRef = std::sync::Arc::new(Int32Array::from(tokens));
        writer
            .write(&RecordBatch::try_new(schema.clone(), vec![array]).unwrap())
            .unwrap();
        writer.flush().unwrap();
        lengths.push(group.iter().map(|d| d.len() as u64).collect::<Vec<_>>());
    }
    writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        format::LAYOUT_KEY.to_string(),
        format::FLAT_LAYOUT_V1.to_string(),
    ));
    writer.append_key_value_metadata(parquet::file::metadata::KeyValue::new(
        format::DOCUMENT_LENGTHS_KEY.to_string(),
        format::encode_document_lengths(&lengths),
    ));
    writer.close().unwrap();
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    let mut loader = LoaderBuilder::new(
        [path.display().to_string()],
        warmup(Mode::Repack).with_keep_last(true),
    )
    .with_shuffle_units(false)
    .build()
    .await
    .unwrap();
    let mut got = Vec::new();
    while let Some(b) = loader.next().await {
        got.extend(common::real_tokens(&b.unwrap().batch));
    }
    common::assert_same_tokens(&got, &expected, "many pages");
    assert_eq!(loader.stats().documents, 300);
}

/// Every integer token type the layouts accept reads, int8 included, with the same values.
#[tokio::test]
async fn int8_and_other_narrow_token_columns_read() {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int8Array, Int16Array, RecordBatch, UInt8Array};

    let dir = common::temp_dir("narrow");
    let values: Vec<i64> = (0..300).map(|i| i % 120).collect();
    let columns: [(&str, ArrayRef); 3] = [
        (
            "int8",
            Arc::new(Int8Array::from_iter_values(values.iter().map(|&v| v as i8))),
        ),
        (
            "int16",
            Arc::new(Int16Array::from_iter_values(
                values.iter().map(|&v| v as i16),
            )),
        ),
        (
            "uint8",
            Arc::new(UInt8Array::from_iter_values(
                values.iter().map(|&v| v as u8),
            )),
        ),
    ];
    for (name, array) in columns {
        let path = dir.join(format!("{name}.parquet"));
        let batch = RecordBatch::try_from_iter([("tokens", array)]).unwrap();
        seqwarm_testkit::write_parquet(&path, &batch, None);
        let builder = LoaderBuilder::new(
            [path.display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false);
        let (batches, stats) = collect(builder).await;
        let got: Vec<i64> = flat_tokens(&batches)
            .into_iter()
            .take(values.len())
            .collect();
        assert_eq!(got, values, "{name}");
        assert_eq!(stats.tokens_in, values.len() as u64, "{name}");
    }
}

/// The footers count tokens exactly: flat shards by their rows, list shards (arrow-rs's and
/// seqwarm's writers, with empty documents) by their leaf values less their null count.
#[tokio::test]
async fn footers_count_tokens_exactly() {
    use seqwarm_format::{OutputLayout, ShardWriter};
    let dir = common::temp_dir("count");
    let mut docs = common::documents(200, 50, 3);
    for d in docs.iter_mut().step_by(7) {
        d.clear();
    }
    let tokens: u64 = docs.iter().map(|d| d.len() as u64).sum();
    let arrow_rows = dir.join("arrow-rows.parquet");
    common::write_rows(&arrow_rows, &docs, 30);
    let mut paths = vec![arrow_rows];
    for layout in [OutputLayout::Rows, OutputLayout::Flat] {
        let path = dir.join(format!("{layout:?}.parquet"));
        let mut writer =
            ShardWriter::new(std::fs::File::create(&path).unwrap(), layout, 500, "t").unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        writer.finish().unwrap();
        paths.push(path);
    }
    for path in paths {
        let count = seqwarm_loader::count_tokens(
            &[path.display().to_string()],
            &seqwarm_loader::ShardLayout::default(),
        )
        .await
        .unwrap();
        assert_eq!(
            (count.tokens, count.tokens_exact, count.documents),
            (tokens, true, Some(docs.len() as u64)),
            "{}",
            path.display()
        );
        assert_eq!(count.with_eos(true), (tokens + docs.len() as u64, true));
    }
}
