//! `seqwarm stream --mode decompose` from outside, against OLMo-core 3.0.0's own batches
//! (`tests/conformance/olmo_core.json`, from `scripts/olmo-core-vectors`): the documented
//! command line, on raw `uint16` files, prints each rank's rows exactly as OLMo-core's loader
//! yields them on that rank, both epochs; a resume continues byte for byte; bad files are
//! typed errors naming the file and byte.

mod common;

use std::path::Path;

use common::olmo_core::{EOS, le_bytes, olmo_core_corpus, olmo_core_documents, rows_sha256};
use common::{ok, seqwarm, temp};
use serde_json::Value;

/// The same corpus as Megatron-LM indexed datasets (`part-N.bin` + `part-N.idx`, `uint16`),
/// each document two sequences where it can be (as `--split-sentences` makes them), the last
/// file's trailing tokens a document of their own. The index is laid out as Megatron's
/// builder writes it (`tests/megatron_conformance.rs` in the format crate reads real ones).
fn olmo_core_corpus_as_megatron(dir: &Path) {
    for (f, (tokens, lengths)) in olmo_core_documents().iter().enumerate() {
        let mut documents: Vec<Vec<i32>> = lengths
            .iter()
            .map(|&len| {
                let len = len as i32;
                if len >= 2 {
                    vec![len / 2, len - len / 2]
                } else {
                    vec![len]
                }
            })
            .collect();
        let tail = tokens.len() as u64 - lengths.iter().sum::<u64>();
        if tail > 0 {
            documents.push(vec![tail as i32]);
        }
        let sequences: Vec<i32> = documents.iter().flatten().copied().collect();
        let mut idx = b"MMIDIDX\x00\x00".to_vec();
        idx.extend(1u64.to_le_bytes());
        idx.push(8);
        idx.extend((sequences.len() as u64).to_le_bytes());
        idx.extend((documents.len() as u64 + 1).to_le_bytes());
        for l in &sequences {
            idx.extend(l.to_le_bytes());
        }
        let mut pointer = 0i64;
        for l in &sequences {
            idx.extend(pointer.to_le_bytes());
            pointer += i64::from(*l) * 2;
        }
        let mut index = 0i64;
        idx.extend(index.to_le_bytes());
        for d in &documents {
            index += d.len() as i64;
            idx.extend(index.to_le_bytes());
        }
        std::fs::write(dir.join(format!("part-{f}.bin")), le_bytes(tokens)).unwrap();
        std::fs::write(dir.join(format!("part-{f}.idx")), idx).unwrap();
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

#[test]
fn megatron_pairs_give_the_batches_of_the_same_documents_ending_in_eos() {
    let dir = temp("decompose-megatron");
    olmo_core_corpus_as_megatron(&dir);
    let vectors = vectors();
    let run = &vectors["runs"][0];
    for rank in 0..2u64 {
        let lines = stream(&dir, run, rank, &[]);
        let expected: Vec<&Value> = run["ranks"][rank as usize]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|epoch| epoch.as_array().unwrap())
            .collect();
        assert_eq!(lines.len(), expected.len(), "steps on rank {rank}");
        for (step, (line, want)) in lines.iter().zip(expected).enumerate() {
            assert_eq!(line["pieces"], want["instances"], "rank {rank} step {step}");
            assert_eq!(
                rows_sha256(line),
                want["rows_sha256"].as_str().unwrap(),
                "rank {rank} step {step}"
            );
        }
    }
    // A natural-curriculum run of the contract's lengths over `location`, as `dtype` ids.
    let run = |location: &str, dtype: &str, extra: &[&str]| {
        let mut args = vec![
            "stream",
            location,
            "--token-dtype",
            dtype,
            "--eos-id",
            "50256",
            "--mode",
            "decompose",
            "--min",
            "64",
            "--max",
            "2048",
            "--batch-tokens",
            "4096",
        ];
        args.extend(extra);
        seqwarm(&args)
    };
    // Megatron's `--data-path` names a pair by its prefix.
    let prefix = dir.join("part-0").display().to_string();
    let text = ok(&run(&prefix, "uint16", &["--max-steps", "1"]));
    assert!(text.contains("1 token files"), "{text}");
    // A `.bin` that is not what its `.idx` says, and the wrong width.
    let bin = dir.join("part-1.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() - 2]).unwrap();
    let out = run(dir.to_str().unwrap(), "uint16", &[]);
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        error.contains("part-1.idx at byte") && error.contains("does not match its .bin"),
        "{error}"
    );
    let out = run(&prefix, "uint32", &[]);
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("part-0.idx at byte 17") && error.contains("the run says uint32"),
        "{error}"
    );
}

#[test]
fn the_plan_is_olmo_cores_bucket_table() {
    let dir = temp("decompose-plan");
    olmo_core_corpus(&dir);
    let vectors = vectors();
    for run in vectors["runs"].as_array().unwrap() {
        if run.get("error").is_some() {
            continue;
        }
        let n = |k: &str| run[k].to_string();
        let curriculum = run["curriculum"].as_str().unwrap();
        let mut args = vec![
            "plan".to_string(),
            dir.display().to_string(),
            "--mode".into(),
            "decompose".into(),
            "--token-dtype".into(),
            "uint16".into(),
            "--eos-id".into(),
            EOS.to_string(),
            "--curriculum".into(),
            curriculum.into(),
            "--min".into(),
            n("min"),
            "--max".into(),
            n("max"),
            "--batch-tokens".into(),
            n("batch_tokens"),
            "--seed".into(),
            n("seed"),
            "--world-size".into(),
            n("world_size"),
            "--format".into(),
            "json".into(),
            "--no-svg".into(),
        ];
        if curriculum != "natural" {
            args.extend(["--cycles".into(), n("cycles")]);
            if run["balanced"].as_bool().unwrap() {
                args.push("--balanced".into());
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let plan: Value = serde_json::from_str(&ok(&seqwarm(&args))).unwrap();
        let table: Vec<Value> = plan["lengths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| serde_json::json!([l["length"], l["pieces"]]))
            .collect();
        assert_eq!(Value::Array(table), run["instances_per_bucket"], "{args:?}");
        let steps = run["ranks"][0][0].as_array().unwrap().len();
        assert_eq!(plan["steps_per_epoch"], steps, "{args:?}");
        let lengths: std::collections::BTreeSet<u64> = run["ranks"][0][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["length"].as_u64().unwrap())
            .collect();
        assert_eq!(plan["shapes"], lengths.len(), "{args:?}");
    }
    // The SVG of an epoch's lengths is written.
    let svg = dir.join("plan.svg");
    let d = dir.to_str().unwrap();
    let s = svg.to_str().unwrap();
    let flags = [
        "--token-dtype",
        "uint16",
        "--eos-id",
        "50256",
        "--max",
        "2048",
    ];
    let args = [
        &["plan", d, "--mode", "decompose"][..],
        &flags,
        &["--batch-tokens", "4096", "--svg", s],
    ];
    ok(&seqwarm(&args.concat()));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    // Decomposition flags without the mode are refused, not ignored.
    let out = seqwarm(&["plan", "--curriculum", "grow-p2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give --mode decompose"));
}
