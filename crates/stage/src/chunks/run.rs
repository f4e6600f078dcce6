//! The fixed-length run: which instances each step of each rank reads, and what OLMo-core's
//! trainer and batch-size callback would have done before it.

use serde::{Deserialize, Serialize};

use super::batch_size::BatchSizeSchedule;
use crate::error::{Result, StageError};
use crate::numpy_random::NumpyRandom;

/// The settings of a fixed-length run (OLMo-core's `NumpyFSLDataLoader` and callback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkConfig {
    /// The length of every instance (OLMo-core's `sequence_length`).
    pub seq_len: u64,
    /// Tokens per step on each rank as configured (OLMo-core's `global_batch_size /
    /// dp_world_size`): the batch size the learning rate was chosen for.
    pub batch_tokens: u64,
    /// The shuffle seed: epoch `e` (1-based) is shuffled by `PCG64(seed + e)`.
    pub seed: u64,
    /// This rank.
    pub rank: u64,
    /// Data-parallel ranks.
    pub world_size: u64,
    /// Global batch sizes over training (OLMo-core's `BatchSizeSchedulerCallback`), if any.
    pub batch_schedule: Option<BatchSizeSchedule>,
}

impl ChunkConfig {
    /// Checks what needs no data: the length, the rank, and batch sizes that split into whole
    /// rows on every rank (OLMo-core fails on the first batch otherwise).
    pub fn validate(&self) -> Result<()> {
        let refuse =
            |field: &'static str, reason: String| Err(StageError::Config { field, reason });
        if self.seq_len == 0 {
            return refuse("seq_len", "instances of 0 tokens".into());
        }
        if self.world_size == 0 || self.rank >= self.world_size {
            return refuse(
                "rank",
                format!("rank {} of {} ranks", self.rank, self.world_size),
            );
        }
        let (Some(_), Some(row_block)) = (
            self.batch_tokens.checked_mul(self.world_size),
            self.seq_len.checked_mul(self.world_size),
        ) else {
            return refuse(
                "batch_tokens",
                format!(
                    "{} tokens or rows of {} on each of {} ranks overflow 64 bits",
                    self.batch_tokens, self.seq_len, self.world_size
                ),
            );
        };
        if self.batch_tokens == 0 || !self.batch_tokens.is_multiple_of(self.seq_len) {
            return refuse(
                "batch_tokens",
                format!(
                    "{} tokens per rank is not a whole number (at least 1) of rows of {}",
                    self.batch_tokens, self.seq_len
                ),
            );
        }
        let base = self.global_batch_tokens();
        if let Some(schedule) = &self.batch_schedule {
            if let Some(&(at, size)) = schedule
                .points()
                .iter()
                .find(|(_, s)| !s.is_multiple_of(row_block))
            {
                return refuse(
                    "batch_schedule",
                    format!(
                        "the global batch of {size} tokens (at {at}) is not a whole number of \
                         rows of {} on each of {} ranks",
                        self.seq_len, self.world_size
                    ),
                );
            }
            let first = schedule.points()[0].1;
            if !first.max(base).is_multiple_of(first.min(base)) {
                return refuse(
                    "batch_schedule",
                    format!(
                        "it starts at {first} tokens, which the configured global batch of \
                         {base} ({} per rank) neither divides nor is divided by",
                        self.batch_tokens
                    ),
                );
            }
        }
        Ok(())
    }

    /// The configured global batch, tokens on all ranks.
    pub fn global_batch_tokens(&self) -> u64 {
        self.batch_tokens * self.world_size
    }
}

/// Where a fixed-length run stands: the trainer's and the loader's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkPosition {
    /// The epoch of the next batch (0-based).
    pub epoch: u64,
    /// Batches of the current global size already taken this epoch (OLMo-core's
    /// `batches_processed`).
    pub batches_processed: u64,
    /// Steps taken since the start of training.
    pub steps: u64,
    /// Tokens trained on since the start, all ranks.
    pub tokens_seen: u64,
    /// The global batch sizes in the order they applied, the configured one first: the last
    /// is the current one, and the learning-rate factor follows from them.
    pub batch_sizes: Vec<u64>,
}

impl ChunkPosition {
    fn current_batch(&self) -> u64 {
        *self
            .batch_sizes
            .last()
            .expect("the configured size is always first")
    }

    /// The learning-rate factor against the configured batch: `sqrt(new / old)` multiplied in
    /// at every change, in float64, as OLMo-core's callback scales the optimizer's base rate.
    pub fn lr_multiplier(&self) -> f64 {
        self.batch_sizes.windows(2).fold(1.0, |lr, pair| {
            lr * (pair[1] as f64 / pair[0] as f64).sqrt()
        })
    }
}

/// One rank's step: the instances of its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkStep {
    /// The step since the start of training.
    pub step: u64,
    /// The epoch (0-based).
    pub epoch: u64,
    /// Batches of this step's size taken before it in its epoch.
    pub epoch_step: u64,
    /// The global batch of this step, tokens on all ranks.
    pub global_batch_tokens: u64,
    /// The instance ids of this rank's rows, in order.
    pub rows: Vec<u32>,
    /// The learning-rate factor this step trains with.
    pub lr_multiplier: f64,
}

/// Every step of a fixed-length run, in order, without reading a token.
#[derive(Debug, Clone)]
pub struct Chunks {
    config: ChunkConfig,
    /// Each file's first instance id and its token count's instances, cumulative.
    file_ends: Vec<u64>,
    epochs: u64,
    position: ChunkPosition,
    /// The current epoch's shuffled instance ids.
    order: Option<(u64, Vec<u32>)>,
}

impl Chunks {
    /// The run over files holding `file_tokens` tokens each, for `epochs` epochs.
    pub fn new(config: ChunkConfig, file_tokens: &[u64], epochs: u64) -> Result<Self> {
        config.validate()?;
        let mut file_ends = Vec::with_capacity(file_tokens.len());
        let mut instances = 0u64;
        for &tokens in file_tokens {
            instances += tokens / config.seq_len;
            file_ends.push(instances);
        }
        if instances >= u64::from(u32::MAX) {
            return Err(StageError::Config {
                field: "seq_len",
                reason: format!(
                    "{instances} instances: OLMo-core numbers them in uint32, use a longer length"
                ),
            });
        }
        let first = config
            .batch_schedule
            .as_ref()
            .map_or(config.global_batch_tokens(), |s| s.points()[0].1);
        let rows = first / config.seq_len;
        if instances < rows {
            return Err(StageError::Config {
                field: "batch_tokens",
                reason: format!(
                    "the files hold {instances} instances of {} tokens, fewer than one global \
                     batch of {rows}: no step could be made",
                    config.seq_len
                ),
            });
        }
        let Some(_) = config.seed.checked_add(epochs + 1) else {
            return Err(StageError::Config {
                field: "seed",
                reason: format!(
                    "seed {} + epoch overflows 64 bits (OLMo-core seeds epoch e with seed + e)",
                    config.seed
                ),
            });
        };
        let position = Self::start(&config);
        Ok(Self {
            config,
            file_ends,
            epochs,
            position,
            order: None,
        })
    }

    /// Continues from `position` (from [`Chunks::position`] of a run with these settings).
    /// The counters are replayed from the start to its step (no token is read, nothing is
    /// shuffled) and must come out as given: a position these settings could not have reached
    /// is refused, not followed.
    pub fn with_position(mut self, position: ChunkPosition) -> Result<Self> {
        let refuse = |reason: String| Err(StageError::State { reason });
        let mut replay = Self::start(&self.config);
        while replay.steps < position.steps && replay.epoch < self.epochs {
            if self.advance(&mut replay)?.is_some() {
                replay.batches_processed += 1;
                replay.steps += 1;
                replay.tokens_seen += replay.current_batch();
            }
        }
        // A position is taken after a step, or after the call that found the run over (which
        // passed the last epoch's end and may have applied a change due there).
        if replay != position {
            self.advance(&mut replay)?;
        }
        if replay != position {
            return refuse(format!(
                "{position:?} is not a position these settings reach (at step {} they are at \
                 {replay:?})",
                position.steps
            ));
        }
        self.position = position;
        self.order = None;
        Ok(self)
    }

    /// The position before the first step.
    fn start(config: &ChunkConfig) -> ChunkPosition {
        ChunkPosition {
            epoch: 0,
            batches_processed: 0,
            steps: 0,
            tokens_seen: 0,
            batch_sizes: vec![config.global_batch_tokens()],
        }
    }

    /// The settings.
    pub fn config(&self) -> &ChunkConfig {
        &self.config
    }

    /// Instances per epoch (every file's whole instances).
    pub fn instances(&self) -> u64 {
        self.file_ends.last().copied().unwrap_or(0)
    }

    /// Where the run stands, for a checkpoint.
    pub fn position(&self) -> &ChunkPosition {
        &self.position
    }

    /// Instance `id`'s file and first token.
    pub fn instance(&self, id: u32) -> (usize, u64) {
        let id = u64::from(id);
        let file = self.file_ends.partition_point(|&end| end <= id);
        let first = if file == 0 {
            0
        } else {
            self.file_ends[file - 1]
        };
        (file, (id - first) * self.config.seq_len)
    }

    /// OLMo-core's `_maybe_update_batch_size_and_lr`, called before each batch is loaded: the
    /// latest due size wins; a decrease applies at once, an increase by `r` waits until the
    /// batches taken divide by `r` (so no instance is skipped or read twice).
    fn maybe_change_batch(&self, position: &mut ChunkPosition) -> Result<()> {
        let Some(schedule) = &self.config.batch_schedule else {
            return Ok(());
        };
        let Some(target) =
            schedule.due_size(position.steps, position.tokens_seen, position.epoch + 1)
        else {
            return Ok(());
        };
        let current = position.current_batch();
        if !target.max(current).is_multiple_of(target.min(current)) {
            return Err(StageError::Config {
                field: "batch_schedule",
                reason: format!(
                    "at step {} the size due is {target} while {current} still applies (an \
                     increase was waiting): OLMo-core's callback fails its assertion here",
                    position.steps
                ),
            });
        }
        if target > current {
            let ratio = target / current;
            if position.batches_processed.is_multiple_of(ratio) {
                position.batches_processed /= ratio;
                position.batch_sizes.push(target);
            }
        } else if target < current {
            position.batches_processed *= current / target;
            position.batch_sizes.push(target);
        }
        Ok(())
    }

    /// Moves `position` to its next batch as OLMo-core's trainer does (the callback, then the
    /// loader: past an epoch's last whole batch to the next epoch) and gives that batch's
    /// global size, or `None` once every epoch is done. The caller counts the batch.
    fn advance(&self, position: &mut ChunkPosition) -> Result<Option<u64>> {
        loop {
            if position.epoch >= self.epochs {
                return Ok(None);
            }
            self.maybe_change_batch(position)?;
            let global = position.current_batch();
            let rows = global / self.config.seq_len;
            if position.batches_processed >= self.instances() / rows.max(1) {
                // The epoch's whole batches are done: the rest of its order is dropped.
                position.epoch += 1;
                position.batches_processed = 0;
                continue;
            }
            return Ok(Some(global));
        }
    }

    /// The next step of this rank, or `None` once every epoch is done.
    pub fn next_step(&mut self) -> Option<Result<ChunkStep>> {
        let mut position = std::mem::take(&mut self.position);
        let advanced = self.advance(&mut position);
        self.position = position;
        let global = match advanced {
            Ok(global) => global?,
            Err(e) => return Some(Err(e)),
        };
        let rows = global / self.config.seq_len;
        let epoch = self.position.epoch;
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, self.shuffled(epoch)));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let start = (self.position.batches_processed * rows) as usize;
        let batch = &order[start..start + rows as usize];
        let step = ChunkStep {
            step: self.position.steps,
            epoch,
            epoch_step: self.position.batches_processed,
            global_batch_tokens: global,
            rows: batch
                .iter()
                .skip(self.config.rank as usize)
                .step_by(self.config.world_size as usize)
                .copied()
                .collect(),
            lr_multiplier: self.position.lr_multiplier(),
        };
        self.position.batches_processed += 1;
        self.position.steps += 1;
        self.position.tokens_seen += global;
        Some(Ok(step))
    }

    /// Epoch `epoch`'s (0-based) order: `arange(n)` shuffled by `PCG64(seed + epoch + 1)`.
    fn shuffled(&self, epoch: u64) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.instances() as u32).collect();
        NumpyRandom::new(self.config.seed + epoch + 1).shuffle(&mut order);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunks::DurationUnit;

    fn config(schedule: Option<BatchSizeSchedule>) -> ChunkConfig {
        ChunkConfig {
            seq_len: 4,
            batch_tokens: 8,
            seed: 3,
            rank: 0,
            world_size: 1,
            batch_schedule: schedule,
        }
    }

    #[test]
    fn every_instance_once_per_epoch_without_a_schedule() {
        let mut run = Chunks::new(config(None), &[41, 8, 3], 2).unwrap();
        assert_eq!(run.instances(), 12);
        assert_eq!(run.instance(10), (1, 0));
        assert_eq!(run.instance(11), (1, 4));
        let mut seen = vec![0u32; 12];
        while let Some(step) = run.next_step() {
            let step = step.unwrap();
            assert_eq!(step.rows.len(), 2);
            assert_eq!(step.lr_multiplier.to_bits(), 1.0f64.to_bits());
            step.rows.iter().for_each(|&r| seen[r as usize] += 1);
        }
        assert_eq!(seen, vec![2; 12]);
        assert_eq!(run.position().steps, 12);
    }

    #[test]
    fn an_increase_waits_for_whole_batches_and_scales_the_rate() {
        let schedule = BatchSizeSchedule::new(DurationUnit::Steps, vec![(0, 4), (3, 16)]).unwrap();
        let mut run = Chunks::new(config(Some(schedule)), &[4 * 40], 1).unwrap();
        let steps: Vec<ChunkStep> = std::iter::from_fn(|| run.next_step())
            .map(Result::unwrap)
            .collect();
        // 8 -> 4 at once (rate x sqrt(1/2)); 4 -> 16 due at step 3 but waits until 4 batches.
        let sizes: Vec<u64> = steps.iter().map(|s| s.global_batch_tokens).collect();
        assert_eq!(&sizes[..6], &[4, 4, 4, 4, 16, 16]);
        // Exact: the factor is the product OLMo-core computes, not an approximation of it.
        assert_eq!(steps[0].lr_multiplier.to_bits(), 0.5f64.sqrt().to_bits());
        assert_eq!(
            steps[4].lr_multiplier.to_bits(),
            (0.5f64.sqrt() * 2.0).to_bits()
        );
        assert_eq!(steps[4].epoch_step, 1);
        let mut rows: Vec<u32> = steps.iter().flat_map(|s| s.rows.clone()).collect();
        rows.sort_unstable();
        assert_eq!(rows, (0..40).collect::<Vec<u32>>());
    }

    #[test]
    fn resumes_from_any_position() {
        let schedule =
            BatchSizeSchedule::new(DurationUnit::Steps, vec![(0, 8), (2, 16), (5, 4)]).unwrap();
        let whole: Vec<ChunkStep> = {
            let mut run = Chunks::new(config(Some(schedule.clone())), &[4 * 23], 2).unwrap();
            std::iter::from_fn(|| run.next_step())
                .map(Result::unwrap)
                .collect()
        };
        for cut in 0..=whole.len() {
            let mut run = Chunks::new(config(Some(schedule.clone())), &[4 * 23], 2).unwrap();
            for _ in 0..cut {
                run.next_step();
            }
            let position = run.position().clone();
            let text = serde_json::to_string(&position).unwrap();
            let mut resumed = Chunks::new(config(Some(schedule.clone())), &[4 * 23], 2)
                .unwrap()
                .with_position(serde_json::from_str(&text).unwrap())
                .unwrap();
            let rest: Vec<ChunkStep> = std::iter::from_fn(|| resumed.next_step())
                .map(Result::unwrap)
                .collect();
            assert_eq!(rest, whole[cut..], "cut {cut}");
        }
    }

    #[test]
    fn a_position_these_settings_cannot_reach_is_refused() {
        let schedule =
            BatchSizeSchedule::new(DurationUnit::Steps, vec![(0, 8), (2, 16), (5, 4)]).unwrap();
        let fresh = || Chunks::new(config(Some(schedule.clone())), &[4 * 23], 2).unwrap();
        let mut run = fresh();
        for _ in 0..6 {
            run.next_step();
        }
        let good = run.position().clone();
        assert!(fresh().with_position(good.clone()).is_ok());
        let mut zero = good.clone();
        zero.batch_sizes.push(0);
        let mut skipped = good.clone();
        skipped.batches_processed += 1;
        let mut unscheduled = good.clone();
        unscheduled.batch_sizes = vec![8, 32];
        let mut huge = good.clone();
        huge.batches_processed = u64::MAX / 2;
        // The position after the call that found the run over resumes too (to nothing).
        let mut done = fresh();
        while done.next_step().is_some() {}
        let mut resumed = fresh().with_position(done.position().clone()).unwrap();
        assert!(resumed.next_step().is_none());
        for bad in [zero, skipped, unscheduled, huge] {
            assert!(fresh().with_position(bad).is_err());
        }
    }

    #[test]
    fn sizes_that_overflow_are_refused_not_wrapped() {
        let mut big = config(None);
        big.seq_len = 1;
        big.batch_tokens = 1 << 62;
        big.world_size = 4;
        assert!(big.validate().is_err());
        let mut seeded = config(None);
        seeded.seed = u64::MAX - 1;
        assert!(Chunks::new(seeded, &[100], 2).is_err());
    }

    #[test]
    fn refuses_what_cannot_run() {
        let mut bad = config(None);
        bad.batch_tokens = 6;
        assert!(Chunks::new(bad, &[100], 1).is_err());
        assert!(Chunks::new(config(None), &[7], 1).is_err());
        let mut two = config(None);
        two.world_size = 2;
        let schedule = BatchSizeSchedule::new(DurationUnit::Steps, vec![(0, 12)]).unwrap();
        two.batch_schedule = Some(schedule);
        assert!(two.validate().is_err());
    }
}
