//! Byte-pair merging of one piece, in `O(n log n)`: the lowest-ranked adjacent pair is merged
//! first (the leftmost of equal ranks), as `tiktoken` merges, with a heap of candidate pairs
//! instead of a scan of the whole piece after every merge.
//!
//! `tiktoken-rs`'s public API merges a piece only after running its split regex over it again,
//! which on a long run of whitespace (a few MB of spaces) overflows the regex's stack and
//! panics; its ranks are read here once per encoding instead (`decode_bytes` of every id), and
//! the pieces the scanners in `pretokenize` cut are merged without a regex.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// Pieces shorter than this many bytes take the simple merge.
const SHORT: usize = 100;

/// The merge ranks of one encoding: each token's bytes and its id (its rank).
pub(crate) struct Ranks {
    ranks: FxHashMap<Box<[u8]>, u32>,
}

impl Ranks {
    /// The ranks of `bpe`'s ordinary tokens (ids below `vocab_size`, special tokens left out).
    pub(crate) fn of(bpe: &tiktoken_rs::CoreBPE, vocab_size: u32) -> Self {
        let special = bpe.special_tokens();
        let ranks = (0..vocab_size)
            .filter_map(|rank| Some((bpe.decode_bytes(&[rank]).ok()?, rank)))
            .filter(|(bytes, _)| {
                std::str::from_utf8(bytes).map_or(true, |text| !special.contains(text))
            })
            .map(|(bytes, rank)| (bytes.into_boxed_slice(), rank))
            .collect();
        Self { ranks }
    }

    /// The merge of a short piece (most of them): a scan for the lowest rank after each merge,
    /// over one small vector of part boundaries, as `tiktoken` merges short pieces; faster than
    /// the heap below at these sizes.
    fn merge_short(&self, piece: &[u8]) -> Vec<u32> {
        // `parts[i]`: where part `i` starts, and the rank of it joined with part `i + 1`.
        let mut parts: Vec<(usize, u32)> = (0..=piece.len()).map(|i| (i, u32::MAX)).collect();
        // The rank of parts `i` and `i + skip` joined, the parts between them already merged.
        let joined = |parts: &[(usize, u32)], i: usize, skip: usize| -> u32 {
            parts
                .get(i + skip)
                .and_then(|&(end, _)| self.rank(&piece[parts[i].0..end]))
                .unwrap_or(u32::MAX)
        };
        for i in 0..parts.len().saturating_sub(2) {
            parts[i].1 = joined(&parts, i, 2);
        }
        while let Some((i, _)) = parts[..parts.len() - 1]
            .iter()
            .enumerate()
            .filter(|(_, (_, rank))| *rank != u32::MAX)
            .min_by_key(|&(i, &(_, rank))| (rank, i))
        {
            if i > 0 {
                parts[i - 1].1 = joined(&parts, i - 1, 3);
            }
            parts[i].1 = joined(&parts, i, 3);
            parts.remove(i + 1);
        }
        parts
            .windows(2)
            .map(|w| self.rank(&piece[w[0].0..w[1].0]).unwrap_or(u32::MAX))
            .collect()
    }

    fn rank(&self, bytes: &[u8]) -> Option<u32> {
        self.ranks.get(bytes).copied()
    }

    /// The ids of one piece. Every byte is a token of the encodings this is used for; a byte
    /// that is not (no such encoding ships with `tiktoken-rs`) is given id `u32::MAX`, which
    /// the vocabulary check after encoding refuses.
    pub(crate) fn encode_piece(&self, piece: &[u8]) -> Vec<u32> {
        if let Some(rank) = self.rank(piece) {
            return vec![rank];
        }
        if piece.len() < SHORT {
            return self.merge_short(piece);
        }
        let n = piece.len();
        // Parts as a doubly linked list over their start offsets: part `i` spans
        // `starts[i]..starts[next[i]]`; `alive[i]` until merged into its left neighbour.
        let mut next: Vec<usize> = (1..=n).collect();
        let mut prev: Vec<usize> = (0..n).map(|i| i.wrapping_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = BinaryHeap::new();
        let pair_rank = |left: usize, next: &[usize]| -> Option<u32> {
            let right = next[left];
            (right < n)
                .then(|| self.rank(&piece[left..next[right]]))
                .flatten()
        };
        for i in 0..n.saturating_sub(1) {
            if let Some(rank) = pair_rank(i, &next) {
                heap.push(Reverse((rank, i, next[i + 1])));
            }
        }
        while let Some(Reverse((_, left, end))) = heap.pop() {
            // Stale when either part changed since the pair was pushed.
            if !alive[left] || next[left] >= n || next[next[left]] != end {
                continue;
            }
            let right = next[left];
            alive[right] = false;
            next[left] = next[right];
            if next[left] < n {
                prev[next[left]] = left;
            }
            if let Some(r) = pair_rank(left, &next) {
                heap.push(Reverse((r, left, next[next[left]])));
            }
            let before = prev[left];
            if before < n
                && let Some(r) = pair_rank(before, &next)
            {
                heap.push(Reverse((r, before, next[left])));
            }
        }
        let mut ids = Vec::new();
        let mut at = 0;
        while at < n {
            ids.push(self.rank(&piece[at..next[at]]).unwrap_or(u32::MAX));
            at = next[at];
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::Ranks;

    #[test]
    fn the_same_ids_as_tiktoken_on_pieces() {
        let bpe = tiktoken_rs::cl100k_base_singleton();
        let ranks = Ranks::of(bpe, 100_277);
        let long = "a".repeat(150) + &" naïve".repeat(40);
        for piece in [
            long.as_str(),
            " hello",
            "Hello",
            " antidisestablishmentarianism",
            "!!!!!!!!!",
            "        ",
            " naïve",
            "字字字字字",
            "\u{1f600}\u{1f600}",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(
                ranks.encode_piece(piece.as_bytes()),
                bpe.encode_ordinary(piece),
                "{piece:?}"
            );
        }
        // The special token's text is merged as ordinary text, never into the special id.
        assert!(
            ranks
                .encode_piece(b"<|endoftext|>")
                .iter()
                .all(|&id| id < 100_257)
        );
    }
}
