//! An on-disk cache of remote shards ([`LoaderConfig`](crate::LoaderConfig)'s `cache_dir` and
//! `cache_limit`): a shard of an object store is downloaded whole the first time one of its
//! row groups is read, and read from the local copy after that, in this epoch and the next, in
//! this process and in any other on the machine that uses the same directory.
//!
//! Why whole shards: the loader reads most row groups of a shard in an epoch, one request per
//! shard is cheaper than one per row group behind a store's latency, and a whole file can be
//! checked once and then read with local positioned reads.
//!
//! The directory is shared by processes (the ranks of a machine, DataLoader workers, a second
//! run), so every step is safe under concurrency and crashes:
//!
//! - One download per shard: a process takes the entry's lock file (`KEY.lock`, an exclusive
//!   `flock`) before downloading, and whoever waited on it finds the entry there afterwards.
//! - No torn entries: the download is written to `KEY.parquet.partial`, flushed, and renamed to
//!   `KEY.parquet` last; its record (`KEY.json`: size and CRC32 of the whole file) is written
//!   before the rename, so an entry exists exactly when its data file does.
//! - Checked on insert: the download's size against the listing, and each row group against
//!   the CRC32 in its footer when it has them (seqwarm's shards do): a shard corrupted in
//!   transit is an error, never an entry. Checked on use: the first time a process uses an
//!   entry, its whole-file CRC32 against its record; an entry corrupted on disk is removed and
//!   downloaded again (counted in [`CacheStats::refetched`]).
//! - The size limit: the entries' total stays within `cache_limit` bytes. Room is made before
//!   an entry is committed, under the directory's lock (`.lock`), by removing the least
//!   recently used entries (a use sets the file's modification time). A shard larger than the
//!   limit is not cached; it is read from the store as without a cache, as is every shard when
//!   the directory cannot be used (`fetch.rs` falls back on a [`LoaderError::Cache`]).
//!
//! A reader keeps its entry's file open for the whole row group, so an entry evicted by
//! another process meanwhile is still read whole (Unix keeps an unlinked open file).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::error::{LoaderError, Result};
use crate::retry::RetryPolicy;
use crate::source::ShardFile;

/// What a loader's shard cache did so far ([`crate::Loader::cache_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Row-group reads served from an entry that was already there.
    pub hits: u64,
    /// Shards downloaded into the cache by this loader.
    pub downloads: u64,
    /// Bytes those downloads brought.
    pub bytes_downloaded: u64,
    /// Entries found corrupt (their whole-file CRC32 differs from their record) and downloaded
    /// again.
    pub refetched: u64,
    /// Entries this loader removed to stay within the size limit.
    pub evicted: u64,
    /// Row-group reads that went to the store directly: of shards too large for the limit, or
    /// when the cache directory could not be used (read-only, full, removed).
    pub bypassed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    downloads: AtomicU64,
    bytes_downloaded: AtomicU64,
    refetched: AtomicU64,
    evicted: AtomicU64,
    bypassed: AtomicU64,
}

/// An entry's record, written beside its data before the data is renamed into place.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    /// The shard it holds, for people reading the directory.
    source: String,
    size: u64,
    crc32: u32,
}

/// A row group (its index and byte range) and the CRC32 its footer gives for it, checked on
/// insert.
pub(crate) type RowGroupCrc = (usize, std::ops::Range<u64>, u32);

/// The remote shard's object, where a download gets it.
pub(crate) struct Remote<'a> {
    pub store: &'a Arc<dyn ObjectStore>,
    pub path: &'a object_store::path::Path,
    pub retry: RetryPolicy,
    /// The I/O runtime the request runs on.
    pub io: &'a Handle,
}

/// The cache directory of a loader; see the module documentation.
#[derive(Debug)]
pub(crate) struct ShardCache {
    dir: PathBuf,
    limit: Option<u64>,
    /// Entries whose whole-file CRC32 this process checked (or wrote).
    verified: Mutex<HashSet<String>>,
    counters: Counters,
}

/// An entry as found.
enum Found {
    Absent,
    Intact(File),
    Corrupt(String),
}

impl ShardCache {
    /// The cache in `dir` (created when missing), holding at most `limit` bytes of entries.
    pub(crate) fn open(dir: &Path, limit: Option<u64>) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| cache_error(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            limit,
            verified: Mutex::default(),
            counters: Counters::default(),
        })
    }

    /// Counts a read that went to the store because the cache could not be used.
    pub(crate) fn count_bypassed(&self) {
        self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters so far.
    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let get = |n: &AtomicU64| n.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&c.hits),
            downloads: get(&c.downloads),
            bytes_downloaded: get(&c.bytes_downloaded),
            refetched: get(&c.refetched),
            evicted: get(&c.evicted),
            bypassed: get(&c.bypassed),
        }
    }

    /// The local copy of `shard`, open for reading, downloaded from `remote` first when it is
    /// not in the cache (or is there corrupt); `None` when the shard is larger than the limit.
    /// Blocking: file locks, file I/O, and the download waited for on `remote.io`. `crcs` gives
    /// the row groups' CRCs from the shard's footer, checked before an entry is committed
    /// (asked for only then: a read from the cache needs none).
    pub(crate) fn local_copy(
        &self,
        shard: &ShardFile,
        remote: &Remote<'_>,
        crcs: &dyn Fn() -> Vec<RowGroupCrc>,
    ) -> Result<Option<(PathBuf, File)>> {
        let key = entry_key(shard);
        let data = self.dir.join(format!("{key}.parquet"));
        if let Found::Intact(file) = self.find(&key, shard.size)? {
            self.used(&data, &file);
            return Ok(Some((data, file)));
        }
        if self.limit.is_some_and(|limit| shard.size > limit) {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        // One download per shard: whoever held the lock before us may have made the entry.
        let lock_path = self.dir.join(format!("{key}.lock"));
        let lock = lock_file(&lock_path)?;
        wait_for_lock(&lock, &lock_path, NOTICE_AFTER, |waited| {
            tracing::warn!(
                "waiting {:.0} s for the cache lock {} (another process is downloading {} \
                 into the cache, or holds the lock without doing so: a process stopped in a \
                 debugger, say)",
                waited.as_secs_f64(),
                lock_path.display(),
                shard.display
            );
        })?;
        match self.find(&key, shard.size)? {
            Found::Intact(file) => {
                self.used(&data, &file);
                return Ok(Some((data, file)));
            }
            Found::Corrupt(reason) => {
                tracing::warn!(
                    "{}: cached copy of {} is corrupt ({reason}); downloading it again",
                    data.display(),
                    shard.display
                );
                remove_if_present(&data).map_err(|e| cache_error(&data, e))?;
                self.counters.refetched.fetch_add(1, Ordering::Relaxed);
            }
            Found::Absent => {}
        }
        // Room is made, and the bytes reserved, before the download: the limit counts the
        // downloads in flight (their reserved partial files), not only committed entries.
        let partial = seqwarm_format::atomic::partial_name(&data);
        if !self.reserve(shard.size, &partial)? {
            self.counters.bypassed.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        let file = self.download(&key, &data, &partial, shard, remote, crcs);
        if file.is_err() {
            let _ = remove_if_present(&partial);
        }
        drop(lock);
        Ok(Some((data, file?)))
    }

    /// The entry `key` as it is on disk: absent, intact (checked whole once per process), or
    /// corrupt (and why).
    fn find(&self, key: &str, size: u64) -> Result<Found> {
        let data = self.dir.join(format!("{key}.parquet"));
        let mut file = match File::open(&data) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
            Err(e) => return Err(cache_error(&data, e)),
        };
        let record_path = self.dir.join(format!("{key}.json"));
        let record: Record = match std::fs::read(&record_path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(record) => record,
                Err(e) => return Ok(Found::Corrupt(format!("unreadable record: {e}"))),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Found::Corrupt("no record".into()));
            }
            Err(e) => return Err(cache_error(&record_path, e)),
        };
        let len = file.metadata().map_err(|e| cache_error(&data, e))?.len();
        if len != record.size || len != size {
            return Ok(Found::Corrupt(format!(
                "{len} bytes, its record says {} and the store {size}",
                record.size
            )));
        }
        if self.is_verified(key) {
            return Ok(Found::Intact(file));
        }
        let crc = crc_of(&mut file).map_err(|e| cache_error(&data, e))?;
        if crc != record.crc32 {
            return Ok(Found::Corrupt(format!(
                "CRC32 {crc:08x}, its record says {:08x}",
                record.crc32
            )));
        }
        self.mark_verified(key);
        // The file checked, not the path opened again: another process may have evicted the
        // entry meanwhile, and this handle still reads it whole.
        file.seek(std::io::SeekFrom::Start(0))
            .map_err(|e| cache_error(&data, e))?;
        Ok(Found::Intact(file))
    }

    /// Downloads `shard` into the entry `key` (the caller holds the entry's lock): checked,
    /// written under a temporary name, recorded, then renamed into place once the directory
    /// has room for it.
    fn download(
        &self,
        key: &str,
        data: &Path,
        partial: &Path,
        shard: &ShardFile,
        remote: &Remote<'_>,
        crcs: &dyn Fn() -> Vec<RowGroupCrc>,
    ) -> Result<File> {
        let (store, path, retry) = (Arc::clone(remote.store), remote.path.clone(), remote.retry);
        let what = shard.display.clone();
        let bytes = remote
            .io
            .block_on(async move {
                retry
                    .run(&what, || async { store.get(&path).await?.bytes().await })
                    .await
            })
            .map_err(|source| LoaderError::Io {
                file: shard.display.clone(),
                source,
            })?;
        if bytes.len() as u64 != shard.size {
            return Err(LoaderError::Cache {
                path: data.display().to_string(),
                reason: format!(
                    "{} came as {} bytes but was listed with {} (changed while reading?)",
                    shard.display,
                    bytes.len(),
                    shard.size
                ),
            });
        }
        for (row_group, range, expected) in crcs() {
            let slice = usize::try_from(range.start)
                .ok()
                .zip(usize::try_from(range.end).ok())
                .and_then(|(start, end)| bytes.get(start..end));
            if slice.map(seqwarm_format::checksum::crc32) != Some(expected) {
                return Err(LoaderError::Checksum {
                    file: shard.display.clone(),
                    row_group,
                    place: "the downloaded row group (not cached)".into(),
                });
            }
        }
        let write = || -> std::io::Result<File> {
            // Into the reservation, not truncated first: its size stays what was reserved.
            let mut out = std::fs::OpenOptions::new().write(true).open(partial)?;
            out.write_all(&bytes)?;
            out.sync_all()?;
            // Kept open across the rename: the same file, whatever another process evicts.
            File::open(partial)
        };
        let file = write().map_err(|e| cache_error(partial, e))?;
        let record = Record {
            source: shard.display.clone(),
            size: shard.size,
            crc32: seqwarm_format::checksum::crc32(&bytes),
        };
        let record_path = self.dir.join(format!("{key}.json"));
        let record_bytes = serde_json::to_vec(&record).map_err(|e| cache_error(&record_path, e))?;
        seqwarm_format::atomic::write_atomic(&record_path, &record_bytes)
            .map_err(|e| cache_error(&record_path, e))?;
        {
            let _dir_lock = self.lock_directory()?;
            // Its room was made when the download was reserved.
            seqwarm_format::atomic::finish_atomic(partial, data)
                .map_err(|e| cache_error(data, e))?;
        }
        self.mark_verified(key);
        self.counters.downloads.fetch_add(1, Ordering::Relaxed);
        self.counters
            .bytes_downloaded
            .fetch_add(shard.size, Ordering::Relaxed);
        Ok(file)
    }

    /// Takes the directory's lock (`.lock`: room is made, and entries committed, under it),
    /// held until the returned file is dropped.
    fn lock_directory(&self) -> Result<File> {
        let path = self.dir.join(".lock");
        let lock = lock_file(&path)?;
        wait_for_lock(&lock, &path, NOTICE_AFTER, |waited| {
            tracing::warn!(
                "waiting {:.0} s for the cache directory's lock {} (held by another process \
                 making room in the cache)",
                waited.as_secs_f64(),
                path.display()
            );
        })?;
        Ok(lock)
    }

    /// Under the directory's lock, makes room for `size` more bytes and reserves them: the
    /// partial file of the download is created at its full size, so that every other
    /// process's count of the directory includes it. `false` when the entries that can be
    /// evicted do not make room (downloads in flight hold the rest): the shard is then read
    /// without caching it, and the limit holds.
    fn reserve(&self, size: u64, partial: &Path) -> Result<bool> {
        let _dir_lock = self.lock_directory()?;
        if !self.make_room(size, partial)? {
            return Ok(false);
        }
        let reserve = || -> std::io::Result<()> {
            let file = File::create(partial)?;
            file.set_len(size)?;
            file.sync_all()
        };
        reserve().map_err(|e| cache_error(partial, e))?;
        Ok(true)
    }

    /// Removes the least recently used entries until `incoming` more bytes fit in the limit
    /// (the caller holds the directory's lock), counting the downloads in flight (partial
    /// files whose entry's lock is held) as used; `false` when they cannot be made to fit.
    /// Partial downloads nobody is writing any more (their entry's lock is free) are removed
    /// on the way, with or without a limit.
    fn make_room(&self, incoming: u64, keep: &Path) -> Result<bool> {
        let mut entries = Vec::new();
        let mut in_flight = 0u64;
        let listing = std::fs::read_dir(&self.dir).map_err(|e| cache_error(&self.dir, e))?;
        for item in listing {
            let item = item.map_err(|e| cache_error(&self.dir, e))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.ends_with(".parquet.partial") {
                if path != keep
                    && !self.remove_abandoned(&path, &name)
                    && let Ok(meta) = item.metadata()
                {
                    in_flight += meta.len();
                }
                continue;
            }
            if !name.ends_with(".parquet") || path == keep {
                continue;
            }
            // Gone meanwhile (another process evicted it before taking the lock): skipped.
            let Ok(meta) = item.metadata() else { continue };
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((used, meta.len(), path));
        }
        let Some(limit) = self.limit else {
            return Ok(true);
        };
        let mut total: u64 = entries
            .iter()
            .map(|(_, len, _)| len)
            .sum::<u64>()
            .saturating_add(in_flight);
        entries.sort();
        for (_, len, path) in entries {
            if total.saturating_add(incoming) <= limit {
                break;
            }
            // An entry another process is downloading again (corrupt) holds its lock: its new
            // record must not be removed under it; it is left for the next eviction.
            let lock = lock_file(&path.with_extension("lock"))?;
            if lock.try_lock().is_err() {
                continue;
            }
            remove_if_present(&path).map_err(|e| cache_error(&path, e))?;
            let _ = remove_if_present(&path.with_extension("json"));
            total -= len;
            self.counters.evicted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(total.saturating_add(incoming) <= limit)
    }

    /// Removes a partial download left by a process that stopped mid-download: its entry's
    /// lock is free (a download in progress holds it). Whether it was removed.
    fn remove_abandoned(&self, path: &Path, name: &str) -> bool {
        let key = name.trim_end_matches(".parquet.partial");
        let Ok(lock) = lock_file(&self.dir.join(format!("{key}.lock"))) else {
            return false;
        };
        lock.try_lock().is_ok() && remove_if_present(path).is_ok()
    }

    /// Marks an entry used now, for the least-recently-used order.
    fn used(&self, data: &Path, file: &File) {
        self.counters.hits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = file.set_modified(SystemTime::now()) {
            // Only the eviction order suffers (a read-only cache directory, for instance).
            tracing::debug!("{}: cannot mark as used: {e}", data.display());
        }
    }

    fn is_verified(&self, key: &str) -> bool {
        self.verified.lock().is_ok_and(|set| set.contains(key))
    }

    fn mark_verified(&self, key: &str) {
        if let Ok(mut set) = self.verified.lock() {
            set.insert(key.to_string());
        }
    }
}

/// The entry name of a shard: a digest of its location, size and version as listed (an
/// object rewritten with other bytes gets another entry).
fn entry_key(shard: &ShardFile) -> String {
    let mut hash = Sha256::new();
    hash.update(shard.display.as_bytes());
    hash.update([0]);
    hash.update(shard.size.to_le_bytes());
    hash.update([0]);
    hash.update(shard.version().unwrap_or_default().as_bytes());
    hash.finalize()[..16]
        .iter()
        .fold(String::with_capacity(32), |mut hex, b| {
            use std::fmt::Write;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// How long a wait for a cache lock goes before it is reported, and between reports.
const NOTICE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Takes the exclusive lock on `file` (at `path`), calling `notice` with the time waited once
/// `every` has passed and again each `every` after, so that a lock held forever by another
/// process is a message naming it, not a silent hang. (No bound: a download another process
/// is making may rightly take long.)
fn wait_for_lock(
    file: &File,
    path: &Path,
    every: std::time::Duration,
    mut notice: impl FnMut(std::time::Duration),
) -> Result<()> {
    let started = std::time::Instant::now();
    let mut next_notice = every;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(cache_error(path, e)),
        }
        let waited = started.elapsed();
        if waited >= next_notice {
            notice(waited);
            next_notice = waited + every;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

fn lock_file(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| cache_error(path, e))
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The CRC32 of a whole file, read from its start.
fn crc_of(file: &mut File) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    let mut block = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut block)? {
            0 => return Ok(hasher.finalize()),
            n => hasher.update(&block[..n]),
        }
    }
}

fn cache_error(path: &Path, e: impl std::fmt::Display) -> LoaderError {
    LoaderError::Cache {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_lock_held_elsewhere_is_reported_while_waited_for_then_taken() {
        let dir = std::env::temp_dir().join(format!("seqwarm-lock-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.lock");
        let holder = super::lock_file(&path).unwrap();
        holder.lock().unwrap();
        let waiter = super::lock_file(&path).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(holder);
        });
        let mut notices = Vec::new();
        super::wait_for_lock(
            &waiter,
            &path,
            std::time::Duration::from_millis(50),
            |waited| {
                notices.push(waited);
            },
        )
        .unwrap();
        release.join().unwrap();
        assert!(notices.len() >= 2, "{notices:?}");
        assert!(notices.windows(2).all(|w| w[0] < w[1]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;

    use super::*;
    use crate::source::Place;

    struct Fixture {
        store: Arc<dyn ObjectStore>,
        runtime: tokio::runtime::Runtime,
        dir: PathBuf,
    }

    impl Fixture {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "seqwarm-cache-{name}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            Self {
                store: Arc::new(InMemory::new()),
                runtime: tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap(),
                dir,
            }
        }

        /// Puts an object of `len` bytes (byte i is `i * seed`) and returns its shard.
        fn put(&self, name: &str, len: usize, seed: u8) -> ShardFile {
            let bytes: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
            let path = ObjectPath::from(name);
            self.runtime
                .block_on(self.store.put(&path, PutPayload::from(bytes)))
                .unwrap();
            ShardFile {
                display: format!("memory:///{name}"),
                size: len as u64,
                place: Place::Store {
                    store: Arc::clone(&self.store),
                    path,
                    version: Some("v1".into()),
                },
            }
        }

        fn cache(&self, limit: Option<u64>) -> ShardCache {
            ShardCache::open(&self.dir, limit).unwrap()
        }

        /// Where `shard` is downloaded from.
        fn remote<'a>(&'a self, shard: &'a ShardFile) -> Remote<'a> {
            let Place::Store { store, path, .. } = &shard.place else {
                unreachable!()
            };
            Remote {
                store,
                path,
                retry: RetryPolicy::default(),
                io: self.runtime.handle(),
            }
        }

        fn copy(&self, cache: &ShardCache, shard: &ShardFile) -> Result<Option<Vec<u8>>> {
            self.copy_checked(cache, shard, &[])
        }

        fn copy_checked(
            &self,
            cache: &ShardCache,
            shard: &ShardFile,
            crcs: &[RowGroupCrc],
        ) -> Result<Option<Vec<u8>>> {
            Ok(cache
                .local_copy(shard, &self.remote(shard), &|| crcs.to_vec())?
                .map(|(_, mut file)| {
                    let mut bytes = Vec::new();
                    file.read_to_end(&mut bytes).unwrap();
                    bytes
                }))
        }

        fn entries(&self) -> Vec<(String, u64)> {
            let mut found: Vec<(String, u64)> = std::fs::read_dir(&self.dir)
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".parquet"))
                .map(|e| {
                    let len = e.metadata().unwrap().len();
                    (e.file_name().to_string_lossy().into_owned(), len)
                })
                .collect();
            found.sort();
            found
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn object(fixture: &Fixture, shard: &ShardFile) -> Vec<u8> {
        let Place::Store { store, path, .. } = &shard.place else {
            unreachable!()
        };
        fixture
            .runtime
            .block_on(async { store.get(path).await.unwrap().bytes().await.unwrap() })
            .to_vec()
    }

    #[test]
    fn a_shard_is_downloaded_once_and_then_read_locally() {
        let fixture = Fixture::new("once");
        let shard = fixture.put("a.parquet", 10_000, 7);
        let cache = fixture.cache(None);
        let want = object(&fixture, &shard);
        assert_eq!(fixture.copy(&cache, &shard).unwrap().unwrap(), want);
        assert_eq!(fixture.copy(&cache, &shard).unwrap().unwrap(), want);
        let stats = cache.stats();
        assert_eq!((stats.downloads, stats.hits), (1, 1), "{stats:?}");
        assert_eq!(stats.bytes_downloaded, 10_000);
        // Another process (a new cache on the same directory) checks the entry whole and reads
        // it without downloading.
        let other = fixture.cache(None);
        assert_eq!(fixture.copy(&other, &shard).unwrap().unwrap(), want);
        assert_eq!((other.stats().downloads, other.stats().hits), (0, 1));
    }

    #[test]
    fn a_corrupt_entry_is_detected_and_downloaded_again() {
        let fixture = Fixture::new("corrupt");
        let shard = fixture.put("a.parquet", 5_000, 3);
        let want = object(&fixture, &shard);
        fixture.copy(&fixture.cache(None), &shard).unwrap();
        let (name, _) = fixture.entries().remove(0);
        let entry = fixture.dir.join(name);
        let mut bytes = std::fs::read(&entry).unwrap();
        bytes[1234] ^= 0x10;
        std::fs::write(&entry, &bytes).unwrap();
        let cache = fixture.cache(None);
        assert_eq!(fixture.copy(&cache, &shard).unwrap().unwrap(), want);
        let stats = cache.stats();
        assert_eq!((stats.refetched, stats.downloads), (1, 1), "{stats:?}");
        // A truncated entry, and one without its record, likewise.
        std::fs::write(&entry, &want[..100]).unwrap();
        let cache = fixture.cache(None);
        assert_eq!(fixture.copy(&cache, &shard).unwrap().unwrap(), want);
        assert_eq!(cache.stats().refetched, 1);
        std::fs::remove_file(entry.with_extension("json")).unwrap();
        let cache = fixture.cache(None);
        assert_eq!(fixture.copy(&cache, &shard).unwrap().unwrap(), want);
        assert_eq!(cache.stats().refetched, 1);
    }

    #[test]
    fn the_limit_holds_by_evicting_the_least_recently_used() {
        let fixture = Fixture::new("limit");
        let shards: Vec<ShardFile> = (0..4)
            .map(|i| fixture.put(&format!("s{i}.parquet"), 1_000, i as u8 + 1))
            .collect();
        let cache = fixture.cache(Some(2_500));
        let mut used_at = SystemTime::UNIX_EPOCH;
        let mut touch = |shard: &ShardFile| {
            fixture.copy(&cache, shard).unwrap().unwrap();
            // Modification times a second apart, whatever the file system's resolution.
            used_at += std::time::Duration::from_secs(1);
            let entry = fixture.dir.join(format!("{}.parquet", entry_key(shard)));
            File::options()
                .write(true)
                .open(entry)
                .unwrap()
                .set_modified(used_at)
                .unwrap();
        };
        touch(&shards[0]);
        touch(&shards[1]);
        touch(&shards[0]); // 1 is now the least recently used
        touch(&shards[2]); // evicts 1
        let names: Vec<String> = fixture.entries().into_iter().map(|(n, _)| n).collect();
        let expect = |i: usize| format!("{}.parquet", entry_key(&shards[i]));
        assert!(
            names.contains(&expect(0)) && names.contains(&expect(2)),
            "{names:?}"
        );
        assert!(!names.contains(&expect(1)), "{names:?}");
        touch(&shards[3]); // evicts 0
        let total: u64 = fixture.entries().iter().map(|(_, len)| len).sum();
        assert!(total <= 2_500, "{total}");
        assert_eq!(cache.stats().evicted, 2);
        // A shard larger than the limit is read from the store, not cached.
        let big = fixture.put("big.parquet", 3_000, 9);
        assert_eq!(fixture.copy(&cache, &big).unwrap(), None);
        assert_eq!(cache.stats().bypassed, 1);
    }

    #[test]
    fn a_download_that_fails_its_row_group_checksum_is_not_cached() {
        let fixture = Fixture::new("crc");
        let shard = fixture.put("a.parquet", 4_000, 5);
        let want = object(&fixture, &shard);
        let good = seqwarm_format::checksum::crc32(&want[100..900]);
        let cache = fixture.cache(None);
        let err = fixture
            .copy_checked(&cache, &shard, &[(0, 0..100, 0), (1, 100..900, good)])
            .unwrap_err();
        assert!(
            matches!(err, LoaderError::Checksum { row_group: 0, .. }),
            "{err}"
        );
        assert!(fixture.entries().is_empty());
        let copy = fixture
            .copy_checked(&cache, &shard, &[(1, 100..900, good)])
            .unwrap();
        assert_eq!(copy.unwrap(), want);
    }

    #[test]
    fn an_unusable_directory_is_a_cache_error_that_reading_falls_back_from() {
        let fixture = Fixture::new("unusable");
        let shard = fixture.put("a.parquet", 1_000, 1);
        let cache = fixture.cache(None);
        // The directory replaced by a file: nothing can be created in it.
        std::fs::remove_dir_all(&fixture.dir).unwrap();
        std::fs::write(&fixture.dir, b"not a directory").unwrap();
        let err = fixture.copy(&cache, &shard).unwrap_err();
        assert!(matches!(err, LoaderError::Cache { .. }), "{err}");
        std::fs::remove_file(&fixture.dir).unwrap();
    }

    #[test]
    fn a_checked_entry_is_read_whole_though_evicted_meanwhile() {
        let fixture = Fixture::new("evicted");
        let shard = fixture.put("a.parquet", 50_000, 3);
        let want = object(&fixture, &shard);
        fixture.copy(&fixture.cache(None), &shard).unwrap();
        // A new process checks the entry and gets its handle; another evicts it at once.
        let cache = fixture.cache(None);
        let (entry, mut file) = cache
            .local_copy(&shard, &fixture.remote(&shard), &Vec::new)
            .unwrap()
            .unwrap();
        std::fs::remove_file(&entry).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes, want);
    }

    #[test]
    fn processes_sharing_the_directory_download_each_shard_once() {
        let fixture = Fixture::new("shared");
        let shards: Vec<ShardFile> = (0..6)
            .map(|i| fixture.put(&format!("s{i}.parquet"), 200_000, i as u8 + 3))
            .collect();
        let caches: Vec<ShardCache> = (0..4).map(|_| fixture.cache(None)).collect();
        std::thread::scope(|scope| {
            for cache in &caches {
                let (fixture, shards) = (&fixture, &shards);
                scope.spawn(move || {
                    for shard in shards {
                        let got = fixture.copy(cache, shard).unwrap().unwrap();
                        assert_eq!(got.len(), 200_000);
                    }
                });
            }
        });
        let downloads: u64 = caches.iter().map(|c| c.stats().downloads).sum();
        assert_eq!(downloads, 6);
        // No partial download is left behind.
        let partial = std::fs::read_dir(&fixture.dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".partial")
            })
            .count();
        assert_eq!(partial, 0);
    }

    #[test]
    fn the_limit_holds_while_downloads_overlap() {
        // Issue 22, point 13: downloads in flight were not counted, so processes committing
        // at once went past the limit (4 of 12 runs ended above it, a poller saw it above in
        // 11 of 12). Four caches on one directory ("processes"), eight shards of 200 kB, a
        // limit of 500 kB, and a poller summing every entry and partial file meanwhile.
        let fixture = Fixture::new("overlap");
        let limit = 500_000u64;
        let shards: Vec<ShardFile> = (0..8)
            .map(|i| fixture.put(&format!("s{i}.parquet"), 200_000, i as u8 + 3))
            .collect();
        let caches: Vec<ShardCache> = (0..4).map(|_| fixture.cache(Some(limit))).collect();
        let done = std::sync::atomic::AtomicBool::new(false);
        let on_disk = || -> u64 {
            let Ok(listing) = std::fs::read_dir(&fixture.dir) else {
                return 0;
            };
            listing
                .filter_map(std::result::Result::ok)
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(".parquet") || name.ends_with(".parquet.partial")
                })
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        };
        let most = std::thread::scope(|scope| {
            let poller = scope.spawn(|| {
                let mut most = 0u64;
                while !done.load(Ordering::Relaxed) {
                    most = most.max(on_disk());
                }
                most
            });
            let workers: Vec<_> = caches
                .iter()
                .enumerate()
                .map(|(w, cache)| {
                    let (fixture, shards) = (&fixture, &shards);
                    scope.spawn(move || {
                        for round in 0..3 {
                            for i in 0..shards.len() {
                                let shard = &shards[(i + w * 3 + round) % shards.len()];
                                let got = fixture.copy(cache, shard).unwrap();
                                if let Some(bytes) = got {
                                    assert_eq!(bytes, object(fixture, shard));
                                }
                            }
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
            poller.join().unwrap()
        });
        assert!(most <= limit, "{most} bytes on disk at once, limit {limit}");
        assert!(on_disk() <= limit);
        let downloads: u64 = caches.iter().map(|c| c.stats().downloads).sum();
        assert!(downloads >= 8, "{downloads}");
    }

    #[test]
    fn an_abandoned_partial_download_is_removed_by_the_next_download() {
        let fixture = Fixture::new("abandoned");
        let cache = fixture.cache(None);
        let first = fixture.put("a.parquet", 1_000, 1);
        fixture.copy(&cache, &first).unwrap();
        let stale = fixture.dir.join("0123456789abcdef.parquet.partial");
        std::fs::write(&stale, [0u8; 64]).unwrap();
        let second = fixture.put("b.parquet", 1_000, 2);
        fixture.copy(&cache, &second).unwrap();
        assert!(!stale.exists());
    }
}
