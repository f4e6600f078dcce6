//! The corpus of OLMo-core's conformance vectors (`scripts/olmo-core-vectors`), written as
//! raw token files, and the digest the vectors keep of each step's rows.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The EOS id of the corpus (GPT-2's).
pub const EOS: u64 = 50256;

/// The corpus `scripts/olmo-core-vectors` generates: per file, its `uint16` tokens and its
/// document lengths (the last file's 37 trailing tokens without an EOS are in neither).
pub fn olmo_core_documents() -> Vec<(Vec<u16>, Vec<u64>)> {
    let mut rng = seqwarm::stage::SplitMix64::new(2024);
    (0..3u64)
        .map(|f| {
            let lengths: Vec<u64> = (0..400).map(|_| 1 + rng.next_u64() % 2500).collect();
            let total: u64 = lengths.iter().sum::<u64>() + if f == 2 { 37 } else { 0 };
            let mut tokens: Vec<u16> = (0..total)
                .map(|p| ((p * 40503 + f * 7) % 50000) as u16)
                .collect();
            let mut end = 0;
            for &len in &lengths {
                end += len;
                tokens[end as usize - 1] = EOS as u16;
            }
            (tokens, lengths)
        })
        .collect()
}

pub fn le_bytes(tokens: &[u16]) -> Vec<u8> {
    tokens.iter().flat_map(|t| t.to_le_bytes()).collect()
}

/// The corpus `scripts/olmo-core-vectors` generates, written as raw `uint16` files.
pub fn olmo_core_corpus(dir: &Path) {
    for (f, (tokens, _)) in olmo_core_documents().iter().enumerate() {
        std::fs::write(dir.join(format!("part-{f}.npy")), le_bytes(tokens)).unwrap();
    }
}

/// The SHA-256 of a JSON Lines batch's rows, as the vectors keep it: ids as little-endian
/// `u32`, row-major.
pub fn rows_sha256(line: &Value) -> String {
    let mut hash = Sha256::new();
    for row in line["fields"]["input_ids"].as_array().unwrap() {
        for id in row.as_array().unwrap() {
            hash.update((id.as_u64().unwrap() as u32).to_le_bytes());
        }
    }
    format!("{:x}", hash.finalize())
}
