//! The decomposition against OLMo-core 3.0.0's own outputs (`tests/conformance/olmo_core.json`,
//! written by `scripts/olmo-core-vectors` from `NumpyVSLDataset` + `NumpyVSLDataLoader`): the
//! piece table of every file, and for every curriculum, cycle count, balance, length range,
//! batch size, seed and world size, each rank's steps of two epochs (length and instance ids).

use seqwarm_stage::{Curriculum, DecomposeConfig, Decomposition, PieceIndex, SplitMix64};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/olmo_core.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the OLMo-core vectors"))
        .expect("valid JSON")
}

/// The document ends and token count of each file of the generated corpus (see
/// `scripts/olmo-core-vectors`).
fn corpus() -> Vec<(Vec<u64>, u64)> {
    let mut rng = SplitMix64::new(2024);
    (0..3)
        .map(|f| {
            let mut ends = Vec::new();
            let mut at = 0;
            for _ in 0..400 {
                at += 1 + rng.next_u64() % 2500;
                ends.push(at);
            }
            let tail = if f == 2 { 37 } else { 0 };
            (ends, at + tail)
        })
        .collect()
}

fn index(min: u64, max: u64) -> PieceIndex {
    let mut index = PieceIndex::new(min, max).unwrap();
    for (ends, tokens) in corpus() {
        index.push_file(&ends, tokens).unwrap();
    }
    index
}

fn curriculum(run: &Value) -> Curriculum {
    let cycles = run["cycles"].as_u64().unwrap();
    let balanced = run["balanced"].as_bool().unwrap();
    match run["curriculum"].as_str().unwrap() {
        "natural" => Curriculum::Natural,
        "grow-p2" => Curriculum::GrowP2 { cycles, balanced },
        "grow-linear" => Curriculum::GrowLinear { cycles, balanced },
        other => panic!("curriculum {other}"),
    }
}

fn numbers(value: &Value) -> Vec<u64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn the_piece_table_is_olmo_cores() {
    for table in vectors()["pieces"].as_array().unwrap() {
        let (min, max) = (
            table["min"].as_u64().unwrap(),
            table["max"].as_u64().unwrap(),
        );
        let index = index(min, max);
        let mut id = 0u32;
        for (file, expected) in table["pieces"].as_array().unwrap().iter().enumerate() {
            for pair in numbers(expected).chunks(2) {
                let (f, start, len) = index.piece(id);
                assert_eq!(
                    (f as usize, start, start + len),
                    (file, pair[0], pair[1]),
                    "piece {id}, min {min}, max {max}"
                );
                id += 1;
            }
        }
        assert_eq!(id as usize, index.len(), "pieces, min {min}, max {max}");
    }
}

#[test]
fn every_rank_and_epoch_is_olmo_cores_batch_for_batch() {
    let mut checked = 0;
    for run in vectors()["runs"].as_array().unwrap() {
        let number = |k: &str| run[k].as_u64().unwrap();
        let world_size = number("world_size");
        let label = format!(
            "{} cycles {} balanced {} min {} max {} batch {} seed {} world {world_size}",
            run["curriculum"],
            run["cycles"],
            run["balanced"],
            number("min"),
            number("max"),
            number("batch_tokens"),
            number("seed"),
        );
        for rank in 0..world_size {
            let config = DecomposeConfig {
                curriculum: curriculum(run),
                batch_tokens: number("batch_tokens"),
                seed: number("seed"),
                rank,
                world_size,
            };
            let here = Decomposition::new(index(number("min"), number("max")), config);
            if let Some(error) = run.get("error") {
                assert!(here.is_err(), "{label}: OLMo-core failed ({error})");
                continue;
            }
            let here = here.unwrap();
            let per_bucket: Vec<(u64, u64)> = run["instances_per_bucket"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
                .collect();
            assert_eq!(here.index().pieces_per_length(), per_bucket, "{label}");
            let epochs = run["ranks"][rank as usize].as_array().unwrap();
            for (epoch, steps) in epochs.iter().enumerate() {
                let order = here.epoch(epoch as u64).unwrap();
                let steps = steps.as_array().unwrap();
                assert_eq!(order.steps(), steps.len() as u64, "{label}: epoch {epoch}");
                for (s, expected) in steps.iter().enumerate() {
                    let step = order.step(s as u64).unwrap();
                    let ids: Vec<u64> = step.pieces.iter().map(|&p| u64::from(p)).collect();
                    assert_eq!(
                        (step.length, ids),
                        (
                            expected["length"].as_u64().unwrap(),
                            numbers(&expected["instances"])
                        ),
                        "{label}: rank {rank}, epoch {epoch}, step {s}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000, "only {checked} steps checked");
}
