//! `olmo_split` and `olmo_truncate` against OLMo-core 3.0.0's own `SequenceLengthSchedulerCallback`
//! length functions (`tests/conformance/olmo_core_schedules.json`, from
//! `scripts/olmo-core-schedule-vectors`): every step's length, through the warmup and past it.

use seqwarm_schedule::ScheduleConfig;
use serde_json::Value;

#[test]
fn every_steps_length_is_olmo_cores() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/conformance/olmo_core_schedules.json"
    );
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let schedules = vectors["schedules"].as_array().unwrap();
    assert!(schedules.len() >= 10);
    let mut checked = 0;
    for want in schedules {
        let truncate = want["truncate"].as_bool().unwrap();
        let mut table = serde_json::json!({
            "kind": if truncate { "olmo_truncate" } else { "olmo_split" },
            "min_sequence_length": want["min"],
            "sequence_length": want["max"],
            "warmup_steps": want["warmup_steps"],
        });
        if truncate {
            table["keep_multiple_of"] = want["keep_multiple_of"].clone();
        }
        let config: ScheduleConfig = serde_json::from_value(table).unwrap();
        let schedule = config.build().unwrap();
        let changes: Vec<(u64, u64)> = want["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c[0].as_u64().unwrap(), c[1].as_u64().unwrap()))
            .collect();
        let last_step = want["warmup_steps"].as_u64().unwrap() + 3;
        for step in 1..=last_step {
            // The length of the latest change at or before `step`.
            let expected = changes.iter().rev().find(|c| c.0 <= step).unwrap().1;
            // seqwarm's positions count from 0; OLMo-core's trainer steps from 1.
            assert_eq!(
                schedule.seq_len_at(step - 1),
                expected,
                "{config:?} at OLMo-core step {step}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20_000, "{checked}");
}

#[test]
fn what_olmo_core_cannot_run_is_refused() {
    let build = |text: &str| {
        serde_json::from_str::<ScheduleConfig>(text)
            .unwrap()
            .build()
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let error = build(r#"{"kind": "olmo_split", "min": 128, "max": 1000}"#);
    assert!(error.contains("power of 2"), "{error}");
    let error = build(r#"{"kind": "olmo_split", "min": 128, "max": 128}"#);
    assert!(error.contains("greater than min"), "{error}");
    let error = build(r#"{"kind": "olmo_split", "max": 1024, "keep_multiple_of": 64}"#);
    assert!(error.contains("belongs to olmo_truncate"), "{error}");
    let error =
        build(r#"{"kind": "olmo_truncate", "min": 8, "max": 1024, "keep_multiple_of": 128}"#);
    assert!(error.contains("rounds down to 0"), "{error}");
    let error = build(r#"{"kind": "olmo_truncate", "max": 1024, "unit": "tokens"}"#);
    assert!(error.contains("counts trainer steps"), "{error}");
    // OLMo-core's own defaults, by its names and the hyphenated kind.
    let config: ScheduleConfig =
        serde_json::from_str(r#"{"kind": "olmo-truncate", "sequence_length": 4096}"#).unwrap();
    let schedule = config.build().unwrap();
    assert_eq!(schedule.seq_len_at(0), 128);
    assert_eq!(schedule.seq_len_at(1999), 4096);
}
