//! [`AsyncFileReader`] over any `object_store` backend, with retries.
//!
//! parquet's own `ParquetObjectReader` is deprecated; this is the replacement its docs advise.
//! Readers are wrapped in parquet's `SpawnedReader` by the loader so that I/O runs on a
//! dedicated runtime and decoding never stalls it.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use serde::{Deserialize, Serialize};

/// Retries of transient object-store errors, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff_ms: 50,
            max_backoff_ms: 2_000,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails permanently, or retries run out.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut backoff = self.initial_backoff_ms;
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if tries < self.max_retries && is_transient(&e) => {
                    tries += 1;
                    tracing::warn!(
                        retry = tries,
                        backoff_ms = backoff,
                        "{what}: transient error: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(self.max_backoff_ms);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Errors worth another attempt: anything but a definite answer from the store.
pub(crate) fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotModified { .. }
    )
}

/// Reads a file's footer and metadata, respecting the reader options.
async fn load_metadata<R: AsyncFileReader>(
    reader: &mut R,
    size: u64,
    options: Option<&ArrowReaderOptions>,
) -> parquet::errors::Result<Arc<ParquetMetaData>> {
    let metadata = ParquetMetaDataReader::new()
        .with_metadata_options(options.map(|o| o.metadata_options().clone()))
        // One request for footer and metadata in the common case.
        .with_prefetch_hint(Some(64 * 1024))
        .load_and_finish(reader, size)
        .await?;
    Ok(Arc::new(metadata))
}

/// Reads one object as a Parquet file.
#[derive(Clone, Debug)]
pub(crate) struct ObjectStoreReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    retry: RetryPolicy,
}

/// A reader for `file`: remote stores do their I/O on the dedicated `io` runtime, so that
/// decoding on the caller's runtime never stalls it; local files are read on blocking threads
/// by `object_store` already, so they skip that extra hop.
pub(crate) fn reader_for(
    file: &crate::source::ShardFile,
    retry: RetryPolicy,
    io: tokio::runtime::Handle,
) -> Box<dyn AsyncFileReader> {
    #[cfg(unix)]
    if let Some(local) = LocalFileReader::for_shard(file) {
        return Box::new(local);
    }
    let reader =
        ObjectStoreReader::new(Arc::clone(&file.store), file.path.clone(), file.size, retry);
    Box::new(parquet::arrow::async_reader::SpawnedReader::new(reader, io))
}

/// Reads a local file with positioned reads on the calling thread. Shards are read whole row
/// group at a time, usually from the page cache, where a read costs microseconds: handing each
/// one to a blocking thread pool (as `object_store` does) costs more in wake-ups than it saves
/// (measured in docs/benchmarks.md).
#[cfg(unix)]
struct LocalFileReader {
    path: std::path::PathBuf,
    size: u64,
    file: Option<std::fs::File>,
}

#[cfg(unix)]
impl LocalFileReader {
    /// A reader for a shard on the local file system (opened on first read), or `None`.
    fn for_shard(file: &crate::source::ShardFile) -> Option<Self> {
        Some(Self {
            path: file.local_path.clone()?,
            size: file.size,
            file: None,
        })
    }

    fn read(&mut self, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        self.read_aligned(range, None)
    }

    /// Reads `range`; with `Some(at)`, places the bytes so that byte `at` of the range lands on
    /// a 4-byte boundary (a PLAIN page's values can then be used in place, not copied).
    fn read_aligned(
        &mut self,
        range: Range<u64>,
        align_at: Option<usize>,
    ) -> parquet::errors::Result<Bytes> {
        use std::io::{Read, Seek};
        let io_error = |e: std::io::Error, path: &std::path::Path| {
            let path = path.display().to_string();
            // Same errors as object_store's, so that callers classify them alike.
            let e = if e.kind() == std::io::ErrorKind::NotFound {
                object_store::Error::NotFound {
                    path,
                    source: Box::new(e),
                }
            } else {
                object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(e),
                }
            };
            ParquetError::External(Box::new(e))
        };
        if self.file.is_none() {
            self.file = Some(std::fs::File::open(&self.path).map_err(|e| io_error(e, &self.path))?);
        }
        let Some(file) = &self.file else {
            return Err(ParquetError::General("file not open".into()));
        };
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| ParquetError::General("range too large".into()))?;
        // `read_to_end` fills spare capacity without zeroing it first (a zeroed buffer cost a
        // memset per row group the size of the column chunk).
        let mut buffer = Vec::with_capacity(len + 3);
        let pad = align_at.map_or(0, |at| (4 - (buffer.as_ptr() as usize + at) % 4) % 4);
        buffer.resize(pad, 0);
        let mut handle: &std::fs::File = file;
        handle
            .seek(std::io::SeekFrom::Start(range.start))
            .and_then(|_| handle.take(len as u64).read_to_end(&mut buffer))
            .map_err(|e| io_error(e, &self.path))?;
        if buffer.len() - pad != len {
            let short = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "read {} of {len} bytes at {}",
                    buffer.len() - pad,
                    range.start
                ),
            );
            return Err(io_error(short, &self.path));
        }
        Ok(Bytes::from(buffer).slice(pad..))
    }
}

/// Reads `range` of a shard for the PLAIN fast path. A local file is read so that byte
/// `align_at` of the range (where the single page's values start) is 4-byte aligned; other
/// stores return what they fetched, and the fast path copies if it must.
pub(crate) async fn read_for_plain(
    file: &crate::source::ShardFile,
    retry: RetryPolicy,
    io: tokio::runtime::Handle,
    range: Range<u64>,
    align_at: Option<usize>,
) -> parquet::errors::Result<Bytes> {
    #[cfg(unix)]
    if let Some(mut local) = LocalFileReader::for_shard(file) {
        return local.read_aligned(range, align_at);
    }
    let _ = align_at;
    reader_for(file, retry, io).get_bytes(range).await
}

#[cfg(unix)]
impl AsyncFileReader for LocalFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let result = self.read(range);
        async move { result }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let result = ranges.into_iter().map(|r| self.read(r)).collect();
        async move { result }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        load_metadata(self, size, options).boxed()
    }
}

impl ObjectStoreReader {
    pub(crate) fn new(
        store: Arc<dyn ObjectStore>,
        path: Path,
        size: u64,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            store,
            path,
            size,
            retry,
        }
    }
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectStoreReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let what = self.path.to_string();
            self.retry
                .run(&what, || self.store.get_range(&self.path, range.clone()))
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let what = self.path.to_string();
            self.retry
                .run(&what, || self.store.get_ranges(&self.path, &ranges))
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        load_metadata(self, size, options).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::RetryPolicy;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: message.to_string().into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_backoff() {
        let attempts = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let started = tokio::time::Instant::now();
        let result = policy
            .run("test", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(generic("connection reset"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        // 50 ms, then 100 ms of (paused, virtual) backoff.
        assert_eq!(started.elapsed().as_millis(), 150);
    }

    #[tokio::test(start_paused = true)]
    async fn definite_errors_and_exhausted_retries_fail() {
        let attempts = AtomicU32::new(0);
        let result: object_store::Result<()> = RetryPolicy::default()
            .run("test", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(object_store::Error::NotFound {
                    path: "x".into(),
                    source: "gone".into(),
                })
            })
            .await;
        assert!(matches!(result, Err(object_store::Error::NotFound { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        let attempts = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::default()
        };
        let result: object_store::Result<()> = policy
            .run("test", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(generic("timeout"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }
}
