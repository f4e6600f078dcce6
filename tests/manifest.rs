//! A preprocessed directory's manifest stands in for its footers at startup: the same batches
//! as reading every footer, locally and through a URL, resumable; and a shard changed after
//! its manifest was written is a typed error naming it (or skipped and counted), never a
//! silent difference.

use std::path::Path;

use futures_util::StreamExt;
use seqwarm::format::OnError;
use seqwarm::loader::{BatchSize, Loader, LoaderBuilder, LoaderState, Mode, WarmupConfig};
use seqwarm::schedule::ScheduleConfig;

mod common;

use common::preprocessed_corpus;

/// A preprocessed corpus: several shards of several row groups each.
fn preprocessed(name: &str) -> std::path::PathBuf {
    preprocessed_corpus(name, 4, 40).1
}

fn builder(location: &str, mode: Mode) -> LoaderBuilder {
    builder_with_eos(location, mode, None)
}

fn builder_with_eos(location: &str, mode: Mode, eos: Option<i64>) -> LoaderBuilder {
    let schedule = ScheduleConfig::linear(16, 128, 0.5, 60).build().unwrap();
    let warmup = WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(if mode.is_composer() {
            BatchSize::Rows(4)
        } else {
            BatchSize::Tokens(512)
        })
        .with_eos_id(eos)
        .with_keep_last(true)
        .with_shuffle_buffer(8, 3);
    LoaderBuilder::new([location.to_string()], warmup)
        .with_seed(5)
        .with_epochs(Some(2))
}

/// Every batch's step, length and tokens, up to `limit` batches.
async fn drain(loader: &mut Loader, limit: Option<usize>) -> Vec<(u64, usize, Vec<i64>)> {
    let mut out = Vec::new();
    while limit.is_none_or(|l| out.len() < l) {
        let Some(batch) = loader.next().await else {
            break;
        };
        let batch = batch.unwrap();
        let ids = batch.batch.input_ids().unwrap().to_vec_i64();
        out.push((batch.step, batch.seq_len, ids));
    }
    out
}

fn copy_without_manifest(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "parquet") {
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_replaces_the_footers_at_startup_and_reads_the_same() {
    let dir = preprocessed("manifest-same");
    let bare = dir.with_file_name("bare");
    copy_without_manifest(&dir, &bare);
    let shards = std::fs::read_dir(&bare).unwrap().count();
    assert!(shards >= 3, "{shards} shards");
    let (with, without) = (dir.display().to_string(), bare.display().to_string());
    let url = format!("file://{}", dir.canonicalize().unwrap().display());
    for mode in [Mode::Truncate, Mode::Repack, Mode::PackBestfit] {
        let catalog = builder(&with, mode).open_catalog().await.unwrap();
        assert_eq!(catalog.deferred_footers(), shards, "{mode:?}");
        let mut loader = builder(&with, mode)
            .with_catalog(catalog)
            .build()
            .await
            .unwrap();
        let from_manifest = drain(&mut loader, None).await;
        let mut loader = builder(&without, mode).build().await.unwrap();
        assert_eq!(loader.catalog().deferred_footers(), 0);
        let from_footers = drain(&mut loader, None).await;
        assert!(from_footers.len() > 10, "{mode:?}: {}", from_footers.len());
        assert_eq!(from_manifest, from_footers, "{mode:?}");

        let mut loader = builder(&url, mode).build().await.unwrap();
        assert_eq!(
            loader.catalog().deferred_footers(),
            shards,
            "{mode:?} by URL"
        );
        assert_eq!(
            drain(&mut loader, None).await,
            from_footers,
            "{mode:?} by URL"
        );

        // Resumed halfway (footers not read yet are read after the resume).
        let cut = from_footers.len() / 2;
        let mut first = builder(&with, mode).build().await.unwrap();
        let mut resumed = drain(&mut first, Some(cut)).await;
        let state: LoaderState =
            serde_json::from_str(&serde_json::to_string(&first.state()).unwrap()).unwrap();
        let mut second = builder(&with, mode)
            .with_state(state)
            .build()
            .await
            .unwrap();
        resumed.extend(drain(&mut second, None).await);
        assert_eq!(resumed, from_footers, "{mode:?} resumed at {cut}");
    }
}

/// The tokens of every batch, in order.
fn tokens_of(batches: &[(u64, usize, Vec<i64>)]) -> Vec<i64> {
    batches.iter().flat_map(|(_, _, ids)| ids.clone()).collect()
}

/// Adjacent pairs of `eos` in a token sequence.
fn doubled(tokens: &[i64], eos: i64) -> usize {
    tokens
        .windows(2)
        .filter(|w| w[0] == eos && w[1] == eos)
        .count()
}

/// The README used to pass `--eos-id 50256` on `seqwarm preprocess` output, whose documents
/// already end with it: every boundary had two. The manifest's EOS is now read and not
/// appended again; another id is refused; shards without a manifest get it appended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eos_a_manifest_records_is_not_appended_a_second_time() {
    let dir = preprocessed("manifest-eos");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["settings"]["eos_id"], 50_256,
        "GPT-2's EOS by default"
    );
    let location = dir.display().to_string();
    for mode in [Mode::Truncate, Mode::Repack, Mode::PackGreedy] {
        let mut plain = builder(&location, mode).build().await.unwrap();
        let plain = drain(&mut plain, None).await;
        let mut told = builder_with_eos(&location, mode, Some(50_256))
            .build()
            .await
            .unwrap();
        assert_eq!(told.warmup().eos_id(), None, "{mode:?}: nothing to append");
        let told = drain(&mut told, None).await;
        assert_eq!(
            told, plain,
            "{mode:?}: eos_id of the manifest changes nothing"
        );
        let tokens = tokens_of(&told);
        assert!(tokens.contains(&50_256), "{mode:?}: documents end with EOS");
        assert_eq!(doubled(&tokens, 50_256), 0, "{mode:?}: no boundary has two");
    }

    // However the shards are named: a glob, one file, a list of files.
    let glob = format!("{location}/*.parquet");
    let one = format!("{location}/shard-w00000-00000.parquet");
    for (what, locations) in [
        ("a glob", vec![glob]),
        ("one file", vec![one.clone()]),
        (
            "a list",
            vec![one, format!("{location}/shard-w00000-00001.parquet")],
        ),
    ] {
        let loader = LoaderBuilder::new(
            locations,
            builder_with_eos(&location, Mode::Repack, Some(50_256))
                .config()
                .warmup()
                .clone(),
        )
        .build()
        .await
        .unwrap();
        assert_eq!(loader.warmup().eos_id(), None, "{what}: nothing to append");
    }

    let other = builder_with_eos(&location, Mode::Repack, Some(0))
        .build()
        .await
        .expect_err("another EOS id is refused")
        .to_string();
    assert!(
        other.contains("eos_id") && other.contains("50256") && other.contains("manifest.json"),
        "{other}"
    );

    // Without the manifest nothing says the documents end with EOS: it is appended.
    let bare = dir.with_file_name("bare-eos");
    copy_without_manifest(&dir, &bare);
    let mut loader = builder_with_eos(&bare.display().to_string(), Mode::Repack, Some(50_256))
        .build()
        .await
        .unwrap();
    assert_eq!(loader.warmup().eos_id(), Some(50_256));
    let tokens = tokens_of(&drain(&mut loader, None).await);
    assert!(
        doubled(&tokens, 50_256) > 0,
        "appended after the EOS already there"
    );

    // A checkpoint taken when the EOS was appended a second time (as without the manifest
    // here) cannot continue exactly now: refused by name, saying why. One taken now resumes.
    let mut doubled = builder_with_eos(&bare.display().to_string(), Mode::Repack, Some(50_256))
        .build()
        .await
        .unwrap();
    drain(&mut doubled, Some(3)).await;
    let err = builder_with_eos(&location, Mode::Repack, Some(50_256))
        .with_state(doubled.state())
        .build()
        .await
        .expect_err("the old meaning is refused")
        .to_string();
    assert!(
        err.contains("eos_id_in_data") && err.contains("two EOS"),
        "{err}"
    );
    let mut now = builder_with_eos(&location, Mode::Repack, Some(50_256))
        .build()
        .await
        .unwrap();
    let head = drain(&mut now, Some(3)).await;
    let mut resumed = builder_with_eos(&location, Mode::Repack, Some(50_256))
        .with_state(now.state())
        .build()
        .await
        .unwrap();
    let mut all = head;
    all.extend(drain(&mut resumed, None).await);
    let mut plain = builder(&location, Mode::Repack).build().await.unwrap();
    assert_eq!(all, drain(&mut plain, None).await);

    // Shards of which only some end their documents with EOS are refused.
    let mixed = dir.with_file_name("mixed-eos");
    copy_without_manifest(&dir, &mixed);
    std::fs::copy(dir.join("manifest.json"), mixed.join("manifest.json")).unwrap();
    let extra = mixed.join("zz-other.parquet");
    std::fs::copy(mixed.join("shard-w00000-00000.parquet"), &extra).unwrap();
    let error = builder_with_eos(&mixed.display().to_string(), Mode::Repack, Some(50_256))
        .build()
        .await
        .expect_err("mixed shards are refused")
        .to_string();
    assert!(
        error.contains("eos_id") && error.contains("others do not"),
        "{error}"
    );
}

/// The error of the first failing batch, if any.
async fn first_error(loader: &mut Loader) -> Option<String> {
    while let Some(batch) = loader.next().await {
        if let Err(e) = batch {
            return Some(e.to_string());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_changed_after_its_manifest_is_an_error_naming_it_or_skipped() {
    // Another size: caught before the footer is read.
    let dir = preprocessed("manifest-size");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    names.sort();
    let changed = &names[1];
    let mut bytes = std::fs::read(changed).unwrap();
    bytes.insert(0, b'x');
    std::fs::write(changed, bytes).unwrap();
    let location = dir.display().to_string();
    let mut loader = builder(&location, Mode::Repack).build().await.unwrap();
    let error = first_error(&mut loader).await.expect("an error");
    let name = changed.file_name().unwrap().to_str().unwrap();
    assert!(
        error.contains(name) && error.contains("manifest"),
        "{error}"
    );
    let mut loader = builder(&location, Mode::Repack)
        .with_on_error(OnError::Skip)
        .build()
        .await
        .unwrap();
    assert_eq!(first_error(&mut loader).await, None);
    assert!(loader.stats().units_skipped > 0);
    assert!(
        loader.skipped().iter().any(|s| s.contains(name)),
        "{:?}",
        loader.skipped()
    );

    // A layout that does not fit the shards fails at build time, as without a manifest (one
    // footer per manifest is read then).
    let intact = preprocessed("manifest-layout");
    let layout = seqwarm::loader::ShardLayout {
        tokens: "no_such_column".into(),
        ..seqwarm::loader::ShardLayout::default()
    };
    let built = builder(&intact.display().to_string(), Mode::Repack)
        .with_layout(layout)
        .build()
        .await;
    let error = built.expect_err("a build error").to_string();
    assert!(error.contains("shard-w00000-00000.parquet"), "{error}");

    // The same size, other row groups (a manifest edited by hand here): caught when the
    // footer is read.
    let dir = preprocessed("manifest-counts");
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let entry = manifest["shards"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|s| s["row_groups"].as_u64().unwrap() > 1)
        .expect("a shard of several row groups");
    let name = entry["file"].as_str().unwrap().to_string();
    let tokens = entry["row_group_tokens"].as_array_mut().unwrap();
    let (a, b) = (tokens[0].as_u64().unwrap(), tokens[1].as_u64().unwrap());
    assert_ne!(a, b, "row groups of different sizes");
    tokens[0] = b.into();
    tokens[1] = a.into();
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let location = dir.display().to_string();
    // At build time when it is the shard whose footer is read then, else at its first read.
    let error = match builder(&location, Mode::Repack).build().await {
        Err(e) => e.to_string(),
        Ok(mut loader) => first_error(&mut loader).await.expect("an error"),
    };
    assert!(
        error.contains(&name) && error.contains("manifest.json"),
        "{error}"
    );
}
