//! Fixed-length chunks and the batch-size schedule against OLMo-core 3.0.0's own outputs
//! (`tests/conformance/olmo_core_fsl.json`, written by `scripts/olmo-core-fsl-vectors` from
//! `NumpyFSLDataLoader` under `BatchSizeSchedulerCallback`): for every length, batch, seed,
//! world size and schedule (steps, tokens, epochs; increases that wait, decreases, a start
//! below and above the configured batch), each rank's steps of two epochs: the global batch,
//! the loader's batch position, the instance ids and the learning-rate factor, bit for bit.

use seqwarm_stage::{BatchSizeSchedule, ChunkConfig, Chunks, SplitMix64};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/olmo_core_fsl.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("the OLMo-core vectors"))
        .expect("valid JSON")
}

/// The token count of each file of the generated corpus (`corpus()` of
/// `scripts/olmo-core-vectors`).
fn file_tokens() -> Vec<u64> {
    let mut rng = SplitMix64::new(2024);
    (0..3)
        .map(|f| {
            let documents: u64 = (0..400).map(|_| 1 + rng.next_u64() % 2500).sum();
            documents + if f == 2 { 37 } else { 0 }
        })
        .collect()
}

fn config(run: &Value, rank: u64) -> ChunkConfig {
    let points: Vec<(u64, u64)> = run["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect();
    let batch_schedule = (!points.is_empty()).then(|| {
        let unit = run["unit"].as_str().unwrap().parse().unwrap();
        BatchSizeSchedule::new(unit, points).unwrap()
    });
    ChunkConfig {
        seq_len: run["seq_len"].as_u64().unwrap(),
        batch_tokens: run["batch_tokens"].as_u64().unwrap(),
        seed: run["seed"].as_u64().unwrap(),
        rank,
        world_size: run["world_size"].as_u64().unwrap(),
        batch_schedule,
    }
}

#[test]
fn every_step_of_every_rank_is_olmo_cores() {
    let tokens = file_tokens();
    let mut compared = 0;
    for run in vectors()["configs"].as_array().unwrap() {
        let world = run["world_size"].as_u64().unwrap();
        let name = format!(
            "seq_len {} batch {} seed {} world {world} {} {}",
            run["seq_len"], run["batch_tokens"], run["seed"], run["unit"], run["schedule"]
        );
        for rank in 0..world {
            let mut chunks = Chunks::new(config(run, rank), &tokens, 2).unwrap();
            let Some(ranks) = run["ranks"].as_array() else {
                // OLMo-core failed: seqwarm must refuse too, before the run ends.
                let failed = std::iter::from_fn(|| chunks.next_step()).any(|s| s.is_err());
                assert!(
                    failed,
                    "OLMo-core failed ({}), seqwarm ran: {name}",
                    run["error"]
                );
                continue;
            };
            for (epoch, steps) in ranks[rank as usize].as_array().unwrap().iter().enumerate() {
                for (i, expected) in steps.as_array().unwrap().iter().enumerate() {
                    let step = chunks.next_step().expect("a step OLMo-core made").unwrap();
                    let context = format!("{name}, rank {rank} epoch {epoch} step {i}");
                    assert_eq!(step.epoch, epoch as u64, "{context}");
                    assert_eq!(
                        step.global_batch_tokens,
                        expected["global_batch_tokens"].as_u64().unwrap(),
                        "{context}"
                    );
                    assert_eq!(
                        step.epoch_step,
                        expected["epoch_step"].as_u64().unwrap(),
                        "{context}"
                    );
                    let instances: Vec<u32> = expected["instances"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_u64().unwrap() as u32)
                        .collect();
                    assert_eq!(step.rows, instances, "{context}");
                    assert_eq!(
                        step.lr_multiplier.to_bits(),
                        expected["lr_multiplier"].as_f64().unwrap().to_bits(),
                        "{context}"
                    );
                    compared += 1;
                }
            }
            assert!(
                chunks.next_step().is_none(),
                "seqwarm has more steps than OLMo-core"
            );
        }
    }
    assert!(compared > 4000, "only {compared} steps compared");
}
