//! Tokenizing alone, on one thread: the built-in encodings over the given files (one document
//! each), best of `REPEAT` (default 3) runs (`TOKENIZERS=gpt2,o200k_base`: only those), in MB/s of UTF-8 text. The whole-process figure
//! against Python `tiktoken` is `benches/python/bench_tokenize.py`; this one says how much of
//! it is the tokenizer.
//!
//! ```sh
//! cargo run --release -p seqwarm-preprocess --example tokenize_throughput -- FILE...
//! ```

use std::time::Instant;

use seqwarm_preprocess::Tokenizer;

fn main() {
    let texts: Vec<String> = std::env::args()
        .skip(1)
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect();
    let bytes: usize = texts.iter().map(String::len).sum();
    let repeat: usize = std::env::var("REPEAT")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    println!("{} documents, {:.1} MB", texts.len(), bytes as f64 / 1e6);
    let only = std::env::var("TOKENIZERS").unwrap_or_default();
    for tokenizer in [Tokenizer::Gpt2, Tokenizer::Cl100kBase, Tokenizer::O200kBase] {
        if !only.is_empty() && !only.split(',').any(|name| name == tokenizer.name()) {
            continue;
        }
        let mut best = f64::INFINITY;
        let mut tokens = 0;
        for _ in 0..repeat {
            let started = Instant::now();
            tokens = texts
                .iter()
                .map(|t| tokenizer.encode(t).map_or(0, |ids| ids.len()))
                .sum::<usize>();
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!(
            "{:<12} {tokens:>11} tokens  {best:.3} s  {:.1} MB/s",
            tokenizer.name(),
            bytes as f64 / 1e6 / best
        );
    }
}
