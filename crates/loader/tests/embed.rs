//! Embedding the loader: a caller's runtime and object store, checkpoints that are checked
//! against the settings and the data, and resumes from the end of a run.

mod common;

use std::sync::Arc;

use futures_util::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use seqwarm_loader::{
    BatchSize, Loader, LoaderBuilder, LoaderState, Mode, ScheduledBatch, WarmupConfig,
};
use seqwarm_schedule::ScheduleConfig;

async fn drain(loader: &mut Loader) -> Vec<ScheduledBatch> {
    let mut out = Vec::new();
    while let Some(b) = loader.next().await {
        out.push(b.unwrap());
    }
    out
}

fn tokens(batches: &[ScheduledBatch]) -> Vec<Vec<Vec<i64>>> {
    batches
        .iter()
        .map(|b| b.batch.input_ids().unwrap().to_rows_i64())
        .collect()
}

fn warmup(mode: Mode) -> WarmupConfig {
    WarmupConfig::new(ScheduleConfig::linear(8, 64, 0.5, 30))
        .with_mode(mode)
        .with_batch_size(BatchSize::Rows(3))
        .with_eos_id(Some(0))
        .with_pack_window(8)
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |tasks| {
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .count()
    })
}

#[test]
fn a_given_runtime_and_object_store_serve_every_read() {
    let dir = common::temp_dir("embed-store");
    let docs = common::documents(150, 90, 21);
    common::write_flat(&dir.join("a.parquet"), &docs[..80], 700);
    common::write_rows(&dir.join("b.parquet"), &docs[80..], 9);
    // The caller's runtime, driven from a plain thread: build() and next() run on it.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = Arc::new(InMemory::new());
    runtime.block_on(async {
        for name in ["a.parquet", "b.parquet"] {
            let bytes = std::fs::read(dir.join(name)).unwrap();
            store
                .put(
                    &ObjectPath::from(format!("shards/{name}")),
                    PutPayload::from(bytes),
                )
                .await
                .unwrap();
        }
    });
    let local = runtime.block_on(async {
        let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
            .with_seed(5)
            .build()
            .await
            .unwrap();
        drain(&mut loader).await
    });
    let remote = runtime.block_on(async {
        let mut loader = LoaderBuilder::new(["s3://bucket/shards/"], warmup(Mode::Repack))
            .with_seed(5)
            .with_runtime(tokio::runtime::Handle::current())
            .with_object_store("s3://bucket", store as Arc<dyn ObjectStore>)
            .unwrap()
            .build()
            .await
            .unwrap();
        assert_eq!(loader.catalog().shard_count(), 2);
        let batches = drain(&mut loader).await;
        // Everything ran on the caller's runtime: the loader started none of its own.
        assert_eq!(threads_named("seqwarm-io"), 0);
        batches
    });
    assert!(local.len() > 5);
    assert_eq!(tokens(&remote), tokens(&local));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_at_the_end_resumes_to_nothing_in_every_mode() {
    let dir = common::temp_dir("embed-end");
    let docs = common::documents(120, 70, 22);
    common::write_rows(&dir.join("a.parquet"), &docs, 13);
    for mode in Mode::ALL {
        for keep_last in [false, true] {
            let builder = || {
                LoaderBuilder::new(
                    [dir.display().to_string()],
                    warmup(mode).with_keep_last(keep_last),
                )
                .with_epochs(Some(2))
            };
            let mut loader = builder().build().await.unwrap();
            let batches = drain(&mut loader).await;
            assert!(!batches.is_empty());
            let stats = loader.stats();
            assert!(stats.is_balanced(), "{mode}: {stats:?}");
            assert_eq!(
                stats.tokens_buffered, 0,
                "{mode}: nothing is carried past the end"
            );
            let state = LoaderState::from_json(&loader.state().to_json().unwrap()).unwrap();
            assert!(state.is_done(), "{mode}");
            let mut resumed = builder().with_state(state).build().await.unwrap();
            let more = drain(&mut resumed).await;
            assert!(
                more.is_empty(),
                "{mode}: {} batches after the end",
                more.len()
            );
            assert_eq!(resumed.stats(), stats, "{mode}: the counts do not move");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_of_other_data_or_settings_is_refused_with_the_difference() {
    let dir = common::temp_dir("embed-other");
    let docs = common::documents(60, 50, 23);
    common::write_rows(&dir.join("a.parquet"), &docs[..30], 7);
    let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
        .build()
        .await
        .unwrap();
    let _ = loader.next().await.unwrap().unwrap();
    let state = loader.state();
    // Other settings: named, with both values.
    let err = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Reshape))
        .with_state(state.clone())
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`mode` was \"repack\" and is now \"reshape\""),
        "{err}"
    );
    // The limits may change on resume.
    LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
        .with_max_steps(Some(100))
        .with_state(state.clone())
        .build()
        .await
        .unwrap();
    // Another data set: one more shard.
    common::write_rows(&dir.join("b.parquet"), &docs[30..], 7);
    let err = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
        .with_state(state.clone())
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("the shards differ"), "{err}");
    // A hand-edited position is out of range, not a silent empty run.
    std::fs::remove_file(dir.join("b.parquet")).unwrap();
    let mut edited: serde_json::Value = serde_json::from_str(&state.to_json().unwrap()).unwrap();
    edited["plan"]["unit"] = 999_999.into();
    // The checksum catches the edit at once.
    let err = LoaderState::from_value(edited.clone())
        .unwrap_err()
        .to_string();
    assert!(err.contains("checksum does not match"), "{err}");
    // A version 2 state (before the checksum) still has each field checked against the data.
    edited.as_object_mut().unwrap().remove("checksum");
    edited["version"] = 2.into();
    let edited = LoaderState::from_value(edited).unwrap();
    let err = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
        .with_state(edited)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("row group position 999999"), "{err}");
    // A carried token id is checked against the vocabulary, as every id read is.
    let mut carrying: serde_json::Value = serde_json::from_str(&state.to_json().unwrap()).unwrap();
    carrying.as_object_mut().unwrap().remove("checksum");
    carrying["version"] = 2.into();
    let carry = &mut carrying["plan"]["core"]["carry"];
    let tokens = carry.to_string();
    *first_number(carry).expect("the repacker carries tokens after one batch") = 1_000_000.into();
    assert_ne!(carry.to_string(), tokens);
    let edited = LoaderState::from_value(carrying).unwrap();
    let err = LoaderBuilder::new([dir.display().to_string()], warmup(Mode::Repack))
        .with_vocab_size(Some(50_000))
        .with_state(edited)
        .build()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("token id 1000000"), "{err}");
}

/// The first number in a JSON value, depth first.
fn first_number(value: &mut serde_json::Value) -> Option<&mut serde_json::Value> {
    match value {
        serde_json::Value::Number(_) => Some(value),
        serde_json::Value::Array(items) => items.iter_mut().find_map(first_number),
        serde_json::Value::Object(map) => map.values_mut().find_map(first_number),
        _ => None,
    }
}

/// A catalog opened once sizes the schedule and then serves the loader: the batches are those
/// of a loader that read the footers itself; a catalog of other settings is refused.
#[tokio::test]
async fn an_opened_catalog_is_reused_not_read_again() {
    let dir = common::temp_dir("embed-catalog");
    let docs = common::documents(120, 90, 5);
    common::write_flat(&dir.join("a.parquet"), &docs[..60], 500);
    common::write_flat(&dir.join("b.parquet"), &docs[60..], 500);
    let location = dir.display().to_string();
    let builder = LoaderBuilder::new([location.clone()], warmup(Mode::Repack));
    let catalog = builder.open_catalog().await.unwrap();
    let tokens_in: u64 = docs.iter().map(|d| d.len() as u64).sum();
    assert_eq!(catalog.token_count().tokens, tokens_in);
    assert_eq!(catalog.shard_count(), 2);
    let reused = drain(
        &mut builder
            .clone()
            .with_catalog(Arc::clone(&catalog))
            .build()
            .await
            .unwrap(),
    )
    .await;
    let fresh = drain(&mut builder.build().await.unwrap()).await;
    assert_eq!(tokens(&reused), tokens(&fresh));
    // Other locations, or another layout, cannot take it.
    let other = LoaderBuilder::new(
        [dir.join("a.parquet").display().to_string()],
        warmup(Mode::Repack),
    )
    .with_catalog(Arc::clone(&catalog));
    let err = other.build().await.unwrap_err();
    assert!(err.to_string().contains("catalog"), "{err}");
}
