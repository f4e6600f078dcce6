//! Fixed-length chunks of raw token files, exact to OLMo-core 3.0.0's `NumpyFSLDataset` +
//! `NumpyFSLDataLoader`, with its `BatchSizeSchedulerCallback`: every file is cut into
//! back-to-back instances of one length (documents run across them, each file's tail is
//! dropped), an epoch shuffles all instances, a step takes the next global batch and a rank
//! every `world_size`-th row of it; the batch size may change during training, and every
//! step carries the learning-rate factor OLMo-core's callback applies.
//!
//! Sans IO: the driver says how many tokens each file holds and reads the token ranges a
//! [`ChunkStep`] names.

mod batch_size;
mod run;

pub use batch_size::{BatchSizeSchedule, DurationUnit};
pub use run::{ChunkConfig, ChunkPosition, ChunkStep, Chunks};
