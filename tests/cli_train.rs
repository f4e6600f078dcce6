//! End to end: `seqwarm train` (feature `train`) on a corpus the test writes and tokenizes,
//! then resumed from its checkpoint.
#![cfg(feature = "train")]

use std::path::Path;

mod common;

use common::{ok, seqwarm, temp};

fn corpus(dir: &Path, seed: u64) {
    let words = [
        "to", "be", "or", "not", "that", "is", "the", "question", "whether", "tis",
    ];
    let mut s = seed;
    let mut text = String::new();
    for _ in 0..300 {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        for i in 0..(5 + (s >> 40) as usize % 30) {
            text.push_str(words[(s as usize >> (i % 40)) % words.len()]);
            text.push(' ');
        }
        text.push_str("\n\n");
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("text.txt"), text).unwrap();
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn train_writes_a_run_directory_and_resumes() {
    let root = temp("run");
    for (split, seed) in [("train", 1), ("val", 2)] {
        corpus(&root.join("text").join(split), seed);
        ok(&seqwarm(&[
            "preprocess",
            root.join("text").join(split).to_str().unwrap(),
            "-o",
            root.join("shards").join(split).to_str().unwrap(),
            "--tokenizer",
            "bytes",
            "--separator",
            "\\n\\n",
            "--row-group-tokens",
            "2048",
        ]));
    }
    let run_dir = root.join("run");
    let train = root.join("shards/train");
    let val = root.join("shards/val");
    let args = |steps: &str| -> Vec<String> {
        [
            "train",
            train.to_str().unwrap(),
            "--eval-shards",
            val.to_str().unwrap(),
            "--vocab-size",
            "257",
            "--epochs",
            "0",
            "--total",
            "16",
            "--max-steps",
            steps,
            "--min",
            "16",
            "--max",
            "64",
            "--step",
            "16",
            "--duration",
            "0.5",
            "--kind",
            "linear",
            "--batch-rows",
            "4",
            "--layers",
            "1",
            "--heads",
            "2",
            "--width",
            "32",
            "--eval-every",
            "4",
            "--eval-batches",
            "2",
            "--checkpoint-every",
            "4",
            "--device",
            "cpu",
            "--run-dir",
            run_dir.to_str().unwrap(),
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect()
    };
    let first: Vec<String> = args("8");
    let out = ok(&seqwarm(
        &first.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(out.contains("trained 8 steps"), "{out}");
    for file in [
        "metrics.jsonl",
        "loss_vs_tokens.svg",
        "loss_vs_time.svg",
        "seq_len.svg",
        "checkpoint/model.safetensors",
        "checkpoint/optimizer.safetensors",
        "checkpoint/meta.json",
    ] {
        assert!(run_dir.join(file).exists(), "{file} missing");
    }
    let records = lines(&run_dir.join("metrics.jsonl"));
    assert_eq!(records.len(), 8);
    assert_eq!(records[0]["seq_len"], 16);
    assert!(records[3]["eval_loss"].is_number() && records[7]["eval_loss"].is_number());
    assert_eq!(records[0]["memory"]["memory"], "unavailable");

    // Resume to 16 steps: the step counter and the schedule carry on from the checkpoint.
    let mut resumed = args("16");
    resumed.push("--resume".into());
    let out = ok(&seqwarm(
        &resumed.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    assert!(out.contains("trained 8 steps"), "{out}");
    let records = lines(&run_dir.join("metrics.jsonl"));
    let steps: Vec<u64> = records
        .iter()
        .map(|r| r["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (0..16).collect::<Vec<_>>());
    assert_eq!(records[15]["seq_len"], 64);
    let tokens: Vec<u64> = records
        .iter()
        .map(|r| r["tokens"].as_u64().unwrap())
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
}

/// `seqwarm train` on a small byte-tokenized corpus of its own, for 2 steps on the CPU, with
/// `extra` flags; the command's output.
fn train_two_steps(name: &str, seed: u64, extra: &[&str]) -> std::process::Output {
    let root = temp(name);
    corpus(&root.join("text"), seed);
    let shards = root.join("shards");
    ok(&seqwarm(&[
        "preprocess",
        root.join("text").to_str().unwrap(),
        "-o",
        shards.to_str().unwrap(),
        "--tokenizer",
        "bytes",
    ]));
    let mut args = vec![
        "train",
        shards.to_str().unwrap(),
        "--max-steps",
        "2",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    seqwarm(&args)
}

#[test]
fn train_without_a_vocabulary_size_says_so() {
    let out = train_two_steps("novocab", 3, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--vocab-size"));
}

#[test]
fn train_refuses_packed_rows_without_labels() {
    let out = train_two_steps(
        "nolabels",
        4,
        &[
            "--vocab-size",
            "257",
            "--mode",
            "pack-greedy",
            "--pack-fields",
            "input_ids,segment_ids",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--pack-fields must include labels"),
        "{stderr}"
    );
}
