//! Megatron-LM's own indexed datasets (`tests/conformance/megatron/`, written by
//! `scripts/megatron-vectors` with megatron-core's `IndexedDatasetBuilder`) against what
//! Megatron's own `IndexedDataset` reads in them: every document, its length and its tokens.

use std::path::PathBuf;

use seqwarm_format::{TokenDtype, megatron_index};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/megatron")
}

#[test]
fn documents_are_those_megatrons_reader_reads() {
    let dir = fixtures();
    let vectors: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("megatron.json")).unwrap()).unwrap();
    let datasets = vectors["datasets"].as_object().unwrap();
    assert_eq!(datasets.len(), 2);
    for (name, want) in datasets {
        let idx = std::fs::read(dir.join(format!("{name}.idx"))).unwrap();
        let bin = std::fs::read(dir.join(format!("{name}.bin"))).unwrap();
        let index = megatron_index(name, &idx, bin.len() as u64, None).unwrap();
        let (dtype, signed) = match want["dtype"].as_str().unwrap() {
            "uint16" => (TokenDtype::Uint16, false),
            "int32" => (TokenDtype::Uint32, true),
            other => panic!("{other}"),
        };
        assert_eq!((index.dtype, index.signed), (dtype, signed), "{name}");
        let documents = want["documents"].as_array().unwrap();
        // Megatron's empty documents hold no token and end nothing.
        let mut ends = Vec::new();
        let mut end = 0u64;
        for document in documents {
            let tokens = document["tokens"].as_u64().unwrap();
            if tokens > 0 {
                end += tokens;
                ends.push(end);
            }
        }
        assert!(ends.len() > 100 && ends.len() < documents.len(), "{name}");
        assert_eq!(index.document_ends, ends, "{name}");
        assert_eq!(index.tokens, end, "{name}");
        let width = dtype.width();
        let mut start = 0u64;
        let nonempty = documents.iter().filter(|d| d["tokens"].as_u64() != Some(0));
        for (d, (document, &end)) in nonempty.zip(&index.document_ends).enumerate() {
            let mut hash = Sha256::new();
            for t in start..end {
                let at = usize::try_from(t).unwrap() * width;
                let id = match dtype {
                    TokenDtype::Uint16 => u32::from(u16::from_le_bytes([bin[at], bin[at + 1]])),
                    TokenDtype::Uint32 => u32::from_le_bytes(bin[at..at + 4].try_into().unwrap()),
                };
                hash.update(id.to_le_bytes());
            }
            assert_eq!(
                format!("{:x}", hash.finalize()),
                document["sha256"].as_str().unwrap(),
                "{name} document {d}"
            );
            start = end;
        }
    }
}
