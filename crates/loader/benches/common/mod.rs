//! What the loader's benchmark (`benches/stream.rs`) and its instruction counts
//! (`examples/instruction_counts.rs`) share: the documents, the raw arrow-rs baseline, and one
//! pass of the stream, so that both measure the same work.

#![allow(dead_code)]

use std::hint::black_box;
use std::path::Path;

use futures_util::StreamExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, Prefetch, Stats, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

/// Documents in the benchmark's shards.
pub const DOCUMENTS: usize = 24_000;

/// Document lengths: log-normal-ish around 300 tokens from a fixed LCG; token ids < 50 257.
pub fn documents() -> Vec<Vec<i32>> {
    let mut s = 42u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        s >> 33
    };
    (0..DOCUMENTS)
        .map(|_| {
            let len = 20 + (next() % 300 + next() % 300 + next() % 100) as usize;
            (0..len).map(|_| (next() % 50_257) as i32).collect()
        })
        .collect()
}

/// Raw arrow-rs: decode the token column of every row group (one record batch per row group,
/// as the loader reads them), nothing else.
pub fn raw_decode(path: &Path, columns: &[&str]) -> usize {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let indices: Vec<usize> = columns
        .iter()
        .map(|c| builder.schema().index_of(c).unwrap())
        .collect();
    let groups = builder.metadata().num_row_groups();
    let mut n = 0;
    for group in 0..groups {
        let file = std::fs::File::open(path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let rows = usize::try_from(builder.metadata().row_group(group).num_rows()).unwrap();
        let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices.clone());
        let reader = builder
            .with_projection(mask)
            .with_row_groups(vec![group])
            .with_batch_size(rows)
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            n += batch.column(0).len();
            black_box(&batch);
        }
    }
    n
}

/// One pass of the warmup stream over `path` in `mode` on `runtime` (one row group in flight):
/// the schedule ramps 64 -> 2048 in steps of 64 over 30% of 1000 steps, 128 Ki tokens a step.
/// `verify_checksums` checks the row-group CRCs that `ShardWriter` writes (the default).
pub fn stream(
    runtime: &tokio::runtime::Runtime,
    path: &Path,
    mode: Mode,
    verify_checksums: bool,
) -> Stats {
    runtime.block_on(async {
        let schedule = ScheduleConfig::linear(64, 2048, 0.3, 1_000).with_step(64);
        let warmup = WarmupConfig::new(schedule)
            .with_mode(mode)
            .with_pack_window(64)
            .with_batch_size(BatchSize::Tokens(64 * 2048));
        let mut loader = LoaderBuilder::new([path.display().to_string()], warmup)
            .with_prefetch(Prefetch {
                concurrency: 1,
                queue: 1,
                ..Prefetch::default()
            })
            .with_verify_checksums(verify_checksums)
            .build()
            .await
            .unwrap();
        while let Some(b) = loader.next().await {
            black_box(b.unwrap());
        }
        loader.stats()
    })
}
