//! Helpers for the end-to-end CLI tests: run the `seqwarm` binary, check it succeeded, make a
//! scratch directory.

#![allow(dead_code)]

use std::path::PathBuf;
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
