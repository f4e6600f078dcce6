//! Recycled buffers for the read path: the bytes a local row group is read into, and the
//! tokens a `uint16` row group is widened into.
//!
//! Each row group needs a few MiB of fresh memory, handed out as batches and freed once the
//! last batch that views it is dropped (by Rust or by Python). Fresh memory from the allocator
//! often comes straight from the kernel, which zeroes every page on first touch: page faults
//! and page clearing cost about a tenth of the stream on `uint16` shards (`perf`, see
//! docs/benchmarks.md). A [`Buffer`] goes back to a small pool when dropped instead, and the
//! next row group reuses it with its pages already mapped, without zeroing it again (a reused
//! buffer's old bytes are overwritten before anyone reads them).

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse at most (a few row groups in flight, plus the read buffer).
const KEEP: usize = 8;
/// Larger buffers are not kept (a pathological row group must not pin its memory).
const MAX_KEPT_BYTES: usize = 64 << 20;

static POOL: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// An 8-byte aligned byte buffer of a given length whose storage returns to the pool when
/// dropped. Its bytes are initialized but arbitrary: callers overwrite all of them.
pub(crate) struct Buffer {
    words: Vec<u64>,
    len: usize,
}

impl Buffer {
    /// A buffer of `len` bytes: a pooled one when there is one, else new.
    pub(crate) fn with_len(len: usize) -> Self {
        let words_needed = len.div_ceil(8);
        // `try_lock`: the pool is a cache, never worth waiting for, and a process forked while
        // another thread held the lock (a DataLoader worker) must not wait forever.
        let pooled = POOL.try_lock().ok().and_then(|mut pool| {
            // The smallest that fits, else the largest (grown below).
            let fits = pool
                .iter()
                .enumerate()
                .filter(|(_, w)| w.len() >= words_needed)
                .min_by_key(|(_, w)| w.len())
                .map(|(i, _)| i);
            let chosen = fits.or_else(|| {
                pool.iter()
                    .enumerate()
                    .max_by_key(|(_, w)| w.len())
                    .map(|(i, _)| i)
            })?;
            Some(pool.swap_remove(chosen))
        });
        let mut words = pooled.unwrap_or_default();
        if words.len() < words_needed {
            words.resize(words_needed, 0);
        }
        Self { words, len }
    }

    /// The buffer's bytes, to fill.
    pub(crate) fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut::<u64, u8>(&mut self.words)[..self.len]
    }

    /// Its storage as `T`s (the first `len / size_of::<T>()` of them), to fill.
    pub(crate) fn as_mut_slice<T: bytemuck::Pod>(&mut self) -> &mut [T] {
        let n = self.len / std::mem::size_of::<T>();
        &mut bytemuck::cast_slice_mut::<u64, T>(&mut self.words)[..n]
    }

    /// Shared, immutable bytes over this buffer, without a copy; the storage returns to the
    /// pool when the last view is dropped.
    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for Buffer {
    fn as_ref(&self) -> &[u8] {
        &bytemuck::cast_slice::<u64, u8>(&self.words)[..self.len]
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        if self.words.len() * 8 > MAX_KEPT_BYTES {
            return;
        }
        if let Ok(mut pool) = POOL.try_lock()
            && pool.len() < KEEP
        {
            pool.push(std::mem::take(&mut self.words));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Buffer;

    #[test]
    fn buffers_are_aligned_sized_and_recycled() {
        let mut a = Buffer::with_len(1001);
        assert_eq!(a.as_mut_bytes().len(), 1001);
        a.as_mut_bytes().fill(7);
        assert_eq!(a.as_mut_slice::<u32>().len(), 250);
        let bytes = a.into_bytes();
        assert_eq!(bytes.as_ptr() as usize % 8, 0);
        assert!(bytes.iter().all(|&b| b == 7));
        let view = bytes.slice(10..20);
        drop(bytes);
        // The storage is still alive through the view.
        assert_eq!(&view[..], &[7; 10]);
        drop(view);
        // A smaller request reuses pooled storage (possibly this one; other tests share the
        // pool), still with the requested length.
        let mut b = Buffer::with_len(64);
        assert_eq!(b.as_mut_bytes().len(), 64);
        assert_eq!(b.as_mut_slice::<i64>().len(), 8);
    }
}
