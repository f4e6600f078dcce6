//! seqwarm-trainer: a GPT trained with tch from seqwarm's warmup-scheduled stream.
//!
//! - [`Gpt`] / [`GptConfig`]: causal attention through `scaled_dot_product_attention`,
//!   learned positions or ALiBi, GPT-2 initialization and a tied output head.
//! - [`AdamW`] and [`LrSchedule`]: decay groups, a learning rate measured in tokens, global
//!   norm clipping without a host sync.
//! - [`Trainer::warm_pass`]: one forward and backward at the largest shape, gradients zeroed,
//!   no optimizer step, so the allocator reserves max-size blocks before the length ramp.
//! - [`memory_stats`]: the device allocator's counters through a C++ shim
//!   ("unavailable" on CPU).
//! - [`run`]: the loop, with the loader on its own tokio runtime, `metrics.jsonl`, evaluation
//!   and checkpoints that include the loader's state.
//!
//! ```
//! use seqwarm_trainer::{GptConfig, Trainer, TrainerConfig, batch_to_input};
//! use seqwarm_batcher::Batch;
//!
//! let model = GptConfig::new(64, 32).with_layers(1).with_width(32).with_heads(2);
//! let mut trainer = Trainer::new(TrainerConfig::new(model, 10_000), tch::Device::Cpu, tch::Kind::Int)?;
//! let warm = trainer.warm_pass(4, 32)?; // before the first step
//! assert_eq!(trainer.optimizer().steps(), 0);
//! let batch = Batch::from_input_ids::<i32>((0..64).map(|i| i % 64).collect(), 4, 16)?;
//! let input = batch_to_input(0, &batch, tch::Device::Cpu)?;
//! let (loss, _norm, _lr) = trainer.train_step(&input, 0)?;
//! assert!(loss.double_value(&[]) > 0.0);
//! # let _ = warm;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod input;
mod memory;
mod model;
mod optim;
mod run;
mod trainer;

pub use error::{Result, TrainerError};
pub use input::{ModelInput, batch_to_input, kind_of};
pub use memory::{
    DeviceMemory, MemoryStats, empty_cache, memory_stats, reset_accumulated_stats,
    reset_peak_stats, set_cuda_autocast_bf16,
};
pub use model::{Gpt, GptConfig, Positions, alibi_slopes};
pub use optim::{AdamW, AdamWConfig, LrSchedule};
pub use run::{RunOptions, RunSummary, StepRecord, read_metrics, run};
pub use trainer::{CheckpointMeta, Trainer, TrainerConfig, WarmReport, parse_device};

/// Re-exported so that users name the same tch version.
pub use tch;
