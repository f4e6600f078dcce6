//! Conformance against the reference implementations' own outputs.
//!
//! Vectors are read from `$SEQWARM_CONFORMANCE_DIR` when set (a missing or malformed file then
//! fails the test), else from `../shared/conformance` beside the checkout (skipped with a
//! notice when absent, so a user's clone still passes).

use std::path::PathBuf;

use seqwarm::batcher::{Batch, Cut, Tensor};
use seqwarm::schedule::{ScheduleConfig, ScheduleError};
use serde_json::Value;

/// The vectors file `name`, or `None` (with a printed notice) when it should be skipped.
fn load(name: &str) -> Option<Value> {
    let (dir, required) = match std::env::var_os("SEQWARM_CONFORMANCE_DIR") {
        Some(dir) => (PathBuf::from(dir), true),
        None => (
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance"),
            false,
        ),
    };
    let path = dir.join(name);
    if !required && !path.exists() {
        println!(
            "notice: {} not found; skipping {name} conformance (set SEQWARM_CONFORMANCE_DIR)",
            path.display()
        );
        return None;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    Some(
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display())),
    )
}

fn int(v: &Value, what: &str) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("{what}: expected an integer, got {v}"))
}

fn batch_from_json(value: &Value) -> Batch {
    let object = value.as_object().expect("batch must be an object");
    let mut batch = Batch::new();
    for (name, list) in object {
        let rows = list.as_array().expect("tensor must be a list");
        let tensor = if rows.first().is_some_and(Value::is_array) {
            let cols = rows[0].as_array().map_or(0, Vec::len);
            let flat: Vec<i64> = rows
                .iter()
                .flat_map(|r| r.as_array().expect("ragged tensor").iter())
                .map(|x| int(x, name))
                .collect();
            Tensor::from_vec(flat, rows.len(), cols).expect("rectangular tensor")
        } else {
            Tensor::vector(rows.iter().map(|x| int(x, name)).collect::<Vec<i64>>())
        };
        batch
            .insert(name.as_str(), tensor)
            .expect("consistent rows");
    }
    batch
}

fn batch_to_json(batch: &Batch) -> Value {
    let mut object = serde_json::Map::new();
    for (name, tensor) in batch.iter() {
        let value = match tensor.cols() {
            Some(_) => serde_json::to_value(tensor.to_rows_i64()),
            None => serde_json::to_value(tensor.to_vec_i64()),
        };
        object.insert(name.to_string(), value.expect("serializable"));
    }
    Value::Object(object)
}

#[test]
fn composer_batch_cases() {
    let Some(doc) = load("composer_public.json") else {
        return;
    };
    let cases = doc["batch_cases"].as_array().expect("batch_cases list");
    assert!(!cases.is_empty(), "no batch cases");
    let mut passed = 0;
    for (i, case) in cases.iter().enumerate() {
        let batch = batch_from_json(&case["batch"]);
        let len = usize::try_from(int(&case["seq_len"], "seq_len")).expect("seq_len >= 0");
        let truncate = case["truncate"].as_bool().expect("truncate flag");
        let preserve = case["preserve_end_of_sequence"]
            .as_bool()
            .expect("preserve flag");
        let cut = if truncate {
            Cut::Truncate {
                preserve_end_of_sequence: preserve,
            }
        } else {
            Cut::Reshape
        };
        let got = batch.set_sequence_length(len, cut);
        match (&case["expect"], got) {
            (Value::Null, Err(_)) => {}
            (Value::Null, Ok(out)) => panic!(
                "case {i}: Composer raised {:?}, seqwarm returned {}",
                case["error"],
                batch_to_json(&out)
            ),
            (expect, Err(e)) => panic!("case {i}: Composer returned {expect}, seqwarm failed: {e}"),
            (expect, Ok(out)) => {
                let got = batch_to_json(&out);
                assert_eq!(
                    got.as_object().map(|o| o.keys().collect::<Vec<_>>()),
                    expect.as_object().map(|o| o.keys().collect::<Vec<_>>()),
                    "case {i}: field order"
                );
                assert_eq!(&got, expect, "case {i}");
            }
        }
        passed += 1;
    }
    println!("composer batch cases: {passed} passed");
}

#[test]
fn composer_schedule_cases() {
    let Some(doc) = load("composer_public.json") else {
        return;
    };
    let cases = doc["schedule_cases"]
        .as_array()
        .expect("schedule_cases list");
    assert!(!cases.is_empty(), "no schedule cases");
    let (mut passed, mut points_checked) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let u = |k: &str| u64::try_from(int(&case[k], k)).expect("non-negative");
        let config = ScheduleConfig::composer(
            u("min_seq_length"),
            u("max_seq_length"),
            case["duration"].as_f64().expect("duration"),
            u("total_batches"),
        )
        .with_step(u("step_size"));
        let points = case["points"].as_array().expect("points");
        let raises = points.iter().any(|p| p[1].is_null());
        match config.build() {
            Err(ScheduleError::ComposerDivisionByZero { .. }) if raises => {}
            Err(e) => panic!("case {i}: unexpected error {e}"),
            Ok(_) if raises => panic!("case {i}: Composer divides by zero, seqwarm accepted it"),
            Ok(schedule) => {
                for p in points {
                    let batch = u64::try_from(int(&p[0], "batch")).expect("batch index");
                    let expect = u64::try_from(int(&p[1], "seq_len")).expect("length");
                    assert_eq!(
                        schedule.seq_len_at(batch),
                        expect,
                        "case {i} at batch {batch}"
                    );
                    points_checked += 1;
                }
            }
        }
        passed += 1;
    }
    println!("composer schedule cases: {passed} passed ({points_checked} points)");
}

#[test]
fn deepspeed_schedule_cases() {
    let Some(doc) = load("deepspeed_public.json") else {
        return;
    };
    let cases = doc["cases"].as_array().expect("cases list");
    assert!(!cases.is_empty(), "no DeepSpeed cases");
    let (mut passed, mut points_checked) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let ds = &case["config"];
        // DeepSpeed's nested config, flattened into seqwarm's (which accepts its spellings).
        let mut flat = serde_json::Map::new();
        flat.insert("kind".into(), ds["schedule_type"].clone());
        flat.insert("min_difficulty".into(), ds["min_difficulty"].clone());
        flat.insert("max_difficulty".into(), ds["max_difficulty"].clone());
        for (k, v) in ds["schedule_config"].as_object().expect("schedule_config") {
            flat.insert(k.clone(), v.clone());
        }
        let config: ScheduleConfig = serde_json::from_value(Value::Object(flat))
            .unwrap_or_else(|e| panic!("case {i}: config rejected: {e}"));
        let schedule = config
            .build()
            .unwrap_or_else(|e| panic!("case {i}: config rejected: {e}"));
        for p in case["points"].as_array().expect("points") {
            let step = u64::try_from(int(&p[0], "step")).expect("step");
            let expect = u64::try_from(int(&p[1], "difficulty")).expect("difficulty");
            assert_eq!(
                schedule.seq_len_at(step),
                expect,
                "case {i} ({ds}) at step {step}"
            );
            points_checked += 1;
        }
        passed += 1;
    }
    println!("deepspeed schedule cases: {passed} passed ({points_checked} points)");
}
