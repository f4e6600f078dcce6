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

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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
    /// The whole file as mapped; slices of it share the map.
    bytes: Bytes,
}

impl MappedFiles {
    /// The bytes `range` of the file at `path`, shared with the page cache through a
    /// read-only map that lives as long as the returned bytes (or any slice of them).
    /// `UnexpectedEof` when the file is now shorter than the range.
    pub(crate) fn range(&self, path: &Path, range: Range<u64>) -> io::Result<Bytes> {
        let (start, end) = (to_usize(range.start)?, to_usize(range.end)?);
        if start >= end {
            return Ok(Bytes::new());
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
        let mut files = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = if let Some(at) = files.iter().position(|m| m.path == path) {
            at
        } else {
            if files.len() >= MAPPED_FILES {
                files.pop_front();
            }
            files.push_back(map_file(path)?);
            files.len() - 1
        };
        let Some(mapped) = files.remove(at) else {
            return Err(shrank());
        };
        // Checked on every read: touching a mapped page past the end of the file raises
        // SIGBUS, which no error handling can turn into an error.
        let size = mapped.file.metadata()?.len();
        let bytes = mapped.bytes.clone();
        files.push_back(mapped);
        drop(files);
        if size < range.end || bytes.len() < end {
            return Err(shrank());
        }
        Ok(bytes.slice(start..end))
    }
}

/// The whole file at `path`, mapped read-only.
fn map_file(path: &Path) -> io::Result<Mapped> {
    let file = File::open(path)?;
    let bytes = if file.metadata()?.len() == 0 {
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
        bytes,
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
    fn maps_unaligned_ranges_and_rejects_ranges_past_the_end() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (path, file) = file_with(&data);
        let maps = MappedFiles::default();
        for range in [0..20_000u64, 4_097..12_345, 19_999..20_000, 5..5] {
            let got = maps.range(&path, range.clone()).expect("map");
            assert_eq!(&got[..], &data[range.start as usize..range.end as usize]);
        }
        let err = maps.range(&path, 10..20_001).expect_err("past the end");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        // A file that shrank after it was mapped: an error, not SIGBUS.
        let kept = maps.range(&path, 100..200).expect("map").slice(10..20);
        file.set_len(1_000).expect("truncate");
        let err = maps.range(&path, 900..1_500).expect_err("shrank");
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            &maps.range(&path, 900..1_000).expect("map")[..],
            &data[900..1_000]
        );
        // A slice outlives the map's place in the cache and the file's name.
        std::fs::remove_file(&path).expect("remove");
        drop(maps);
        assert_eq!(&kept[..], &data[110..120]);
    }
}
