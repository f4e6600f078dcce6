//! Complete runs written apart, joined in order into one data set. An engine that numbers its
//! tasks only as it starts them (Ray Data's write tasks) cannot give each the `--worker I
//! --workers N` split up front; each task writes its part as a run of its own, and when all
//! are done, part `k` of `n` becomes worker `k` of `n`: its shards take worker `k`'s names in
//! the output directory, and the manifests are merged as `merge-manifests` merges workers'.

use std::path::{Path, PathBuf};

use crate::error::{PreprocessError, Result, io_at};
use crate::manifest::{Manifest, merge_manifests};
use crate::writer::shard_file_name;

/// The file a finished single-worker run leaves in its directory.
const RUN_MANIFEST: &str = "manifest.json";

/// Joins `runs` (directories each holding a finished single-worker run, or their
/// `manifest.json` files), in the order given, into one data set in `output`: run `k`'s shard
/// `i` is linked (copied where the file system has no hard links) to worker `k`'s shard name
/// with `prefix`, each run's manifest is rewritten as worker `k` of `runs.len()`, and those
/// are merged into `output/manifest.json`, which is returned. The runs must have been written
/// with the same settings; `output` must hold no other shards (the loader would read them).
/// Joining again gives the same files: an interrupted join is finished by running it again.
pub fn join_runs(runs: &[PathBuf], output: &Path, prefix: &str) -> Result<Manifest> {
    if runs.is_empty() {
        return Err(PreprocessError::Mismatch {
            path: output.display().to_string(),
            reason: "no runs to join".into(),
        });
    }
    std::fs::create_dir_all(output).map_err(io_at(output))?;
    let workers = runs.len();
    // Every run read and every name decided before the output is touched, so that a join
    // that cannot be done changes nothing.
    let mut parts = Vec::with_capacity(workers);
    let mut joined_shards = std::collections::HashSet::new();
    for (worker, run) in runs.iter().enumerate() {
        let (dir, path) = if run.is_dir() {
            (run.clone(), run.join(RUN_MANIFEST))
        } else {
            (
                run.parent().map_or_else(PathBuf::new, Path::to_path_buf),
                run.clone(),
            )
        };
        let manifest = Manifest::read(&path)?;
        if manifest.settings.workers != 1 {
            return Err(PreprocessError::Mismatch {
                path: path.display().to_string(),
                reason: format!(
                    "a run of worker {} of {}: only whole runs are joined (merge workers' \
                     manifests with merge-manifests)",
                    manifest.settings.worker, manifest.settings.workers
                ),
            });
        }
        joined_shards
            .extend((0..manifest.shards.len()).map(|index| shard_file_name(prefix, worker, index)));
        parts.push((dir, manifest));
    }
    // The loader reads every shard in the directory: one the join would not write would be
    // read with the data set (and one it would write, replaced: only a join's own are).
    for entry in std::fs::read_dir(output).map_err(io_at(output))? {
        let path = entry.map_err(io_at(output))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        if seqwarm_format::paths::is_parquet(&path) && !joined_shards.contains(&name) {
            return Err(PreprocessError::Mismatch {
                path: path.display().to_string(),
                reason: "a shard that is not one of the joined runs' sits in the output \
                         directory, and the loader would read it with them: join into an empty \
                         directory (or remove it)"
                    .into(),
            });
        }
    }
    let mut joined_manifests = Vec::with_capacity(workers);
    for (worker, (dir, mut manifest)) in parts.into_iter().enumerate() {
        for (index, shard) in manifest.shards.iter_mut().enumerate() {
            let from = dir.join(&shard.file);
            let name = shard_file_name(prefix, worker, index);
            link_or_copy(&from, &output.join(&name), shard.bytes)?;
            shard.file = name;
        }
        manifest.settings.worker = worker;
        manifest.settings.workers = workers;
        let worker_path = output.join(Manifest::worker_file_name(worker, workers));
        manifest.write(&worker_path)?;
        joined_manifests.push(worker_path);
    }
    merge_manifests(&joined_manifests, &output.join(RUN_MANIFEST))
}

/// `to` becomes `from` (a hard link, or a copy renamed into place), whose size must be
/// `bytes` as its manifest says. An existing `to` is replaced.
fn link_or_copy(from: &Path, to: &Path, bytes: u64) -> Result<()> {
    let size = std::fs::metadata(from).map_err(io_at(from))?.len();
    if size != bytes {
        return Err(PreprocessError::Mismatch {
            path: from.display().to_string(),
            reason: format!("{size} bytes, but its run's manifest says {bytes}"),
        });
    }
    match std::fs::remove_file(to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_at(to)(e)),
        _ => {}
    }
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let partial = to.with_extension("parquet.partial");
    std::fs::copy(from, &partial).map_err(io_at(from))?;
    std::fs::rename(&partial, to).map_err(io_at(to))
}

#[cfg(test)]
mod tests {
    use super::join_runs;
    use crate::{Position, Preprocess, Tokenizer};

    /// A finished single-worker run of `texts` in `dir`.
    fn run(dir: &std::path::Path, texts: &[&str]) {
        let mut writer = Preprocess::new(Vec::<String>::new(), dir)
            .with_tokenizer(Tokenizer::Bytes)
            .with_shard_tokens(64)
            .with_threads(Some(1))
            .document_writer("part")
            .unwrap();
        for (i, text) in texts.iter().enumerate() {
            writer
                .write_text(Position::in_stream(i as u64), (*text).to_string())
                .unwrap();
        }
        writer
            .finish(Position::in_stream(texts.len() as u64))
            .unwrap();
    }

    #[test]
    fn runs_become_workers_in_order_and_a_join_repeats() {
        let dir = seqwarm_testkit::temp_dir("join", "order");
        let texts: Vec<String> = (0..40)
            .map(|i| format!("document {i} ").repeat(i % 7 + 1))
            .collect();
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        run(&dir.join("a"), &texts[..25]);
        run(&dir.join("b"), &texts[25..]);
        let out = dir.join("out");
        let runs = [dir.join("a"), dir.join("b").join("manifest.json")];
        let joined = join_runs(&runs, &out, "shard").unwrap();
        assert_eq!(joined.documents, 40);
        assert_eq!(joined.settings.workers, 2);
        let first = super::Manifest::read(&dir.join("a").join("manifest.json")).unwrap();
        let second = super::Manifest::read(&dir.join("b").join("manifest.json")).unwrap();
        assert_eq!(joined.tokens, first.tokens + second.tokens);
        assert_eq!(
            joined.shards.len(),
            first.shards.len() + second.shards.len()
        );
        assert!(joined.shards[0].file.starts_with("shard-w00000-"));
        assert!(
            joined
                .shards
                .last()
                .unwrap()
                .file
                .starts_with("shard-w00001-")
        );
        for (joined, part) in joined
            .shards
            .iter()
            .zip(first.shards.iter().chain(&second.shards))
        {
            assert_eq!(joined.tokens, part.tokens);
            let from = if joined.file.contains("-w00000-") {
                "a"
            } else {
                "b"
            };
            assert_eq!(
                std::fs::read(out.join(&joined.file)).unwrap(),
                std::fs::read(dir.join(from).join(&part.file)).unwrap()
            );
        }
        assert_eq!(join_runs(&runs, &out, "shard").unwrap(), joined);
        // A shard the join did not write is refused by name.
        std::fs::write(out.join("stray.parquet"), b"x").unwrap();
        let error = join_runs(&runs, &out, "shard").unwrap_err().to_string();
        assert!(error.contains("stray.parquet"), "{error}");
    }

    #[test]
    fn a_workers_run_is_not_joined() {
        let dir = seqwarm_testkit::temp_dir("join", "worker");
        let mut writer = Preprocess::new(Vec::<String>::new(), dir.join("w"))
            .with_tokenizer(Tokenizer::Bytes)
            .with_worker(1, 2)
            .document_writer("part")
            .unwrap();
        writer
            .write_text(Position::in_stream(0), "text".into())
            .unwrap();
        let (_, path) = writer.finish(Position::in_stream(1)).unwrap();
        let error = join_runs(&[path], &dir.join("out"), "shard")
            .unwrap_err()
            .to_string();
        assert!(error.contains("worker 1 of 2"), "{error}");
    }
}
