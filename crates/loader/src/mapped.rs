//! Local shards read through read-only memory maps: a row group's pages are used where the
//! page cache holds them, never copied into a buffer first.
//!
//! Why: a positioned read of a cached `uint16` row group spent half the one-core stream in the
//! kernel (`_copy_to_iter` and its page lookups, `perf` in docs/benchmarks.md), more than the
//! widening and the CRC together; a raw `np.memmap` loader pays none of it. Each file is
//! mapped whole and kept mapped while it is read again ([`MAPPED_FILES`]), so that from the
//! second epoch on its pages are mapped already, as they are for the memmap.
//!
//! The one risk a copy does not have: a shard truncated by another process *while a mapped
//! row group is being read* raises `SIGBUS`, as with any memory-mapped loader (`np.memmap`,
//! Hugging Face `datasets`' Arrow files). Every read checks the file's size first, so a shard
//! that shrank earlier is a typed error; shards are immutable while a run reads them
//! (`preprocess` renames each finished file into place), so the loader maps them by default,
//! and `memory_map = false` reads through positioned reads into owned buffers instead.

// The only unsafe code of the crate: creating the map (see the SAFETY note).
#![allow(unsafe_code)]

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::Bytes;
use memmap2::Mmap;

/// Shard files kept mapped at once. A map stays while its file is read again (the next row
/// group, the next epoch): its pages are then mapped already, where a map per row group paid
/// for mapping and unmapping every page each time (a third of the stream's time in the kernel,
/// measured). Bounded so that page tables stay small and the process far below the kernel's
/// limit on maps (`vm.max_map_count`, 65 530 by default) however many shards a run reads.
pub(crate) const MAPPED_FILES: usize = 64;

/// The most recently read local shards, each mapped whole and read-only.
#[derive(Debug, Default)]
pub(crate) struct MappedFiles {
    /// Most recently used last.
    files: Mutex<VecDeque<Mapped>>,
}

#[derive(Debug)]
struct Mapped {
    path: PathBuf,
    /// Open for as long as it is mapped: each read checks its size through it.
    file: File,
    /// Its size and modification time when it was mapped: a file that changed since is
    /// mapped again, and its ranges checked again.
    stamp: (u64, Option<SystemTime>),
    /// The whole file as mapped; slices of it share the map.
    bytes: Bytes,
    /// Ranges whose checksum passed in this map (`MappedFiles::mark_checked`).
    checked: HashSet<(u64, u64)>,
}

impl MappedFiles {
    /// The bytes `range` of the file at `path`, shared with the page cache through a
    /// read-only map that lives as long as the returned bytes (or any slice of them), and
    /// whether the range's checksum already passed in this map. `UnexpectedEof` when the file
    /// is now shorter than the range.
    pub(crate) fn range(&self, path: &Path, range: Range<u64>) -> io::Result<(Bytes, bool)> {
        let (start, end) = (to_usize(range.start)?, to_usize(range.end)?);
        if start >= end {
            return Ok((Bytes::new(), false));
        }
        let shrank = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "fewer than {} bytes at {start} (the file shrank?)",
                    end - start
                ),
            )
        };
        let mut files = self.lock();
        let mut mapped = match files.iter().position(|m| m.path == path) {
            Some(at) => files.remove(at).ok_or_else(shrank)?,
            None => map_file(path)?,
        };
        // Checked on every read: touching a mapped page past the end of the file raises
        // SIGBUS, which no error handling can turn into an error.
        let stamp = stamp(&mapped.file)?;
        if stamp != mapped.stamp {
            mapped = map_file(path)?;
        }
        let checked = mapped.checked.contains(&(range.start, range.end));
        let bytes = mapped.bytes.clone();
        let size = mapped.stamp.0;
        if files.len() >= MAPPED_FILES {
            files.pop_front();
        }
        files.push_back(mapped);
        drop(files);
        if size < range.end || bytes.len() < end {
            return Err(shrank());
        }
        Ok((bytes.slice(start..end), checked))
    }

    /// Notes that `range` of the file at `path` passed its checksum: while the file stays
    /// mapped and unchanged, [`MappedFiles::range`] says so, and the row group is not checked
    /// again (its bytes are the same pages of the same map).
    pub(crate) fn mark_checked(&self, path: &Path, range: Range<u64>) {
        if let Some(mapped) = self.lock().iter_mut().find(|m| m.path == path) {
            mapped.checked.insert((range.start, range.end));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Mapped>> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn stamp(file: &File) -> io::Result<(u64, Option<SystemTime>)> {
    let meta = file.metadata()?;
    Ok((meta.len(), meta.modified().ok()))
}

/// The whole file at `path`, mapped read-only.
fn map_file(path: &Path) -> io::Result<Mapped> {
    let file = File::open(path)?;
    let stamp = stamp(&file)?;
    let bytes = if stamp.0 == 0 {
        Bytes::new()
    } else {
        // SAFETY: the map is read-only; what it shares with other processes is the file.
        // Rust's aliasing rules hold as long as nobody writes the mapped bytes while they are
        // in use: shards are never written in place (`preprocess` renames each finished file
        // into place), and the module doc states the truncation caveat, which every read
        // narrows by checking the file's size first.
        Bytes::from_owner(unsafe { Mmap::map(&file)? })
    };
    Ok(Mapped {
        path: path.to_path_buf(),
        file,
        stamp,
        bytes,
        checked: HashSet::new(),
    })
}

fn to_usize(offset: u64) -> io::Result<usize> {
    usize::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large to map"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (std::path::PathBuf, File) {
        let path = std::env::temp_dir().join(format!(
            "seqwarm-mapped-{}-{}",
            std::process::id(),
            bytes.len()
        ));
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(bytes))
            .expect("write the test file");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open the test file");
        (path, file)
    }

    #[test]
    fn maps_ranges_remembers_checks_and_rejects_ranges_past_the_end() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (path, file) = file_with(&data);
        let maps = MappedFiles::default();
        for range in [0..20_000u64, 4_097..12_345, 19_999..20_000, 5..5] {
            let (got, checked) = maps.range(&path, range.clone()).expect("map");
            assert_eq!(&got[..], &data[range.start as usize..range.end as usize]);
            assert!(!checked);
        }
        let err = maps.range(&path, 10..20_001).expect_err("past the end");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A range marked checked stays so while the file is mapped and unchanged.
        maps.mark_checked(&path, 100..200);
        assert!(maps.range(&path, 100..200).expect("map").1);
        assert!(!maps.range(&path, 100..201).expect("map").1);
        // A file that shrank after it was mapped: an error, not SIGBUS; it is mapped again,
        // and what was checked in the old map is checked again.
        let kept = maps.range(&path, 100..200).expect("map").0.slice(10..20);
        file.set_len(1_000).expect("truncate");
        let err = maps.range(&path, 900..1_500).expect_err("shrank");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let (tail, _) = maps.range(&path, 900..1_000).expect("map");
        assert_eq!(&tail[..], &data[900..1_000]);
        assert!(!maps.range(&path, 100..200).expect("map").1);
        // A slice outlives the map's place in the cache and the file's name.
        std::fs::remove_file(&path).expect("remove");
        drop(maps);
        assert_eq!(&kept[..], &data[110..120]);
    }
}
