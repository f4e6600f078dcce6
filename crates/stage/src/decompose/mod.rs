//! Dataset decomposition (Pouransari et al. 2024, "Dataset Decomposition: Faster LLM Training
//! with Variable Sequence Length Curriculum", arXiv 2405.13226), exact to OLMo-core 3.0.0's
//! `NumpyVSLDataset` + `NumpyVSLDataLoader`: every document is cut into pieces whose lengths
//! are powers of two, each step is one length, and a curriculum orders the steps.
//!
//! Sans IO like the rest of the stage: a driver finds the documents (the EOS scan), feeds their
//! ends to a [`PieceIndex`], and reads the token ranges a [`DecomposedStep`] names.

mod curriculum;
mod order;
mod pieces;

pub use curriculum::Curriculum;
pub use order::{DecomposeConfig, DecomposedEpoch, DecomposedStep, Decomposition};
pub use pieces::{PieceIndex, piece_lengths};
