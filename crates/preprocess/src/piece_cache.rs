//! The ids of pieces already encoded, remembered per thread and encoding: most pieces of real
//! text (a word with its leading space, a run of punctuation) repeat, and looking one up is
//! much cheaper than merging it again.
//!
//! An open-addressing table whose keys are the piece's bytes themselves, zero-padded into three
//! words (pieces of up to [`KEY_BYTES`] bytes; longer ones are rare and not remembered), and
//! whose ids sit in one shared vector: a lookup hashes three words, compares them and copies
//! the ids, without following a pointer or calling `memcmp` (a `HashMap<Box<str>, Box<[u32]>>`
//! spent most of the encoder's time in both).

/// Longest piece remembered, in bytes.
pub(crate) const KEY_BYTES: usize = 24;
/// Slots in the table (a power of two); it is emptied when half are taken, so that a corpus
/// of unique strings does not grow it without bound (about 8 MiB of slots, and the ids).
const SLOTS: usize = 1 << 18;

/// 32 bytes: two to a cache line, so that a probe reads one line.
#[derive(Clone, Copy, Default)]
#[repr(align(32))]
struct Slot {
    key: [u64; 3],
    /// Where its ids start in `ids`.
    ids_start: u32,
    /// The piece's length in bytes; 0: an empty slot.
    len: u8,
    /// How many ids it has (a piece of at most `KEY_BYTES` bytes has at most that many).
    ids_len: u8,
}

/// Remembered pieces of one encoding.
pub(crate) struct PieceCache {
    slots: Vec<Slot>,
    ids: Vec<u32>,
    taken: usize,
}

impl Default for PieceCache {
    fn default() -> Self {
        Self {
            slots: vec![Slot::default(); SLOTS],
            ids: Vec::new(),
            taken: 0,
        }
    }
}

/// The piece's bytes as three words, zero-padded (`piece.len() <= KEY_BYTES`).
#[inline]
fn key_of(piece: &[u8]) -> [u64; 3] {
    let mut bytes = [0u8; KEY_BYTES];
    bytes[..piece.len()].copy_from_slice(piece);
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    [word(0), word(1), word(2)]
}

#[inline]
fn hash_of(key: &[u64; 3], len: usize) -> usize {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let h = (key[0] ^ len as u64).wrapping_mul(K).rotate_left(29)
        ^ key[1].wrapping_mul(K).rotate_left(17)
        ^ key[2];
    // The high bits of the product mix every input bit.
    (h.wrapping_mul(K) >> 32) as usize
}

impl PieceCache {
    /// Appends the ids of `piece` to `out`: remembered ones, else `encode(piece)`'s, which are
    /// then remembered.
    #[inline]
    pub(crate) fn encode_into(
        &mut self,
        piece: &str,
        out: &mut Vec<u32>,
        encode: impl FnOnce(&str) -> Vec<u32>,
    ) {
        let bytes = piece.as_bytes();
        if bytes.is_empty() || bytes.len() > KEY_BYTES {
            out.extend(encode(piece));
            return;
        }
        let key = key_of(bytes);
        let mask = SLOTS - 1;
        let mut at = hash_of(&key, bytes.len()) & mask;
        loop {
            let slot = self.slots[at];
            if slot.len == 0 {
                break;
            }
            if usize::from(slot.len) == bytes.len() && slot.key == key {
                let start = slot.ids_start as usize;
                out.extend_from_slice(&self.ids[start..start + usize::from(slot.ids_len)]);
                return;
            }
            at = (at + 1) & mask;
        }
        let ids = encode(piece);
        out.extend_from_slice(&ids);
        if self.taken >= SLOTS / 2 || self.ids.len() + ids.len() > u32::MAX as usize {
            self.slots.fill(Slot::default());
            self.ids.clear();
            self.taken = 0;
            at = hash_of(&key, bytes.len()) & mask;
        }
        // Both fit: at most `KEY_BYTES` bytes, and a byte-level BPE gives at most one id a byte.
        let (Ok(len), Ok(ids_len)) = (u8::try_from(bytes.len()), u8::try_from(ids.len())) else {
            return;
        };
        self.slots[at] = Slot {
            key,
            ids_start: self.ids.len() as u32,
            len,
            ids_len,
        };
        self.ids.extend_from_slice(&ids);
        self.taken += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::{KEY_BYTES, PieceCache};

    #[test]
    fn remembers_what_it_was_given_and_tells_pieces_apart() {
        let mut cache = PieceCache::default();
        let mut calls = 0;
        let mut encode = |piece: &str| {
            calls += 1;
            piece.bytes().map(u32::from).collect::<Vec<_>>()
        };
        let pieces = [
            "a",
            "a\0",
            "ab",
            " the",
            "x".repeat(KEY_BYTES).leak(),
            "y".repeat(KEY_BYTES + 1).leak(),
            "a",
        ];
        let mut out = Vec::new();
        for piece in pieces {
            cache.encode_into(piece, &mut out, &mut encode);
        }
        let expected: Vec<u32> = pieces.concat().bytes().map(u32::from).collect();
        assert_eq!(out, expected);
        // "a" the second time came from the cache; the long piece was never remembered.
        assert_eq!(calls, pieces.len() - 1);
    }

    #[test]
    fn a_full_table_starts_afresh() {
        let mut cache = PieceCache::default();
        let mut out = Vec::new();
        for i in 0..(super::SLOTS / 2 + 10) {
            let piece = format!("{i}");
            out.clear();
            cache.encode_into(&piece, &mut out, |p| vec![p.len() as u32, 7]);
            assert_eq!(out, [piece.len() as u32, 7]);
        }
        assert!(cache.taken <= super::SLOTS / 2);
    }
}
