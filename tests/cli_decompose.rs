//! `seqwarm stream --mode decompose` from outside, against OLMo-core 3.0.0's own batches
//! (`tests/conformance/olmo_core.json`, from `scripts/olmo-core-vectors`): the documented
//! command line, on raw `uint16` files, prints each rank's rows exactly as OLMo-core's loader
//! yields them on that rank, both epochs; a resume continues byte for byte; bad files are
//! typed errors naming the file and byte.

mod common;

use std::path::Path;

use common::{ok, seqwarm, temp};
use serde_json::Value;
use sha2::{Digest, Sha256};

const EOS: u64 = 50256;

/// The corpus `scripts/olmo-core-vectors` generates, written as raw `uint16` files.
fn olmo_core_corpus(dir: &Path) {
    let mut rng = seqwarm::stage::SplitMix64::new(2024);
    for f in 0..3u64 {
        let lengths: Vec<u64> = (0..400).map(|_| 1 + rng.next_u64() % 2500).collect();
        let total: u64 = lengths.iter().sum::<u64>() + if f == 2 { 37 } else { 0 };
        let mut tokens: Vec<u16> = (0..total)
            .map(|p| ((p * 40503 + f * 7) % 50000) as u16)
            .collect();
        let mut end = 0;
        for len in lengths {
            end += len;
            tokens[end as usize - 1] = EOS as u16;
        }
        let bytes: Vec<u8> = tokens.iter().flat_map(|t| t.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("part-{f}.npy")), bytes).unwrap();
    }
}

fn vectors() -> Value {
    let text = std::fs::read_to_string("tests/conformance/olmo_core.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stream(dir: &Path, run: &Value, rank: u64, extra: &[&str]) -> Vec<Value> {
    let n = |k: &str| run[k].to_string();
    let mut args = vec![
        "stream".to_string(),
        dir.display().to_string(),
        "--token-dtype".into(),
        "uint16".into(),
        "--eos-id".into(),
        EOS.to_string(),
        "--mode".into(),
        "decompose".into(),
        "--curriculum".into(),
        run["curriculum"].as_str().unwrap().into(),
        "--min".into(),
        n("min"),
        "--max".into(),
        n("max"),
        "--batch-tokens".into(),
        n("batch_tokens"),
        "--seed".into(),
        n("seed"),
        "--rank".into(),
        rank.to_string(),
        "--world-size".into(),
        n("world_size"),
        "--epochs".into(),
        "2".into(),
        "--emit".into(),
        "jsonl".into(),
    ];
    if run["curriculum"] != "natural" {
        args.extend(["--cycles".into(), n("cycles")]);
        if run["balanced"] == true {
            args.push("--balanced".into());
        }
    }
    args.extend(extra.iter().map(ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&seqwarm(&args))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rows_sha256(line: &Value) -> String {
    let mut hash = Sha256::new();
    for row in line["fields"]["input_ids"].as_array().unwrap() {
        for id in row.as_array().unwrap() {
            hash.update((id.as_u64().unwrap() as u32).to_le_bytes());
        }
    }
    format!("{:x}", hash.finalize())
}

#[test]
fn the_documented_command_is_olmo_cores_loader_on_every_rank() {
    let dir = temp("decompose-olmo-core");
    olmo_core_corpus(&dir);
    let vectors = vectors();
    // The contract's configuration (Grow-P2, 4 cycles, balanced, 64..2048, 4096 tokens per
    // rank, seed 0, two ranks) and the other two-rank ones: Grow-Linear balanced and not, and
    // the natural curriculum.
    let runs: Vec<&Value> = vectors["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["world_size"] == 2 && r["curriculum"] != "grow-p2" || r == &&vectors["runs"][0]
        })
        .collect();
    assert_eq!(runs.len(), 5);
    for run in runs {
        for rank in 0..2u64 {
            let lines = stream(&dir, run, rank, &[]);
            let expected: Vec<&Value> = run["ranks"][rank as usize]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|epoch| epoch.as_array().unwrap())
                .collect();
            assert_eq!(
                lines.len(),
                expected.len(),
                "{run:.80}: steps on rank {rank}"
            );
            for (step, (line, want)) in lines.iter().zip(expected).enumerate() {
                let at = format!("{} rank {rank} step {step}", run["curriculum"]);
                assert_eq!(line["seq_len"], want["length"], "{at}");
                assert_eq!(line["pieces"], want["instances"], "{at}");
                assert_eq!(
                    rows_sha256(line),
                    want["rows_sha256"].as_str().unwrap(),
                    "{at}"
                );
            }
        }
    }
}

#[test]
fn a_resume_continues_byte_for_byte_at_any_step() {
    let dir = temp("decompose-resume");
    olmo_core_corpus(&dir);
    let vectors = vectors();
    let run = &vectors["runs"][0];
    let whole = stream(&dir, run, 1, &[]);
    let state = dir.join("state.json");
    let state_arg = state.display().to_string();
    // Inside the first epoch, at its end, inside the second, and at the very end.
    for cut in [7, 24, 31, whole.len()] {
        let first = stream(
            &dir,
            run,
            1,
            &["--max-steps", &cut.to_string(), "--state-out", &state_arg],
        );
        let rest = stream(&dir, run, 1, &["--state-in", &state_arg]);
        assert_eq!(first.len(), cut);
        let joined: Vec<Value> = first.into_iter().chain(rest).collect();
        assert_eq!(joined, whole, "resume at step {cut}");
    }
    // A state resumed over other settings is refused.
    let out = seqwarm(&[
        "stream",
        dir.to_str().unwrap(),
        "--token-dtype",
        "uint16",
        "--eos-id",
        "50256",
        "--mode",
        "decompose",
        "--min",
        "64",
        "--max",
        "2048",
        "--batch-tokens",
        "8192",
        "--state-in",
        &state_arg,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("other settings"));
}

#[test]
fn bad_token_files_are_errors_naming_the_file_and_byte() {
    let dir = temp("decompose-bad");
    let base = [
        "stream",
        "--token-dtype",
        "uint16",
        "--eos-id",
        "9",
        "--mode",
        "decompose",
        "--min",
        "1",
        "--max",
        "2",
        "--batch-tokens",
        "2",
    ];
    let run = |path: &Path, extra: &[&str]| {
        let mut args: Vec<&str> = base.to_vec();
        let path = path.display().to_string();
        args.insert(1, &path);
        args.extend(extra);
        let out = seqwarm(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let truncated = dir.join("truncated.bin");
    std::fs::write(&truncated, [1u8, 0, 9, 0, 4]).unwrap();
    let error = run(&truncated, &[]);
    assert!(
        error.contains("truncated.bin at byte 5") && error.contains("not a whole number"),
        "{error}"
    );
    let over = dir.join("over.bin");
    let ids: [u16; 4] = [1, 9, 70, 9];
    std::fs::write(
        &over,
        ids.iter()
            .flat_map(|t| t.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let error = run(&over, &["--vocab-size", "64"]);
    assert!(
        error.contains("over.bin at byte 4") && error.contains("token 70"),
        "{error}"
    );
    let error = run(&over, &["--keep-last"]);
    assert!(error.contains("--keep-last does not apply"), "{error}");
    let out = seqwarm(&["stream", over.to_str().unwrap(), "--mode", "decompose"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--token-dtype"));
}
