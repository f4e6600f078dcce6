//! [`Stats`]: where every token went.

use serde::{Deserialize, Serialize};

/// Counters of a warmup stage; nothing is dropped without being counted here.
///
/// At every batch boundary the tokens add up:
/// `tokens_in == tokens_out + tokens_cut + tokens_dropped + tokens_buffered`
/// ([`Stats::is_balanced`]); padding is in none of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Documents taken in.
    pub documents: u64,
    /// Documents with no tokens.
    pub empty_documents: u64,
    /// Tokens taken in (EOS tokens added by the stage included).
    pub tokens_in: u64,
    /// Batches emitted.
    pub batches: u64,
    /// Real (non-padding) tokens emitted.
    pub tokens_out: u64,
    /// Tokens cut by Composer's truncate and reshape (as Composer does).
    pub tokens_cut: u64,
    /// Tokens left over at the end (the final partial batch dropped, or an epoch boundary in
    /// a multi-rank run: what a rank held, and the rest of its share it never read, by the
    /// footers' counts, which is then counted in `tokens_in` and `documents` too).
    pub tokens_dropped: u64,
    /// Tokens taken in and not yet emitted, cut or dropped: the carry and the shuffle buffer.
    /// A reading, not a counter: recomputed whenever stats are taken.
    #[serde(skip)]
    pub tokens_buffered: u64,
    /// Row groups skipped under the skip-and-count policy.
    pub units_skipped: u64,
    /// Row groups read a second time in an epoch so that every rank emits as many batches.
    /// Counted as each one's first document arrives, so a run resumed from a checkpoint
    /// taken inside a repeated row group counts that row group again.
    pub units_repeated: u64,
}

/// The largest count a checkpoint may hold: 2^62 tokens is millions of times more than any
/// run reads, and leaves room to count on without overflowing, so a larger value can only be
/// a state edited by hand or corrupted.
pub(crate) const MAX_COUNT: u64 = 1 << 62;

impl Stats {
    /// The counters by name (`tokens_buffered`, a reading, left out).
    pub(crate) fn counters(&self) -> [(&'static str, u64); 9] {
        [
            ("documents", self.documents),
            ("empty_documents", self.empty_documents),
            ("tokens_in", self.tokens_in),
            ("batches", self.batches),
            ("tokens_out", self.tokens_out),
            ("tokens_cut", self.tokens_cut),
            ("tokens_dropped", self.tokens_dropped),
            ("units_skipped", self.units_skipped),
            ("units_repeated", self.units_repeated),
        ]
    }

    /// Whether the tokens add up: every token taken in was emitted, cut, dropped or is still
    /// buffered.
    pub fn is_balanced(&self) -> bool {
        u128::from(self.tokens_in)
            == u128::from(self.tokens_out)
                + u128::from(self.tokens_cut)
                + u128::from(self.tokens_dropped)
                + u128::from(self.tokens_buffered)
    }
}
