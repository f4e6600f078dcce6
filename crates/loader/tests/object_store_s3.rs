#![cfg(feature = "aws")]
//! Shards read through `object_store` from a real S3-compatible server on 127.0.0.1 (moto,
//! started by `.ci/run`, which also exports `SEQWARM_S3_ENDPOINT` and the `AWS_*` settings).
//! Without the server the test prints a notice and skips, except under CI.

mod common;

use std::io::{Read, Write};

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use seqwarm_loader::{BatchSize, LoaderBuilder, LoaderError, Mode, OnError, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

fn endpoint() -> Option<String> {
    match std::env::var("SEQWARM_S3_ENDPOINT") {
        Ok(e) if std::env::var_os("AWS_ENDPOINT").is_some() => Some(e),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must start the S3 test server (see .ci/run)"
            );
            println!("notice: SEQWARM_S3_ENDPOINT/AWS_ENDPOINT unset; skipping the S3 tests");
            None
        }
    }
}

/// Creates a bucket with a bare HTTP request (moto accepts unsigned requests).
fn create_bucket(endpoint: &str, bucket: &str) {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "bucket creation failed: {response}"
    );
}

fn warmup(keep_last: bool) -> WarmupConfig {
    let schedule = ScheduleConfig::linear(8, 64, 0.5, 50).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(4))
        .with_keep_last(keep_last)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefix_and_object_urls_stream_every_token() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = format!("seqwarm-{}", std::process::id());
    create_bucket(&endpoint, &bucket);
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .build()
        .unwrap();
    let dir = common::temp_dir("s3");
    let docs = common::documents(150, 60, 8);
    for (name, part) in [("a.parquet", &docs[..75]), ("b.parquet", &docs[75..])] {
        let local = dir.join(name);
        common::write_rows(&local, part, 20);
        let bytes = std::fs::read(&local).unwrap();
        store
            .put(
                &Path::from(format!("shards/{name}")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
    let want: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();

    let mut loader = LoaderBuilder::new([format!("s3://{bucket}/shards/")], warmup(true))
        .with_shuffle_units(false)
        .build()
        .await
        .unwrap();
    assert_eq!(loader.catalog().shard_count(), 2);
    let mut got = Vec::new();
    while let Some(b) = loader.next().await {
        let b = b.unwrap();
        got.extend(common::real_tokens(&b.batch));
    }
    common::assert_same_tokens(&got, &want, "s3 prefix");

    let single = LoaderBuilder::new([format!("s3://{bucket}/shards/a.parquet")], warmup(false))
        .build()
        .await
        .unwrap();
    assert_eq!(single.catalog().shard_count(), 1);

    // A shard that disappears after the footers were read: an I/O error naming it, or skipped
    // and counted under the skip policy.
    for policy in [OnError::Fail, OnError::Skip] {
        let mut loader = LoaderBuilder::new([format!("s3://{bucket}/shards/")], warmup(false))
            .with_shuffle_units(false)
            .with_on_error(policy)
            .build()
            .await
            .unwrap();
        let b_path = Path::from("shards/b.parquet");
        let saved = store.get(&b_path).await.unwrap().bytes().await.unwrap();
        store.delete(&b_path).await.unwrap();
        let mut outcome: Result<usize, LoaderError> = Ok(0);
        while let Some(b) = loader.next().await {
            match b {
                Ok(_) => outcome = outcome.map(|n| n + 1),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        store.put(&b_path, PutPayload::from(saved)).await.unwrap();
        match policy {
            OnError::Fail => {
                let err = outcome.err().unwrap();
                assert!(matches!(err, LoaderError::Io { .. }), "{err:?}");
                assert!(
                    err.to_string()
                        .contains(&format!("s3://{bucket}/shards/b.parquet")),
                    "{err}"
                );
            }
            OnError::Skip => {
                assert!(outcome.unwrap() > 0);
                assert!(loader.stats().units_skipped > 0);
            }
        }
    }
    println!("s3: prefix, object and vanishing-shard cases passed against {endpoint}");
}
