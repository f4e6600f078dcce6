//! The built-in demo corpus: deterministic documents with a realistic length distribution,
//! written as real Parquet shards, so that `seqwarm stream` works on a fresh machine with
//! nothing else.

use std::path::{Path, PathBuf};

use crate::format::{OutputLayout, ShardEncoding, ShardWriter};
use crate::stage::SplitMix64;
use anyhow::Context;

/// Documents in the demo corpus.
pub const DOCUMENTS: usize = 16_000;
/// Vocabulary of the demo tokens (GPT-2's size; the EOS id is never in a document).
pub const VOCAB: u64 = 50_257;
/// GPT-2's end-of-text id, which the demo appends after every document.
pub const EOS: i64 = 50_256;
const SHARDS: usize = 4;
const ROW_GROUP_TOKENS: usize = 256 * 1024;
/// Part of the cache directory name: bumped whenever the shards' bytes change (2: PLAIN shards
/// are one page per row group).
const FORMAT_VERSION: u32 = 2;

/// Document `index`: a log-normal length (median 300 tokens, sigma 1.0, 8..8192) and
/// Zipf-like token ids (frequent ids small), as in tokenized English.
pub fn document(index: usize) -> Vec<i32> {
    let mut rng = SplitMix64::new(0xDE30_0000 ^ index as u64);
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
    let len = ((300f64.ln() + normal).exp() as usize).clamp(8, 8192);
    (0..len)
        .map(|_| {
            // Inverse-power sampling: id ~ (VOCAB-1)^u - 1, heavy on small ids.
            let u = rng.next_f64();
            (((VOCAB - 1) as f64).powf(u) - 1.0) as i32
        })
        .collect()
}

/// The demo corpus directory (created on first use, reused after), in the system temp dir,
/// in the layout's default encoding (as `seqwarm preprocess` would write it).
pub fn corpus(layout: OutputLayout) -> anyhow::Result<PathBuf> {
    corpus_encoded(layout, ShardEncoding::default_for(layout, VOCAB))
}

/// The demo corpus with a chosen token encoding.
pub fn corpus_encoded(layout: OutputLayout, encoding: ShardEncoding) -> anyhow::Result<PathBuf> {
    let name = match layout {
        OutputLayout::Flat => format!("flat-{}", encoding.name()),
        OutputLayout::Rows => format!("rows-{}", encoding.name()),
    };
    let dir = std::env::temp_dir().join(format!("seqwarm-demo-v{FORMAT_VERSION}-{name}"));
    let done = dir.join(".complete");
    if done.exists() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let per_shard = DOCUMENTS.div_ceil(SHARDS);
    for shard in 0..SHARDS {
        write_shard(
            &dir.join(format!("demo-{shard:02}.parquet")),
            layout,
            encoding,
            shard * per_shard..((shard + 1) * per_shard).min(DOCUMENTS),
        )?;
    }
    std::fs::write(&done, "")?;
    Ok(dir)
}

fn write_shard(
    path: &Path,
    layout: OutputLayout,
    encoding: ShardEncoding,
    documents: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    // Written under a temporary name, renamed when complete: an interrupted run never leaves
    // a truncated shard behind. The name is this process's: two processes that make the demo
    // at once (tests run in parallel) would otherwise truncate each other's file, and one
    // rename a shard the other is still writing.
    let partial = path.with_extension(format!("parquet.partial-{}", std::process::id()));
    let file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut writer = ShardWriter::with_encoding(
        file,
        layout,
        ROW_GROUP_TOKENS,
        encoding,
        &path.display().to_string(),
    )?;
    for i in documents {
        writer.write_document(&document(i))?;
    }
    writer.finish()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}
