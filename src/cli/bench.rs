//! `seqwarm bench`: the async loader against raw arrow-rs decoding of the same shards, in one
//! run, with peak memory; optionally against a Python peer.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::format::{OutputLayout, ShardEncoding};
use crate::loader::{
    BatchSize, LoaderBuilder, Mode, PackFields, Prefetch, WarmupConfig, find_shards,
};
use crate::schedule::ScheduleConfig;
use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use futures_util::StreamExt;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Serialize;

use super::demo;
use super::output::{note, outln};
use super::schedule_args::build_logged;

pub const EXAMPLES: &str = "Examples:
  seqwarm bench                                  # demo corpus, flat (uint16) and rows layouts, one core
  seqwarm bench --all-encodings                  # also flat plain (int32) and flat zstd
  seqwarm bench data/shards/ --threads all --json bench.json
  seqwarm bench --peer python                    # also the pyarrow + numpy peer (scripts/python-env)";

/// Cores for each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Threads {
    /// One core: current-thread runtime, one row group in flight; the peer single-threaded.
    One,
    /// Every core: multi-thread runtime, prefetch concurrency = cores; the peer's threads on.
    All,
}

/// A peer implementation to compare against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Peer {
    /// pyarrow + numpy (`benches/peers/python_peer.py`, venv from `scripts/python-env`).
    Python,
}

/// Arguments of `seqwarm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Shard locations (local files, directories or globs). None: the demo corpus in both
    /// layouts.
    pub shards: Vec<String>,
    /// Modes to measure, comma-separated [default: all].
    #[arg(long, value_delimiter = ',', value_parser = super::flags::named::<Mode>)]
    pub modes: Vec<Mode>,
    /// Cores for each side.
    #[arg(long, value_enum, default_value_t = Threads::One)]
    pub threads: Threads,
    /// Runs per measurement; the fastest counts.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Token budget per batch.
    #[arg(long, default_value_t = 65_536)]
    pub batch_tokens: usize,
    /// Maximum sequence length (schedule linear from 64, step 64, over 30% of an epoch).
    #[arg(long, default_value_t = 1024)]
    pub max_len: u64,
    /// The fields of packed rows in the pack modes, comma-separated (default all; see
    /// `stream --pack-fields`).
    #[arg(long, value_delimiter = ',', value_name = "FIELDS")]
    pub pack_fields: Option<Vec<String>>,
    /// Also run a peer implementation on the same shards.
    #[arg(long, value_enum)]
    pub peer: Option<Peer>,
    /// Python interpreter for the peer [default: .venv/bin/python].
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Also measure the demo corpus's flat layout in its other encodings: `plain` int32 and
    /// dictionary + `zstd` (the flat default is `uint16`).
    #[arg(long)]
    pub all_encodings: bool,
    /// Write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only measure the document scan of raw `uint16` token files (`--mode decompose`'s index)
    /// against the plain loop, on one core.
    #[arg(long)]
    pub scan: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    shards: String,
    what: String,
    tokens: u64,
    seconds: f64,
    tokens_per_s: f64,
    mb_per_s: f64,
    ratio_to_raw: f64,
    peak_rss_mib: f64,
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// Resets the peak-RSS mark (Linux) so that the next reading covers one measurement.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn raw_decode(files: &[PathBuf], column: &str) -> anyhow::Result<u64> {
    let mut n = 0u64;
    for path in files {
        let open = || -> anyhow::Result<_> {
            Ok(ParquetRecordBatchReaderBuilder::try_new(
                std::fs::File::open(path)?,
            )?)
        };
        let builder = open()?;
        let index = builder
            .schema()
            .index_of(column)
            .with_context(|| format!("{}: no column {column}", path.display()))?;
        for group in 0..builder.metadata().num_row_groups() {
            let builder = open()?;
            let rows = usize::try_from(builder.metadata().row_group(group).num_rows())?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
            for batch in builder
                .with_projection(mask)
                .with_row_groups(vec![group])
                .with_batch_size(rows.max(1))
                .build()?
            {
                let batch = batch?;
                let array = batch.column(0);
                n += match array.data_type() {
                    arrow_schema::DataType::List(_) => {
                        use arrow_array::cast::AsArray;
                        array.as_list::<i32>().values().len() as u64
                    }
                    arrow_schema::DataType::LargeList(_) => {
                        use arrow_array::cast::AsArray;
                        array.as_list::<i64>().values().len() as u64
                    }
                    _ => array.len() as u64,
                };
            }
        }
    }
    Ok(n)
}

async fn stream_once(builder: &LoaderBuilder) -> anyhow::Result<u64> {
    let mut loader = builder.clone().build().await?;
    while let Some(b) = loader.next().await {
        std::hint::black_box(b?);
    }
    // Input tokens, as the raw decode counts them (truncate emits fewer than it reads).
    Ok(loader.stats().tokens_in)
}

fn timed<T>(
    repeat: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(T, f64, f64)> {
    let mut best = f64::MAX;
    let mut out = None;
    reset_peak();
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        out = Some(f()?);
        best = best.min(started.elapsed().as_secs_f64());
    }
    let peak = status_kib("VmHWM:") as f64 / 1024.0;
    match out {
        Some(v) => Ok((v, best, peak)),
        None => bail!("no run"),
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.scan {
        return scan_bench(args.repeat);
    }
    let sets: Vec<(String, Vec<String>)> = if args.shards.is_empty() {
        let mut sets = vec![
            (
                "demo flat".into(),
                vec![demo::corpus(OutputLayout::Flat)?.display().to_string()],
            ),
            (
                "demo rows".into(),
                vec![demo::corpus(OutputLayout::Rows)?.display().to_string()],
            ),
        ];
        if args.all_encodings {
            for (at, encoding) in [(1, ShardEncoding::Plain), (2, ShardEncoding::Zstd)] {
                let dir = demo::corpus_encoded(OutputLayout::Flat, encoding)?;
                let name = format!("demo {}", encoding.name());
                sets.insert(at, (name, vec![dir.display().to_string()]));
            }
        }
        sets
    } else {
        vec![(args.shards.join(" "), args.shards.clone())]
    };
    let modes: Vec<Mode> = if args.modes.is_empty() {
        Mode::ALL.to_vec()
    } else {
        args.modes.clone()
    };
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = match args.threads {
        Threads::One => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        Threads::All => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    let mut rows = Vec::new();
    let mut peers = Vec::new();
    outln!(
        "seqwarm bench: {} core(s) ({:?}), best of {}",
        if args.threads == Threads::One {
            1
        } else {
            cores
        },
        args.threads,
        args.repeat
    )?;
    outln!(
        "{:<12} {:<20} {:>12} {:>10} {:>9} {:>10}",
        "shards",
        "what",
        "tokens/s",
        "MB/s",
        "vs raw",
        "peak RSS"
    )?;
    for (name, shards) in &sets {
        let files: Vec<PathBuf> = runtime
            .block_on(find_shards(shards))?
            .iter()
            .map(|f| PathBuf::from(&f.display))
            .collect();
        let column = if files.first().is_some_and(|f| has_column(f, "input_ids")) {
            "input_ids"
        } else {
            "tokens"
        };
        let (tokens, seconds, peak) = timed(args.repeat, || raw_decode(&files, column))?;
        let raw_rate = tokens as f64 / seconds;
        let mut push =
            |what: String, tokens: u64, seconds: f64, peak: f64| -> std::io::Result<()> {
                let rate = tokens as f64 / seconds;
                let row = Row {
                    shards: name.clone(),
                    what,
                    tokens,
                    seconds,
                    tokens_per_s: rate,
                    mb_per_s: rate * 4.0 / 1e6,
                    ratio_to_raw: rate / raw_rate,
                    peak_rss_mib: peak,
                };
                outln!(
                    "{:<12} {:<20} {:>10.1} M {:>10.0} {:>8.2}x {:>7.0} MiB",
                    row.shards,
                    row.what,
                    row.tokens_per_s / 1e6,
                    row.mb_per_s,
                    row.ratio_to_raw,
                    row.peak_rss_mib
                )?;
                rows.push(row);
                Ok(())
            };
        push("raw arrow-rs decode".into(), tokens, seconds, peak)?;
        let steps = tokens / args.batch_tokens as u64;
        let schedule = build_logged(
            &ScheduleConfig::linear(64, args.max_len, 0.3, steps.max(1))
                .with_step(64)
                .config(),
        )?;
        let pack_fields = match &args.pack_fields {
            Some(names) => Some(PackFields::from_names(names)?),
            None => None,
        };
        for &mode in &modes {
            let mut warmup = WarmupConfig::new(schedule.clone())
                .with_mode(mode)
                .with_batch_size(BatchSize::Tokens(args.batch_tokens));
            let mut name = format!("stream {}", mode.name());
            if let Some(fields) = pack_fields.filter(|_| mode.is_packing()) {
                warmup = warmup.with_pack_fields(fields);
                name = format!("{name} ({})", fields.names()[1..].join(","));
            }
            let loader = LoaderBuilder::new(shards.iter().cloned(), warmup).with_prefetch(
                if args.threads == Threads::One {
                    Prefetch {
                        concurrency: 1,
                        queue: 1,
                        ..Prefetch::default()
                    }
                } else {
                    Prefetch {
                        concurrency: cores,
                        queue: 2 * cores,
                        ..Prefetch::default()
                    }
                },
            );
            let (tokens, seconds, peak) =
                timed(args.repeat, || runtime.block_on(stream_once(&loader)))?;
            push(name, tokens, seconds, peak)?;
        }
        if let Some(Peer::Python) = args.peer {
            let python = args
                .python
                .clone()
                .unwrap_or_else(|| PathBuf::from(".venv/bin/python"));
            let points: Vec<[u64; 2]> = schedule
                .change_points()
                .map(|c| [c.position, c.seq_len])
                .collect();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/python_peer.py");
            let output = std::process::Command::new(&python)
                .arg(&script)
                .arg("--shards")
                .args(&files)
                .args([
                    "--column",
                    column,
                    "--schedule",
                    &serde_json::to_string(&points)?,
                ])
                .args([
                    "--max-len",
                    &args.max_len.to_string(),
                    "--batch-tokens",
                    &args.batch_tokens.to_string(),
                ])
                .args([
                    "--threads",
                    if args.threads == Threads::One {
                        "one"
                    } else {
                        "all"
                    },
                    "--repeat",
                    &args.repeat.to_string(),
                ])
                .output()
                .with_context(|| {
                    format!(
                        "cannot run {} (install it with scripts/python-env)",
                        python.display()
                    )
                })?;
            if !output.status.success() {
                bail!(
                    "python peer failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            let peer: serde_json::Value =
                serde_json::from_slice(&output.stdout).context("python peer printed no JSON")?;
            for what in ["raw", "truncate", "reshape"] {
                let rate = peer[what]["tokens_per_s"].as_f64().unwrap_or(0.0);
                let ours = rows
                    .iter()
                    .filter(|r| &r.shards == name)
                    .find(|r| match what {
                        "raw" => r.what == "raw arrow-rs decode",
                        other => r.what == format!("stream {other}"),
                    })
                    .map_or(0.0, |r| r.tokens_per_s);
                outln!(
                    "{:<12} {:<20} {:>10.1} M {:>10.0} {:>9} seqwarm / python = {:.2}x",
                    name,
                    format!("python {what}"),
                    rate / 1e6,
                    rate * 4.0 / 1e6,
                    "",
                    ours / rate.max(1e-9)
                )?;
                peers.push(serde_json::json!({"shards": name, "what": what, "tokens_per_s": rate, "seqwarm_tokens_per_s": ours, "ratio": ours / rate.max(1e-9)}));
            }
        }
    }
    let mut reference = serde_json::Value::Null;
    if args.threads == Threads::All && cores > 1 {
        // A reference for the multi-core figures, measured in the same run (last: its buffers
        // would otherwise count in the streams' peak memory).
        let (one, all) = (
            widening_rate(1, args.repeat),
            widening_rate(cores, args.repeat),
        );
        outln!(
            "memory reference: uint16 -> int32 widened out of cache, {:.0} M tokens/s on 1 \
             thread, {:.0} M on {cores} ({:.2}x): what {cores} cores add to memory-bound work here",
            one / 1e6,
            all / 1e6,
            all / one
        )?;
        reference = serde_json::json!({"one_thread_tokens_per_s": one, "all_threads_tokens_per_s": all, "threads": cores});
    }
    if let Some(path) = &args.json {
        // Where each set of shards is, so that another harness (the Python package's
        // benches/python/bench_loader.py) can measure the same files.
        let locations: serde_json::Map<String, serde_json::Value> = sets
            .iter()
            .map(|(name, shards)| (name.clone(), serde_json::json!(shards)))
            .collect();
        let doc = serde_json::json!({"threads": args.threads, "repeat": args.repeat, "batch_tokens": args.batch_tokens, "max_len": args.max_len, "locations": locations, "rows": rows, "peer": peers, "memory_reference": reference});
        std::fs::write(path, serde_json::to_vec_pretty(&doc)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        note!("results written to {}", path.display());
    }
    Ok(())
}

/// What the memory system gives `threads` threads at once: `uint16` tokens widened to `int32`,
/// 32 Mi tokens per thread (far out of cache; 192 MiB a thread), best of `repeat` after one
/// untimed pass (which faults the output in), in tokens/s. Once local reads are memory-mapped
/// the stream is mostly this kind of traffic, so its gain from more cores is about this one's
/// (docs/benchmarks.md, "Two cores").
fn widening_rate(threads: usize, repeat: usize) -> f64 {
    const TOKENS: usize = 1 << 25;
    let mut work: Vec<(Vec<u16>, Vec<i32>)> = (0..threads)
        .map(|_| ((0..TOKENS).map(|i| i as u16).collect(), vec![0; TOKENS]))
        .collect();
    let mut best = f64::INFINITY;
    for pass in 0..=repeat.max(1) {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for (source, out) in &mut work {
                scope.spawn(move || {
                    for (o, &v) in out.iter_mut().zip(source.iter()) {
                        *o = i32::from(v);
                    }
                    std::hint::black_box(out);
                });
            }
        });
        if pass > 0 {
            best = best.min(start.elapsed().as_secs_f64());
        }
    }
    (threads * TOKENS) as f64 / best
}

/// The EOS scan of raw `uint16` token files (`scan_tokens`, which builds `--mode decompose`'s
/// index) against the loop one would write (`filter` over the ids, which the compiler does not
/// turn into vector code), on one core, over 2^27 tokens (256 MiB, far out of cache) with a
/// document end every 1,000 tokens on average: median and range of `repeat` runs after one
/// untimed pass each.
fn scan_bench(repeat: usize) -> anyhow::Result<()> {
    use crate::format::{TokenDtype, scan_tokens};
    const TOKENS: usize = 1 << 27;
    const EOS: u16 = 50256;
    let mut rng = crate::stage::SplitMix64::new(7);
    let bytes: Vec<u8> = (0..TOKENS)
        .flat_map(|i| {
            let id = if rng.next_u64().is_multiple_of(1000) {
                EOS
            } else {
                ((i * 40503) % 50000) as u16
            };
            id.to_le_bytes()
        })
        .collect();
    let plain = |bytes: &[u8]| -> Vec<u64> {
        bytes
            .chunks_exact(2)
            .enumerate()
            .filter(|(_, b)| u16::from_le_bytes([b[0], b[1]]) == EOS)
            .map(|(i, _)| i as u64 + 1)
            .collect()
    };
    let expected = plain(&bytes);
    let found = scan_tokens(&bytes, TokenDtype::Uint16, u32::from(EOS)).document_ends;
    if found != expected {
        bail!("the scan and the plain loop disagree");
    }
    let rates = |f: &dyn Fn(&[u8]) -> usize| {
        let mut rates: Vec<f64> = (0..repeat.max(1))
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(f(std::hint::black_box(&bytes)));
                TOKENS as f64 / started.elapsed().as_secs_f64()
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        rates
    };
    let ours = rates(&|b| {
        scan_tokens(b, TokenDtype::Uint16, u32::from(EOS))
            .document_ends
            .len()
    });
    let theirs = rates(&|b| plain(b).len());
    let median = |r: &[f64]| r[r.len() / 2];
    outln!(
        "EOS scan, uint16, one core, {} M tokens, {} documents, {} runs:",
        TOKENS >> 20,
        expected.len(),
        ours.len()
    )?;
    for (name, r) in [
        ("seqwarm scan_tokens", &ours),
        ("plain filter loop", &theirs),
    ] {
        outln!(
            "  {name:<20} {:>7.2} G tokens/s (range {:.2}-{:.2})",
            median(r) / 1e9,
            r[0] / 1e9,
            r[r.len() - 1] / 1e9
        )?;
    }
    outln!(
        "  seqwarm / plain = {:.2}x (median; range {:.2}-{:.2}x)",
        median(&ours) / median(&theirs),
        ours[0] / theirs[theirs.len() - 1],
        ours[ours.len() - 1] / theirs[0]
    )?;
    Ok(())
}

fn has_column(path: &Path, column: &str) -> bool {
    std::fs::File::open(path)
        .ok()
        .and_then(|f| ParquetRecordBatchReaderBuilder::try_new(f).ok())
        .is_some_and(|b| b.schema().index_of(column).is_ok())
}
