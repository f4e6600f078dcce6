//! The document shuffle buffer: documents wait in a buffer of fixed size, and a random one
//! leaves whenever a new one arrives (the streaming shuffle of `tf.data` and MosaicML
//! Streaming), seeded so that the order is a function of the seed.

use seqwarm_batcher::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StageError};
use crate::rng::SplitMix64;

/// A document's tokens and optional labels.
pub(crate) type Doc = (Tensor, Option<Tensor>);

pub(crate) struct Shuffle {
    capacity: usize,
    rng: SplitMix64,
    documents: Vec<Doc>,
    tokens: usize,
}

/// The shuffle buffer in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ShuffleState {
    rng: u64,
    dtype: Option<DType>,
    #[serde(default)]
    labels_dtype: Option<DType>,
    /// `(tokens, labels)` per buffered document, in buffer order.
    documents: Vec<(Vec<i64>, Option<Vec<i64>>)>,
}

impl ShuffleState {
    /// The buffer as one state a document (each with this generator), with its tokens (`eos`:
    /// one more each, the EOS the stage appends): what an elastic resume may spread over
    /// several ranks.
    pub(crate) fn items(&self, eos: bool) -> Vec<(u64, ShuffleState)> {
        self.documents
            .iter()
            .map(|document| {
                let state = ShuffleState {
                    rng: self.rng,
                    dtype: self.dtype,
                    labels_dtype: self.labels_dtype,
                    documents: vec![document.clone()],
                };
                (document.0.len() as u64 + u64::from(eos), state)
            })
            .collect()
    }

    /// The token ids of the buffered documents.
    pub(crate) fn token_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.documents
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
    }

    /// Several ranks' shuffle buffers as one (an elastic resume's rank taking over their
    /// documents): the documents one buffer after another, and a generator drawn from all of
    /// theirs and `salt` (the new rank), so that the order stays a function of the seed.
    pub(crate) fn concat<'a>(
        states: impl IntoIterator<Item = &'a ShuffleState>,
        salt: u64,
    ) -> Result<ShuffleState> {
        let mut parts = vec![salt, 0xE1A5];
        let mut out = ShuffleState {
            rng: 0,
            dtype: None,
            labels_dtype: None,
            documents: Vec::new(),
        };
        for state in states {
            parts.push(state.rng);
            for (mine, theirs) in [
                (&mut out.dtype, state.dtype),
                (&mut out.labels_dtype, state.labels_dtype),
            ] {
                match (*mine, theirs) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(StageError::State {
                            reason: "shuffle buffers of different token dtypes".into(),
                        });
                    }
                    (None, theirs) => *mine = theirs,
                    _ => {}
                }
            }
            out.documents.extend(state.documents.iter().cloned());
        }
        out.rng = SplitMix64::from_parts(&parts).state();
        Ok(out)
    }
}

impl Shuffle {
    pub(crate) fn new(capacity: usize, seed: u64) -> Self {
        Self {
            capacity,
            rng: SplitMix64::from_parts(&[seed, 0x5A4F]),
            documents: Vec::new(),
            tokens: 0,
        }
    }

    /// Documents buffered.
    pub(crate) fn len(&self) -> usize {
        self.documents.len()
    }

    /// Tokens of the buffered documents.
    pub(crate) fn tokens(&self) -> usize {
        self.tokens
    }

    /// Adds `doc`; once the buffer is over capacity, a random document leaves it.
    pub(crate) fn push(&mut self, doc: Doc) -> Option<Doc> {
        self.tokens += doc.0.numel();
        self.documents.push(doc);
        if self.documents.len() > self.capacity {
            self.pop_random()
        } else {
            None
        }
    }

    /// A random buffered document, until none is left.
    pub(crate) fn pop_random(&mut self) -> Option<Doc> {
        if self.documents.is_empty() {
            return None;
        }
        let j = self.rng.below(self.documents.len());
        let doc = self.documents.swap_remove(j);
        self.tokens -= doc.0.numel();
        Some(doc)
    }

    /// Drops every buffered document.
    pub(crate) fn clear(&mut self) {
        self.documents.clear();
        self.tokens = 0;
    }

    pub(crate) fn state(&self) -> ShuffleState {
        ShuffleState {
            rng: self.rng.state(),
            dtype: self.documents.first().map(|(t, _)| t.dtype()),
            labels_dtype: self
                .documents
                .iter()
                .find_map(|(_, l)| l.as_ref().map(Tensor::dtype)),
            documents: self
                .documents
                .iter()
                .map(|(t, l)| (t.to_vec_i64(), l.as_ref().map(Tensor::to_vec_i64)))
                .collect(),
        }
    }

    pub(crate) fn restore(&mut self, state: &ShuffleState) -> Result<()> {
        let dtype = state.dtype.unwrap_or(DType::I32);
        let labels_dtype = state.labels_dtype.unwrap_or(dtype);
        self.rng = SplitMix64::new(state.rng);
        self.documents = state
            .documents
            .iter()
            .map(|(t, l)| {
                Ok((
                    vector_of(dtype, t)?,
                    match l {
                        Some(l) => Some(vector_of(labels_dtype, l)?),
                        None => None,
                    },
                ))
            })
            .collect::<Result<_>>()?;
        self.tokens = self.documents.iter().map(|(t, _)| t.numel()).sum();
        Ok(())
    }
}

/// A 1-D tensor of `dtype` from checkpointed values.
pub(crate) fn vector_of(dtype: DType, values: &[i64]) -> Result<Tensor> {
    Ok(match dtype {
        DType::I32 => Tensor::vector(
            values
                .iter()
                .map(|&v| {
                    i32::try_from(v).map_err(|_| StageError::State {
                        reason: format!("token {v} does not fit i32"),
                    })
                })
                .collect::<Result<Vec<i32>>>()?,
        ),
        DType::I64 => Tensor::vector(values.to_vec()),
    })
}
