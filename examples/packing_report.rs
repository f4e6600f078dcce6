//! Fraction of documents split, and padding, for greedy and best-fit-decreasing packing.
//!
//! `cargo run --release --example packing_report` prints the table in docs/packing.md.
//! Documents: 20 000 lengths drawn from a log-normal distribution (median 300 tokens,
//! sigma 1.2, clipped to [1, 16 384]), with a fixed seed, so the table is reproducible.

use seqwarm::batcher::{PackStrategy, PackerConfig, RowSink, Tensor, Tokens};
use seqwarm::stage::SplitMix64;

/// Standard normal by Box-Muller, from seqwarm's generator.
fn normal(rng: &mut SplitMix64) -> f64 {
    let u1 = rng.next_f64().max(f64::MIN_POSITIVE);
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn document_lengths(count: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    (0..count)
        .map(|_| ((300f64.ln() + 1.2 * normal(&mut rng)).exp().round() as usize).clamp(1, 16_384))
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lengths = document_lengths(20_000, 42);
    let tokens: usize = lengths.iter().sum();
    println!(
        "{} documents, {} tokens, median {} tokens",
        lengths.len(),
        tokens,
        {
            let mut sorted = lengths.clone();
            sorted.sort_unstable();
            sorted[sorted.len() / 2]
        }
    );
    println!("| row length | strategy | documents split | padding |");
    println!("|---:|---|---:|---:|");
    for len in [512usize, 1024, 2048] {
        for strategy in [
            PackStrategy::Greedy,
            PackStrategy::BestFitDecreasing { window: 64 },
            PackStrategy::BestFitDecreasing { window: 1024 },
        ] {
            let mut packer = PackerConfig::default().with_strategy(strategy).build();
            for (i, &n) in lengths.iter().enumerate() {
                packer.push_document(
                    Tokens::new(&Tensor::vector(vec![(i % 50_000) as i32; n])),
                    None,
                )?;
                while packer.pop(len, 64)?.is_some() {}
            }
            packer.finish(len, usize::MAX)?;
            let stats = packer.stats();
            let name = match strategy {
                PackStrategy::Greedy => "greedy".to_string(),
                PackStrategy::BestFitDecreasing { window } => {
                    format!("best-fit decreasing, window {window}")
                }
            };
            println!(
                "| {len} | {name} | {:.1}% | {:.2}% |",
                stats.documents_split as f64 / stats.documents as f64 * 100.0,
                stats.padding as f64 / (stats.padding + stats.tokens_out) as f64 * 100.0
            );
        }
    }
    Ok(())
}
