//! [`KeptSteps`]: the steps a process hands over when several share one stream (PyTorch
//! DataLoader workers: worker `w` of `N` takes steps `w, w + N, ...`), and [`InputHint`]: what
//! the core's next input is for under it.
//!
//! Why: every worker runs the whole stream, since each batch depends on every token before
//! it; but a step that another worker hands over only has to be *counted*. In the row modes
//! (`repack`, `truncate`, `truncate-keep-eos`, `reshape`) a step takes the next
//! `rows x row_len` tokens wherever they fall, so the core can drop them by count
//! ([`seqwarm_batcher::RowSink::skip`]), and the input that only such a step takes need not be
//! decoded at all: the driver pushes [`crate::Documents::placeholders`] of the same lengths.

/// Steps `offset, offset + stride, offset + 2 * stride, ...`: the ones this process hands
/// over; the others are counted, not built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptSteps {
    stride: u64,
    offset: u64,
}

impl KeptSteps {
    /// Steps `offset` modulo `stride`; `None` unless `0 <= offset < stride`.
    pub fn new(stride: u64, offset: u64) -> Option<Self> {
        (offset < stride).then_some(Self { stride, offset })
    }

    /// Whether this process hands over `step`.
    pub fn contains(&self, step: u64) -> bool {
        step % self.stride == self.offset
    }

    /// Whether every step is kept (a stride of 1): nothing to skip.
    pub fn is_all(&self) -> bool {
        self.stride == 1
    }
}

/// What the core does with its next input, for a driver that can hand it over more cheaply
/// when no kept step reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputHint {
    /// The current step is not kept and still takes this many tokens of input (each
    /// document's EOS counted, when one is appended): whole documents within it may be
    /// pushed as placeholders, since only this skipped step takes them; but only when the
    /// documents that complete the step are at hand too, so that they go in before the driver
    /// waits for anything. A checkpoint ([`crate::WarmupCore::state`]) taken while
    /// placeholders are buffered ([`crate::WarmupCore::holds_placeholders`]) would carry their
    /// zeros as tokens.
    Skipped {
        /// Tokens the step still takes.
        tokens: usize,
    },
    /// The current step is kept and still takes this many tokens: a driver decoding ahead
    /// need not decode more than that now (the steps after it may be skipped ones).
    Kept {
        /// Tokens the step still takes.
        tokens: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::KeptSteps;

    #[test]
    fn kept_steps_are_offset_modulo_stride() {
        assert!(KeptSteps::new(3, 3).is_none());
        let kept = KeptSteps::new(3, 1).unwrap();
        let steps: Vec<u64> = (0..8).filter(|&s| kept.contains(s)).collect();
        assert_eq!(steps, vec![1, 4, 7]);
        assert!(KeptSteps::new(1, 0).unwrap().is_all());
        assert!(!kept.is_all());
    }
}
