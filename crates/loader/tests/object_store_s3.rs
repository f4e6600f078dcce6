//! Shards read through `object_store` from a real S3-compatible server on 127.0.0.1 (moto,
//! started by `.ci/run`, which also exports `SEQWARM_S3_ENDPOINT` and the `AWS_*` settings).
//! Without the server the test prints a notice and skips, except under CI.
#![cfg(feature = "aws")]

mod common;

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
    let response = common::bare_http_request(host, "PUT", &format!("/{bucket}"), "");
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

/// A store that counts the requests passing through it: whole-object reads, ranged reads
/// (footers, row groups) and `HEAD`s.
#[derive(Debug)]
struct Counting {
    inner: std::sync::Arc<dyn object_store::ObjectStore>,
    whole: std::sync::atomic::AtomicU64,
    ranged: std::sync::atomic::AtomicU64,
}

impl Counting {
    fn counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.whole.load(SeqCst), self.ranged.load(SeqCst))
    }
}

impl std::fmt::Display for Counting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait::async_trait]
impl object_store::ObjectStore for Counting {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: object_store::PutOptions,
    ) -> object_store::Result<object_store::PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: object_store::PutMultipartOptions,
    ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: object_store::GetOptions,
    ) -> object_store::Result<object_store::GetResult> {
        use std::sync::atomic::Ordering::SeqCst;
        match (&options.range, options.head) {
            (_, true) => {}
            (None, false) => _ = self.whole.fetch_add(1, SeqCst),
            (Some(_), false) => _ = self.ranged.fetch_add(1, SeqCst),
        }
        self.inner.get_opts(location, options).await
    }
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.ranged
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get_ranges(location, ranges).await
    }
    fn delete_stream(
        &self,
        locations: futures_util::stream::BoxStream<'static, object_store::Result<Path>>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }
    fn list(
        &self,
        prefix: Option<&Path>,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list(prefix)
    }
    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> futures_util::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
    {
        self.inner.list_with_offset(prefix, offset)
    }
    async fn list_with_delimiter(
        &self,
        prefix: Option<&Path>,
    ) -> object_store::Result<object_store::ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: object_store::CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// What a cached run did: every token, the cache's counters, and the store's requests (whole
/// objects, ranged reads) once the loader was built and at the end.
struct CachedRun {
    tokens: Vec<i64>,
    stats: seqwarm_loader::CacheStats,
    built: (u64, u64),
    end: (u64, u64),
}

async fn run_cached(
    bucket: &str,
    store: &std::sync::Arc<Counting>,
    cache: &std::path::Path,
    limit: Option<u64>,
    epochs: u64,
) -> CachedRun {
    let shared: std::sync::Arc<dyn object_store::ObjectStore> = store.clone();
    let mut loader = LoaderBuilder::new([format!("s3://{bucket}/cached/")], warmup(true))
        .with_shuffle_units(false)
        .with_epochs(Some(epochs))
        .with_cache(cache, limit)
        .with_object_store(&format!("s3://{bucket}"), shared)
        .unwrap()
        .build()
        .await
        .unwrap();
    let built = store.counts();
    let mut tokens = Vec::new();
    while let Some(b) = loader.next().await {
        tokens.extend(common::real_tokens(&b.unwrap().batch));
    }
    CachedRun {
        tokens,
        stats: loader.cache_stats().unwrap(),
        built,
        end: store.counts(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shard_cache_serves_later_epochs_and_runs_without_downloading_again() {
    let Some(endpoint) = endpoint() else { return };
    let bucket = format!("seqwarm-cache-{}", std::process::id());
    create_bucket(&endpoint, &bucket);
    let s3: std::sync::Arc<dyn object_store::ObjectStore> = std::sync::Arc::new(
        object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .unwrap(),
    );
    let store = std::sync::Arc::new(Counting {
        inner: s3,
        whole: std::sync::atomic::AtomicU64::default(),
        ranged: std::sync::atomic::AtomicU64::default(),
    });
    let dir = common::temp_dir("s3-cache");
    let docs = common::documents(240, 60, 11);
    let mut sizes = Vec::new();
    for (i, part) in docs.chunks(80).enumerate() {
        let local = dir.join(format!("s{i}.parquet"));
        common::write_flat(&local, part, 400);
        let bytes = std::fs::read(&local).unwrap();
        sizes.push(bytes.len() as u64);
        store
            .put(
                &Path::from(format!("cached/s{i}.parquet")),
                PutPayload::from(bytes),
            )
            .await
            .unwrap();
    }
    let want: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    let twice = [want.clone(), want.clone()].concat();
    let cache = dir.join("cache");

    // Two epochs: once the footers are read, the only requests are one download per shard
    // (each needed in the first epoch), so the second epoch reads nothing remotely.
    let run = run_cached(&bucket, &store, &cache, None, 2).await;
    common::assert_same_tokens(&run.tokens, &twice, "two cached epochs");
    assert_eq!(run.stats.downloads, 3, "{:?}", run.stats);
    assert_eq!(run.end.0 - run.built.0, 3, "whole-object reads");
    assert_eq!(run.end.1, run.built.1, "ranged reads after the footers");
    assert_eq!(run.stats.bytes_downloaded, sizes.iter().sum::<u64>());
    assert!(run.stats.hits > 0, "{:?}", run.stats);

    // Another run on the same cache downloads nothing and reads no row group remotely.
    let run = run_cached(&bucket, &store, &cache, None, 1).await;
    common::assert_same_tokens(&run.tokens, &want, "second run");
    assert_eq!(run.stats.downloads, 0, "{:?}", run.stats);
    assert_eq!(run.end, run.built);

    // A corrupted entry is detected and downloaded again.
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[20] ^= 0xFF;
    std::fs::write(&entry, bytes).unwrap();
    let run = run_cached(&bucket, &store, &cache, None, 1).await;
    common::assert_same_tokens(&run.tokens, &want, "after corruption");
    assert_eq!(
        (run.stats.refetched, run.stats.downloads),
        (1, 1),
        "{:?}",
        run.stats
    );

    // A limit of two shards: the entries never exceed it, the stream is unchanged.
    let limit = 2 * sizes.iter().max().unwrap();
    let small = dir.join("small-cache");
    let run = run_cached(&bucket, &store, &small, Some(limit), 2).await;
    common::assert_same_tokens(&run.tokens, &twice, "limited cache");
    assert!(run.stats.evicted >= 1, "{:?}", run.stats);
    let held: u64 = std::fs::read_dir(&small)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(held <= limit, "{held} > {limit}");
    println!(
        "s3: the shard cache passed against {endpoint}: {:?}",
        run.stats
    );
}
