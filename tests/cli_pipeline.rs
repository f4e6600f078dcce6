//! End-to-end tests of `preprocess`, `stream`, `merge-manifests` and `bench`, on corpora the
//! tests write themselves.

use std::path::Path;

mod common;

use common::{corpus, ok, preprocess, preprocessed_corpus, seqwarm, temp};

fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    seqwarm_testkit::parquet_files(dir)
}

#[test]
fn preprocess_is_deterministic_and_resumes_without_rewriting() {
    let root = temp("pre");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 4, 25);
    let (a, b) = (root.join("a"), root.join("b"));
    ok(&preprocess(&input, &a, &[]));
    ok(&preprocess(&input, &b, &["--threads", "1"]));
    let shards = files_of(&a);
    assert!(shards.len() >= 3, "{} shards", shards.len());
    assert_eq!(
        shards,
        files_of(&b),
        "same inputs and flags give byte-identical shards"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["documents"], 100);
    assert_eq!(manifest["shards"].as_array().unwrap().len(), shards.len());

    // Interrupted after two shards: later shards and a partial file are gone.
    let finished_before = std::fs::metadata(b.join(&shards[0].0))
        .unwrap()
        .modified()
        .unwrap();
    for (name, _) in &shards[2..] {
        std::fs::remove_file(b.join(name)).unwrap();
        let _ = std::fs::remove_file(b.join(format!("{name}.json")));
    }
    std::fs::write(
        b.join("shard-w00000-00002.parquet.partial"),
        b"half a shard",
    )
    .unwrap();
    ok(&preprocess(&input, &b, &[]));
    assert_eq!(
        shards,
        files_of(&b),
        "the resumed run finishes the same shards"
    );
    assert_eq!(
        std::fs::metadata(b.join(&shards[0].0))
            .unwrap()
            .modified()
            .unwrap(),
        finished_before,
        "finished shards are not rewritten"
    );
    assert!(!b.join("shard-w00000-00002.parquet.partial").exists());
}

#[test]
fn workers_split_the_inputs_and_manifests_merge() {
    let root = temp("workers");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 5, 10);
    let out = root.join("out");
    for worker in ["0", "1"] {
        ok(&preprocess(
            &input,
            &out,
            &["--worker", worker, "--workers", "2"],
        ));
    }
    ok(&seqwarm(&[
        "merge-manifests",
        out.to_str().unwrap(),
        "-o",
        out.join("manifest.json").to_str().unwrap(),
    ]));
    let merged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(merged["documents"], 50);
    let single = root.join("single");
    ok(&preprocess(&input, &single, &[]));
    let one: serde_json::Value =
        serde_json::from_slice(&std::fs::read(single.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(merged["tokens"], one["tokens"]);
    // A missing worker is refused.
    std::fs::remove_file(out.join("manifest-w00001-of-00002.json")).unwrap();
    let err = seqwarm(&[
        "merge-manifests",
        out.to_str().unwrap(),
        "-o",
        root.join("m.json").to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("workers 0..2"));
}

/// In a Slurm job array the worker split comes from the array's variables (an array from 1
/// included); `--worker`/`--workers` still win; variables that do not add up are refused.
#[test]
fn a_slurm_array_task_takes_its_share_of_the_inputs() {
    let root = temp("slurm");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 5, 4);
    let args = |out: &Path, extra: &[&str]| {
        let mut args: Vec<String> = [
            "preprocess",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--separator",
            "\\n\\n\\n",
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|s| (*s).to_string()));
        args
    };
    let in_array = |out: &Path, id: &str, extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_seqwarm"))
            .args(args(out, extra))
            .env("SLURM_ARRAY_TASK_ID", id)
            .env("SLURM_ARRAY_TASK_COUNT", "2")
            .env("SLURM_ARRAY_TASK_MIN", "1")
            .output()
            .unwrap()
    };
    let flags = root.join("flags");
    ok(&seqwarm(
        &args(&flags, &["--worker", "1", "--workers", "2"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    let slurm = root.join("slurm");
    let out = in_array(&slurm, "2", &[]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    ok(&out);
    assert!(
        said.contains("worker 1 of 2 (from SLURM_ARRAY_TASK_ID"),
        "{said}"
    );
    assert_eq!(files_of(&slurm), files_of(&flags));
    let manifest = "manifest-w00001-of-00002.json";
    assert_eq!(
        std::fs::read(slurm.join(manifest)).unwrap(),
        std::fs::read(flags.join(manifest)).unwrap()
    );
    // The flags win over the array.
    let overridden = root.join("overridden");
    ok(&in_array(
        &overridden,
        "2",
        &["--worker", "0", "--workers", "1"],
    ));
    assert!(overridden.join("manifest.json").exists());
    // One input per task (an array that ran before the split was read from it): refused,
    // not an empty success.
    let one = std::process::Command::new(env!("CARGO_BIN_EXE_seqwarm"))
        .args([
            "preprocess",
            input.join("part-00.txt").to_str().unwrap(),
            "-o",
            root.join("one").to_str().unwrap(),
        ])
        .env("SLURM_ARRAY_TASK_ID", "3")
        .env("SLURM_ARRAY_TASK_COUNT", "8")
        .output()
        .unwrap();
    assert!(!one.status.success());
    let said = String::from_utf8_lossy(&one.stderr);
    assert!(
        said.contains("got none of the inputs") && said.contains("--worker 0 --workers 1"),
        "{said}"
    );
    let out = in_array(&root.join("bad"), "7", &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("SLURM_ARRAY_TASK_ID=7 is not one of the 2 tasks"),
        "{said}"
    );
}

fn jsonl_steps(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn stream_resumes_from_a_state_file_identically() {
    let (root, shards) = preprocessed_corpus("stream", 3, 40);
    let base = [
        "stream",
        shards.to_str().unwrap(),
        "--min",
        "16",
        "--max",
        "128",
        "--step",
        "16",
        "--total",
        "40",
        "--batch-tokens",
        "512",
        "--shuffle-buffer",
        "8",
        "--seed",
        "3",
        "--emit",
        "jsonl",
        "--vocab-size",
        "50257",
    ];
    let full = jsonl_steps(&ok(&seqwarm(&base)));
    assert!(full.len() > 20, "{} batches", full.len());
    assert_eq!(full[0]["seq_len"], 16);
    let state = root.join("state.json");
    let mut first = base.to_vec();
    first.extend_from_slice(&["--max-steps", "9", "--state-out", state.to_str().unwrap()]);
    let mut resumed = jsonl_steps(&ok(&seqwarm(&first)));
    assert_eq!(resumed.len(), 9);
    let mut second = base.to_vec();
    second.extend_from_slice(&["--state-in", state.to_str().unwrap()]);
    resumed.extend(jsonl_steps(&ok(&seqwarm(&second))));
    assert_eq!(resumed, full, "interrupted + resumed == uninterrupted");
}

#[test]
fn stream_runs_on_the_demo_corpus_with_a_config_file() {
    let root = temp("config");
    let config = root.join("stream.toml");
    std::fs::write(&config, "mode = \"pack-bestfit\"\npack-window = 64\nmax-steps = 12\n\n[schedule]\nkind = \"linear\"\nmin = 64\nmax = 512\nstep = 64\nduration = 0.5\ntotal = 20\n").unwrap();
    let out = ok(&seqwarm(&[
        "stream",
        "--config",
        config.to_str().unwrap(),
        "--print-every",
        "1",
    ]));
    assert!(out.contains("mode pack-bestfit64"), "{out}");
    assert!(out.contains("summary: 12 batches"), "{out}");
    // A flag overrides the file.
    let out = ok(&seqwarm(&[
        "stream",
        "--config",
        config.to_str().unwrap(),
        "--max-steps",
        "3",
    ]));
    assert!(out.contains("summary: 3 batches"), "{out}");
}

#[test]
fn bench_runs_on_a_tiny_input_and_writes_json() {
    let (root, shards) = preprocessed_corpus("bench", 2, 30);
    let json = root.join("bench.json");
    let out = ok(&seqwarm(&[
        "bench",
        shards.to_str().unwrap(),
        "--repeat",
        "1",
        "--modes",
        "repack,truncate",
        "--batch-tokens",
        "2048",
        "--max-len",
        "256",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(
        out.contains("raw arrow-rs decode") && out.contains("stream repack"),
        "{out}"
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r["tokens_per_s"].as_f64().unwrap() > 0.0
                && r["peak_rss_mib"].as_f64().unwrap() > 0.0)
    );
}

#[test]
fn bad_inputs_name_the_file_and_line() {
    let root = temp("bad");
    let out_dir = root.join("out");
    let bad_utf8 = root.join("bad.txt");
    std::fs::write(&bad_utf8, b"fine line\nsecond line\n\xff\xfe broken\n").unwrap();
    let err = seqwarm(&[
        "preprocess",
        bad_utf8.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("bad.txt:3: invalid UTF-8"), "{msg}");

    let jsonl = root.join("docs.jsonl");
    std::fs::write(
        &jsonl,
        "{\"text\": \"hello there\"}\n{\"body\": \"no text field\"}\n{\"text\": \"bye\"}\n",
    )
    .unwrap();
    let err = seqwarm(&[
        "preprocess",
        jsonl.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("docs.jsonl:2: no string field `text`"));
    // Skip-and-count keeps the good documents.
    let skip = root.join("skip");
    ok(&seqwarm(&[
        "preprocess",
        jsonl.to_str().unwrap(),
        "-o",
        skip.to_str().unwrap(),
        "--on-error",
        "skip",
    ]));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(skip.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (
            manifest["documents"].as_u64(),
            manifest["skipped_documents"].as_u64()
        ),
        (Some(2), Some(1))
    );

    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = seqwarm(&[
        "preprocess",
        empty.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no input files matched"));

    let missing = root.join("nope.txt");
    let err = seqwarm(&[
        "preprocess",
        missing.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&err.stderr).contains("nope.txt: no such file"));

    // An unreadable input (a dangling link) is named.
    let link = root.join("dangling.txt");
    std::os::unix::fs::symlink(root.join("gone.txt"), &link).unwrap();
    let err = seqwarm(&[
        "preprocess",
        link.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("dangling.txt"));
    let err = seqwarm(&["stream", root.join("no-shards-here").to_str().unwrap()]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no-shards-here"));
}

#[test]
fn config_keys_are_checked_by_name_and_either_spelling_works() {
    let root = temp("config-keys");
    let config = root.join("stream.toml");
    // The flag spelling and the library's both read; the shorthand batch_tokens is a key.
    std::fs::write(
        &config,
        "batch_tokens = 4096\nmax-steps = 2\n[schedule]\nkind = \"constant\"\nmax = 512\ntotal = 10\n",
    )
    .unwrap();
    let out = ok(&seqwarm(&["stream", "--config", config.to_str().unwrap()]));
    assert!(out.contains("4096 tokens per batch"), "{out}");
    assert!(out.contains("summary: 2 batches"), "{out}");
    // A typo anywhere is named, with the file.
    for (text, key) in [
        ("batch_tokenz = 64\n", "`batch_tokenz`"),
        (
            "[schedule]\nkind = \"constant\"\nmax = 64\nmin = 8\n",
            "unknown field `min`",
        ),
        ("[train]\nlayerz = 2\n", "unknown field `layerz`"),
    ] {
        std::fs::write(&config, text).unwrap();
        let command = if text.starts_with("[train]") {
            "train"
        } else {
            "stream"
        };
        let err = seqwarm(&[command, "--config", config.to_str().unwrap()]);
        assert!(!err.status.success());
        let stderr = String::from_utf8_lossy(&err.stderr);
        if command == "train" && stderr.contains("without the `train` feature") {
            continue; // built without the train feature
        }
        assert!(stderr.contains(key), "{stderr}");
        assert!(stderr.contains("stream.toml"), "{stderr}");
    }
}

#[test]
fn help_shows_the_library_defaults() {
    let stream = ok(&seqwarm(&["stream", "--help"]));
    assert!(stream.contains("[default: repack]"), "{stream}");
    assert!(stream.contains("[default: 8 rows per batch]"), "{stream}");
    assert!(stream.contains("[default: 2]"), "{stream}");
    let preprocess = ok(&seqwarm(&["preprocess", "--help"]));
    assert!(preprocess.contains("[default: gpt2]"), "{preprocess}");
}

#[test]
fn stream_jsonl_into_a_closed_pipe_ends_quietly() {
    use std::process::{Command, Stdio};
    // The demo corpus streamed as JSON lines (megabytes) to a reader that has gone away.
    let mut child = Command::new(env!("CARGO_BIN_EXE_seqwarm"))
        .args(["stream", "--emit", "jsonl", "--max-steps", "200"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("error"),
        "{stderr}"
    );
}

#[test]
fn shard_paths_with_dot_dot_stream() {
    let root = temp("dotdot");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 1, 30);
    let out = root.join("shards");
    ok(&seqwarm(&[
        "preprocess",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--tokenizer",
        "bytes",
    ]));
    let elsewhere = root.join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    for location in ["../shards", "../shards/*.parquet", "../in/../shards/"] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_seqwarm"))
            .current_dir(&elsewhere)
            .args(["stream", location, "--max-steps", "2"])
            .output()
            .unwrap();
        let stdout = ok(&run);
        assert!(
            stdout.contains("summary: 2 batches"),
            "{location}: {stdout}"
        );
    }
}

/// Without --total, a Composer-mode run of one epoch is sized as Composer's
/// `max_duration = "1ep"` is: exactly the batches the epoch fills, EOS tokens included (the
/// EOS the preprocessor wrote, which the manifest names: none is appended).
#[test]
fn one_epoch_in_a_composer_mode_is_sized_exactly() {
    let root = temp("exact-epoch");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 2, 40);
    let out = root.join("shards");
    ok(&seqwarm(&[
        "preprocess",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--tokenizer",
        "bytes",
        "--separator",
        "\\n",
    ]));
    for mode in ["truncate", "reshape"] {
        let run = seqwarm(&[
            "stream",
            out.to_str().unwrap(),
            "--mode",
            mode,
            "--batch-rows",
            "4",
        ]);
        let stdout = ok(&run);
        let stderr = String::from_utf8_lossy(&run.stderr);
        let total = stderr
            .split("schedule total: ")
            .nth(1)
            .and_then(|t| t.split(' ').next())
            .unwrap_or_else(|| panic!("{stderr}"));
        assert!(stderr.contains("(exact)"), "{stderr}");
        assert!(
            stdout.contains(&format!("summary: {total} batches")),
            "{mode}: total {total}\n{stdout}"
        );
        // `--eos-id` of the manifest's EOS (the README once showed it) appends no second one:
        // the same total, the same batches.
        let told = seqwarm(&[
            "stream",
            out.to_str().unwrap(),
            "--mode",
            mode,
            "--batch-rows",
            "4",
            "--eos-id",
            "256",
            "--emit",
            "jsonl",
        ]);
        let plain = seqwarm(&[
            "stream",
            out.to_str().unwrap(),
            "--mode",
            mode,
            "--batch-rows",
            "4",
            "--emit",
            "jsonl",
        ]);
        assert_eq!(ok(&told), ok(&plain), "{mode}");
        let other = seqwarm(&["stream", out.to_str().unwrap(), "--eos-id", "0"]);
        let said = String::from_utf8_lossy(&other.stderr);
        assert!(
            !other.status.success() && said.contains("eos_id") && said.contains("256"),
            "{said}"
        );
    }
}

/// Hugging Face shards padded to a fixed length: the summary says the attention mask was not
/// read, and `--attention-mask` drops the padding it marks.
#[test]
fn an_attention_mask_is_named_when_unread_and_used_on_request() {
    use std::sync::Arc;

    use arrow_array::builder::{Int32Builder, ListBuilder};
    use arrow_array::{ArrayRef, RecordBatch};

    let root = temp("mask");
    let (mut ids, mut mask) = (
        ListBuilder::new(Int32Builder::new()),
        ListBuilder::new(Int32Builder::new()),
    );
    for d in 0..40i32 {
        let real = 5 + d % 11;
        for p in 0..16 {
            ids.values()
                .append_value(if p < real { 100 + d } else { 0 });
            mask.values().append_value(i32::from(p < real));
        }
        ids.append(true);
        mask.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        ("input_ids", Arc::new(ids.finish()) as ArrayRef),
        ("attention_mask", Arc::new(mask.finish()) as ArrayRef),
    ])
    .unwrap();
    let path = root.join("hf.parquet");
    seqwarm_testkit::write_parquet(&path, &batch, None);
    let real: u32 = (0..40).map(|d| 5 + d % 11).sum();
    let shard = path.to_str().unwrap();
    let read = |extra: &[&str]| {
        let mut args = vec![
            "stream",
            shard,
            "--total",
            "20",
            "--keep-last",
            "--batch-rows",
            "2",
        ];
        args.extend_from_slice(extra);
        let run = seqwarm(&args);
        (ok(&run), String::from_utf8_lossy(&run.stderr).into_owned())
    };
    let (plain, _) = read(&[]);
    assert!(
        plain.contains("columns not read: attention_mask; --attention-mask"),
        "{plain}"
    );
    assert!(plain.contains("640 tokens in"), "{plain}");
    let (masked, _) = read(&["--attention-mask"]);
    assert!(!masked.contains("columns not read"), "{masked}");
    assert!(masked.contains("documents read"), "{masked}");
    // Only the real tokens remain (the last batch padded up, its padding not counted).
    assert!(
        masked.contains(&format!(" {real} tokens in")),
        "{real}: {masked}"
    );
}

/// The real tokens of repacked `stream --emit jsonl` batches: rows are filled in order, so
/// the padding of a last partial batch is after its `tokens` real ones.
fn real_tokens_of(steps: &[serde_json::Value]) -> Vec<i64> {
    let mut tokens = Vec::new();
    for step in steps {
        let real = usize::try_from(step["tokens"].as_u64().unwrap()).unwrap();
        let rows = step["fields"]["input_ids"].as_array().unwrap();
        let flat = rows
            .iter()
            .flat_map(|row| row.as_array().unwrap())
            .map(|t| t.as_i64().unwrap());
        tokens.extend(flat.take(real));
    }
    tokens
}

#[test]
fn merge_states_resumes_two_ranks_on_one_with_every_token_once() {
    let (root, shards) = preprocessed_corpus("elastic", 3, 40);
    let base = [
        "stream",
        shards.to_str().unwrap(),
        "--min",
        "16",
        "--max",
        "128",
        "--step",
        "16",
        "--total",
        "40",
        "--batch-rows",
        "4",
        "--keep-last",
        "--emit",
        "jsonl",
    ];
    let mut whole = real_tokens_of(&jsonl_steps(&ok(&seqwarm(&base))));
    // Two ranks for 5 steps each, then their states merged and the rest on one rank.
    let mut elastic = Vec::new();
    let mut states = Vec::new();
    for rank in ["0", "1"] {
        let state = root.join(format!("state-{rank}.json"));
        let mut args = base.to_vec();
        args.extend_from_slice(&["--rank", rank, "--world-size", "2", "--max-steps", "5"]);
        args.extend_from_slice(&["--state-out", state.to_str().unwrap()]);
        let steps = jsonl_steps(&ok(&seqwarm(&args)));
        assert_eq!(steps.len(), 5);
        elastic.extend(real_tokens_of(&steps));
        states.push(state);
    }
    let merged = root.join("merged.json");
    let out = seqwarm(&[
        "merge-states",
        states[0].to_str().unwrap(),
        states[1].to_str().unwrap(),
        "-o",
        merged.to_str().unwrap(),
    ]);
    ok(&out);
    let note = String::from_utf8_lossy(&out.stderr);
    assert!(
        note.contains("merged the states of 2 ranks at step 5"),
        "{note}"
    );
    let mut args = base.to_vec();
    args.extend_from_slice(&["--state-in", merged.to_str().unwrap()]);
    let rest = jsonl_steps(&ok(&seqwarm(&args)));
    assert_eq!(rest[0]["step"], 5, "the schedule continues at step 5");
    elastic.extend(real_tokens_of(&rest));
    // Every token of the epoch once: the same multiset as one rank reading it all.
    whole.sort_unstable();
    elastic.sort_unstable();
    assert_eq!(elastic.len(), whole.len());
    assert!(
        elastic == whole,
        "the elastic run's tokens differ from the epoch's"
    );
    // A rank's own state on another number of ranks is refused, saying what to do.
    let mut args = base.to_vec();
    args.extend_from_slice(&["--state-in", states[0].to_str().unwrap()]);
    let out = seqwarm(&args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("seqwarm merge-states"), "{err}");
}

/// The documented elastic resume without `--total`: the automatic total depends on the number
/// of ranks (one epoch per rank), so the 2-rank resume of a 4-rank run's merged state was
/// refused ("settings differ ... total"). The total now comes from the checkpoint.
#[test]
fn an_elastic_resume_without_a_total_keeps_the_checkpoints_length() {
    let (root, shards) = preprocessed_corpus("elastic-total", 3, 40);
    let base = [
        "stream",
        shards.to_str().unwrap(),
        "--min",
        "16",
        "--max",
        "128",
        "--step",
        "16",
        "--batch-rows",
        "2",
        "--emit",
        "jsonl",
    ];
    let mut states = Vec::new();
    let mut totals = Vec::new();
    for rank in 0..4 {
        let state = root.join(format!("state-{rank}.json"));
        let rank = rank.to_string();
        let mut args = base.to_vec();
        args.extend_from_slice(&["--rank", &rank, "--world-size", "4", "--max-steps", "3"]);
        args.extend_from_slice(&["--state-out", state.to_str().unwrap()]);
        let run = seqwarm(&args);
        ok(&run);
        let said = String::from_utf8_lossy(&run.stderr).into_owned();
        totals.push(
            said.split("schedule total: ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string(),
        );
        states.push(state);
    }
    let merged = root.join("merged.json");
    let mut args = vec!["merge-states"];
    args.extend(states.iter().map(|s| s.to_str().unwrap()));
    args.extend_from_slice(&["-o", merged.to_str().unwrap()]);
    ok(&seqwarm(&args));
    for world in ["2", "3"] {
        let mut args = base.to_vec();
        args.extend_from_slice(&["--rank", "0", "--world-size", world]);
        args.extend_from_slice(&["--state-in", merged.to_str().unwrap()]);
        let run = seqwarm(&args);
        let rest = jsonl_steps(&ok(&run));
        assert_eq!(
            rest[0]["step"], 3,
            "{world} ranks: the schedule continues at step 3"
        );
        let said = String::from_utf8_lossy(&run.stderr);
        assert!(
            said.contains(&format!(
                "schedule total: {} steps, the checkpoint's",
                totals[0]
            )),
            "{world} ranks: {said}"
        );
    }
}

#[test]
fn a_mixture_streams_from_source_flags_and_from_a_config_file() {
    let root = temp("mixture");
    let mut dirs = Vec::new();
    for (name, files) in [("a", 3), ("b", 2)] {
        let input = root.join(format!("in-{name}"));
        std::fs::create_dir_all(&input).unwrap();
        corpus(&input, files, 40);
        let shards = root.join(name);
        ok(&preprocess(&input, &shards, &[]));
        dirs.push(shards.display().to_string());
    }
    let a = format!("a=0.75:{}", dirs[0]);
    let b = format!("b=0.25:{}", dirs[1]);
    let base = [
        "stream",
        "--source",
        &a,
        "--source",
        &b,
        "--min",
        "16",
        "--max",
        "128",
        "--step",
        "16",
        "--batch-rows",
        "8",
        "--max-steps",
        "60",
    ];
    let mut args = base.to_vec();
    args.extend_from_slice(&["--emit", "jsonl"]);
    let steps = jsonl_steps(&ok(&seqwarm(&args)));
    assert_eq!(steps.len(), 60);
    let last = &steps[59]["sources"];
    let (ta, tb) = (
        last[0]["tokens"].as_f64().unwrap(),
        last[1]["tokens"].as_f64().unwrap(),
    );
    assert_eq!(last[0]["name"], "a");
    let share = ta / (ta + tb);
    assert!(
        (share - 0.75).abs() < 0.05,
        "source a drew {share} of the tokens"
    );
    // The summary names every source.
    let out = seqwarm(&base);
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("source a:") && summary.contains("source b:"),
        "{summary}"
    );
    // The same from a config file, with the weights changed at step 30.
    let config = root.join("mixture.toml");
    std::fs::write(
        &config,
        format!(
            "max-steps = 60\nbatch-rows = 8\n[schedule]\nkind = \"linear\"\nmin = 16\nmax = 128\nstep = 16\nduration = 0.5\ntotal = 60\n\n[[sources]]\nname = \"a\"\nweight = 0.75\nshards = [\"{}\"]\n\n[[sources]]\nname = \"b\"\nweight = 0.25\nshards = [\"{}\"]\n\n[[weight_changes]]\nstep = 30\nweights = {{ a = 0.0, b = 1.0 }}\n",
            dirs[0], dirs[1]
        ),
    )
    .unwrap();
    let steps = jsonl_steps(&ok(&seqwarm(&[
        "stream",
        "--config",
        config.to_str().unwrap(),
        "--emit",
        "jsonl",
    ])));
    let a_at = |step: usize| steps[step]["sources"][0]["tokens"].as_u64().unwrap();
    assert_eq!(a_at(29), a_at(59), "no tokens of `a` from step 30 on");
    // Shards and sources together are refused.
    let out = seqwarm(&["stream", &dirs[0], "--source", &b, "--max-steps", "3"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not both"));
}

/// `--keep-last full-rows` is Composer's `drop_last=False`: the final batch has the complete
/// rows only, one fewer than `--keep-last` (which pads the remainder into a row).
#[test]
fn keep_last_full_rows_ends_with_the_complete_rows_only() {
    let (_, shards) = preprocessed_corpus("keep-last-full-rows", 2, 40);
    let last_rows = |how: &str| {
        let run = seqwarm(&[
            "stream",
            shards.to_str().unwrap(),
            "--mode",
            "truncate",
            "--batch-rows",
            "7",
            "--keep-last",
            how,
            "--emit",
            "jsonl",
        ]);
        let steps = jsonl_steps(&ok(&run));
        steps.last().unwrap()["rows"].as_u64().unwrap()
    };
    let (padded, full) = (last_rows("true"), last_rows("full-rows"));
    assert!(padded < 7, "a partial last batch: {padded}");
    assert_eq!(full + 1, padded);
    let refused = seqwarm(&[
        "stream",
        shards.to_str().unwrap(),
        "--mode",
        "repack",
        "--keep-last",
        "full-rows",
    ]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && said.contains("keep_last"),
        "{said}"
    );
}

/// Issue 23's CLI details: a flag the schedule's kind has no field for is named as the flag; a
/// schedule warning is printed once, without colour codes into a pipe; `plan --total 0` is
/// refused; `train` in a build without it says how to get it.
#[test]
fn cli_errors_name_flags_and_warnings_come_once() {
    let out = seqwarm(&[
        "stream",
        "--kind",
        "constant",
        "--min",
        "1024",
        "--max-steps",
        "1",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("--min does not apply to a `constant` schedule") && said.contains("--max"),
        "{said}"
    );
    let root = temp("plan-warning");
    let svg = root.join("p.svg");
    let out = seqwarm(&["plan", "--step", "7", "--svg", svg.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.matches("not a multiple of 8").count(), 1, "{said}");
    assert!(!said.contains('\u{1b}'), "colour codes into a pipe: {said}");
    let out = seqwarm(&["plan", "--total", "0", "--svg", svg.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--total 0"));
    if !cfg!(feature = "train") {
        let out = seqwarm(&["train", "--vocab-size", "5"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("--features train"),
            "{said}"
        );
    }
}
