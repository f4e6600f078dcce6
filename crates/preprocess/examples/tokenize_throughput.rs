//! Tokenizing alone, on one thread: the built-in encodings over the given files (one document
//! each), best of `REPEAT` (default 3) runs and the first one (`TOKENIZERS=gpt2,o200k_base`: only those), in MB/s of UTF-8 text. The whole-process figure
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
        let mut first = None;
        let mut tokens = 0;
        for _ in 0..repeat.max(1) {
            let started = Instant::now();
            tokens = texts
                .iter()
                .map(|t| tokenizer.encode(t).map_or(0, |ids| ids.len()))
                .sum::<usize>();
            let took = started.elapsed().as_secs_f64();
            first.get_or_insert(took);
            best = best.min(took);
        }
        println!(
            "{:<12} {tokens:>11} tokens  {best:.3} s  {:.1} MB/s  (first run {:.3} s, its tables \
             built and its cache of pieces empty)",
            tokenizer.name(),
            bytes as f64 / 1e6 / best,
            first.unwrap_or(best),
        );
    }
}
