//! The decomposition of documents into pieces whose lengths are powers of two, and the index of
//! every piece by length (OLMo-core's `bucket_documents` and `NumpyVSLDataset` buckets).

use crate::error::{Result, StageError};

/// The lengths a document of `len` tokens (its closing EOS included) is cut into, in order from
/// its start: `max` as often as it fits, then the set bits of the rest, largest first; pieces
/// shorter than `min` are dropped (OLMo-core's `capped_powers_of_2` and the `break` in
/// `bucket_documents`). `min` and `max` are powers of two.
pub fn piece_lengths(len: u64, min: u64, max: u64) -> impl Iterator<Item = u64> {
    let whole = len / max;
    let rest = len % max;
    let bits = (0..u64::BITS)
        .rev()
        .map(|bit| 1u64 << bit)
        .filter(move |&p| rest & p != 0 && p >= min);
    std::iter::repeat_n(max, whole as usize).chain(bits)
}

/// Every piece of a corpus, numbered as OLMo-core numbers its instances (by file, then
/// document, then piece), with the ids of each length in ascending order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceIndex {
    min: u64,
    max: u64,
    /// Per piece: its file.
    files: Vec<u32>,
    /// Per piece: its first token's index in its file.
    starts: Vec<u64>,
    /// Per piece: log2 of its length.
    log_lengths: Vec<u8>,
    /// Per file: documents ended by EOS.
    documents: Vec<u64>,
    /// Per file: tokens in no piece (the pieces under the minimum, and trailing tokens with no
    /// EOS after them).
    dropped: Vec<u64>,
}

impl PieceIndex {
    /// An empty index for lengths `min..=max`, both powers of two, `min < max` (as OLMo-core's
    /// `NumpyVSLDataset` requires).
    pub fn new(min: u64, max: u64) -> Result<Self> {
        let power = |field, value: u64| {
            if value.is_power_of_two() {
                Ok(())
            } else {
                Err(StageError::Config {
                    field,
                    reason: format!("must be a power of 2 for decomposition, got {value}"),
                })
            }
        };
        power("min", min)?;
        power("max", max)?;
        if min >= max {
            return Err(StageError::Config {
                field: "max",
                reason: format!("must be greater than min ({min}) for decomposition, got {max}"),
            });
        }
        Ok(Self {
            min,
            max,
            files: Vec::new(),
            starts: Vec::new(),
            log_lengths: Vec::new(),
            documents: Vec::new(),
            dropped: Vec::new(),
        })
    }

    /// Adds a file from the end offsets (exclusive: one past each EOS) of its documents, and
    /// its length in tokens; tokens after the last EOS are dropped, as OLMo-core's scan drops
    /// them.
    pub fn push_file(&mut self, document_ends: &[u64], tokens: u64) -> Result<()> {
        let file = u32::try_from(self.documents.len()).map_err(|_| StageError::Documents {
            reason: "more than 2^32 files".into(),
        })?;
        let mut start = 0u64;
        let mut dropped = 0u64;
        for &end in document_ends {
            if end <= start || end > tokens {
                return Err(StageError::Documents {
                    reason: format!(
                        "file {file}: document end {end} is not after {start} and within {tokens} tokens"
                    ),
                });
            }
            let mut at = start;
            for len in piece_lengths(end - start, self.min, self.max) {
                self.files.push(file);
                self.starts.push(at);
                self.log_lengths.push(len.trailing_zeros() as u8);
                at += len;
            }
            dropped += end - at;
            start = end;
        }
        if self.starts.len() > u32::MAX as usize {
            return Err(StageError::Documents {
                reason: format!(
                    "{} pieces: OLMo-core numbers pieces in 32 bits, so at most 2^32 - 1 fit",
                    self.starts.len()
                ),
            });
        }
        self.documents.push(document_ends.len() as u64);
        self.dropped.push(dropped + (tokens - start));
        Ok(())
    }

    /// The shortest piece length.
    pub fn min(&self) -> u64 {
        self.min
    }

    /// The longest piece length.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The piece lengths, shortest first (OLMo-core's `all_sequence_lengths`).
    pub fn lengths(&self) -> impl Iterator<Item = u64> + use<> {
        let (min, max) = (self.min, self.max);
        (min.trailing_zeros()..=max.trailing_zeros()).map(|bit| 1u64 << bit)
    }

    /// How many pieces.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether there is no piece.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// Piece `id`: its file, first token and length.
    pub fn piece(&self, id: u32) -> (u32, u64, u64) {
        let i = id as usize;
        (self.files[i], self.starts[i], 1u64 << self.log_lengths[i])
    }

    /// The ids of the pieces of each length (shortest first), each ascending: OLMo-core's
    /// bucket files, in one pass over the pieces.
    pub fn buckets(&self) -> Vec<Vec<u32>> {
        let min_log = self.min.trailing_zeros() as u8;
        let mut buckets = vec![Vec::new(); self.lengths().count()];
        for (id, &log) in self.log_lengths.iter().enumerate() {
            buckets[usize::from(log - min_log)].push(id as u32);
        }
        buckets
    }

    /// Pieces per length, shortest first (OLMo-core's `instances_per_bucket`).
    pub fn pieces_per_length(&self) -> Vec<(u64, u64)> {
        let mut counts = vec![0u64; 64];
        for &log in &self.log_lengths {
            counts[log as usize] += 1;
        }
        self.lengths()
            .map(|len| (len, counts[len.trailing_zeros() as usize]))
            .collect()
    }

    /// Documents (ended by EOS) in all files.
    pub fn documents(&self) -> u64 {
        self.documents.iter().sum()
    }

    /// Tokens in no piece: under the minimum, or after a file's last EOS.
    pub fn tokens_dropped(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Files pushed.
    pub fn files(&self) -> usize {
        self.documents.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pieces_are_olmo_cores_capped_powers_of_two() {
        let pieces = |len| piece_lengths(len, 1, 8).collect::<Vec<_>>();
        assert_eq!(pieces(21), [8, 8, 4, 1]);
        assert_eq!(pieces(8), [8]);
        assert_eq!(pieces(7), [4, 2, 1]);
        // The minimum drops the short tail, never a piece before a longer one.
        assert_eq!(piece_lengths(21, 2, 8).collect::<Vec<_>>(), [8, 8, 4]);
        assert_eq!(piece_lengths(1, 2, 8).count(), 0);
    }

    #[test]
    fn settings_olmo_core_refuses_are_refused() {
        assert!(PieceIndex::new(3, 8).is_err());
        assert!(PieceIndex::new(4, 12).is_err());
        assert!(PieceIndex::new(8, 8).is_err());
        assert!(PieceIndex::new(16, 8).is_err());
    }

    #[test]
    fn the_index_numbers_by_file_then_document_then_piece() {
        let mut index = PieceIndex::new(2, 8).unwrap();
        index.push_file(&[11, 14], 16).unwrap(); // 11 = 8 + 2 (+1 dropped), 3 = 2 (+1)
        index.push_file(&[8], 8).unwrap();
        assert_eq!(index.len(), 4);
        assert_eq!(index.piece(0), (0, 0, 8));
        assert_eq!(index.piece(1), (0, 8, 2));
        assert_eq!(index.piece(2), (0, 11, 2));
        assert_eq!(index.piece(3), (1, 0, 8));
        assert_eq!(index.buckets(), [vec![1, 2], vec![], vec![0, 3]]);
        assert_eq!(index.pieces_per_length(), [(2, 2), (4, 0), (8, 2)]);
        // 1 + 1 under the minimum, 2 after the last EOS.
        assert_eq!(index.tokens_dropped(), 4);
        assert_eq!(index.documents(), 3);
    }

    #[test]
    fn a_document_end_out_of_place_is_an_error() {
        let mut index = PieceIndex::new(2, 8).unwrap();
        assert!(index.push_file(&[4, 4], 8).is_err());
        assert!(index.push_file(&[9], 8).is_err());
    }

    proptest! {
        /// Every token of a document is in exactly one piece or dropped, the pieces are powers
        /// of two within the bounds, laid back to back from the start, non-increasing.
        #[test]
        fn pieces_cover_each_document_once(len in 1u64..100_000, min_log in 0u32..6, span in 1u32..8) {
            let (min, max) = (1u64 << min_log, 1u64 << (min_log + span));
            let pieces: Vec<u64> = piece_lengths(len, min, max).collect();
            let kept: u64 = pieces.iter().sum();
            prop_assert!(kept <= len);
            prop_assert!(len - kept < min, "dropped {} with min {}", len - kept, min);
            for w in pieces.windows(2) {
                prop_assert!(w[0] >= w[1]);
            }
            for &p in &pieces {
                prop_assert!(p.is_power_of_two() && p >= min && p <= max);
            }
        }

        /// Over a corpus, the pieces tile each file's documents without overlap or gap except
        /// the dropped tails, and every token is kept or counted as dropped.
        #[test]
        fn the_index_accounts_for_every_token(lengths in proptest::collection::vec(1u64..300, 1..40), tail in 0u64..5) {
            let mut ends = Vec::new();
            let mut at = 0;
            for len in &lengths {
                at += len;
                ends.push(at);
            }
            let mut index = PieceIndex::new(4, 64).unwrap();
            index.push_file(&ends, at + tail).unwrap();
            let kept: u64 = (0..index.len() as u32).map(|i| index.piece(i).2).sum();
            prop_assert_eq!(kept + index.tokens_dropped(), at + tail);
            let mut covered = vec![false; (at + tail) as usize];
            for i in 0..index.len() as u32 {
                let (_, start, len) = index.piece(i);
                for t in start..start + len {
                    prop_assert!(!covered[t as usize]);
                    covered[t as usize] = true;
                }
            }
            let per_length: u64 = index.pieces_per_length().iter().map(|&(_, n)| n).sum();
            prop_assert_eq!(per_length, index.len() as u64);
        }
    }
}
