//! Shards written by pyarrow (an independent writer) read as specified.
//!
//! Needs a Python with pyarrow: `$SEQWARM_PYTHON`, else `.venv/bin/python` at the workspace
//! root (what `.ci/run` installs). Without one the test prints a notice and skips, except
//! under CI (`CI` set), where a missing interpreter is a failure.

mod common;

use std::path::PathBuf;
use std::process::Command;

use futures_util::StreamExt;
use seqwarm_loader::{BatchSize, LoaderBuilder, LoaderError, Mode, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

fn python() -> Option<PathBuf> {
    let candidate = std::env::var_os("SEQWARM_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&candidate)
        .args(["-c", "import pyarrow"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(candidate);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must provide pyarrow ({} cannot import it)",
        candidate.display()
    );
    println!(
        "notice: no Python with pyarrow at {}; skipping interop tests",
        candidate.display()
    );
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_written_shards_read_as_specified() {
    let Some(python) = python() else { return };
    let dir = common::temp_dir("pyarrow");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/write_fixtures.py");
    let status = Command::new(python).arg(script).arg(&dir).status().unwrap();
    assert!(status.success());
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let mut checked = 0;
    for (file, spec) in expected.as_object().unwrap() {
        let schedule = ScheduleConfig::linear(8, 64, 0.5, 100).build().unwrap();
        let warmup = WarmupConfig::new(schedule)
            .with_mode(Mode::Repack)
            .with_batch_size(BatchSize::Rows(4))
            .with_keep_last(true);
        let builder = LoaderBuilder::new([dir.join(file).display().to_string()], warmup)
            .with_shuffle_units(false);
        let result: Result<Vec<_>, LoaderError> = async {
            let mut loader = builder.build().await?;
            let mut out = Vec::new();
            while let Some(b) = loader.next().await {
                out.push(b?);
            }
            Ok((out, loader.stats()))
        }
        .await
        .map(|(out, stats)| {
            assert_eq!(stats.tokens_dropped, 0, "{file}");
            out
        });
        if let Some(kind) = spec.get("error") {
            let err = result.err().unwrap_or_else(|| panic!("{file} should fail"));
            if kind == "checksum" {
                // A flipped bit in a page with a CRC: named to the file, row group and page.
                let (row_group, page) = (spec["row_group"].as_u64(), spec["page"].as_u64());
                assert!(
                    matches!(&err, LoaderError::Checksum { row_group: g, place, .. }
                        if Some(*g as u64) == row_group
                            && place.starts_with(&format!("page {} of column", page.unwrap()))),
                    "{file}: {err:?}"
                );
            } else {
                assert!(
                    matches!(err, LoaderError::Null { row: 1, .. }),
                    "{file}: {err:?}"
                );
            }
            assert!(err.to_string().contains(file.as_str()), "{err}");
        } else {
            let batches = result.unwrap_or_else(|e| panic!("{file}: {e}"));
            let docs: Vec<Vec<i64>> = serde_json::from_value(spec["documents"].clone()).unwrap();
            let want: Vec<i64> = docs.iter().flatten().copied().collect();
            // pyarrow's footers count the tokens exactly too (leaf values less null counts).
            let count = seqwarm_loader::count_tokens(
                &[dir.join(file).display().to_string()],
                &seqwarm_loader::ShardLayout::default(),
            )
            .await
            .unwrap();
            assert_eq!(
                (count.tokens, count.tokens_exact),
                (want.len() as u64, true),
                "{file}"
            );
            let mut got: Vec<i64> = Vec::new();
            for b in &batches {
                got.extend(common::real_tokens(&b.batch));
            }
            common::assert_same_tokens(&got, &want, file);
        }
        checked += 1;
    }
    println!("pyarrow fixtures: {checked} files checked");
    assert!(checked >= 14);
}
