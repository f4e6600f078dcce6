//! `seqwarm stream --mode chunk` from outside, against OLMo-core 3.0.0's own batches
//! (`tests/conformance/olmo_core_fsl.json`, from `scripts/olmo-core-fsl-vectors`): on raw
//! `uint16` files, each rank's rows, global batch and learning-rate factor are exactly what
//! OLMo-core's `NumpyFSLDataLoader` under its `BatchSizeSchedulerCallback` gives, both epochs;
//! a resume continues byte for byte, across batch-size changes; what OLMo-core cannot run is
//! refused with the reason.

mod common;

use std::path::Path;

use common::olmo_core::{olmo_core_corpus, rows_sha256};
use common::{ok, seqwarm, temp};
use serde_json::Value;

fn vectors() -> Value {
    let text = std::fs::read_to_string("tests/conformance/olmo_core_fsl.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The command line of one configuration of the vectors.
fn args(dir: &Path, run: &Value, rank: u64) -> Vec<String> {
    let n = |k: &str| run[k].to_string();
    let mut args: Vec<String> = [
        "stream",
        dir.to_str().unwrap(),
        "--token-dtype",
        "uint16",
        "--mode",
        "chunk",
        "--emit",
        "jsonl",
        "--epochs",
        "2",
    ]
    .map(String::from)
    .into();
    for (flag, key) in [
        ("--seq-len", "seq_len"),
        ("--batch-tokens", "batch_tokens"),
        ("--seed", "seed"),
        ("--world-size", "world_size"),
    ] {
        args.extend([flag.into(), n(key)]);
    }
    args.extend(["--rank".into(), rank.to_string()]);
    let points: Vec<String> = run["schedule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}:{}", p[0], p[1]))
        .collect();
    if !points.is_empty() {
        args.extend(["--batch-schedule".into(), points.join(",")]);
        args.extend([
            "--batch-schedule-unit".into(),
            run["unit"].as_str().unwrap().into(),
        ]);
    }
    args
}

fn stream(args: &[String], extra: &[&str]) -> Vec<Value> {
    let all: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
        .collect();
    ok(&seqwarm(&all))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_rank_gets_olmo_cores_rows_batch_sizes_and_rate_factors() {
    let dir = temp("chunk-olmo-core");
    olmo_core_corpus(&dir);
    let mut compared = 0;
    for run in vectors()["configs"].as_array().unwrap() {
        let world = run["world_size"].as_u64().unwrap();
        for rank in 0..world {
            let args = args(&dir, run, rank);
            let Some(ranks) = run["ranks"].as_array() else {
                let all: Vec<&str> = args.iter().map(String::as_str).collect();
                let out = seqwarm(&all);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(
                    !out.status.success(),
                    "OLMo-core fails {run:.200}, seqwarm ran"
                );
                assert!(stderr.contains("assertion"), "{stderr}");
                continue;
            };
            let lines = stream(&args, &[]);
            let expected: Vec<&Value> = ranks[rank as usize]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|epoch| epoch.as_array().unwrap())
                .collect();
            assert_eq!(lines.len(), expected.len(), "steps, {args:?}");
            for (line, want) in lines.iter().zip(expected) {
                let context = format!("{args:?} step {}", line["step"]);
                assert_eq!(
                    rows_sha256(line),
                    want["rows_sha256"].as_str().unwrap(),
                    "{context}"
                );
                assert_eq!(line["instances"], want["instances"], "{context}");
                assert_eq!(
                    line["global_batch_tokens"], want["global_batch_tokens"],
                    "{context}"
                );
                assert_eq!(line["epoch_step"], want["epoch_step"], "{context}");
                assert_eq!(
                    line["lr_multiplier"].as_f64().unwrap().to_bits(),
                    want["lr_multiplier"].as_f64().unwrap().to_bits(),
                    "{context}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 4000, "only {compared} steps compared");
}

#[test]
fn a_resume_continues_byte_for_byte_across_batch_size_changes() {
    let dir = temp("chunk-resume");
    olmo_core_corpus(&dir);
    let vectors = vectors();
    // Two ranks, a start above the configured batch, an increase that waits, a decrease.
    let run = &vectors["configs"][2];
    let args = args(&dir, run, 1);
    let whole = stream(&args, &[]);
    let state = dir.join("state.json");
    let state_arg = state.display().to_string();
    // Before the increase is due, while it waits, after it, at the epoch's end, at the end.
    let first_epoch = whole.iter().filter(|l| l["epoch"] == 0).count();
    for cut in [3, 7, 8, 31, first_epoch, whole.len()] {
        let first = stream(
            &args,
            &["--max-steps", &cut.to_string(), "--state-out", &state_arg],
        );
        let rest = stream(&args, &["--state-in", &state_arg]);
        assert_eq!(first.len(), cut);
        let joined: Vec<Value> = first.into_iter().chain(rest).collect();
        assert_eq!(joined, whole, "resume at step {cut}");
    }
    // The state a whole run leaves at its end resumes to nothing.
    stream(&args, &["--state-out", &state_arg]);
    assert!(stream(&args, &["--state-in", &state_arg]).is_empty());
    // A state resumed under another schedule is refused.
    let mut other = args.clone();
    let at = other.iter().position(|a| a == "--batch-schedule").unwrap();
    other[at + 1] = "0:4096,7:16384".into();
    let all: Vec<&str> = other
        .iter()
        .map(String::as_str)
        .chain(["--state-in", &state_arg])
        .collect();
    let out = seqwarm(&all);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}

#[test]
fn what_olmo_core_cannot_run_is_refused_up_front_with_the_reason() {
    let dir = temp("chunk-refusals");
    olmo_core_corpus(&dir);
    let d = dir.to_str().unwrap();
    let base = [
        "stream",
        d,
        "--token-dtype",
        "uint16",
        "--mode",
        "chunk",
        "--seq-len",
        "256",
    ];
    let refused = |extra: &[&str], why: &str| {
        let all: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = seqwarm(&all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} ran");
        assert!(stderr.contains(why), "{extra:?}: {stderr}");
    };
    refused(&["--batch-tokens", "1000"], "not a whole number");
    refused(&["--batch-schedule", "5:2048"], "must start at 0");
    refused(&["--batch-schedule", "0:2048,10:3072"], "integer factor");
    refused(&["--batch-schedule", "0:2048,10:2048"], "twice in a row");
    refused(&["--batch-schedule", "0:2048,10:1024,5:512"], "must rise");
    let two_ranks = ["--world-size", "2", "--batch-tokens", "256"];
    let shrink = [&two_ranks[..], &["--batch-schedule", "0:512,4:256"]].concat();
    refused(&shrink, "whole number of rows");
    refused(
        &["--batch-tokens", "2048", "--batch-schedule", "0:3072"],
        "neither divides",
    );
    refused(
        &["--batch-tokens", "2048", "--eos-id", "50256"],
        "does not apply to --mode chunk",
    );
    refused(
        &["--batch-tokens", "2048", "--max", "512"],
        "does not apply to --mode chunk",
    );
    refused(
        &["--batch-tokens", "2048", "--batch-schedule", "0:2048,x"],
        "AT:TOKENS",
    );
    refused(
        &["--batch-tokens", "2048", "--vocab-size", "50000"],
        "outside the vocabulary",
    );
    refused(
        &["--batch-tokens", "2048", "--batch-schedule-unit", "steps"],
        "--batch-schedule",
    );
    refused(
        &["--batch-tokens", "536870912"],
        "fewer than one global batch",
    );
    refused(&[], "needs --batch-tokens");
    // Flags of the stage's modes are refused, not ignored.
    refused(
        &["--batch-tokens", "2048", "--no-shuffle-units"],
        "--no-shuffle-units does not apply",
    );
    refused(
        &["--batch-tokens", "2048", "--warmup-steps", "5"],
        "--warmup-steps does not apply",
    );
}
