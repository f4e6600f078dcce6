//! Helpers for the end-to-end CLI tests: run the `seqwarm` binary, check it succeeded, make a
//! scratch directory.

#![allow(dead_code)]

pub mod olmo_core;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs the `seqwarm` binary with `args`.
pub fn seqwarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seqwarm"))
        .args(args)
        .output()
        .unwrap()
}

/// Asserts that a run succeeded (printing its output when it did not) and returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh empty directory under the system temp dir.
pub fn temp(name: &str) -> PathBuf {
    seqwarm_testkit::temp_dir("cli", name)
}

/// A small English-like corpus: `files` text files of `documents` documents each, separated
/// by three newlines.
pub fn corpus(dir: &Path, files: usize, documents: usize) {
    let words = [
        "the", "of", "and", "to", "warmup", "sequence", "length", "is", "a", "model", "token",
        "shard",
    ];
    let mut s = 17u64;
    for f in 0..files {
        let mut text = String::new();
        for _ in 0..documents {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let n = 20 + (s >> 33) as usize % 200;
            for i in 0..n {
                text.push_str(words[(s as usize >> (i % 48)) % words.len()]);
                text.push(' ');
            }
            text.push_str("\n\n\n");
        }
        std::fs::write(dir.join(format!("part-{f:02}.txt")), text).unwrap();
    }
}

/// A [`corpus`] of `files` files of `documents` documents, preprocessed with the default
/// settings: the scratch directory `name` and the shards directory in it.
pub fn preprocessed_corpus(name: &str, files: usize, documents: usize) -> (PathBuf, PathBuf) {
    let root = temp(name);
    let input = root.join("in");
    std::fs::create_dir_all(&input).unwrap();
    corpus(&input, files, documents);
    let shards = root.join("shards");
    ok(&preprocess(&input, &shards, &[]));
    (root, shards)
}

/// `seqwarm preprocess` of a [`corpus`] directory into `output`: several shards of 6 000
/// tokens, row groups of 1 500, and the `extra` flags.
pub fn preprocess(input: &Path, output: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "preprocess",
        input.to_str().unwrap(),
        "-o",
        output.to_str().unwrap(),
        "--separator",
        "\\n\\n\\n",
        "--shard-tokens",
        "6000",
        "--row-group-tokens",
        "1500",
    ];
    args.extend_from_slice(extra);
    seqwarm(&args)
}
