//! A `uint16` row group kept at 2 bytes a token until the stage takes it, then widened a
//! chunk of whole documents at a time.
//!
//! Widening a whole row group at once writes 4-8 MiB of `int64` that leaves the cache before
//! the stage copies its batches out of it: the stream then moves every token through memory
//! twice more than a memory-mapped loader does (`perf`, docs/benchmarks.md). Widened in chunks
//! of about [`CHUNK_TOKENS`] just before the stage takes them, the wide tokens are still in
//! the core's cache when they are copied into a batch, and the row group waits in the prefetch
//! queue at its stored width.

use std::sync::Arc;

use bytes::Bytes;
use seqwarm_batcher::{BatchError, DType, Tensor};
use seqwarm_stage::{Documents, Origin};

use crate::buffers::Buffer;
use crate::error::{LoaderError, Result};

/// Tokens widened at once: 2 MiB as `int64`, about a core's L2 cache (2 MiB on the
/// development VM). Fewer, larger chunks also mean fewer batches that straddle two chunks (each
/// such batch is copied; the others are views of a chunk). Measured on the peers job
/// (docs/benchmarks.md), one core, µs per 32 768-token step of the raw stream with row groups
/// memory-mapped: 2^16 tokens 13.6-13.8, 2^17 12.7-12.9, 2^18 11.4-12.1, 2^19 11.4-12.4, 2^20
/// 14.4-14.9 (with positioned reads, before the map, 2^17 and 2^18 had tied). A chunk ends at
/// the first document boundary past it (one long document is one chunk).
pub(crate) const CHUNK_TOKENS: usize = 1 << 18;

/// The documents of one `uint16` row group, not yet widened.
#[derive(Debug)]
pub(crate) struct NarrowRun {
    /// Little-endian `uint16` values, two bytes per token.
    values: Bytes,
    /// Document `i` is tokens `offsets[i]..offsets[i + 1]`.
    offsets: Arc<[usize]>,
    /// The first document not handed out yet.
    next: usize,
    /// Where document 0 comes from.
    origin: Origin,
    dtype: DType,
}

impl NarrowRun {
    /// `values` (little-endian `uint16`) holding the documents of `offsets` (`n + 1`
    /// offsets from 0 to the token count), to be widened to `dtype`; `None` when the offsets
    /// do not describe the values (the caller names the row group).
    pub(crate) fn new(values: Bytes, offsets: Vec<usize>, dtype: DType) -> Option<Self> {
        let tokens = values.len() / 2;
        let valid = values.len().is_multiple_of(2)
            && offsets.first() == Some(&0)
            && offsets.last() == Some(&tokens)
            && offsets.windows(2).all(|w| w[0] <= w[1]);
        valid.then(|| Self {
            values,
            offsets: offsets.into(),
            next: 0,
            origin: Origin::default(),
            dtype,
        })
    }

    /// The same run, its documents coming from `origin` on.
    pub(crate) fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Documents in the run.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether the documents not handed out yet hold at least `tokens` tokens (each one's EOS
    /// counted when `eos`).
    pub(crate) fn holds(&self, tokens: usize, eos: bool) -> bool {
        self.stream_tokens(self.next, self.len(), eos) >= tokens
    }

    /// The tokens documents `first..end` put into the stage: their own, and an EOS each when
    /// `eos`.
    fn stream_tokens(&self, first: usize, end: usize, eos: bool) -> usize {
        let appended = if eos { end - first } else { 0 };
        self.offsets[end] - self.offsets[first] + appended
    }

    /// Where the next document comes from.
    pub(crate) fn next_origin(&self) -> Origin {
        Origin {
            first_document: self.origin.first_document + self.next as u64,
            ..self.origin
        }
    }

    /// The next documents, as `take` says: widened, or placeholders of the same lengths
    /// (never widened, never read: steps nobody takes consume them); `None` once every
    /// document was handed out.
    pub(crate) fn next_documents(&mut self, take: Take) -> Option<Result<Documents>> {
        let first = self.next;
        if first >= self.len() {
            return None;
        }
        let start = self.offsets[first];
        let placeholders = match take {
            Take::Placeholders { tokens, eos } => {
                // The whole documents within `tokens`, each one's EOS counted when appended.
                let end = (first..=self.len())
                    .take_while(|&j| self.stream_tokens(first, j, eos) <= tokens)
                    .last()
                    .unwrap_or(first);
                (end > first).then_some(end)
            }
            _ => None,
        };
        let end = placeholders.unwrap_or_else(|| {
            let wanted = match take {
                Take::Chunk => CHUNK_TOKENS,
                Take::AtLeast(tokens) => tokens.clamp(1, CHUNK_TOKENS),
                // Its first document does not fit: that one alone, widened.
                Take::Placeholders { .. } => 1,
            };
            let goal = start.saturating_add(wanted);
            self.offsets
                .partition_point(|&o| o < goal)
                .clamp(first + 1, self.len())
        });
        let origin = self.next_origin();
        self.next = end;
        let stop = self.offsets[end];
        let offsets = self.offsets[first..=end]
            .iter()
            .map(|o| o - start)
            .collect();
        if placeholders.is_some() {
            return Some(
                Documents::placeholders(self.dtype, offsets)
                    .map(|d| d.with_origin(origin))
                    .map_err(LoaderError::from),
            );
        }
        Some(
            widen_uint16(&self.values[start * 2..stop * 2], self.dtype)
                .map_err(LoaderError::from)
                .and_then(|tokens| Ok(Documents::new(tokens, offsets)?.with_origin(origin))),
        )
    }
}

/// How many of a [`NarrowRun`]'s next documents to hand over, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// About [`CHUNK_TOKENS`] tokens of whole documents, widened.
    Chunk,
    /// Whole documents holding at least this many tokens (at most a chunk's), widened: a
    /// kept step's rest, when the steps after it may be skipped ones.
    AtLeast(usize),
    /// The whole documents within `tokens` (each one's EOS counted when `eos`), as
    /// placeholders; the first document alone, widened, when it does not fit.
    Placeholders {
        /// Tokens the skipped step still takes.
        tokens: usize,
        /// Whether the stage appends an EOS to each document.
        eos: bool,
    },
}

/// Little-endian `uint16` tokens widened to `dtype`, at about the speed of a copy of the wider
/// output. (The fast path that produces them runs on little-endian targets only.)
pub(crate) fn widen_uint16(bytes: &[u8], dtype: DType) -> Result<Tensor, BatchError> {
    fn widen<T: From<u16> + bytemuck::Pod>(bytes: &[u8], out: &mut [T]) {
        fn widen_aligned<T: From<u16>>(values: &[u16], out: &mut [T]) {
            // A plain element-wise widening, which the compiler turns into vector
            // zero-extensions.
            for (o, &v) in out.iter_mut().zip(values) {
                *o = T::from(v);
            }
        }
        if let Ok(values) = bytemuck::try_cast_slice::<u8, u16>(bytes) {
            widen_aligned(values, out);
        } else {
            // Values at an odd address (where a memory-mapped page header left them): copied
            // a block at a time onto the stack, still in L1, and widened from there.
            let mut block = [0u16; 4096];
            let whole = &bytes[..bytes.len() / 2 * 2];
            for (bytes, out) in whole
                .chunks(2 * block.len())
                .zip(out.chunks_mut(block.len()))
            {
                let block = &mut block[..bytes.len() / 2];
                bytemuck::cast_slice_mut::<u16, u8>(block).copy_from_slice(bytes);
                widen_aligned(block, out);
            }
        }
    }
    let n = bytes.len() / 2;
    // A recycled buffer: no page faults, no zeroing (every element is written below).
    let mut out = Buffer::with_len(n * dtype.size());
    match dtype {
        DType::I32 => widen::<i32>(bytes, out.as_mut_slice()),
        DType::I64 => widen::<i64>(bytes, out.as_mut_slice()),
    }
    Tensor::vector_from_bytes(out.into_bytes(), dtype)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use seqwarm_batcher::DType;
    use seqwarm_stage::Origin;

    use super::{CHUNK_TOKENS, NarrowRun, Take};

    fn values(tokens: &[u16]) -> Bytes {
        Bytes::from(
            tokens
                .iter()
                .flat_map(|t| t.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn chunks_are_whole_documents_in_order_with_their_origin() {
        // Documents of 160 000, 20, 120 000, 0 and 280 000 tokens.
        let lengths = [160_000usize, 20, 120_000, 0, 280_000];
        let mut offsets = vec![0];
        for l in lengths {
            offsets.push(offsets.last().unwrap() + l);
        }
        let total = *offsets.last().unwrap();
        let tokens: Vec<u16> = (0..total).map(|i| (i % 65_536) as u16).collect();
        let origin = Origin {
            epoch: 2,
            unit: 7,
            first_document: 3,
        };
        let mut run = NarrowRun::new(values(&tokens), offsets, DType::I64)
            .unwrap()
            .with_origin(origin);
        assert_eq!(run.len(), 5);
        let mut seen = Vec::new();
        let mut firsts = Vec::new();
        let mut counts = Vec::new();
        while let Some(docs) = run.next_documents(Take::Chunk) {
            let docs = docs.unwrap();
            assert_eq!(docs.origin().epoch, 2);
            assert_eq!(docs.origin().unit, 7);
            firsts.push(docs.origin().first_document);
            counts.push(docs.len());
            seen.extend(docs.tokens().to_vec_i64());
        }
        // 160 000 + 20 + 120 000 pass 262 144 at the third document; the empty one and the
        // long one follow.
        assert_eq!(firsts, [3, 6]);
        assert_eq!(counts, [3, 2]);
        const { assert!(CHUNK_TOKENS > 160_020 && CHUNK_TOKENS < 280_020) };
        let expected: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
        assert_eq!(seen, expected);
        assert!(run.next_documents(Take::Chunk).is_none());
    }

    #[test]
    fn widened_to_i32_unaligned_too() {
        let tokens = [0u16, 1, 65_535, 256];
        let bytes = values(&tokens);
        let mut padded = vec![0u8];
        padded.extend_from_slice(&bytes);
        let unaligned = Bytes::from(padded).slice(1..);
        for source in [bytes, unaligned] {
            let mut run = NarrowRun::new(source, vec![0, 1, 4], DType::I32).unwrap();
            let docs = run.next_documents(Take::Chunk).unwrap().unwrap();
            assert_eq!(docs.tokens().to_vec_i64(), [0, 1, 65_535, 256]);
            assert_eq!(docs.len(), 2);
        }
        // Longer than the stack block, at an odd address, to both widths.
        let long: Vec<u16> = (0..10_001u32).map(|i| (i * 7919 % 65_536) as u16).collect();
        let mut padded = vec![0u8];
        padded.extend_from_slice(&values(&long));
        let unaligned = Bytes::from(padded).slice(1..);
        let expected: Vec<i64> = long.iter().map(|&t| i64::from(t)).collect();
        for dtype in [DType::I32, DType::I64] {
            let mut run = NarrowRun::new(unaligned.clone(), vec![0, 10_001], dtype).unwrap();
            let docs = run.next_documents(Take::Chunk).unwrap().unwrap();
            assert_eq!(docs.tokens().to_vec_i64(), expected, "{dtype}");
        }
    }

    #[test]
    fn placeholders_hold_the_whole_documents_that_fit() {
        // Documents of 5, 3, 4 and 6 tokens.
        let tokens: Vec<u16> = (1..=18).collect();
        let offsets = vec![0, 5, 8, 12, 18];
        let mut run = NarrowRun::new(values(&tokens), offsets, DType::I32).unwrap();
        // 9 tokens with an EOS after each: 5 + 1 fits, 5 + 1 + 3 + 1 does not.
        let take = |tokens, eos| Take::Placeholders { tokens, eos };
        let docs = run.next_documents(take(9, true)).unwrap().unwrap();
        assert!(docs.is_placeholder());
        assert_eq!((docs.len(), docs.token_count()), (1, 5));
        // Without EOS both 3 and 4 fit in 7; the placeholders are zeros, never the tokens.
        let docs = run.next_documents(take(7, false)).unwrap().unwrap();
        assert_eq!((docs.len(), docs.origin().first_document), (2, 1));
        assert_eq!(docs.tokens().to_vec_i64(), [0; 7]);
        // A first document longer than what is left is widened alone.
        let docs = run.next_documents(take(5, false)).unwrap().unwrap();
        assert!(!docs.is_placeholder());
        assert_eq!(docs.tokens().to_vec_i64(), (13..=18).collect::<Vec<i64>>());
        assert!(run.next_documents(take(100, false)).is_none());
        // At least 6 tokens: two documents (5 + 3), widened.
        let offsets = vec![0, 5, 8, 12, 18];
        let mut run = NarrowRun::new(values(&tokens), offsets, DType::I32).unwrap();
        let docs = run.next_documents(Take::AtLeast(6)).unwrap().unwrap();
        assert_eq!(docs.tokens().to_vec_i64(), (1..=8).collect::<Vec<i64>>());
    }

    #[test]
    fn offsets_that_do_not_fit_are_refused() {
        for offsets in [vec![0, 3], vec![1, 2], vec![0, 2, 1, 2]] {
            assert!(NarrowRun::new(values(&[1, 2]), offsets, DType::I64).is_none());
        }
        assert!(NarrowRun::new(Bytes::from_static(&[1, 2, 3]), vec![0, 1], DType::I64).is_none());
    }
}
