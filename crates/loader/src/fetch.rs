//! Byte ranges of a shard, from wherever it is: the only I/O of the read path. Parquet's push
//! decoders (footer and row groups) say which ranges they need; this fetches them.
//!
//! - Local files: row groups mapped in place (`mapped.rs`) or, with `memory_map` off, read
//!   by positioned reads into buffers that are not zeroed first; footers always read; on the
//!   calling thread. The loader only calls them on blocking threads (one hand-off per row
//!   group, not per read), so executor threads never wait on the file system.
//! - Object stores: `get_ranges` with retries, on the I/O runtime, so that a busy decoder never
//!   starves the connections.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::runtime::Handle;

use crate::buffers::Buffer;
use crate::cache::{Remote, RowGroupCrc, ShardCache};
use crate::error::{LoaderError, Result};
use crate::mapped::MappedFiles;
use crate::retry::RetryPolicy;
use crate::source::{Place, ShardFile};

/// A shard opened for reading.
pub(crate) enum Fetcher {
    /// A local file, opened on first read.
    Local {
        path: std::path::PathBuf,
        /// Its size when listed: no range a corrupt footer names reaches past it.
        size: u64,
        file: Option<std::fs::File>,
        /// Where [`Fetcher::aligned`] maps row groups instead of reading them.
        maps: Option<Arc<MappedFiles>>,
        /// The map the last mapped range came from ([`Fetcher::mark_checked`] marks it).
        map_generation: Option<u64>,
    },
    /// An object in a store.
    Remote {
        store: Arc<dyn ObjectStore>,
        path: Path,
        retry: RetryPolicy,
        io: Handle,
    },
}

impl Fetcher {
    pub(crate) fn new(shard: &ShardFile, retry: RetryPolicy, io: &Handle) -> Self {
        match &shard.place {
            Place::Local(path) => Self::Local {
                path: path.clone(),
                size: shard.size,
                file: None,
                maps: None,
                map_generation: None,
            },
            Place::Store { store, path, .. } => Self::Remote {
                store: Arc::clone(store),
                path: path.clone(),
                retry,
                io: io.clone(),
            },
        }
    }

    /// The same fetcher, taking local row groups ([`Fetcher::aligned`]) from the maps of
    /// `maps` when given; footers are always read into buffers.
    pub(crate) fn with_maps(mut self, maps: Option<Arc<MappedFiles>>) -> Self {
        if let Self::Local { maps: m, .. } = &mut self {
            *m = maps;
        }
        self
    }

    /// For a remote shard, a fetcher of its local copy in `cache` (downloaded first when the
    /// cache lacks it, on a blocking thread of `runtime`), holding the copy open so that an
    /// eviction meanwhile cannot take it away. Unchanged for local shards and for shards too
    /// large for the cache. `crcs` gives the CRCs a download is checked against before it is
    /// cached (asked for only on a download).
    pub(crate) async fn through_cache(
        self,
        cache: &Arc<ShardCache>,
        shard: &ShardFile,
        crcs: impl Fn() -> Vec<RowGroupCrc> + Send + 'static,
        runtime: &Handle,
    ) -> Result<Self> {
        let Self::Remote {
            store,
            path,
            retry,
            io,
        } = &self
        else {
            return Ok(self);
        };
        let (cache, shard, store, path, retry, io) = (
            Arc::clone(cache),
            shard.clone(),
            Arc::clone(store),
            path.clone(),
            *retry,
            io.clone(),
        );
        let size = shard.size;
        let shown = shard.display.clone();
        let counted = Arc::clone(&cache);
        let copy = runtime
            .spawn_blocking(move || {
                let remote = Remote {
                    store: &store,
                    path: &path,
                    retry,
                    io: &io,
                };
                cache.local_copy(&shard, &remote, &crcs)
            })
            .await
            .map_err(|e| LoaderError::Location {
                location: shown.clone(),
                reason: format!("the caching thread failed: {e}"),
            })?;
        let copy = match copy {
            // The cache directory cannot be used (read-only, full, gone): the shard is read
            // from the store as without a cache, not failed.
            Err(LoaderError::Cache { path, reason }) => {
                tracing::warn!("{shown}: not cached ({path}: {reason}); reading it from the store");
                counted.count_bypassed();
                None
            }
            other => other?,
        };
        Ok(match copy {
            Some((path, file)) => Self::Local {
                path,
                size,
                file: Some(file),
                maps: None,
                map_generation: None,
            },
            None => self,
        })
    }

    /// Whether reads complete without waiting (local files): such a shard is read and decoded
    /// on a blocking thread.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Self::Local { .. })
    }

    /// The bytes of each range.
    pub(crate) async fn ranges(
        &mut self,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        match self {
            Self::Local { .. } => ranges
                .iter()
                .map(|r| Ok(self.local(r.clone(), None, false)?.0))
                .collect(),
            Self::Remote {
                store,
                path,
                retry,
                io,
            } => {
                let (store, path, retry, ranges) =
                    (Arc::clone(store), path.clone(), *retry, ranges.to_vec());
                io.spawn(async move {
                    let what = path.to_string();
                    retry.run(&what, || store.get_ranges(&path, &ranges)).await
                })
                .await
                .map_err(|e| generic("io", e))?
            }
        }
    }

    /// The bytes of `range`: for a local file mapped in place (when the fetcher maps), or read
    /// into a buffer placed so that byte `align_at` of the range lands on a 4-byte boundary (a
    /// PLAIN page's values can then be used in place, not copied). Other stores return what
    /// they fetched, and the caller copies if it must. The flag: whether the range passed its
    /// checksum already in the same, unchanged map ([`Fetcher::mark_checked`]).
    pub(crate) async fn aligned(
        &mut self,
        range: Range<u64>,
        align_at: Option<usize>,
    ) -> object_store::Result<(Bytes, bool)> {
        if self.is_local() {
            return self.local(range, align_at, true);
        }
        let mut all = self.ranges(std::slice::from_ref(&range)).await?;
        Ok((all.pop().unwrap_or_default(), false))
    }

    /// Notes that `range`, as [`Fetcher::aligned`] last gave it, passed its checksum: a
    /// mapped local file is then not checked again while the same map stays and the file is
    /// unchanged (the same pages of the same map). Other reads are checked every time.
    pub(crate) fn mark_checked(&self, range: Range<u64>) {
        if let Self::Local {
            path,
            maps: Some(maps),
            map_generation: Some(generation),
            ..
        } = self
        {
            maps.mark_checked(path, *generation, range);
        }
    }

    /// `range` of a local file: from its map when `map` and the fetcher maps (with whether it
    /// passed its checksum in that map already), otherwise read into a buffer.
    fn local(
        &mut self,
        range: Range<u64>,
        align_at: Option<usize>,
        map: bool,
    ) -> object_store::Result<(Bytes, bool)> {
        use std::io::{Read, Seek};
        let Self::Local {
            path,
            size,
            file,
            maps,
            map_generation,
        } = self
        else {
            return Err(generic("local", "not a local file"));
        };
        let io_error = |e: std::io::Error| {
            let display = path.display().to_string();
            // Same errors as object_store's, so that callers classify them alike.
            if e.kind() == std::io::ErrorKind::NotFound {
                object_store::Error::NotFound {
                    path: display,
                    source: Box::new(e),
                }
            } else {
                generic("LocalFileSystem", format!("{display}: {e}"))
            }
        };
        if range.end > *size || range.start > range.end {
            // Checked before mapping or allocating: a corrupt footer must not size a buffer.
            return Err(io_error(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {}..{} asked for, but the file has {size} (a corrupt footer?)",
                    range.start, range.end
                ),
            )));
        }
        if let (true, Some(maps)) = (map, maps.as_deref()) {
            let mapped = maps.range(path, range).map_err(io_error)?;
            *map_generation = Some(mapped.generation);
            return Ok((mapped.bytes, mapped.checked));
        }
        if file.is_none() {
            *file = Some(std::fs::File::open(&*path).map_err(io_error)?);
        }
        let Some(handle) = file.as_ref() else {
            return Err(generic("local", "file not open"));
        };
        let len = usize::try_from(range.end - range.start)
            .map_err(|_| generic("local", "range too large"))?;
        // A recycled buffer (`buffers.rs`): its pages are mapped already and it is not zeroed
        // first (a zeroed buffer cost a memset per row group the size of the column chunk).
        // It is 8-byte aligned, so `pad` puts byte `align_at` on a 4-byte boundary.
        let pad = align_at.map_or(0, |at| (4 - at % 4) % 4);
        let mut buffer = Buffer::with_len(pad + len);
        let mut handle: &std::fs::File = handle;
        handle
            .seek(std::io::SeekFrom::Start(range.start))
            .and_then(|_| handle.read_exact(&mut buffer.as_mut_bytes()[pad..]))
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    io_error(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "fewer than {len} bytes at {} (the file shrank?)",
                            range.start
                        ),
                    ))
                } else {
                    io_error(e)
                }
            })?;
        Ok((buffer.into_bytes().slice(pad..), false))
    }
}

/// Runs `work`, whose I/O is local file reads that never wait, to completion on a blocking
/// thread of `runtime`: one hand-off for the whole unit (or footer), and no file-system call on
/// an executor thread. `what` names it in errors.
pub(crate) async fn on_blocking_thread<T, F>(runtime: &Handle, what: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let what = what.to_string();
    let stalled = what.clone();
    runtime
        .spawn_blocking(move || {
            work.now_or_never().unwrap_or_else(|| {
                Err(LoaderError::Location {
                    location: stalled,
                    reason: "a local read waited on something other than the file".into(),
                })
            })
        })
        .await
        .map_err(|e| LoaderError::Location {
            location: what,
            reason: format!("the reading thread failed: {e}"),
        })?
}

fn generic(store: &'static str, e: impl std::fmt::Display) -> object_store::Error {
    object_store::Error::Generic {
        store,
        source: e.to_string().into(),
    }
}
