//! Peak memory of the loader against the prefetch window and the data set's size.
//!
//! `cargo run --release -p seqwarm-loader --example prefetch_memory` writes flat shards of
//! 8 M and 32 M tokens (1 M-token row groups), then streams each in a child process per
//! setting and prints the child's peak RSS (VmHWM). Peak memory should follow the window
//! (row groups in flight + queued), not the data set.

use std::path::Path;

use futures_util::StreamExt;
use seqwarm_format::{OutputLayout, ShardWriter};
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, Prefetch, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

const ROW_GROUP_TOKENS: usize = 1 << 20;

fn write_dataset(dir: &Path, shards: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut s = 7u64;
    for shard in 0..shards {
        let path = dir.join(format!("shard-{shard:03}.parquet"));
        let mut w = ShardWriter::new(
            std::fs::File::create(&path).unwrap(),
            OutputLayout::Flat,
            ROW_GROUP_TOKENS,
            "bench",
        )
        .unwrap();
        let mut written = 0;
        while written < 8 * ROW_GROUP_TOKENS {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = 50 + (s >> 33) as usize % 600;
            let doc: Vec<i32> = (0..len)
                .map(|i| ((s >> 20) as usize + i) as i32 % 50_257)
                .collect();
            w.write_document(&doc).unwrap();
            written += len;
        }
        w.finish().unwrap();
    }
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn current_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn child(dir: &str, concurrency: usize, queue: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let before = peak_rss_kib();
    let tokens = runtime.block_on(async {
        let schedule = ScheduleConfig::linear(64, 2048, 0.3, 1_000)
            .with_step(64)
            .build()
            .unwrap();
        let warmup = WarmupConfig::new(schedule)
            .with_mode(Mode::Repack)
            .with_batch_size(BatchSize::Tokens(16 * 2048));
        let mut loader = LoaderBuilder::new([dir.to_string()], warmup)
            .with_prefetch(Prefetch {
                concurrency,
                queue,
                ..Prefetch::default()
            })
            .build()
            .await
            .unwrap();
        let catalog_peak = peak_rss_kib();
        let after_catalog = current_rss_kib();
        // Reset the high-water mark: what follows is the streaming peak alone.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        let mut tokens = 0u64;
        let mut n = 0u64;
        while let Some(b) = loader.next().await {
            tokens += b.unwrap().tokens;
            n += 1;
            if std::env::var_os("SEQWARM_TRACE_RSS").is_some() && n.is_multiple_of(500) {
                eprintln!("batch {n}: rss {} KiB, tokens {tokens}", current_rss_kib());
            }
        }
        (tokens, catalog_peak, after_catalog)
    });
    let (tokens, catalog_peak, after_catalog) = tokens;
    println!(
        "{tokens} {before} {} {catalog_peak} {after_catalog}",
        peak_rss_kib()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--child" {
        child(&args[2], args[3].parse().unwrap(), args[4].parse().unwrap());
        return;
    }
    let root = std::env::temp_dir().join(format!("seqwarm-memory-{}", std::process::id()));
    let small = root.join("small");
    let large = root.join("large");
    write_dataset(&small, 1);
    write_dataset(&large, 16);
    println!(
        "| data set | prefetch (concurrency, queue) | window (row groups x 4 MiB) | RSS after catalog | peak RSS while streaming |"
    );
    println!("|---|---|---:|---:|---:|");
    for (name, dir) in [("8 M tokens", &small), ("128 M tokens", &large)] {
        for (concurrency, queue) in [(1, 1), (2, 4), (4, 8)] {
            let out = std::process::Command::new(&args[0])
                .args([
                    "--child",
                    &dir.display().to_string(),
                    &concurrency.to_string(),
                    &queue.to_string(),
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let fields: Vec<u64> = text
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            let window = concurrency + queue;
            let mib = |i: usize| fields.get(i).copied().unwrap_or(0) as f64 / 1024.0;
            println!(
                "| {name} | ({concurrency}, {queue}) | {window} x 4 MiB = {} MiB | {:.0} MiB | {:.0} MiB |",
                window * 4,
                mib(4),
                mib(2)
            );
        }
    }
    if std::env::var_os("SEQWARM_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&root);
    } else {
        eprintln!("kept {}", root.display());
    }
}
