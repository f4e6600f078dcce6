//! One pass of raw arrow-rs decoding or of the loader over the same shards, for counting
//! instructions under `valgrind --tool=callgrind` (noise-free, unlike wall-clock on a shared
//! machine). `scripts/instruction-counts` drives it.
//!
//! ```text
//! instruction_counts write DIR        # the benchmark's shards (flat and rows)
//! instruction_counts raw DIR/flat.parquet tokens
//! instruction_counts stream DIR/flat.parquet repack
//! instruction_counts stream DIR/flat_plain.parquet repack-unchecked   # no CRC checks
//! ```

use std::path::Path;

use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
use seqwarm_loader::Mode;

#[path = "../benches/common/mod.rs"]
mod common;
use common::{documents, raw_decode};

fn write(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let docs = documents();
    for (name, layout, encoding) in [
        ("flat.parquet", OutputLayout::Flat, ShardEncoding::Zstd),
        (
            "flat_plain.parquet",
            OutputLayout::Flat,
            ShardEncoding::Plain,
        ),
        ("rows.parquet", OutputLayout::Rows, ShardEncoding::Zstd),
    ] {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = ShardWriter::with_encoding(file, layout, 1 << 20, encoding, name).unwrap();
        for d in &docs {
            w.write_document(d).unwrap();
        }
        w.finish().unwrap();
    }
}

fn stream_mode(path: &Path, mode: &str) -> u64 {
    let (mode, verify) = match mode.strip_suffix("-unchecked") {
        Some(mode) => (mode, false),
        None => (mode, true),
    };
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
    common::stream(&runtime, path, mode, verify).tokens_in
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("write") => write(Path::new(&args[2])),
        Some("raw") => println!("{}", raw_decode(Path::new(&args[2]), &[&args[3]])),
        Some("stream") => println!("{}", stream_mode(Path::new(&args[2]), &args[3])),
        _ => eprintln!("usage: instruction_counts write DIR | raw FILE COLUMN | stream FILE MODE"),
    }
}
