//! One pass of raw arrow-rs decoding or of the loader over the same shards, for counting
//! instructions under `valgrind --tool=callgrind` (noise-free, unlike wall-clock on a shared
//! machine). `scripts/instruction-counts` drives it.
//!
//! ```text
//! instruction_counts write DIR        # the benchmark's shards (flat and rows)
//! instruction_counts raw DIR/flat.parquet tokens
//! instruction_counts stream DIR/flat.parquet repack
//! ```

use std::hint::black_box;
use std::path::Path;

use futures_util::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use seqwarm_format::{OutputLayout, ShardWriter};
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, Prefetch, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

fn documents() -> Vec<Vec<i32>> {
    let mut s = 42u64;
    let mut next = move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        s >> 33
    };
    (0..24_000)
        .map(|_| {
            let len = 20 + (next() % 300 + next() % 300 + next() % 100) as usize;
            (0..len).map(|_| (next() % 50_257) as i32).collect()
        })
        .collect()
}

fn write(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let docs = documents();
    for (name, layout) in [
        ("flat.parquet", OutputLayout::Flat),
        ("rows.parquet", OutputLayout::Rows),
    ] {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = ShardWriter::new(file, layout, 1 << 20, name).unwrap();
        for d in &docs {
            w.write_document(d).unwrap();
        }
        w.finish().unwrap();
    }
}

fn raw(path: &Path, column: &str) -> usize {
    let open =
        || ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let builder = open();
    let index = builder.schema().index_of(column).unwrap();
    let mut n = 0;
    for group in 0..builder.metadata().num_row_groups() {
        let builder = open();
        let rows = usize::try_from(builder.metadata().row_group(group).num_rows()).unwrap();
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        for batch in builder
            .with_projection(mask)
            .with_row_groups(vec![group])
            .with_batch_size(rows)
            .build()
            .unwrap()
        {
            let batch = batch.unwrap();
            n += batch.num_rows();
            black_box(&batch);
        }
    }
    n
}

fn stream(path: &Path, mode: &str) -> u64 {
    let mode = match mode {
        "truncate" => Mode::Truncate,
        "reshape" => Mode::Reshape,
        "repack" => Mode::Repack,
        "pack" => Mode::PackGreedy,
        other => panic!("unknown mode {other}"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let schedule = ScheduleConfig::linear(64, 2048, 0.3, 1_000)
            .with_step(64)
            .build()
            .unwrap();
        let warmup = WarmupConfig::new(schedule)
            .with_mode(mode)
            .with_batch_size(BatchSize::Tokens(64 * 2048));
        let mut loader = LoaderBuilder::new([path.display().to_string()], warmup)
            .with_prefetch(Prefetch {
                concurrency: 1,
                queue: 1,
            })
            .build()
            .await
            .unwrap();
        while let Some(b) = loader.next().await {
            black_box(b.unwrap());
        }
        loader.stats().tokens_in
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(Path::new(&args[2])),
        Some("raw") => println!("{}", raw(Path::new(&args[2]), &args[3])),
        Some("stream") => println!("{}", stream(Path::new(&args[2]), &args[3])),
        _ => eprintln!("usage: instruction_counts write DIR | raw FILE COLUMN | stream FILE MODE"),
    }
}
