//! Crash safety: `preprocess` and `stream --state-out` killed with SIGKILL at seeded random
//! moments, again and again, then resumed. Resuming gives byte-identical shards and manifest,
//! and exactly the batches of an uninterrupted run from the last checkpoint on; no kill leaves
//! a torn file that a resume trips over.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{corpus, ok, seqwarm, temp};

/// Seeded delays in `0..limit`: the same moments on every run of the test.
struct Delays(u64);

impl Delays {
    fn next(&mut self, limit: Duration) -> Duration {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let fraction = (self.0 >> 11) as f64 / (1u64 << 53) as f64;
        limit.mul_f64(fraction)
    }
}

/// Runs the binary with `args` and kills it (SIGKILL) once it has printed `lines` lines and
/// `then` has passed, unless it ends first; its stdout, and whether the kill landed before
/// the end. Waiting for output rather than for a time makes every kill land mid-run however
/// slow the machine is.
fn kill_after_lines(args: &[&str], lines: usize, then: Duration) -> (Vec<u8>, bool) {
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let mut child = Command::new(env!("CARGO_BIN_EXE_seqwarm"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&printed);
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut stdout = std::io::BufReader::new(stdout);
        // A line cut by the kill has no newline and is not counted.
        while matches!(stdout.read_until(b'\n', &mut out), Ok(n) if n > 0) {
            if out.ends_with(b"\n") {
                counter.fetch_add(1, Ordering::SeqCst);
            }
        }
        out
    });
    while printed.load(Ordering::SeqCst) < lines {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    while started.elapsed() < then {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let landed = child.try_wait().unwrap().is_none() && child.kill().is_ok();
    child.wait().unwrap();
    (reader.join().unwrap(), landed)
}

/// Every file of `dir` but the per-shard records and temporary files, as (name, bytes).
fn outputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet" || e == "json"))
        .filter(|p| !p.to_string_lossy().ends_with(".parquet.json"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn preprocess_killed_at_random_moments_resumes_to_identical_output() {
    let root = temp("fault-pre");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 4, 120);
    let run = |out: &Path| {
        vec![
            "preprocess".to_string(),
            input.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--separator".into(),
            "\\n\\n\\n".into(),
            "--shard-tokens".into(),
            "3000".into(),
            "--row-group-tokens".into(),
            "1000".into(),
            "--threads".into(),
            "2".into(),
        ]
    };
    let reference = root.join("reference");
    let started = Instant::now();
    let args = run(&reference);
    ok(&seqwarm(
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let full = started.elapsed();
    let expected = outputs(&reference);
    assert!(expected.len() > 6, "{} files", expected.len());

    let mut delays = Delays(7);
    for attempt in 0..3 {
        let out = root.join(format!("killed-{attempt}"));
        let args = run(&out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Several kills into the same output, each resuming the one before, then a clean end.
        // Each kill within the first third of a full run's time: most land mid-run.
        for _ in 0..4 {
            kill_after_lines(&args, 0, delays.next(full / 3));
        }
        ok(&seqwarm(&args));
        assert_eq!(
            outputs(&out)
                .iter()
                .map(|(n, b)| (n.as_str(), b.len()))
                .collect::<Vec<_>>(),
            expected
                .iter()
                .map(|(n, b)| (n.as_str(), b.len()))
                .collect::<Vec<_>>(),
            "attempt {attempt}: the files differ"
        );
        assert!(
            outputs(&out) == expected,
            "attempt {attempt}: the bytes differ"
        );
    }
}

/// The batches of a `stream --emit jsonl` run, by step.
fn batches(stdout: &[u8]) -> Vec<(u64, serde_json::Value)> {
    String::from_utf8_lossy(stdout)
        .lines()
        // A line cut by the kill is not a batch.
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| (v["step"].as_u64().unwrap(), v))
        .collect()
}

#[test]
fn stream_killed_at_random_moments_resumes_from_its_last_state() {
    let root = temp("fault-stream");
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, 3, 120);
    let shards = root.join("shards");
    ok(&seqwarm(&[
        "preprocess",
        input.to_str().unwrap(),
        "-o",
        shards.to_str().unwrap(),
        "--separator",
        "\\n\\n\\n",
        "--shard-tokens",
        "4000",
        "--row-group-tokens",
        "1000",
    ]));
    let state = root.join("state.json");
    let base = [
        "stream",
        shards.to_str().unwrap(),
        "--emit",
        "jsonl",
        "--batch-rows",
        "2",
        "--total",
        "300",
        "--epochs",
        "2",
        "--state-out",
        state.to_str().unwrap(),
        "--state-every",
        "1",
    ];
    let started = Instant::now();
    let reference = batches(&seqwarm(&base).stdout);
    let full = started.elapsed();
    assert!(reference.len() > 50, "{} batches", reference.len());
    let _ = std::fs::remove_file(&state);

    let mut delays = Delays(11);
    let mut seen = 0usize;
    let mut landed = 0usize;
    for kill in 0..6 {
        let mut args = base.to_vec();
        if state.exists() {
            args.extend(["--state-in", state.to_str().unwrap()]);
        }
        // After a seeded number of batches (1 to 8), then a seeded moment within a tenth of a
        // full run: the kill lands between batches, mid-write or mid-read.
        let lines = 1 + (delays.next(Duration::from_secs(8)).as_secs() as usize);
        let (stdout, killed) = kill_after_lines(&args, lines, delays.next(full / 10));
        landed += usize::from(killed);
        for (step, batch) in batches(&stdout) {
            // Whatever a killed run printed is what an uninterrupted run prints at that step.
            assert_eq!(
                &reference[step as usize].1, &batch,
                "kill {kill}: step {step}"
            );
            seen += 1;
        }
        if state.exists() {
            // Never torn: every kill leaves the last state whole.
            let text = std::fs::read_to_string(&state).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("kill {kill}: a torn state file: {e}"));
        }
    }
    // The last state resumes to exactly the rest of the reference run.
    let mut args = base.to_vec();
    if state.exists() {
        args.extend(["--state-in", state.to_str().unwrap()]);
    }
    let rest = batches(&seqwarm(&args).stdout);
    let first = rest.first().map_or(reference.len() as u64, |(s, _)| *s) as usize;
    assert_eq!(rest.len(), reference.len() - first);
    for (step, batch) in &rest {
        assert_eq!(&reference[*step as usize].1, batch, "resumed step {step}");
    }
    assert!(seen > 0, "no batch printed before a kill");
    assert!(landed > 0, "every run ended before its kill");
}
