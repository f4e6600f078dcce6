//! The loader beside raw arrow-rs decoding of the same shards, in the same run.
//!
//! `cargo bench -p seqwarm-loader --bench stream` prints tokens/s (criterion's elements/s)
//! for: raw decode of the token column with arrow-rs alone (the baseline), then the full
//! warmup stream in each mode, for the fast (flat) layout and the rows (list) layout. The
//! loader runs on a current-thread runtime with one row group in flight; it reads and decodes
//! that row group on a blocking thread, so the stream can overlap decoding with its stage.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, BooleanArray, Int32Array, RecordBatch};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
use seqwarm_loader::Mode;

mod common;
use common::{documents, raw_decode, stream};

const ROW_GROUP_TOKENS: usize = 1 << 20;

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(usize::MAX))
        .build()
}

fn write_flat(path: &Path, docs: &[Vec<i32>], encoding: ShardEncoding) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ShardWriter::with_encoding(
        file,
        OutputLayout::Flat,
        ROW_GROUP_TOKENS,
        encoding,
        "bench",
    )
    .unwrap();
    for d in docs {
        writer.write_document(d).unwrap();
    }
    writer.finish().unwrap();
}

/// The flat layout as other writers produce it: boundaries in a boolean column.
fn write_flat_start_column(path: &Path, docs: &[Vec<i32>]) {
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("tokens", arrow_schema::DataType::Int32, false),
        arrow_schema::Field::new("document_start", arrow_schema::DataType::Boolean, false),
    ]));
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(path).unwrap(),
        Arc::clone(&schema),
        Some(props()),
    )
    .unwrap();
    let (mut tokens, mut starts) = (Vec::new(), Vec::new());
    for (i, d) in docs.iter().enumerate() {
        tokens.extend_from_slice(d);
        starts.push(true);
        starts.extend(std::iter::repeat_n(false, d.len() - 1));
        if tokens.len() >= ROW_GROUP_TOKENS || i + 1 == docs.len() {
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int32Array::from(std::mem::take(&mut tokens))),
                    Arc::new(BooleanArray::from(std::mem::take(&mut starts))),
                ],
            )
            .unwrap();
            writer.write(&batch).unwrap();
            writer.flush().unwrap();
        }
    }
    writer.close().unwrap();
}

fn write_rows(path: &Path, docs: &[Vec<i32>]) {
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut builder = ListBuilder::new(Int32Builder::new());
    let mut in_group = 0;
    for (i, d) in docs.iter().enumerate() {
        builder.values().append_slice(d);
        builder.append(true);
        in_group += d.len();
        if in_group >= ROW_GROUP_TOKENS || i + 1 == docs.len() {
            let array: ArrayRef = Arc::new(builder.finish());
            let batch = RecordBatch::try_from_iter([("input_ids", array)]).unwrap();
            let w = writer.get_or_insert_with(|| {
                ArrowWriter::try_new(
                    std::fs::File::create(path).unwrap(),
                    batch.schema(),
                    Some(props()),
                )
                .unwrap()
            });
            w.write(&batch).unwrap();
            w.flush().unwrap();
            in_group = 0;
        }
    }
    writer.unwrap().close().unwrap();
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("seqwarm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let docs = documents();
    let total: usize = docs.iter().map(Vec::len).sum();
    let flat: PathBuf = dir.join("flat.parquet");
    let rows: PathBuf = dir.join("rows.parquet");
    let flat_column: PathBuf = dir.join("flat_column.parquet");
    let flat_plain: PathBuf = dir.join("flat_plain.parquet");
    write_flat(&flat, &docs, ShardEncoding::Zstd);
    write_flat(&flat_plain, &docs, ShardEncoding::Plain);
    write_flat_start_column(&flat_column, &docs);
    write_rows(&rows, &docs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let modes = [
        ("truncate", Mode::Truncate),
        ("reshape", Mode::Reshape),
        ("repack", Mode::Repack),
        ("pack_greedy", Mode::PackGreedy),
        ("pack_bestfit64", Mode::PackBestfit),
    ];
    for (layout, path, column) in [
        ("flat", &flat, "tokens"),
        ("flat_plain", &flat_plain, "tokens"),
        ("flat_bool_column", &flat_column, "tokens"),
        ("rows", &rows, "input_ids"),
    ] {
        let mut group = c.benchmark_group(format!("{layout}_{}M_tokens", total / 1_000_000));
        group.throughput(Throughput::Elements(total as u64));
        group.sample_size(10);
        group.bench_function("raw_arrow_decode", |b| {
            b.iter(|| raw_decode(path, &[column]));
        });
        if layout == "flat_bool_column" {
            group.bench_function("raw_arrow_decode_with_boundaries", |b| {
                b.iter(|| raw_decode(path, &[column, "document_start"]));
            });
        }
        for (name, mode) in modes {
            if layout == "flat_bool_column" && name != "repack" {
                continue;
            }
            group.bench_function(name, |b| b.iter(|| stream(&runtime, path, mode, true)));
        }
        if matches!(layout, "flat" | "flat_plain") {
            // What checking the row-group CRCs costs, beside `repack` with them.
            group.bench_function("repack_without_checksums", |b| {
                b.iter(|| stream(&runtime, path, Mode::Repack, false));
            });
        }
        group.finish();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
