//! The training loop: the loader reads ahead on the caller's tokio runtime, the model trains on
//! this thread, and every logged step lands in `metrics.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use futures_util::StreamExt;
use seqwarm_loader::{LoaderBuilder, LoaderState, Stats};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::error::{Result, TorchContext, TrainerError, io_error};
use crate::input::{ModelInput, batch_to_input};
use crate::memory::MemoryStats;
use crate::trainer::{CheckpointMeta, Trainer, WarmReport};

/// How a run is driven and recorded.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where `metrics.jsonl` and `checkpoint/` go.
    pub run_dir: PathBuf,
    /// Read the loss back (a device sync) and write a metrics line every N steps.
    pub log_every: u64,
    /// Evaluate on the held-out batches every N steps (and at the end).
    pub eval_every: Option<u64>,
    /// Write a checkpoint every N steps (and at the end).
    pub checkpoint_every: Option<u64>,
    /// Rows and length of the warm pass; None skips it.
    pub warm_pass: Option<(i64, i64)>,
    /// Continue from `run_dir/checkpoint` when it exists.
    pub resume: bool,
}

impl RunOptions {
    /// Log every step, evaluate and checkpoint only at the end, warm pass off.
    pub fn new(run_dir: impl Into<PathBuf>) -> Self {
        Self {
            run_dir: run_dir.into(),
            log_every: 1,
            eval_every: None,
            checkpoint_every: None,
            warm_pass: None,
            resume: false,
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    /// Optimizer step (0-based).
    pub step: u64,
    /// Tokens trained on after this step.
    pub tokens: u64,
    /// The scheduled sequence length of this step.
    pub seq_len: i64,
    /// Rows in this step's batch.
    pub rows: i64,
    /// Training loss of this step.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: Option<f64>,
    /// Seconds per step since the previous record (evaluation and checkpoints excluded).
    pub step_time_s: f64,
    /// Training seconds since the run began (evaluation and checkpoints excluded).
    pub elapsed_s: f64,
    /// Held-out loss at the maximum length, on evaluation steps.
    pub eval_loss: Option<f64>,
    /// The device allocator after this step.
    pub memory: MemoryStats,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Steps trained in this invocation.
    pub steps: u64,
    /// Tokens trained on in total (including before a resume).
    pub tokens: u64,
    /// Training seconds in total.
    pub elapsed_s: f64,
    /// Last training loss logged.
    pub final_loss: Option<f64>,
    /// Last held-out loss.
    pub final_eval_loss: Option<f64>,
    /// The warm pass, when it ran.
    pub warm: Option<WarmReport>,
    /// The loader's counters.
    pub loader_stats: Stats,
    /// Every record written in this invocation.
    pub records: Vec<StepRecord>,
}

/// Trains `trainer` on the batches of `loader` until the loader ends (its step, token or
/// epoch limit), writing `metrics.jsonl` and checkpoints under `options.run_dir`.
/// `on_record` sees every metrics line as it is written (for progress display).
///
/// The loader is built on `runtime` and reads ahead on its threads (give a multi-thread
/// runtime, so that reading goes on while the model trains); this thread waits on it only
/// when no batch is ready. Call it from outside the runtime.
pub fn run(
    trainer: &mut Trainer,
    runtime: &Handle,
    mut loader: LoaderBuilder,
    eval: &[ModelInput],
    options: &RunOptions,
    mut on_record: impl FnMut(&StepRecord),
) -> Result<RunSummary> {
    let dir = &options.run_dir;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let checkpoint_dir = dir.join("checkpoint");
    let checkpoints = Checkpoints {
        dir: checkpoint_dir.clone(),
    };
    let mut tokens = 0u64;
    let mut elapsed_before = 0.0;
    let resuming = options.resume && checkpoint_dir.join("meta.json").exists();
    if resuming {
        let meta = trainer.load_checkpoint(&checkpoint_dir)?;
        let state =
            LoaderState::from_value(meta.loader_state).map_err(|e| TrainerError::Checkpoint {
                path: checkpoint_dir.join("meta.json").display().to_string(),
                reason: format!("loader state: {e}"),
            })?;
        loader = loader.with_state(state);
        tokens = meta.tokens;
        elapsed_before = meta.elapsed_s;
        tracing::info!(
            step = meta.step,
            tokens,
            "resuming from {}",
            checkpoint_dir.display()
        );
    }
    let metrics_path = dir.join("metrics.jsonl");
    let metrics_file: File = if resuming {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(&metrics_path)
    } else {
        File::create(&metrics_path)
    }
    .map_err(io_error(&metrics_path))?;
    let mut metrics = BufWriter::new(metrics_file);

    let warm = match options.warm_pass {
        Some((rows, seq_len)) => Some(trainer.warm_pass(rows, seq_len)?),
        None => None,
    };

    let mut stream = runtime.block_on(loader.with_runtime(runtime.clone()).build())?;

    let device = trainer.device();
    // Held-out batches may have been read on the host; they move to the device once.
    let eval: Vec<ModelInput> = eval
        .iter()
        .enumerate()
        .map(|(i, input)| input.to_device(i as u64, device))
        .collect::<Result<_>>()?;
    let eval = eval.as_slice();
    let mut records: Vec<StepRecord> = Vec::new();
    let mut written = 0usize;
    let mut steps = 0u64;
    let mut final_eval = None;
    let mut last_step = None;
    let mut clock = TrainingClock::new(elapsed_before);
    let mut elapsed_at_record = elapsed_before;
    let mut steps_since_record = 0u64;
    while let Some(batch) = runtime.block_on(stream.next()) {
        let batch = batch?;
        let (step, seq_len, batch_tokens) = (batch.step, batch.seq_len, batch.tokens);
        let input = batch_to_input(step, &batch.batch, device)?;
        let state = options
            .checkpoint_every
            .filter(|&every| (step + 1) % every.max(1) == 0)
            .map(|_| stream.state());
        let (rows, _) = input.shape();
        let (loss, norm, lr) = trainer.train_step(&input, tokens)?;
        tokens += batch_tokens;
        steps += 1;
        steps_since_record += 1;
        last_step = Some(step);
        let is_eval = options
            .eval_every
            .is_some_and(|n| (step + 1) % n.max(1) == 0);
        let is_log = (step + 1) % options.log_every.max(1) == 0 || is_eval;
        if is_log {
            // Reading the loss waits for the device; only logged steps do it.
            let loss = loss
                .f_double_value(&[])
                .context(|| format!("step {step}: loss"))?;
            let grad_norm = match &norm {
                Some(n) => Some(n.f_double_value(&[]).context(|| "gradient norm".into())?),
                None => None,
            };
            let elapsed_s = clock.elapsed();
            let step_time_s = (elapsed_s - elapsed_at_record) / steps_since_record.max(1) as f64;
            elapsed_at_record = elapsed_s;
            steps_since_record = 0;
            let eval_loss = if is_eval && !eval.is_empty() {
                Some(clock.excluding(|| trainer.evaluate(eval))?)
            } else {
                None
            };
            if eval_loss.is_some() {
                final_eval = eval_loss;
            }
            let record = StepRecord {
                step,
                tokens,
                seq_len: seq_len as i64,
                rows,
                loss,
                lr,
                grad_norm,
                step_time_s,
                elapsed_s,
                eval_loss,
                memory: trainer.memory()?,
            };
            on_record(&record);
            // Written one record late, so that the final evaluation joins the last line.
            if written < records.len() {
                write_record(&mut metrics, &metrics_path, &records[written])?;
                written += 1;
            }
            records.push(record);
        }
        if let Some(state) = state {
            let elapsed_s = clock.elapsed();
            clock.excluding(|| -> Result<()> {
                checkpoints.save(trainer, step + 1, tokens, elapsed_s, &state)?;
                // A resumed run appends after this point: everything up to it must be on disk.
                for record in &records[written..] {
                    write_record(&mut metrics, &metrics_path, record)?;
                }
                metrics.flush().map_err(io_error(&metrics_path))
            })?;
            written = records.len();
        }
    }
    let (last_state, loader_stats) = (stream.state(), stream.stats());
    let elapsed_s = clock.elapsed();
    let mut evaluated_late = false;
    if options.eval_every.is_some() && !eval.is_empty() {
        match records.last_mut() {
            Some(last) if last.eval_loss.is_some() && Some(last.step) == last_step => {}
            Some(last) if Some(last.step) == last_step => {
                last.eval_loss = Some(trainer.evaluate(eval)?);
                final_eval = last.eval_loss;
                evaluated_late = true;
            }
            _ => final_eval = Some(trainer.evaluate(eval)?),
        }
    }
    // A last record already flushed by a checkpoint and only now evaluated is written again;
    // readers keep the last line per step.
    let from = if evaluated_late && written == records.len() {
        written - 1
    } else {
        written
    };
    for record in &records[from..] {
        write_record(&mut metrics, &metrics_path, record)?;
    }
    if let Some(step) = last_step {
        checkpoints.save(trainer, step + 1, tokens, elapsed_s, &last_state)?;
    }
    metrics.flush().map_err(io_error(&metrics_path))?;
    Ok(RunSummary {
        steps,
        tokens,
        elapsed_s,
        final_loss: records.last().map(|r| r.loss),
        final_eval_loss: final_eval,
        warm,
        loader_stats,
        records,
    })
}

/// Training seconds: wall-clock since the run (or the run it resumes) began, less the time
/// spent evaluating and checkpointing, so that runs compare fairly.
struct TrainingClock {
    started: Instant,
    before: f64,
    excluded: f64,
}

impl TrainingClock {
    fn new(before: f64) -> Self {
        Self {
            started: Instant::now(),
            before,
            excluded: 0.0,
        }
    }

    fn elapsed(&self) -> f64 {
        self.before + self.started.elapsed().as_secs_f64() - self.excluded
    }

    /// Runs `work` off the clock.
    fn excluding<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = work();
        self.excluded += started.elapsed().as_secs_f64();
        out
    }
}

fn write_record(
    metrics: &mut BufWriter<File>,
    path: &std::path::Path,
    record: &StepRecord,
) -> Result<()> {
    serde_json::to_writer(&mut *metrics, record).map_err(|e| TrainerError::Io {
        path: path.display().to_string(),
        source: e.into(),
    })?;
    metrics.write_all(b"\n").map_err(io_error(path))
}

/// Where a run's checkpoint goes.
struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    /// Saves the model, the optimizer and the loader's state after `step` steps.
    fn save(
        &self,
        trainer: &Trainer,
        step: u64,
        tokens: u64,
        elapsed_s: f64,
        state: &LoaderState,
    ) -> Result<()> {
        let loader_state = serde_json::to_value(state).map_err(|e| TrainerError::Checkpoint {
            path: self.dir.display().to_string(),
            reason: format!("loader state: {e}"),
        })?;
        trainer.save_checkpoint(
            &self.dir,
            &CheckpointMeta {
                step,
                tokens,
                elapsed_s,
                config: trainer.config().clone(),
                loader_state,
            },
        )
    }
}

/// Reads a run's `metrics.jsonl`, keeping the last line per step (a checkpoint may have flushed
/// a step before its final evaluation was added), in step order.
pub fn read_metrics(path: &std::path::Path) -> Result<Vec<StepRecord>> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut by_step = std::collections::BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let record: StepRecord = serde_json::from_str(line).map_err(|e| TrainerError::Io {
            path: format!("{} line {}", path.display(), i + 1),
            source: e.into(),
        })?;
        by_step.insert(record.step, record);
    }
    Ok(by_step.into_values().collect())
}
