//! [`Documents`]: a run of whole documents, the unit that flows from a reader into the stage.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use seqwarm_batcher::{DType, Element, Tensor};

use crate::error::{Result, StageError};

/// Where a run of documents came from: the position of its work unit (row group) in the
/// epoch's read order, and the index of its first document there. Checkpoints record it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Origin {
    /// The epoch the documents were read in.
    pub epoch: u64,
    /// Position of the work unit in this rank's read order for that epoch.
    pub unit: u64,
    /// Index, within that unit, of the first document of the run.
    pub first_document: u64,
}

/// Whole documents with their tokens in one contiguous 1-D tensor (typically an Arrow buffer
/// shared without copying): document `i` is `tokens[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone)]
pub struct Documents {
    tokens: Tensor,
    labels: Option<Tensor>,
    offsets: Arc<[usize]>,
    origin: Origin,
    /// Whether the tokens are [`Documents::placeholders`]' zeros, not the documents' own.
    placeholder: bool,
}

/// Zeros shared by every placeholder (a slice of one buffer, grown when a longer one is asked
/// for): placeholders are never read, so they cost no memory per run and no writes.
static ZEROS: Mutex<Option<Bytes>> = Mutex::new(None);

fn zeros(len: usize) -> Bytes {
    let mut shared = ZEROS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match shared.as_ref() {
        Some(zeros) if zeros.len() >= len => zeros.slice(..len),
        _ => {
            let grown = Bytes::from(vec![0u8; len.next_power_of_two()]);
            let out = grown.slice(..len);
            *shared = Some(grown);
            out
        }
    }
}

impl Documents {
    /// Documents from a 1-D token tensor and `n + 1` offsets (`offsets[0] == 0`,
    /// non-decreasing, the last equal to the token count).
    pub fn new(tokens: Tensor, offsets: Vec<usize>) -> Result<Self> {
        let n = tokens.numel();
        let invalid = |reason: String| Err(StageError::Documents { reason });
        if tokens.cols().is_some() {
            return invalid(format!(
                "tokens must be 1-D, got shape {:?}",
                tokens.shape().dims()
            ));
        }
        if offsets.first() != Some(&0) {
            return invalid(format!(
                "offsets must start at 0, got {:?}",
                offsets.first()
            ));
        }
        if offsets.last() != Some(&n) {
            return invalid(format!(
                "offsets must end at the token count {n}, got {:?}",
                offsets.last()
            ));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[0] > w[1]) {
            return invalid(format!(
                "offsets must not decrease, but offsets[{}] = {} > offsets[{}] = {}",
                i,
                offsets[i],
                i + 1,
                offsets[i + 1]
            ));
        }
        Ok(Self {
            tokens,
            labels: None,
            offsets: offsets.into(),
            origin: Origin::default(),
            placeholder: false,
        })
    }

    /// Documents of these lengths (`n + 1` offsets from 0) whose tokens were not read: zeros
    /// in their place, shared and never written. For input that only a step nobody takes
    /// consumes ([`crate::InputHint::Skipped`]): the core takes them only to count them
    /// through such a step, and refuses to build a kept batch while any are buffered.
    pub fn placeholders(dtype: DType, offsets: Vec<usize>) -> Result<Self> {
        let tokens = offsets.last().copied().unwrap_or(0);
        let bytes = tokens
            .checked_mul(dtype.size())
            .ok_or_else(|| StageError::Documents {
                reason: format!("{tokens} placeholder tokens overflow"),
            })?;
        let tensor = Tensor::vector_from_bytes(zeros(bytes), dtype)?;
        Ok(Self {
            placeholder: true,
            ..Self::new(tensor, offsets)?
        })
    }

    /// Whether these are [`Documents::placeholders`].
    pub fn is_placeholder(&self) -> bool {
        self.placeholder
    }

    /// One document.
    pub fn single<T: Element>(tokens: Vec<T>) -> Self {
        let n = tokens.len();
        Self {
            tokens: Tensor::vector(tokens),
            labels: None,
            offsets: vec![0, n].into(),
            origin: Origin::default(),
            placeholder: false,
        }
    }

    /// Attaches per-token labels (a 1-D tensor as long as the tokens).
    pub fn with_labels(mut self, labels: Tensor) -> Result<Self> {
        if labels.numel() != self.tokens.numel() || labels.cols().is_some() {
            return Err(StageError::Documents {
                reason: format!(
                    "labels of shape {:?} do not match {} tokens",
                    labels.shape().dims(),
                    self.tokens.numel()
                ),
            });
        }
        self.labels = Some(labels);
        Ok(self)
    }

    /// Sets where these documents came from.
    #[must_use]
    pub fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Where these documents came from.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Whether there are no documents.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total tokens.
    pub fn token_count(&self) -> usize {
        self.tokens.numel()
    }

    /// All tokens.
    pub fn tokens(&self) -> &Tensor {
        &self.tokens
    }

    /// All labels, if the source had them.
    pub fn labels(&self) -> Option<&Tensor> {
        self.labels.as_ref()
    }

    /// The first document index `j >= from` such that documents `from..j` hold at least
    /// `tokens` tokens (or all remaining documents).
    pub fn end_for_tokens(&self, from: usize, tokens: usize) -> usize {
        let start = self.offsets.get(from).copied().unwrap_or(usize::MAX);
        let goal = start.saturating_add(tokens);
        let j = self.offsets.partition_point(|&o| o < goal);
        j.clamp(from.min(self.len()), self.len())
    }

    /// The documents from index `first` on (shared, not copied); the origin moves with them.
    #[must_use]
    pub fn skip(&self, first: usize) -> Self {
        let first = first.min(self.len());
        let base = self.offsets[first];
        let end = self.token_count();
        // In range: `base` is an offset of these documents.
        let slice = |t: &Tensor| t.slice_rows(base, end).unwrap_or_else(|| t.clone());
        Self {
            tokens: slice(&self.tokens),
            labels: self.labels.as_ref().map(slice),
            offsets: self.offsets[first..].iter().map(|o| o - base).collect(),
            origin: Origin {
                first_document: self.origin.first_document + first as u64,
                ..self.origin
            },
            placeholder: self.placeholder,
        }
    }

    /// Document `i` alone (shared, not copied), its origin moved to it; `None` past the end.
    pub fn one(&self, i: usize) -> Option<Self> {
        let (start, end) = self.span(i)?;
        let slice = |t: &Tensor| t.slice_rows(start, end);
        Some(Self {
            tokens: slice(&self.tokens)?,
            labels: match &self.labels {
                Some(l) => Some(slice(l)?),
                None => None,
            },
            offsets: Arc::from([0, end - start]),
            origin: Origin {
                first_document: self.origin.first_document + i as u64,
                ..self.origin
            },
            placeholder: self.placeholder,
        })
    }

    /// Token range of document `i`.
    pub fn span(&self, i: usize) -> Option<(usize, usize)> {
        Some((*self.offsets.get(i)?, *self.offsets.get(i + 1)?))
    }

    /// Tokens in documents `first..end`.
    pub fn tokens_in(&self, first: usize, end: usize) -> usize {
        match (self.offsets.get(first), self.offsets.get(end)) {
            (Some(a), Some(b)) => b.saturating_sub(*a),
            _ => 0,
        }
    }

    /// Tokens (and labels) of documents `first..end`, shared, not copied.
    pub fn range(&self, first: usize, end: usize) -> Option<(Tensor, Option<Tensor>)> {
        let start = *self.offsets.get(first)?;
        let stop = *self.offsets.get(end)?;
        let tokens = self.tokens.slice_rows(start, stop)?;
        let labels = match &self.labels {
            Some(l) => Some(l.slice_rows(start, stop)?),
            None => None,
        };
        Some((tokens, labels))
    }
}

#[cfg(test)]
mod tests {
    use seqwarm_batcher::Tensor;

    use super::Documents;

    #[test]
    fn invalid_offsets_say_why() {
        let tokens = || Tensor::vector(vec![1i32, 2, 3]);
        for (offsets, why) in [
            (vec![1, 3], "start at 0"),
            (vec![0, 2], "end at the token count 3"),
            (vec![0, 2, 1, 3], "must not decrease"),
        ] {
            let err = Documents::new(tokens(), offsets).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let docs = Documents::new(tokens(), vec![0, 1, 3]).unwrap();
        assert!(
            docs.clone()
                .with_labels(Tensor::vector(vec![0i32]))
                .is_err()
        );
        let rest = docs.skip(1);
        assert_eq!(
            (rest.len(), rest.token_count(), rest.origin().first_document),
            (1, 2, 1)
        );
        assert_eq!(docs.end_for_tokens(0, 2), 2);
    }
}
