//! A run of whole documents: the unit that flows from the shard reader to the warmup core.

use std::sync::Arc;

use seqwarm_batcher::{Element, Tensor};

/// Where a run of documents came from: the position of its row group in this rank's epoch
/// plan, and the index of its first document there. Used for checkpoints and error reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Origin {
    /// The epoch the documents were read in.
    pub epoch: u64,
    /// Index of the work unit (row group) in this rank's epoch order.
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
}

impl Documents {
    /// Documents from a token tensor and `n + 1` offsets (`offsets[0] == 0`, non-decreasing,
    /// last equal to the token count). `None` when the offsets do not fit.
    pub fn new(tokens: Tensor, offsets: Vec<usize>) -> Option<Self> {
        let n = tokens.numel();
        let valid = tokens.cols().is_none()
            && offsets.first() == Some(&0)
            && offsets.last() == Some(&n)
            && offsets.windows(2).all(|w| w[0] <= w[1]);
        valid.then(|| Self {
            tokens,
            labels: None,
            offsets: offsets.into(),
            origin: Origin::default(),
        })
    }

    /// One document.
    pub fn single<T: Element>(tokens: Vec<T>) -> Self {
        let n = tokens.len();
        Self {
            tokens: Tensor::vector(tokens),
            labels: None,
            offsets: vec![0, n].into(),
            origin: Origin::default(),
        }
    }

    /// Attaches per-token labels (same length as the tokens); `None` when lengths differ.
    #[must_use]
    pub fn with_labels(mut self, labels: Tensor) -> Option<Self> {
        (labels.numel() == self.tokens.numel() && labels.cols().is_none()).then(|| {
            self.labels = Some(labels);
            self
        })
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
    pub fn skip(&self, first: usize) -> Option<Self> {
        let first = first.min(self.len());
        let (tokens, labels) = self.range(first, self.len())?;
        let base = self.offsets[first];
        let offsets: Vec<usize> = self.offsets[first..].iter().map(|o| o - base).collect();
        Some(Self {
            tokens,
            labels,
            offsets: offsets.into(),
            origin: Origin {
                first_document: self.origin.first_document + first as u64,
                ..self.origin
            },
        })
    }

    /// Token range of document `i`.
    pub fn span(&self, i: usize) -> Option<(usize, usize)> {
        Some((*self.offsets.get(i)?, *self.offsets.get(i + 1)?))
    }

    /// The token index range covered by documents `first..end`.
    pub fn token_span(&self, first: usize, end: usize) -> Option<(usize, usize)> {
        Some((*self.offsets.get(first)?, *self.offsets.get(end)?))
    }

    /// Tokens (and labels) of documents `first..end`, shared, not copied.
    pub fn range(&self, first: usize, end: usize) -> Option<(Tensor, Option<Tensor>)> {
        let (start, _) = self.span(first)?;
        let stop = *self.offsets.get(end)?;
        let tokens = self.tokens.slice_rows(start, stop)?;
        let labels = match &self.labels {
            Some(l) => Some(l.slice_rows(start, stop)?),
            None => None,
        };
        Some((tokens, labels))
    }
}
