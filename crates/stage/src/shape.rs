//! The shape rule: how many rows of which length one step takes and emits, per mode and batch
//! sizing. Its one home: the core pops by it, the epoch plan counts the batches a rank's
//! tokens fill by it, and `seqwarm plan`, `stream` and the trainer's learning-rate horizon
//! count tokens by it.
//!
//! - Composer's modes (`truncate`, `truncate-keep-eos`, `reshape`) read rows of the maximum
//!   length and cut them; the other modes read rows of the scheduled length.
//! - `BatchSize::Rows(B)`: `B` rows. `BatchSize::Tokens(budget)`: `budget / len` rows of the
//!   scheduled length, except in `reshape`, where the budget bounds the reshaped output:
//!   `budget / max` rows of the maximum length.
//! - `reshape` emits `rows * max / len` rows (Composer's `numel // len`); every other mode
//!   emits the rows it read.

use seqwarm_schedule::{Progress, ProgressUnit, Schedule};

use crate::config::Warmup;
use crate::epochs::EpochBoundary;
use crate::mode::Mode;
use crate::sizing::BatchSize;

/// The shape of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepShape {
    /// The scheduled sequence length of the step.
    pub seq_len: usize,
    /// Rows the step takes from the stream.
    pub rows_in: usize,
    /// The length of those rows: the maximum length in Composer's modes, else `seq_len`.
    pub row_len_in: usize,
    /// Rows the step emits, each `seq_len` long.
    pub rows_out: usize,
}

impl StepShape {
    /// Tokens the step takes from the stream.
    pub fn tokens_in(&self) -> u64 {
        self.rows_in as u64 * self.row_len_in as u64
    }

    /// Positions the step emits (its real tokens, except for the padding of packed rows).
    pub fn tokens_out(&self) -> u64 {
        self.rows_out as u64 * self.seq_len as u64
    }
}

/// The shape of a step at `seq_len` under `mode` and `batch_size`, for a schedule whose longest
/// length is `max_len`.
pub fn step_shape(mode: Mode, batch_size: BatchSize, seq_len: usize, max_len: usize) -> StepShape {
    let seq_len = seq_len.max(1);
    let max_len = max_len.max(seq_len);
    let rows_in = match (mode, batch_size) {
        (_, BatchSize::Rows(rows)) => rows,
        (Mode::Reshape, BatchSize::Tokens(budget)) => (budget / max_len).max(1),
        (_, BatchSize::Tokens(budget)) => (budget / seq_len).max(1),
    };
    let row_len_in = if mode.is_composer() { max_len } else { seq_len };
    let rows_out = if mode == Mode::Reshape {
        rows_in.saturating_mul(max_len) / seq_len
    } else {
        rows_in
    };
    StepShape {
        seq_len,
        rows_in,
        row_len_in,
        rows_out,
    }
}

impl Warmup {
    /// The shape of a step at sequence length `seq_len` ([`crate::shape`]).
    pub fn shape(&self, seq_len: usize) -> StepShape {
        step_shape(self.mode(), self.batch_size(), seq_len, self.max_len())
    }

    /// The most tokens any step of this warmup takes in, whatever its length: a bound for
    /// checks made before training starts.
    pub fn largest_step_tokens(&self) -> u64 {
        // A step's intake is monotone in its length under every mode and sizing, so one of
        // the ends bounds it: the longest length in most cases, but the *shortest* in Composer's
        // cutting modes under a token budget (`budget / len` rows, each read at the maximum
        // length).
        let shortest = usize::try_from(self.schedule().min_len()).unwrap_or(usize::MAX);
        let ends = self
            .shape(self.max_len())
            .tokens_in()
            .max(self.shape(shortest).tokens_in());
        match self.batch_size() {
            // A budget too small for one row still takes a whole row (the ends count it).
            BatchSize::Tokens(budget) => ends.max(budget as u64),
            BatchSize::Rows(_) => ends,
        }
    }

    /// The shape of the step taken at `progress`.
    pub fn shape_at(&self, progress: &Progress) -> StepShape {
        let len = usize::try_from(self.schedule().seq_len(progress)).unwrap_or(usize::MAX);
        self.shape(len)
    }
}

/// Positions emitted over the first `steps` steps of `schedule` under `mode` and `batch_size`,
/// in O(change points); `None` unless the schedule counts steps (in samples or tokens, the
/// step at which each length starts depends on the shapes before it).
pub fn tokens_over_steps(
    schedule: &Schedule,
    mode: Mode,
    batch_size: BatchSize,
    steps: u64,
) -> Option<u64> {
    if schedule.unit() != ProgressUnit::Steps {
        return None;
    }
    let max = usize::try_from(schedule.max_len()).unwrap_or(usize::MAX);
    let mut points = schedule
        .change_points()
        .take_while(|p| p.position < steps)
        .peekable();
    let mut total = 0u64;
    while let Some(point) = points.next() {
        let end = points.peek().map_or(steps, |next| next.position);
        let len = usize::try_from(point.seq_len).unwrap_or(usize::MAX);
        let shape = step_shape(mode, batch_size, len, max);
        total = total.saturating_add((end - point.position).saturating_mul(shape.tokens_out()));
    }
    Some(total)
}

/// How many steps some epochs of data fill ([`Warmup::epoch_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSteps {
    /// The steps.
    pub steps: u64,
    /// Whether that is exact given exact token counts: every length of the schedule takes in
    /// as many tokens per step (Composer's modes with rows per batch, `reshape` with a
    /// budget), so the count is Composer's (`max_duration = "Nep"`, incomplete batches
    /// dropped). Otherwise it is counted at the maximum length's shape, an estimate.
    pub exact: bool,
}

/// Change points looked at to decide whether every length takes in as many tokens.
const SHAPES_COMPARED: usize = 100_000;

impl Warmup {
    /// The steps `epochs` epochs of `tokens` tokens each fill, counted as the stage takes them
    /// in (with an EOS per document when one is set), one rank, `boundary` between epochs:
    /// with `restart` each epoch's incomplete last batch is dropped, with `carry` only the
    /// run's.
    pub fn epoch_steps(&self, tokens: u64, epochs: u64, boundary: EpochBoundary) -> EpochSteps {
        let per_step = self.shape(self.max_len()).tokens_in().max(1);
        let mut compared = 0;
        let same = self
            .schedule()
            .change_points()
            .take(SHAPES_COMPARED + 1)
            .all(|p| {
                compared += 1;
                let len = usize::try_from(p.seq_len).unwrap_or(usize::MAX);
                self.shape(len).tokens_in() == per_step
            });
        let exact = same && compared <= SHAPES_COMPARED;
        let epochs = epochs.max(1);
        let steps = match boundary {
            EpochBoundary::Restart => (tokens / per_step).saturating_mul(epochs),
            EpochBoundary::Carry => tokens.saturating_mul(epochs) / per_step,
        };
        EpochSteps { steps, exact }
    }
}

/// Positions the shape policy of `schedule` gives up over its first `steps` steps under `mode`
/// and `batch_size`: the schedule without its policy minus the schedule with it (negative
/// where an explicit list raises short lengths). `None` without a policy, unless the schedule
/// counts steps, or when the schedule without its policy changes length more than
/// `max_changes` times before `steps` (the count walks its change points).
pub fn tokens_given_up(
    schedule: &Schedule,
    mode: Mode,
    batch_size: BatchSize,
    steps: u64,
    max_changes: usize,
) -> Option<i128> {
    schedule.allowed_lengths()?;
    let plain = schedule.without_shapes();
    let changes = plain
        .change_points()
        .take_while(|p| p.position < steps)
        .take(max_changes.saturating_add(1))
        .count();
    if changes > max_changes {
        return None;
    }
    let unsnapped = tokens_over_steps(&plain, mode, batch_size, steps)?;
    let snapped = tokens_over_steps(schedule, mode, batch_size, steps)?;
    Some(i128::from(unsnapped) - i128::from(snapped))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use seqwarm_schedule::ScheduleConfig;

    use super::*;

    #[test]
    fn epoch_steps_are_exact_where_every_length_reads_as_many_tokens() {
        let warmup = |mode, size| {
            crate::WarmupConfig::new(ScheduleConfig::composer(8, 64, 0.5, 100).with_step(8))
                .with_mode(mode)
                .with_batch_size(size)
                .build()
                .unwrap()
        };
        // 4 rows of 64 a step: 1000 tokens fill 3 steps an epoch (restart) or 11 over 3
        // epochs run together (carry).
        let w = warmup(Mode::Truncate, BatchSize::Rows(4));
        let steps = |boundary| w.epoch_steps(1000, 3, boundary);
        assert_eq!(
            steps(EpochBoundary::Restart),
            EpochSteps {
                steps: 9,
                exact: true
            }
        );
        assert_eq!(
            steps(EpochBoundary::Carry),
            EpochSteps {
                steps: 11,
                exact: true
            }
        );
        let reshape = warmup(Mode::Reshape, BatchSize::Tokens(256));
        assert!(reshape.epoch_steps(1000, 1, EpochBoundary::Restart).exact);
        // Rows of the scheduled length take fewer tokens early: an estimate.
        let repack = warmup(Mode::Repack, BatchSize::Rows(4));
        assert!(!repack.epoch_steps(1000, 1, EpochBoundary::Carry).exact);
    }

    #[test]
    fn composer_modes_read_rows_of_the_maximum_length() {
        let s = step_shape(Mode::Truncate, BatchSize::Rows(4), 16, 64);
        assert_eq!((s.rows_in, s.row_len_in, s.rows_out), (4, 64, 4));
        assert_eq!((s.tokens_in(), s.tokens_out()), (256, 64));
        let s = step_shape(Mode::Reshape, BatchSize::Rows(4), 16, 64);
        assert_eq!((s.rows_in, s.row_len_in, s.rows_out), (4, 64, 16));
        let s = step_shape(Mode::Repack, BatchSize::Rows(4), 16, 64);
        assert_eq!((s.rows_in, s.row_len_in, s.rows_out), (4, 16, 4));
    }

    #[test]
    fn a_token_budget_sizes_rows_by_length_except_in_reshape() {
        let budget = BatchSize::Tokens(1024);
        assert_eq!(step_shape(Mode::Repack, budget, 16, 64).rows_in, 64);
        assert_eq!(step_shape(Mode::Truncate, budget, 16, 64).rows_in, 64);
        // Reshape: 1024 / 64 = 16 rows of max, re-flowed into 64 rows of 16.
        let s = step_shape(Mode::Reshape, budget, 16, 64);
        assert_eq!((s.rows_in, s.rows_out), (16, 64));
        // Never zero rows.
        assert_eq!(
            step_shape(Mode::Repack, BatchSize::Tokens(10), 64, 64).rows_in,
            1
        );
    }

    #[test]
    fn tokens_over_steps_sums_the_change_points() {
        let schedule = ScheduleConfig::linear(8, 1024, 0.3, 10_000)
            .build()
            .unwrap();
        // The figures `seqwarm plan` prints for its defaults at 8 rows per batch.
        let constant = tokens_over_steps(
            &ScheduleConfig::constant(1024).build().unwrap(),
            Mode::Repack,
            BatchSize::Rows(8),
            10_000,
        );
        assert_eq!(constant, Some(81_920_000));
        assert_eq!(
            tokens_over_steps(&schedule, Mode::Repack, BatchSize::Rows(8), 10_000),
            Some(69_627_968)
        );
        let tokens = ScheduleConfig::linear(8, 64, 0.5, 100)
            .with_unit(ProgressUnit::Tokens)
            .build()
            .unwrap();
        assert_eq!(
            tokens_over_steps(&tokens, Mode::Repack, BatchSize::Rows(8), 10),
            None
        );
    }

    proptest! {
        #[test]
        fn shapes_are_consistent(
            mode in proptest::sample::select(Mode::ALL.to_vec()),
            rows in 1usize..64,
            budget_rows in 1usize..64,
            len in 1usize..512,
            extra in 0usize..512,
        ) {
            let max = len + extra;
            for sizing in [BatchSize::Rows(rows), BatchSize::Tokens(budget_rows * max)] {
                let s = step_shape(mode, sizing, len, max);
                prop_assert!(s.rows_in >= 1);
                // No mode emits more positions than it reads.
                prop_assert!(s.tokens_out() <= s.tokens_in());
                // Only Composer's modes read rows longer than the scheduled length.
                prop_assert_eq!(s.row_len_in == max && max != len, mode.is_composer() && max != len);
                // A token budget is never exceeded by what is emitted.
                if let BatchSize::Tokens(b) = sizing {
                    prop_assert!(s.tokens_out() <= b as u64 || s.rows_in == 1);
                }
            }
        }
    }
}
