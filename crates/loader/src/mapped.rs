//! Local shards read through read-only memory maps: a row group's pages are used where the
//! page cache holds them, never copied into a buffer first.
//!
//! Why: a positioned read of a cached `uint16` row group spent half the one-core stream in the
//! kernel (`_copy_to_iter` and its page lookups, `perf` in docs/benchmarks.md), more than the
//! widening and the CRC together; a raw `np.memmap` loader pays none of it. Each file is
//! mapped whole and kept mapped while it is read again ([`MAPPED_FILES`]), so that from the
//! second epoch on its pages are mapped already, as they are for the memmap.
//!
//! The risks a copy does not have (`docs/loader.md` lists them): a shard truncated by another
//! process *while* a mapped row group is in use (read, checked, or waiting in the read-ahead
//! queue until its last chunk is widened) raises `SIGBUS`, as with any memory-mapped loader
//! (`np.memmap`, Hugging Face `datasets`' Arrow files); bytes changed in place after a check are
//! read unchecked. Every read checks the file first (size, modification time, which file), so
//! a shard that shrank, changed or was replaced before the read is a typed error or a new map.
//! Shards are immutable while a run reads them (`preprocess` renames each finished file into
//! place), so the loader maps them by default; `memory_map = false` reads through positioned
//! reads into owned buffers instead.

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
    inner: Mutex<Maps>,
}

#[derive(Debug, Default)]
struct Maps {
    /// Most recently used last.
    files: VecDeque<Mapped>,
    /// The generation the next map gets.
    next: u64,
}

#[derive(Debug)]
struct Mapped {
    path: PathBuf,
    /// The file when it was mapped: one that changed since is mapped again, and its ranges
    /// checked again.
    stamp: Stamp,
    /// Which map this is: a checksum passed on one map's bytes marks that map only.
    generation: u64,
    /// The whole file as mapped; slices of it share the map.
    bytes: Bytes,
    /// Ranges whose checksum passed in this map (`MappedFiles::mark_checked`).
    checked: HashSet<(u64, u64)>,
}

/// What identifies a file's contents between reads, as cheaply as the kernel says it: its
/// size and modification time, and which file it is (device and inode, so that a shard
/// replaced by a rename is mapped again rather than served from the old one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    file: (u64, u64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        let file = {
            use std::os::unix::fs::MetadataExt;
            (meta.dev(), meta.ino())
        };
        #[cfg(not(unix))]
        let file = (0, 0);
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            file,
        }
    }
}

/// A mapped range ([`MappedFiles::range`]).
pub(crate) struct MappedRange {
    /// The bytes, shared with the map.
    pub bytes: Bytes,
    /// Whether the range's checksum already passed in the same map.
    pub checked: bool,
    /// The map's generation, for [`MappedFiles::mark_checked`].
    pub generation: u64,
}

impl MappedFiles {
    /// The bytes `range` of the file at `path`, shared with the page cache through a
    /// read-only map that lives as long as the returned bytes (or any slice of them).
    /// `UnexpectedEof` when the file is now shorter than the range, `NotFound` when it is gone.
    pub(crate) fn range(&self, path: &Path, range: Range<u64>) -> io::Result<MappedRange> {
        let (start, end) = (to_usize(range.start)?, to_usize(range.end)?);
        let shrank = || {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "fewer than {} bytes at {start} (the file shrank?)",
                    end.saturating_sub(start)
                ),
            )
        };
        // Checked on every read, before any page of it is touched: a mapped page past the end
        // of the file raises SIGBUS, which no error handling can turn into an error. The
        // path's file, not only the open one: a shard deleted or replaced is noticed.
        let now = Stamp::of(&std::fs::metadata(path)?);
        let mut maps = self.lock();
        let known = maps.files.iter().position(|m| m.path == path);
        let mapped = match known.and_then(|at| maps.files.remove(at)) {
            Some(m) if m.stamp == now => m,
            _ => {
                let generation = maps.next;
                maps.next += 1;
                map_file(path, generation)?
            }
        };
        if mapped.stamp.len < range.end || mapped.bytes.len() < end {
            // Kept mapped: other ranges may still be in the file.
            let err = shrank();
            maps.files.push_back(mapped);
            return Err(err);
        }
        let out = MappedRange {
            bytes: if start < end {
                mapped.bytes.slice(start..end)
            } else {
                Bytes::new()
            },
            checked: mapped.checked.contains(&(range.start, range.end)),
            generation: mapped.generation,
        };
        if maps.files.len() >= MAPPED_FILES {
            maps.files.pop_front();
        }
        maps.files.push_back(mapped);
        Ok(out)
    }

    /// Notes that `range` of the map `generation` of the file at `path` passed its checksum:
    /// while that map stays and the file is unchanged, [`MappedFiles::range`] says so, and the
    /// row group is not checked again (its bytes are the same pages of the same map). A map
    /// replaced since (the file changed) is not marked.
    pub(crate) fn mark_checked(&self, path: &Path, generation: u64, range: Range<u64>) {
        if let Some(mapped) = self
            .lock()
            .files
            .iter_mut()
            .find(|m| m.path == path && m.generation == generation)
        {
            mapped.checked.insert((range.start, range.end));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The whole file at `path`, mapped read-only, as map `generation`.
/// A whole local file, mapped read-only (empty files as empty bytes): the raw token files a
/// decomposition run reads, immutable while it runs like shards.
pub(crate) fn map_whole(path: &Path) -> io::Result<Bytes> {
    Ok(map_file(path, 0)?.bytes)
}

fn map_file(path: &Path, generation: u64) -> io::Result<Mapped> {
    let file = File::open(path)?;
    let stamp = Stamp::of(&file.metadata()?);
    let bytes = if stamp.len == 0 {
        Bytes::new()
    } else {
        // SAFETY: the map is read-only; what it shares with other processes is the file.
        // Rust's aliasing rules hold as long as nobody writes the mapped bytes while they are
        // in use: shards are never written in place (`preprocess` renames each finished file
        // into place), and the module doc states the truncation caveat, which every read
        // narrows by checking the file first.
        Bytes::from_owner(unsafe { Mmap::map(&file)? })
    };
    Ok(Mapped {
        path: path.to_path_buf(),
        stamp,
        generation,
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
        let read = |range: Range<u64>| maps.range(&path, range);
        for range in [0..20_000u64, 4_097..12_345, 19_999..20_000, 5..5] {
            let got = read(range.clone()).expect("map");
            assert_eq!(
                &got.bytes[..],
                &data[range.start as usize..range.end as usize]
            );
            assert!(!got.checked);
        }
        let err = read(10..20_001).err().expect("past the end");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A range marked checked stays so while the file is mapped and unchanged; a mark for
        // another map (an older generation) is not taken.
        let generation = read(100..200).expect("map").generation;
        maps.mark_checked(&path, generation + 1, 100..200);
        assert!(!read(100..200).expect("map").checked);
        maps.mark_checked(&path, generation, 100..200);
        assert!(read(100..200).expect("map").checked);
        assert!(!read(100..201).expect("map").checked);
        // A file that shrank after it was mapped: an error, not SIGBUS; it is mapped again,
        // and what was checked in the old map is checked again.
        let kept = read(100..200).expect("map").bytes.slice(10..20);
        file.set_len(1_000).expect("truncate");
        let err = read(900..1_500).err().expect("shrank");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(&read(900..1_000).expect("map").bytes[..], &data[900..1_000]);
        let again = read(100..200).expect("map");
        assert!(!again.checked && again.generation != generation);
        // A file replaced by a rename (same size) is mapped again: its new bytes are read.
        let other = path.with_extension("new");
        std::fs::write(&other, vec![9u8; 1_000]).expect("write");
        std::fs::rename(&other, &path).expect("rename");
        assert_eq!(&read(0..4).expect("map").bytes[..], &[9, 9, 9, 9]);
        // A deleted file is an error; a slice outlives the map and the file's name.
        std::fs::remove_file(&path).expect("remove");
        assert_eq!(
            read(0..4).err().expect("gone").kind(),
            io::ErrorKind::NotFound
        );
        drop(maps);
        assert_eq!(&kept[..], &data[110..120]);
    }
}
