//! Weighted mixtures through the loader: sources of their own shards (and layouts), drawn by
//! tokens in proportion to their weights, resumable byte for byte, disjoint across ranks.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use futures_util::StreamExt;
use seqwarm_loader::{Loader, LoaderBuilder, LoaderConfig, LoaderError, LoaderState};

/// Source `s`: `count` documents of 1..=`max_len` tokens, token `1 + s * 10^7 + d * 1000 +
/// position`, written in `shards` shards under `dir/s{s}`.
fn write_source(dir: &Path, s: usize, count: usize, max_len: usize, rows_layout: bool) -> String {
    let docs: Vec<Vec<i32>> = common::documents(count, max_len, s as u64 + 3)
        .iter()
        .enumerate()
        .map(|(d, doc)| {
            (0..doc.len())
                .map(|p| (1 + s * 10_000_000 + d * 1000 + p) as i32)
                .collect()
        })
        .collect();
    let out = dir.join(format!("s{s}"));
    std::fs::create_dir_all(&out).unwrap();
    for (i, part) in docs.chunks(count.div_ceil(3)).enumerate() {
        let path = out.join(format!("part-{i}.parquet"));
        if rows_layout {
            common::write_rows(&path, part, 20);
        } else {
            common::write_flat(&path, part, 1500);
        }
    }
    out.display().to_string()
}

fn config(dirs: &[String], extra: serde_json::Value) -> LoaderConfig {
    let mut value = serde_json::json!({
        "mode": "repack",
        "batch_rows": 16,
        "max_steps": 300,
        "seed": 4,
        "schedule": {"kind": "linear", "min": 32, "max": 256, "step": 32, "duration": 0.3, "total": 300},
        "sources": [
            {"name": "web", "shards": [dirs[0]], "weight": 0.6},
            {"name": "code", "shards": [dirs[1]], "weight": 0.3},
            {"name": "books", "shards": [dirs[2]], "weight": 0.1, "layout": {"kind": "rows"}},
        ],
    });
    if let (Some(map), serde_json::Value::Object(more)) = (value.as_object_mut(), extra) {
        map.extend(more);
    }
    LoaderConfig::from_value(value).unwrap()
}

async fn build(config: LoaderConfig, state: Option<LoaderState>) -> Result<Loader, LoaderError> {
    let mut builder = LoaderBuilder::from_config(Vec::<String>::new(), config);
    if let Some(state) = state {
        builder = builder.with_state(state);
    }
    builder.build().await
}

fn sources(root: &Path) -> Vec<String> {
    vec![
        write_source(root, 0, 600, 120, false),
        write_source(root, 1, 150, 60, false),
        write_source(root, 2, 90, 400, true),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_drawn_by_their_weights_and_a_resume_is_byte_identical() {
    let root = common::temp_dir("mixture");
    let dirs = sources(&root);
    let mut loader = build(config(&dirs, serde_json::json!({})), None)
        .await
        .unwrap();
    let mut batches = Vec::new();
    let mut worst: f64 = 0.0;
    while let Some(b) = loader.next().await {
        batches.push(b.unwrap());
        let stats = loader.source_stats().unwrap();
        let total: u64 = stats.iter().map(|s| s.tokens).sum();
        if total >= 250_000 {
            for (s, w) in stats.iter().zip([0.6, 0.3, 0.1]) {
                worst = worst.max((s.tokens as f64 / total as f64 - w).abs());
            }
        }
    }
    assert_eq!(batches.len(), 300);
    let stats = loader.source_stats().unwrap();
    let total: u64 = stats.iter().map(|s| s.tokens).sum();
    assert!(total >= 1_000_000, "{total} tokens drawn");
    assert!(
        worst < 0.01,
        "worst deviation from the weights {worst}: {stats:?}"
    );
    // The small sources repeat, each on its own.
    assert!(stats[1].epoch > stats[0].epoch, "{stats:?}");
    // Every token is its source's: by the tag in its value.
    let drawn: BTreeSet<i64> = batches
        .iter()
        .flat_map(|b| common::real_tokens(&b.batch))
        .map(|t| (t - 1) / 10_000_000)
        .collect();
    assert_eq!(drawn, BTreeSet::from([0, 1, 2]));

    // Interrupted and resumed through JSON at a few points: the same batches.
    let full = common::hash_batches(&batches);
    for cut in [1, 97, 250] {
        let mut first = build(config(&dirs, serde_json::json!({})), None)
            .await
            .unwrap();
        let mut got = Vec::new();
        while got.len() < cut {
            got.push(first.next().await.unwrap().unwrap());
        }
        let state = LoaderState::from_json(&first.state().to_json().unwrap()).unwrap();
        drop(first);
        let mut second = build(config(&dirs, serde_json::json!({})), Some(state))
            .await
            .unwrap();
        while let Some(b) = second.next().await {
            got.push(b.unwrap());
        }
        assert_eq!(common::hash_batches(&got), full, "cut at {cut}");
        assert_eq!(second.source_stats().unwrap(), stats, "cut at {cut}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_draw_disjoint_documents_and_weights_change_by_name() {
    let root = common::temp_dir("mixture-ranks");
    let dirs = sources(&root);
    let mut seen: Vec<BTreeSet<i64>> = Vec::new();
    for rank in 0..2 {
        // Few enough steps that no source is read a second time.
        let extra = serde_json::json!({"rank": rank, "world_size": 2, "max_steps": 6});
        let mut loader = build(config(&dirs, extra), None).await.unwrap();
        let mut documents = BTreeSet::new();
        let mut n = 0;
        while let Some(b) = loader.next().await {
            n += 1;
            documents.extend(
                common::real_tokens(&b.unwrap().batch)
                    .into_iter()
                    .map(|t| (t - 1) / 1000),
            );
        }
        assert_eq!(n, 6);
        assert!(loader.source_stats().unwrap().iter().all(|s| s.epoch == 0));
        for other in &seen {
            assert!(other.is_disjoint(&documents), "rank {rank} overlaps");
        }
        seen.push(documents);
    }
    // From step 5 on only `code`: its tokens are all that is drawn after the batch of step 4.
    let extra = serde_json::json!({
        "max_steps": 12,
        "weight_changes": [{"step": 5, "weights": {"web": 0.0, "code": 1.0, "books": 0.0}}],
    });
    let mut loader = build(config(&dirs, extra), None).await.unwrap();
    let mut before = None;
    while let Some(b) = loader.next().await {
        let b = b.unwrap();
        let stats = loader.source_stats().unwrap();
        if b.step == 4 {
            before = Some((stats[0].tokens, stats[2].tokens));
        }
    }
    let stats = loader.source_stats().unwrap();
    assert_eq!(
        Some((stats[0].tokens, stats[2].tokens)),
        before,
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixture_settings_are_checked_by_name() {
    let root = common::temp_dir("mixture-errors");
    let dirs = sources(&root);
    let err = LoaderConfig::from_value(serde_json::json!({
        "sources": [{"name": "a", "shards": [dirs[0]], "weight": 1.0}],
        "weight_changes": [{"step": 3, "weights": {"b": 1.0}}],
    }))
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(err.to_string().contains("no source `b`"), "{err}");
    let err = LoaderConfig::from_value(serde_json::json!({
        "sources": [{"name": "a", "shards": [dirs[0]], "weight": 1.0}],
        "weight_changes": [{"step": 3, "weights": {"a": 1.0}}, {"step": 3, "weights": {"a": 2.0}}],
    }))
    .unwrap()
    .validate()
    .unwrap_err();
    assert!(
        matches!(
            err,
            LoaderError::Config {
                field: "weight_changes",
                ..
            }
        ),
        "{err:?}"
    );
    let err = LoaderConfig::from_value(serde_json::json!({
        "sources": [{"name": "a", "shards": [dirs[0]], "weight": 1.0, "wieght": 2}],
    }))
    .unwrap_err();
    assert!(err.to_string().contains("wieght"), "{err}");
    let config = config(&dirs, serde_json::json!({"max_steps": null}));
    let err = build(config.clone(), None).await.unwrap_err();
    assert!(err.to_string().contains("max_steps or max_tokens"), "{err}");
    let err = LoaderBuilder::from_config([dirs[0].clone()], config)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not both"), "{err}");
}
