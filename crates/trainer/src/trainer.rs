//! The model, its optimizer and one training step; the warm pass; evaluation; checkpoints.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor, nn::VarStore};

use crate::error::{Result, TorchContext, TrainerError, io_error};
use crate::input::ModelInput;
use crate::memory::{self, MemoryStats};
use crate::model::{Gpt, GptConfig};
use crate::optim::{AdamW, AdamWConfig, LrSchedule};

/// Everything about training that is not data: model, optimizer, device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerConfig {
    /// The model's shape.
    pub model: GptConfig,
    /// AdamW's hyperparameters.
    pub optimizer: AdamWConfig,
    /// Learning rate against tokens seen.
    pub lr: LrSchedule,
    /// Clip gradients to this global L2 norm (None: no clipping).
    pub clip_norm: Option<f64>,
    /// Seed for initialization and the warm pass's random ids.
    pub seed: i64,
    /// bf16 autocast on CUDA (ignored on CPU, which trains in fp32).
    pub autocast: bool,
}

impl TrainerConfig {
    /// Defaults around a model: AdamW (0.9, 0.95, wd 0.1), peak 1e-3 decaying to 1e-4,
    /// warmup over the first 2% of `total_tokens`, clipping at 1.0, autocast on.
    pub fn new(model: GptConfig, total_tokens: u64) -> Self {
        Self {
            model,
            optimizer: AdamWConfig::default(),
            lr: LrSchedule {
                peak_lr: 1e-3,
                min_lr: 1e-4,
                warmup_tokens: (total_tokens / 50).max(1),
                total_tokens: total_tokens.max(1),
            },
            clip_norm: Some(1.0),
            seed: 0,
            autocast: true,
        }
    }
}

/// Parses `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when present).
pub fn parse_device(text: &str) -> Result<Device> {
    let device = match text {
        "auto" => Device::cuda_if_available(),
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Device::Cuda(index),
            _ => {
                return Err(TrainerError::Config {
                    field: "device",
                    reason: format!("`{other}` is not cpu, cuda, cuda:N or auto"),
                });
            }
        },
    };
    if let Device::Cuda(index) = device
        && index >= tch::Cuda::device_count() as usize
    {
        return Err(TrainerError::Config {
            field: "device",
            reason: format!(
                "cuda:{index} requested, {} CUDA devices visible",
                tch::Cuda::device_count()
            ),
        });
    }
    Ok(device)
}

/// What the warm pass did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WarmReport {
    /// Rows of the dummy batch.
    pub rows: i64,
    /// Its sequence length (the schedule's maximum).
    pub seq_len: i64,
    /// Seconds it took (including the first kernels' start-up).
    pub seconds: f64,
    /// The allocator after it.
    pub memory: MemoryStats,
}

/// The model and optimizer on one device.
pub struct Trainer {
    config: TrainerConfig,
    device: Device,
    store: VarStore,
    model: Gpt,
    optimizer: AdamW,
    input_kind: Kind,
}

/// Counters saved beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// Optimizer steps taken.
    pub step: u64,
    /// Tokens trained on.
    pub tokens: u64,
    /// Seconds of training so far (for wall-clock curves across resumes).
    pub elapsed_s: f64,
    /// The trainer's configuration.
    pub config: TrainerConfig,
    /// The loader's state after the last batch trained on, as JSON.
    pub loader_state: serde_json::Value,
}

impl Trainer {
    /// Builds the model on `device` (seeded by `config.seed`). `input_kind` is the integer
    /// kind the loader delivers (the warm pass uses the same).
    pub fn new(config: TrainerConfig, device: Device, input_kind: Kind) -> Result<Self> {
        config.model.validate()?;
        tch::manual_seed(config.seed);
        let store = VarStore::new(device);
        let model = Gpt::new(&store.root(), &config.model)?;
        let optimizer = AdamW::new(&store, config.optimizer);
        if device.is_cuda() && config.autocast {
            memory::set_cuda_autocast_bf16()?;
        }
        Ok(Self {
            config,
            device,
            store,
            model,
            optimizer,
            input_kind,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &TrainerConfig {
        &self.config
    }

    /// The device.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The model.
    pub fn model(&self) -> &Gpt {
        &self.model
    }

    /// The parameters.
    pub fn store(&self) -> &VarStore {
        &self.store
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    fn autocast(&self) -> bool {
        self.config.autocast && self.device.is_cuda()
    }

    /// The loss on `input`, through the training autocast path, with every field it carries.
    fn input_loss(&self, input: &ModelInput) -> Result<Tensor> {
        tch::autocast(self.autocast(), || {
            self.model.loss_segments(
                &input.input_ids,
                &input.labels,
                input.position_ids.as_ref(),
                input.segment_ids.as_ref(),
            )
        })
    }

    /// The allocator's counters for this trainer's device (unavailable on CPU).
    pub fn memory(&self) -> Result<MemoryStats> {
        match self.device {
            Device::Cuda(index) => memory::memory_stats(index),
            _ => Ok(MemoryStats::Unavailable),
        }
    }

    /// One forward and backward at the largest shape training will see, on random token ids
    /// of the loader's kind and through the same autocast path, then zeroed gradients. No
    /// optimizer or learning-rate step: weights and optimizer state are untouched. Afterwards
    /// the caching allocator holds blocks big enough for every later (shorter) step, so the
    /// length ramp does not keep asking the device for more and fragmenting its cache.
    pub fn warm_pass(&mut self, rows: i64, seq_len: i64) -> Result<WarmReport> {
        let started = Instant::now();
        let ids = Tensor::f_randint(
            self.config.model.vocab_size,
            [rows, seq_len],
            (Kind::Int64, self.device),
        )
        .and_then(|t| t.f_to_kind(self.input_kind))
        .context(|| format!("random ids for the warm pass ({rows}x{seq_len})"))?;
        let loss = tch::autocast(self.autocast(), || self.model.loss(&ids, &ids, None))?;
        loss.f_backward().context(|| "warm pass backward".into())?;
        self.optimizer.zero_grad();
        drop(loss);
        if let Device::Cuda(index) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
        Ok(WarmReport {
            rows,
            seq_len,
            seconds: started.elapsed().as_secs_f64(),
            memory: self.memory()?,
        })
    }

    /// One optimizer step on `input` after `tokens_before` tokens (for the learning rate).
    /// Returns the loss and the pre-clip gradient norm as device scalars, so that nothing
    /// waits for the device unless the caller reads them.
    pub fn train_step(
        &mut self,
        input: &ModelInput,
        tokens_before: u64,
    ) -> Result<(Tensor, Option<Tensor>, f64)> {
        let loss = self.input_loss(input)?;
        loss.f_backward().context(|| "backward".into())?;
        let norm = match self.config.clip_norm {
            Some(max) => self.optimizer.clip_grad_norm(max),
            None => None,
        };
        let lr = self.config.lr.at(tokens_before);
        self.optimizer.step(lr);
        self.optimizer.zero_grad();
        Ok((loss.detach(), norm, lr))
    }

    /// Mean loss over `batches` without gradients.
    pub fn evaluate(&self, batches: &[ModelInput]) -> Result<f64> {
        if batches.is_empty() {
            return Err(TrainerError::Config {
                field: "eval",
                reason: "no evaluation batches".into(),
            });
        }
        let mut total = 0.0;
        for input in batches {
            let loss = tch::no_grad(|| self.input_loss(input))?;
            total += loss
                .f_double_value(&[])
                .context(|| "reading the eval loss".into())?;
        }
        Ok(total / batches.len() as f64)
    }

    /// Writes weights, optimizer moments and `meta` to `dir` (through a temporary directory
    /// renamed into place, so an interrupted write leaves the previous checkpoint intact).
    pub fn save_checkpoint(&self, dir: &Path, meta: &CheckpointMeta) -> Result<()> {
        let partial = dir.with_extension("partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io_error(&partial))?;
        }
        std::fs::create_dir_all(&partial).map_err(io_error(&partial))?;
        let model_path = partial.join("model.safetensors");
        self.store
            .save(&model_path)
            .context(|| format!("writing {}", model_path.display()))?;
        let optimizer_path = partial.join("optimizer.safetensors");
        Tensor::write_safetensors(&self.optimizer.state_tensors(), &optimizer_path)
            .context(|| format!("writing {}", optimizer_path.display()))?;
        let meta_path = partial.join("meta.json");
        let text = serde_json::to_vec_pretty(meta).map_err(|e| TrainerError::Checkpoint {
            path: meta_path.display().to_string(),
            reason: e.to_string(),
        })?;
        std::fs::write(&meta_path, text).map_err(io_error(&meta_path))?;
        let old = dir.with_extension("old");
        if dir.exists() {
            if old.exists() {
                std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
            }
            std::fs::rename(dir, &old).map_err(io_error(dir))?;
        }
        std::fs::rename(&partial, dir).map_err(io_error(dir))?;
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(io_error(&old))?;
        }
        Ok(())
    }

    /// Reads a checkpoint written by [`Trainer::save_checkpoint`] into this trainer.
    pub fn load_checkpoint(&mut self, dir: &Path) -> Result<CheckpointMeta> {
        let meta_path = dir.join("meta.json");
        let text = std::fs::read(&meta_path).map_err(io_error(&meta_path))?;
        let meta: CheckpointMeta =
            serde_json::from_slice(&text).map_err(|e| TrainerError::Checkpoint {
                path: meta_path.display().to_string(),
                reason: e.to_string(),
            })?;
        if meta.config.model != self.config.model {
            return Err(TrainerError::Checkpoint {
                path: meta_path.display().to_string(),
                reason: format!(
                    "model {:?} does not match the configured {:?}",
                    meta.config.model, self.config.model
                ),
            });
        }
        let model_path = dir.join("model.safetensors");
        self.store
            .load(&model_path)
            .map_err(|e| TrainerError::Checkpoint {
                path: model_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let optimizer_path: PathBuf = dir.join("optimizer.safetensors");
        let tensors =
            Tensor::read_safetensors(&optimizer_path).map_err(|e| TrainerError::Checkpoint {
                path: optimizer_path.display().to_string(),
                reason: e.to_string(),
            })?;
        let tensors = tensors
            .into_iter()
            .map(|(name, t)| (name, t.to_device(self.device)))
            .collect();
        self.optimizer
            .load_state(tensors, meta.step, &optimizer_path.display().to_string())?;
        Ok(meta)
    }
}
