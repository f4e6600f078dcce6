//! Throughput of the batch transforms beside a `memcpy` of the same bytes, in one run.
//!
//! `cargo bench -p seqwarm-batcher --bench transforms` prints bytes/s for each; the goal is
//! repack >= 0.5x memcpy (see docs/benchmarks.md).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use seqwarm_batcher::{Batch, Cut, RepackerConfig, Tensor};

const ROWS: usize = 64;
const COLS: usize = 2048;

fn batch() -> Batch {
    let tokens: Vec<i32> = (0..(ROWS * COLS) as i32).map(|i| i % 50_257).collect();
    let mask = vec![1i32; ROWS * COLS];
    Batch::new()
        .with_field("input_ids", Tensor::from_vec(tokens, ROWS, COLS).unwrap())
        .unwrap()
        .with_field(
            "attention_mask",
            Tensor::from_vec(mask, ROWS, COLS).unwrap(),
        )
        .unwrap()
}

fn transforms(c: &mut Criterion) {
    let batch = batch();
    let bytes = (ROWS * COLS * 4 * 2) as u64; // two i32 fields
    let mut group = c.benchmark_group("batch_64x2048_i32_two_fields");
    group.throughput(Throughput::Bytes(bytes));

    let src = vec![7u8; bytes as usize];
    let mut dst = vec![0u8; bytes as usize];
    group.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        });
    });
    let cut = Cut::Truncate {
        preserve_end_of_sequence: false,
    };
    group.bench_function("truncate_view", |b| {
        b.iter(|| black_box(batch.set_sequence_length(black_box(1024), cut).unwrap()));
    });
    group.bench_function("truncate_contiguous", |b| {
        b.iter(|| {
            black_box(
                batch
                    .set_sequence_length(black_box(1024), cut)
                    .unwrap()
                    .contiguous(),
            )
        });
    });
    group.bench_function("composer_reshape", |b| {
        b.iter(|| {
            black_box(
                batch
                    .set_sequence_length(black_box(1000), Cut::Reshape)
                    .unwrap(),
            )
        });
    });
    // 1000 does not divide 2048: every output batch straddles carried tokens and a new
    // batch, so the repacker copies every token (its worst case).
    let mut repacker = RepackerConfig::default().with_strip_padding(false).build();
    group.bench_function("repack_copying", |b| {
        b.iter(|| black_box(repacker.repack(&batch, black_box(1000)).unwrap()));
    });
    let mut repacker = RepackerConfig::default().build();
    group.bench_function("repack_copying_strip_padding", |b| {
        b.iter(|| black_box(repacker.repack(&batch, black_box(1000)).unwrap()));
    });
    group.finish();
}

criterion_group!(benches, transforms);
criterion_main!(benches);
