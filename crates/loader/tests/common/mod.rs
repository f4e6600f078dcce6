//! Shard writers for the loader's tests: every test makes the data it needs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, ListBuilder};
use arrow_array::{ArrayRef, BooleanArray, Int32Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// A fresh empty directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    seqwarm_testkit::temp_dir("loader", name)
}

/// Deterministic documents: lengths from a small LCG in [1, max_len], tokens encode
/// (document, position) so that any reordering or loss is visible.
pub fn documents(count: usize, max_len: usize, seed: u64) -> Vec<Vec<i32>> {
    let mut state = seed
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    (0..count)
        .map(|d| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = 1 + (state >> 33) as usize % max_len;
            (0..len)
                .map(|p| ((d * 1000 + p) % 50_000) as i32 + 1)
                .collect()
        })
        .collect()
}

fn props(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(row_group_rows))
        .build()
}

/// Rows layout: `input_ids: list<int32>`, `rows_per_group` documents per row group.
pub fn write_rows(path: &Path, docs: &[Vec<i32>], rows_per_group: usize) {
    let mut builder = ListBuilder::new(Int32Builder::new());
    for d in docs {
        builder.values().append_slice(d);
        builder.append(true);
    }
    let array: ArrayRef = Arc::new(builder.finish());
    let batch = RecordBatch::try_from_iter([("input_ids", array)]).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        ArrowWriter::try_new(file, batch.schema(), Some(props(rows_per_group))).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// seqwarm's fast layout as `ShardWriter` writes it: `tokens: int32`, document boundaries
/// in the footer, row groups of whole documents (about `tokens_per_group` tokens).
pub fn write_flat(path: &Path, docs: &[Vec<i32>], tokens_per_group: usize) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = seqwarm_format::ShardWriter::new(
        file,
        seqwarm_format::OutputLayout::Flat,
        tokens_per_group,
        &path.display().to_string(),
    )
    .unwrap();
    for d in docs {
        writer.write_document(d).unwrap();
    }
    writer.finish().unwrap();
}

/// The fast layout with boundaries in a `document_start: bool` column instead of the footer
/// (what other writers produce).
pub fn write_flat_start_column(path: &Path, docs: &[Vec<i32>], tokens_per_group: usize) {
    let file = std::fs::File::create(path).unwrap();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("tokens", arrow_schema::DataType::Int32, false),
        arrow_schema::Field::new("document_start", arrow_schema::DataType::Boolean, false),
    ]));
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_row_count(Some(usize::MAX))
        .build();
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&schema), Some(props)).unwrap();
    let mut tokens = Vec::new();
    let mut starts = Vec::new();
    let flush =
        |writer: &mut ArrowWriter<std::fs::File>, tokens: &mut Vec<i32>, starts: &mut Vec<bool>| {
            if tokens.is_empty() {
                return;
            }
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int32Array::from(std::mem::take(tokens))),
                    Arc::new(BooleanArray::from(std::mem::take(starts))),
                ],
            )
            .unwrap();
            writer.write(&batch).unwrap();
            writer.flush().unwrap();
        };
    for d in docs {
        if !d.is_empty() {
            tokens.extend_from_slice(d);
            starts.push(true);
            starts.extend(std::iter::repeat_n(false, d.len() - 1));
        }
        if tokens.len() >= tokens_per_group {
            flush(&mut writer, &mut tokens, &mut starts);
        }
    }
    flush(&mut writer, &mut tokens, &mut starts);
    writer.close().unwrap();
}

/// Compares token sequences, reporting lengths and the first difference (not the whole
/// sequences, which can be huge).
pub fn assert_same_tokens(got: &[i64], expected: &[i64], what: &str) {
    if got == expected {
        return;
    }
    let first = got.iter().zip(expected).position(|(a, b)| a != b);
    let around = |v: &[i64], i: usize| v[i.saturating_sub(3)..(i + 4).min(v.len())].to_vec();
    match first {
        Some(i) => panic!(
            "{what}: tokens differ at {i} of {}/{}: got ..{:?}.. expected ..{:?}..",
            got.len(),
            expected.len(),
            around(got, i),
            around(expected, i)
        ),
        None => panic!(
            "{what}: got {} tokens, expected {}",
            got.len(),
            expected.len()
        ),
    }
}

/// SHA-256 over every field (name, dtype, shape, values) of every batch, plus its length.
pub fn hash_batches(batches: &[seqwarm_loader::ScheduledBatch]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    batches
        .iter()
        .map(|b| {
            let mut h = Sha256::new();
            h.update(b.seq_len.to_le_bytes());
            for (name, t) in b.batch.iter() {
                h.update(name.as_bytes());
                h.update(format!("{:?}{:?}", t.dtype(), t.shape()).as_bytes());
                for v in t.to_vec_i64() {
                    h.update(v.to_le_bytes());
                }
            }
            format!("{:x}", h.finalize())
        })
        .collect()
}

/// The real (non-padding) `input_ids` of a batch, in order.
pub fn real_tokens(batch: &seqwarm_batcher::Batch) -> Vec<i64> {
    let ids = batch.input_ids().unwrap().to_vec_i64();
    match batch.get("attention_mask") {
        Some(mask) => ids
            .iter()
            .zip(mask.to_vec_i64())
            .filter(|(_, m)| *m == 1)
            .map(|(t, _)| *t)
            .collect(),
        None => ids,
    }
}

/// Sends `method path` with `headers` (each ending in CRLF) and no body to the HTTP server at
/// `host` (`127.0.0.1:PORT`) on a fresh connection; the whole response.
pub fn bare_http_request(host: &str, method: &str, path: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
