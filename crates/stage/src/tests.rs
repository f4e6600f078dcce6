//! The stage driven directly, with in-memory documents: no Parquet, no async runtime.

use proptest::prelude::*;
use seqwarm_batcher::Tensor;
use seqwarm_schedule::{ProgressUnit, ScheduleConfig};

use crate::{
    Action, BatchSize, Documents, EpochBoundary, EpochConfig, EpochPlan, Mode, Origin, PlanState,
    ScheduledBatch, StageError, Stats, UnitInfo, WarmupConfig, WarmupCore,
};

/// Deterministic documents: `count` documents of 1..=`max_len` tokens, each token unique
/// (document index * 10_000 + position), so that any loss, repeat or reorder is visible.
fn documents(count: usize, max_len: usize, seed: u64) -> Vec<Vec<i32>> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    (0..count)
        .map(|d| {
            let len = 1 + rng.below(max_len);
            (0..len).map(|p| (d * 10_000 + p) as i32).collect()
        })
        .collect()
}

/// A run of documents with its origin.
fn run(docs: &[Vec<i32>], origin: Origin) -> Documents {
    let mut offsets = vec![0];
    let mut tokens = Vec::new();
    for d in docs {
        tokens.extend_from_slice(d);
        offsets.push(tokens.len());
    }
    Documents::new(Tensor::vector(tokens), offsets)
        .unwrap()
        .with_origin(origin)
}

/// Work units: consecutive groups of `per_unit` documents.
struct Units {
    units: Vec<Vec<Vec<i32>>>,
}

impl Units {
    fn new(docs: &[Vec<i32>], per_unit: usize) -> Self {
        Self {
            units: docs.chunks(per_unit).map(<[_]>::to_vec).collect(),
        }
    }

    fn info(&self) -> Vec<UnitInfo> {
        self.units
            .iter()
            .map(|u| UnitInfo {
                documents: u.len() as u64,
                tokens: u.iter().map(Vec::len).sum::<usize>() as u64,
            })
            .collect()
    }
}

/// Drives a plan as an I/O driver would, reading each unit as two runs (so that units read in
/// several pieces are covered).
struct Driver<'a> {
    units: &'a Units,
    reads: Option<crate::Reads>,
    /// The next position in the reads, and which of its two runs.
    next: (u64, usize),
    /// What the plan said, with each reads, would come next ([`EpochPlan::upcoming_reads`]).
    hints: Vec<Option<crate::Reads>>,
    /// Every reads asked for, in order.
    asked: Vec<crate::Reads>,
}

impl<'a> Driver<'a> {
    fn new(units: &'a Units) -> Self {
        Self {
            units,
            reads: None,
            next: (0, 0),
            hints: Vec::new(),
            asked: Vec::new(),
        }
    }

    /// Runs `plan` until it finishes or `limit` more batches were emitted.
    fn run(
        &mut self,
        plan: &mut EpochPlan,
        limit: usize,
    ) -> Result<Vec<ScheduledBatch>, StageError> {
        let mut out = Vec::new();
        while out.len() < limit {
            match plan.next_action()? {
                Action::Emit(batch) => out.push(batch),
                Action::Read { reads: r, .. } => {
                    self.next = (r.start, 0);
                    self.asked.push(r.clone());
                    self.hints.push(plan.upcoming_reads());
                    self.reads = Some(r);
                }
                Action::Await { .. } => self.read_next(plan)?,
                Action::Finished => break,
            }
        }
        Ok(out)
    }

    fn read_next(&mut self, plan: &mut EpochPlan) -> Result<(), StageError> {
        let Some(r) = &self.reads else {
            panic!("awaiting before any reads");
        };
        let (position, part) = self.next;
        let Some(unit) = r.unit_at(position) else {
            return plan.end_of_reads();
        };
        let docs = &self.units.units[unit];
        let half = docs.len() / 2;
        let (range, first) = if part == 0 {
            (0..half, 0)
        } else {
            (half..docs.len(), half)
        };
        self.next = if part == 0 {
            (position, 1)
        } else {
            (position + 1, 0)
        };
        if range.is_empty() {
            return Ok(());
        }
        let origin = Origin {
            epoch: r.epoch,
            unit: position,
            first_document: first as u64,
        };
        plan.push(run(&docs[range], origin))
    }
}

/// Runs `plan` to its end (or `limit` batches) with a fresh driver.
fn drive(
    plan: &mut EpochPlan,
    units: &Units,
    limit: usize,
) -> Result<Vec<ScheduledBatch>, StageError> {
    Driver::new(units).run(plan, limit)
}

fn warmup(mode: Mode, sizing: BatchSize, eos: Option<i64>, shuffle: usize) -> WarmupConfig {
    WarmupConfig::new(ScheduleConfig::linear(8, 64, 0.5, 40).with_step(8))
        .with_mode(mode)
        .with_batch_size(sizing)
        .with_eos_id(eos)
        .with_pack_window(5)
        .with_shuffle_buffer(shuffle, 3)
}

fn plan(warmup: &WarmupConfig, epochs: EpochConfig, units: &Units) -> EpochPlan {
    let core = WarmupCore::new(warmup.build().unwrap());
    EpochPlan::new(units.info(), epochs, core).unwrap()
}

/// A batch as comparable values: step, epoch, seq_len, and every field's rows by name. The
/// epoch is part of it: a resume while the last epoch drained once said epoch 0.
type Comparable = (u64, u64, usize, Vec<(String, Vec<Vec<i64>>)>);

fn fingerprint(batches: &[ScheduledBatch]) -> Vec<Comparable> {
    batches
        .iter()
        .map(|b| {
            let fields = b
                .batch
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_rows_i64()))
                .collect();
            (b.step, b.epoch, b.seq_len, fields)
        })
        .collect()
}

fn modes() -> Vec<Mode> {
    Mode::ALL.to_vec()
}

#[test]
fn every_token_of_every_epoch_arrives_in_order_when_nothing_is_shuffled() {
    let docs = documents(60, 40, 1);
    let units = Units::new(&docs, 7);
    let config = warmup(Mode::Repack, BatchSize::Rows(3), None, 0).with_keep_last(true);
    let epochs = EpochConfig::default()
        .with_shuffle_units(false)
        .with_epochs(2);
    let mut p = plan(&config, epochs, &units);
    let batches = drive(&mut p, &units, usize::MAX).unwrap();
    let emitted: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let ids = b.batch.input_ids().unwrap().to_rows_i64();
            let mask = b.batch.get("attention_mask").map(Tensor::to_rows_i64);
            ids.into_iter()
                .enumerate()
                .flat_map(move |(r, row)| {
                    let mask = mask.clone();
                    row.into_iter()
                        .enumerate()
                        .filter(move |(c, _)| mask.as_ref().is_none_or(|m| m[r][*c] == 1))
                        .map(|(_, t)| t)
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let one_epoch: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    let expected: Vec<i64> = one_epoch.iter().chain(&one_epoch).copied().collect();
    assert_eq!(emitted, expected);
    let stats = p.stats();
    assert!(stats.is_balanced(), "{stats:?}");
    assert_eq!((stats.tokens_dropped, stats.tokens_buffered), (0, 0));
    assert_eq!(batches.last().unwrap().epoch, 1);
}

#[test]
fn the_upcoming_reads_are_the_next_epochs_reads_when_the_plan_can_tell() {
    let docs = documents(300, 50, 9);
    let units = Units::new(&docs, 7);
    for mode in modes() {
        let config = warmup(mode, BatchSize::Tokens(256), Some(7), 4);
        for (world, epochs) in [(1, 1), (1, 3), (1, 0), (2, 3)] {
            let epochs_config = |rank| {
                EpochConfig::default()
                    .with_seed(5)
                    .with_epochs(epochs)
                    .with_rank(rank, world)
            };
            let mut p = plan(&config, epochs_config(0), &units);
            let mut driver = Driver::new(&units);
            // With no epoch limit: four epochs' worth.
            let emitted = driver.run(&mut p, 600).unwrap();
            assert!(
                !emitted.is_empty(),
                "{mode}, {world} ranks, {epochs} epochs"
            );
            let asked = driver.asked.len();
            assert!(epochs == 1 || asked > 1, "{mode}: {asked} reads");
            for (i, hint) in driver.hints.iter().enumerate() {
                match (world, driver.asked.get(i + 1)) {
                    // A rank among several reads round and round: no end to read past.
                    (2, _) => assert_eq!(hint, &None, "{mode}: several ranks"),
                    (_, Some(next)) => assert_eq!(hint.as_ref(), Some(next), "{mode}: reads {i}"),
                    // The last epoch's reads: nothing follows, unless the run was cut short.
                    (_, None) if epochs > 0 => assert_eq!(hint, &None, "{mode}: the last epoch"),
                    (_, None) => {}
                }
            }
            // Resumed half-way: the hint is the reads that follow, the next epoch's from
            // their start.
            if world == 1 && epochs == 3 {
                let half = emitted.len() / 2;
                let mut p = plan(&config, epochs_config(0), &units);
                drive(&mut p, &units, half).unwrap();
                let state = roundtrip(&p.state());
                let mut resumed = resume(&config, epochs_config(0), &units, &state).unwrap();
                let mut driver = Driver::new(&units);
                let more = driver.run(&mut resumed, 600).unwrap();
                assert_eq!(half + more.len(), emitted.len(), "{mode}");
                for (i, hint) in driver.hints.iter().enumerate() {
                    assert_eq!(
                        hint.as_ref(),
                        driver.asked.get(i + 1),
                        "{mode}: resumed, {i}"
                    );
                }
                assert!(driver.asked.iter().skip(1).all(|r| r.start == 0));
            }
        }
    }
}

#[test]
fn the_unit_order_is_a_function_of_seed_and_epoch() {
    let units = Units::new(&documents(40, 10, 2), 4);
    let config = warmup(Mode::Repack, BatchSize::Rows(2), None, 0);
    let order = |seed: u64, epoch: u64| {
        let mut p = plan(
            &config,
            EpochConfig::default().with_seed(seed).with_epochs(3),
            &units,
        );
        for _ in 0..epoch {
            p.push(run(
                &units.units[0][..1],
                Origin {
                    epoch: p.epoch(),
                    ..Origin::default()
                },
            ))
            .unwrap();
            p.end_of_reads().unwrap();
        }
        p.reads().order.to_vec()
    };
    assert_eq!(order(7, 0), order(7, 0));
    assert_ne!(order(7, 0), order(7, 1));
    assert_ne!(order(7, 0), order(8, 0));
    let mut sorted = order(7, 1);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
}

#[test]
fn composer_modes_match_composer_written_out() {
    // Composer's pipeline, independently: documents each followed by EOS, concatenated, cut
    // into rows of max, B rows per step, then set_batch_sequence_length at the step's length.
    let docs = documents(200, 90, 3);
    let (eos, rows, max) = (99_999i64, 3usize, 64usize);
    let stream: Vec<i64> = docs
        .iter()
        .flat_map(|d| d.iter().map(|&t| i64::from(t)).chain([eos]))
        .collect();
    for mode in [Mode::Truncate, Mode::Reshape] {
        let config = WarmupConfig::new(ScheduleConfig::composer(8, 64, 0.6, 60).with_step(8))
            .with_mode(mode)
            .with_batch_size(BatchSize::Rows(rows))
            .with_eos_id(Some(eos));
        let warmup = config.build().unwrap();
        let mut core = WarmupCore::new(warmup.clone());
        core.push(run(&docs, Origin::default())).unwrap();
        let mut batches = Vec::new();
        while let Some(b) = core.finish().unwrap() {
            batches.push(b);
        }
        let per_step = rows * max;
        assert_eq!(batches.len(), stream.len() / per_step);
        for (step, b) in batches.iter().enumerate() {
            let chunk = &stream[step * per_step..(step + 1) * per_step];
            let len = warmup.schedule().seq_len_at(step as u64) as usize;
            let expected: Vec<Vec<i64>> = match mode {
                Mode::Truncate => chunk
                    .chunks(max)
                    .map(|r| r[..len.min(max)].to_vec())
                    .collect(),
                _ => chunk[..per_step / len * len]
                    .chunks(len)
                    .map(<[i64]>::to_vec)
                    .collect(),
            };
            assert_eq!(
                b.batch.input_ids().unwrap().to_rows_i64(),
                expected,
                "{mode} step {step}"
            );
        }
        assert!(core.stats().is_balanced());
    }
}

/// Composer replays its dataset every epoch: rows of the maximum length cut from the same
/// stream, B per step, the incomplete last batch dropped; each step cut at its global step's
/// length. The Composer modes do the same over several epochs by default (restart), and a
/// resume at any batch boundary, including inside an epoch's flush, is identical.
#[test]
fn composer_modes_replay_every_epoch_as_composer_does() {
    let docs = documents(120, 90, 5);
    let units = Units::new(&docs, 10);
    let (eos, rows, max) = (99_999i64, 3usize, 64usize);
    let stream: Vec<i64> = docs
        .iter()
        .flat_map(|d| d.iter().map(|&t| i64::from(t)).chain([eos]))
        .collect();
    let per_step = rows * max;
    let steps_per_epoch = stream.len() / per_step;
    assert_ne!(
        stream.len() % per_step,
        0,
        "a tail to drop, or the test proves nothing"
    );
    for mode in [Mode::Truncate, Mode::Reshape] {
        let config = WarmupConfig::new(ScheduleConfig::composer(8, 64, 0.6, 100).with_step(8))
            .with_mode(mode)
            .with_batch_size(BatchSize::Rows(rows))
            .with_eos_id(Some(eos));
        let warmup = config.build().unwrap();
        let epochs = EpochConfig::default()
            .with_shuffle_units(false)
            .with_epochs(3);
        let batches = drive(
            &mut plan(&config, epochs.clone(), &units),
            &units,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(batches.len(), 3 * steps_per_epoch, "{mode}");
        for (global, b) in batches.iter().enumerate() {
            let step = global % steps_per_epoch;
            let chunk = &stream[step * per_step..(step + 1) * per_step];
            let len = warmup.schedule().seq_len_at(global as u64) as usize;
            let expected: Vec<Vec<i64>> = match mode {
                Mode::Truncate => chunk.chunks(max).map(|r| r[..len].to_vec()).collect(),
                _ => chunk[..per_step / len * len]
                    .chunks(len)
                    .map(<[i64]>::to_vec)
                    .collect(),
            };
            let got = b.batch.input_ids().unwrap().to_rows_i64();
            assert_eq!(got, expected, "{mode} global step {global}");
            assert_eq!(b.epoch, (global / steps_per_epoch) as u64);
        }
        for cut in 1..batches.len() {
            let mut p = plan(&config, epochs.clone(), &units);
            let mut resumed_batches = drive(&mut p, &units, cut).unwrap();
            let state = roundtrip(&p.state());
            let mut resumed = resume(&config, epochs.clone(), &units, &state).unwrap();
            resumed_batches.extend(drive(&mut resumed, &units, usize::MAX).unwrap());
            assert_eq!(
                fingerprint(&resumed_batches),
                fingerprint(&batches),
                "{mode} cut {cut}"
            );
            assert!(resumed.stats().is_balanced());
        }
        // Carried instead, the second epoch starts with the first one's tail.
        let carried = drive(
            &mut plan(
                &config,
                epochs
                    .clone()
                    .with_epoch_boundary(Some(EpochBoundary::Carry)),
                &units,
            ),
            &units,
            usize::MAX,
        )
        .unwrap();
        assert_ne!(
            carried[steps_per_epoch]
                .batch
                .input_ids()
                .unwrap()
                .to_rows_i64()[0][..8],
            batches[steps_per_epoch]
                .batch
                .input_ids()
                .unwrap()
                .to_rows_i64()[0][..8]
        );
    }
}

#[test]
fn a_state_at_the_end_resumes_to_nothing_left_in_every_mode() {
    let docs = documents(80, 50, 4);
    let units = Units::new(&docs, 9);
    for mode in modes() {
        for keep_last in [false, true] {
            let config = warmup(mode, BatchSize::Tokens(256), Some(7), 0).with_keep_last(keep_last);
            let mut p = plan(&config, EpochConfig::default(), &units);
            let batches = drive(&mut p, &units, usize::MAX).unwrap();
            assert!(!batches.is_empty());
            let stats = p.stats();
            assert!(stats.is_balanced(), "{mode}: {stats:?}");
            assert_eq!(
                stats.tokens_buffered, 0,
                "{mode}: the end leaves nothing carried"
            );
            let state = roundtrip(&p.state());
            assert!(state.is_done());
            let mut resumed = resume(&config, EpochConfig::default(), &units, &state).unwrap();
            let more = drive(&mut resumed, &units, usize::MAX).unwrap();
            assert!(
                more.is_empty(),
                "{mode}: {} batches after the end",
                more.len()
            );
            assert_eq!(resumed.stats(), stats, "{mode}: counts unchanged");
        }
    }
}

#[test]
fn a_state_at_the_step_limit_resumes_to_nothing_then_continues_with_a_larger_limit() {
    let docs = documents(120, 50, 5);
    let units = Units::new(&docs, 10);
    for mode in modes() {
        let config = warmup(mode, BatchSize::Rows(4), None, 6);
        let full = drive(
            &mut plan(&config, EpochConfig::default(), &units),
            &units,
            usize::MAX,
        )
        .unwrap();
        let limited = EpochConfig::default().with_max_steps(Some(5));
        let mut p = plan(&config, limited.clone(), &units);
        let first = drive(&mut p, &units, usize::MAX).unwrap();
        assert_eq!(first.len(), 5, "{mode}");
        let state = roundtrip(&p.state());
        let again = drive(
            &mut resume(&config, limited, &units, &state).unwrap(),
            &units,
            usize::MAX,
        )
        .unwrap();
        assert!(again.is_empty(), "{mode}: same limit, nothing left");
        let mut rest = resume(&config, EpochConfig::default(), &units, &state).unwrap();
        let mut all = first;
        all.extend(drive(&mut rest, &units, usize::MAX).unwrap());
        assert_eq!(fingerprint(&all), fingerprint(&full), "{mode}");
    }
}

fn roundtrip(state: &PlanState) -> PlanState {
    serde_json::from_str(&serde_json::to_string(state).unwrap()).unwrap()
}

fn resume(
    config: &WarmupConfig,
    epochs: EpochConfig,
    units: &Units,
    state: &PlanState,
) -> Result<EpochPlan, StageError> {
    let core = WarmupCore::new(config.build().unwrap());
    EpochPlan::resume(units.info(), epochs, core, state)
}

#[test]
fn ranks_read_disjoint_units_and_emit_as_many_batches() {
    let docs = documents(300, 60, 6);
    let units = Units::new(&docs, 11);
    let config = warmup(Mode::Repack, BatchSize::Tokens(128), Some(1), 0);
    for world in [2usize, 3] {
        let mut seen = std::collections::BTreeSet::new();
        let mut counts = Vec::new();
        for rank in 0..world {
            let epochs = EpochConfig::default().with_rank(rank, world).with_seed(9);
            let mut p = plan(&config, epochs, &units);
            let batches = drive(&mut p, &units, usize::MAX).unwrap();
            counts.push(batches.len());
            assert!(p.stats().is_balanced());
            let documents: std::collections::BTreeSet<i64> = batches
                .iter()
                .flat_map(|b| b.batch.input_ids().unwrap().to_vec_i64())
                .filter(|&t| t != 1)
                .map(|t| t / 10_000)
                .collect();
            // A document of one rank's units never shows up at another rank.
            assert!(
                seen.is_disjoint(&documents),
                "world {world}: rank {rank} overlaps"
            );
            seen.extend(documents);
        }
        assert!(
            counts.iter().all(|&c| c == counts[0] && c > 0),
            "{counts:?}"
        );
    }
}

#[test]
fn a_multi_rank_resume_mid_epoch_is_identical_in_every_mode() {
    let docs = documents(300, 60, 7);
    let units = Units::new(&docs, 11);
    for mode in modes() {
        let config = warmup(mode, BatchSize::Tokens(128), None, 4);
        let epochs = EpochConfig::default().with_rank(1, 3).with_epochs(2);
        let full = drive(
            &mut plan(&config, epochs.clone(), &units),
            &units,
            usize::MAX,
        )
        .unwrap();
        assert!(full.len() >= 3, "{mode}: {} batches", full.len());
        let mut cuts = vec![1, full.len() / 3, full.len() / 2 + 1, full.len() - 1];
        cuts.dedup();
        for cut in cuts {
            let mut p = plan(&config, epochs.clone(), &units);
            let mut batches = drive(&mut p, &units, cut).unwrap();
            let state = roundtrip(&p.state());
            let mut resumed = resume(&config, epochs.clone(), &units, &state).unwrap();
            batches.extend(drive(&mut resumed, &units, usize::MAX).unwrap());
            assert_eq!(
                fingerprint(&batches),
                fingerprint(&full),
                "{mode} cut at {cut}"
            );
        }
    }
}

#[test]
fn an_epoch_without_tokens_is_an_error_not_a_loop() {
    // Documents without tokens and no EOS: an endless run would take nothing, forever.
    let units = Units::new(&vec![Vec::new(); 12], 4);
    let config = warmup(Mode::Repack, BatchSize::Rows(2), None, 0);
    let mut p = plan(&config, EpochConfig::default().with_epochs(0), &units);
    let err = drive(&mut p, &units, usize::MAX).unwrap_err();
    assert!(err.to_string().contains("epoch 0 gave no tokens"), "{err}");
    // With an EOS after each, the same documents are tokens, and the run goes on.
    let config = warmup(Mode::Repack, BatchSize::Rows(2), Some(5), 0);
    let mut p = plan(&config, EpochConfig::default().with_epochs(0), &units);
    assert_eq!(drive(&mut p, &units, 10).unwrap().len(), 10);
}

#[test]
fn a_rank_that_cannot_fill_one_batch_is_refused_up_front() {
    let units = Units::new(&documents(8, 6, 2), 2);
    let core = |sizing| WarmupCore::new(warmup(Mode::Repack, sizing, None, 0).build().unwrap());
    // One epoch: the first epoch's least share against the first shape.
    let one = EpochConfig::default().with_rank(0, 4);
    let err = EpochPlan::new(units.info(), one, core(BatchSize::Rows(8))).unwrap_err();
    assert!(
        matches!(
            err,
            StageError::Config {
                field: "world_size",
                ..
            }
        ),
        "{err}"
    );
    // Several epochs: the least any order could give against the longest shape.
    let many = EpochConfig::default().with_rank(0, 2).with_epochs(3);
    let err = EpochPlan::new(units.info(), many, core(BatchSize::Rows(1))).unwrap_err();
    assert!(err.to_string().contains("longest shape"), "{err}");
}

#[test]
fn a_finished_run_resumed_with_more_epochs_reads_on() {
    let docs = documents(60, 30, 8);
    let units = Units::new(&docs, 6);
    for mode in modes() {
        let config = warmup(mode, BatchSize::Rows(2), Some(3), 0);
        let one = EpochConfig::default().with_shuffle_units(false);
        let mut p = plan(&config, one.clone(), &units);
        let first = drive(&mut p, &units, usize::MAX).unwrap();
        let state = roundtrip(&p.state());
        let two = one.with_epochs(2);
        let mut resumed = resume(&config, two.clone(), &units, &state).unwrap();
        let second = drive(&mut resumed, &units, usize::MAX).unwrap();
        assert!(!first.is_empty() && !second.is_empty(), "{mode}");
        assert!(second.iter().all(|b| b.epoch == 1), "{mode}");
        let stats = resumed.stats();
        assert!(stats.is_balanced(), "{mode}: {stats:?}");
        assert_eq!(stats.tokens_buffered, 0, "{mode}");
        // The second epoch took in every document again, EOS included.
        let epoch: u64 = docs.iter().map(|d| d.len() as u64 + 1).sum();
        assert_eq!(stats.tokens_in, 2 * epoch, "{mode}");
    }
}

#[test]
fn states_that_do_not_fit_are_refused_with_a_reason() {
    let docs = documents(50, 30, 8);
    let units = Units::new(&docs, 10);
    let config = warmup(Mode::Repack, BatchSize::Rows(2), None, 0);
    let mut p = plan(&config, EpochConfig::default(), &units);
    drive(&mut p, &units, 3).unwrap();
    let state = serde_json::to_value(p.state()).unwrap();
    let edited = |key: &str, value: serde_json::Value| {
        let mut s = state.clone();
        s[key] = value;
        serde_json::from_value::<PlanState>(s).unwrap()
    };
    let refuse = |state: PlanState, needle: &str| {
        let err = resume(&config, EpochConfig::default(), &units, &state)
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "`{err}` should say `{needle}`");
    };
    refuse(edited("unit", 999_999.into()), "row group position 999999");
    refuse(edited("epoch", 7.into()), "epoch 7 of a 1-epoch run");
    refuse(edited("document", 999.into()), "document 999");
    let mut counts = state.clone();
    counts["core"]["stats"]["tokens_in"] = 1.into();
    refuse(serde_json::from_value(counts).unwrap(), "do not add up");
    let mut keys = state.clone();
    keys["surprise"] = 1.into();
    assert!(serde_json::from_value::<PlanState>(keys).is_err());
}

#[test]
fn more_ranks_than_units_is_an_error() {
    let units = Units::new(&documents(10, 10, 9), 5);
    let core = WarmupCore::new(
        warmup(Mode::Repack, BatchSize::Rows(2), None, 0)
            .build()
            .unwrap(),
    );
    let err =
        EpochPlan::new(units.info(), EpochConfig::default().with_rank(0, 3), core).unwrap_err();
    assert!(
        err.to_string().contains("3 ranks but only 2 row groups"),
        "{err}"
    );
}

#[test]
fn a_finished_core_stays_finished_and_its_state_says_so() {
    let config = warmup(Mode::Repack, BatchSize::Rows(2), None, 0);
    let mut core = WarmupCore::new(config.build().unwrap());
    core.push(run(&documents(10, 20, 10), Origin::default()))
        .unwrap();
    while core.finish().unwrap().is_some() {}
    assert!(core.is_finished() && core.state().is_finished());
    let mut again = WarmupCore::new(config.build().unwrap());
    again.restore(&core.state()).unwrap();
    again
        .push(run(&documents(3, 20, 11), Origin::default()))
        .unwrap();
    assert!(again.next_batch().unwrap().is_none());
    assert!(again.finish().unwrap().is_none());
}

fn any_mode() -> impl Strategy<Value = Mode> {
    proptest::sample::select(Mode::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every token taken in is emitted, cut, dropped or still buffered, after every batch and
    /// at the end; at the end nothing is buffered.
    #[test]
    fn the_counts_always_add_up(
        mode in any_mode(),
        count in 1usize..60,
        max_doc in 1usize..80,
        seed in any::<u64>(),
        rows in 1usize..5,
        tokens in any::<bool>(),
        eos in proptest::option::of(0i64..5),
        shuffle in 0usize..8,
        keep_last in any::<bool>(),
        unit in prop_oneof![Just(ProgressUnit::Steps), Just(ProgressUnit::Tokens)],
        world in 1usize..3,
    ) {
        let docs = documents(count, max_doc, seed);
        let units = Units::new(&docs, 4);
        prop_assume!(units.units.len() >= world);
        let sizing = if tokens { BatchSize::Tokens(rows * 64) } else { BatchSize::Rows(rows) };
        let config = warmup(mode, sizing, eos, shuffle)
            .with_keep_last(keep_last)
            .with_schedule(ScheduleConfig::linear(8, 64, 0.5, 400).with_unit(unit));
        let core = WarmupCore::new(config.build().unwrap());
        let epochs = EpochConfig::default().with_rank(world - 1, world).with_epochs(2);
        let mut p = match EpochPlan::new(units.info(), epochs, core) {
            Ok(p) => p,
            // Too little data for one batch per rank: refused, and tested on its own.
            Err(StageError::Config { field: "world_size", .. }) if world > 1 => return Ok(()),
            Err(e) => panic!("{e}"),
        };
        let mut driver = Driver::new(&units);
        let mut seen = 0u64;
        loop {
            let batches = driver.run(&mut p, 1).unwrap();
            let stats: Stats = p.stats();
            prop_assert!(stats.is_balanced(), "{:?}", stats);
            if batches.is_empty() {
                break;
            }
            seen += 1;
            prop_assert_eq!(stats.batches, seen);
        }
        let stats = p.stats();
        prop_assert_eq!(stats.tokens_buffered, 0);
        let taken: u64 = docs.iter().map(|d| d.len() as u64).sum::<u64>();
        if world == 1 {
            // One rank reads every document of both epochs.
            let eos_tokens = if eos.is_some() { 2 * count as u64 } else { 0 };
            prop_assert_eq!(stats.tokens_in, 2 * taken + eos_tokens);
        }
    }
}

/// Runs ranks of `worlds[0]` for `steps[0]` batches, merges their states, resumes ranks of
/// `worlds[1]` from the merged state for `steps[1]` batches, and so on; the last world runs to
/// the end. Gives every real token emitted (in each rank's order, ranks one after another), the
/// last ranks' counters, and the batches each rank of each world emitted.
fn elastic_run(
    config: &WarmupConfig,
    shuffle_units: bool,
    units: &Units,
    worlds: &[usize],
    steps: &[usize],
) -> (Vec<i64>, Vec<Stats>, Vec<Vec<usize>>) {
    let epochs = |rank: usize, world: usize| {
        EpochConfig::default()
            .with_rank(rank, world)
            .with_seed(4)
            .with_shuffle_units(shuffle_units)
    };
    let real = |b: &ScheduledBatch| -> Vec<i64> {
        let mask = b.batch.get("attention_mask").map(Tensor::to_vec_i64);
        let ids = b.batch.input_ids().unwrap().to_vec_i64();
        match mask {
            Some(mask) => ids
                .into_iter()
                .zip(mask)
                .filter(|(_, m)| *m != 0)
                .map(|(t, _)| t)
                .collect(),
            None => ids.into_iter().filter(|&t| t != 0).collect(),
        }
    };
    let mut emitted = Vec::new();
    let mut counts = Vec::new();
    let mut merged: Option<crate::MergedState> = None;
    let mut last_stats = Vec::new();
    for (phase, &world) in worlds.iter().enumerate() {
        let limit = steps.get(phase).copied().unwrap_or(usize::MAX);
        let mut states = Vec::new();
        let mut phase_counts = Vec::new();
        last_stats.clear();
        for rank in 0..world {
            let core = WarmupCore::new(config.build().unwrap());
            let mut p = match &merged {
                None => EpochPlan::new(units.info(), epochs(rank, world), core).unwrap(),
                Some(m) => {
                    EpochPlan::resume_merged(units.info(), epochs(rank, world), core, m).unwrap()
                }
            };
            let batches = drive(&mut p, units, limit).unwrap();
            phase_counts.push(batches.len());
            emitted.extend(batches.iter().flat_map(real));
            states.push(roundtrip(&p.state()));
            last_stats.push(p.stats());
        }
        counts.push(phase_counts);
        if phase + 1 < worlds.len() {
            let m = crate::MergedState::merge(&states).unwrap();
            merged = Some(serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap());
        }
    }
    (emitted, last_stats, counts)
}

#[test]
fn an_elastic_resume_loses_and_repeats_no_token_in_every_mode() {
    // Tokens 1 + document * 10 000 + position: unique and never the padding id.
    let docs: Vec<Vec<i32>> = documents(400, 50, 12)
        .into_iter()
        .map(|d| d.into_iter().map(|t| t + 1).collect())
        .collect();
    let units = Units::new(&docs, 9);
    let input: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    let total = input.len() as u64;
    for mode in modes() {
        for shuffle_buffer in [0, 5] {
            let config =
                warmup(mode, BatchSize::Rows(4), None, shuffle_buffer).with_keep_last(true);
            for (worlds, steps) in [
                (vec![4, 2], vec![3]),
                (vec![4, 3], vec![5]),
                (vec![2, 5], vec![4]),
                (vec![4, 1], vec![2]),
                (vec![4, 2, 3], vec![2, 3]),
            ] {
                let what =
                    format!("{mode}, shuffle buffer {shuffle_buffer}, {worlds:?} after {steps:?}");
                let (emitted, stats, counts) = elastic_run(&config, true, &units, &worlds, &steps);
                // Every rank of a world emits as many batches (lockstep).
                for c in &counts {
                    assert!(c.iter().all(|&n| n == c[0]), "{what}: {counts:?}");
                }
                // No token twice, none that is not in the input.
                let unique: std::collections::BTreeSet<i64> = emitted.iter().copied().collect();
                assert_eq!(unique.len(), emitted.len(), "{what}: a token emitted twice");
                let inputs: std::collections::BTreeSet<i64> = input.iter().copied().collect();
                assert!(unique.is_subset(&inputs), "{what}");
                // Every token taken in at most once (with one rank at the end, every token of
                // the epoch exactly once; with several, the epoch ends when the rank with the
                // least data has filled its batches, and the others' last units stay unread),
                // and each accounted for: emitted, cut by the mode, or dropped and counted.
                let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
                if *worlds.last().unwrap() == 1 {
                    assert_eq!(sum(|s| s.tokens_in), total, "{what}: tokens taken in");
                } else {
                    assert!(
                        sum(|s| s.tokens_in) <= total,
                        "{what}: tokens taken in {} of {total}: {stats:?} {counts:?}",
                        sum(|s| s.tokens_in)
                    );
                }
                assert_eq!(sum(|s| s.tokens_out), emitted.len() as u64, "{what}");
                assert_eq!(
                    sum(|s| s.tokens_out) + sum(|s| s.tokens_cut) + sum(|s| s.tokens_dropped),
                    sum(|s| s.tokens_in),
                    "{what}: tokens accounted"
                );
                // One rank at the end, a lossless mode: every token of the epoch, exactly.
                if *worlds.last().unwrap() == 1
                    && matches!(mode, Mode::Repack | Mode::PackGreedy | Mode::PackBestfit)
                {
                    assert_eq!(unique, inputs, "{what}");
                }
            }
        }
    }
}

#[test]
fn after_an_elastic_resume_without_shuffling_each_rank_reads_in_unit_order() {
    let docs: Vec<Vec<i32>> = documents(300, 40, 3)
        .into_iter()
        .map(|d| d.into_iter().map(|t| t + 1).collect())
        .collect();
    let units = Units::new(&docs, 7);
    let config = warmup(Mode::Repack, BatchSize::Rows(4), None, 0).with_keep_last(true);
    let (emitted, stats, _) = elastic_run(&config, false, &units, &[4, 1], &[3]);
    // The four ranks' first batches, then the one rank: the tokens the old ranks carried, then
    // the rest of the epoch in the units' order.
    let mut sorted = emitted.clone();
    sorted.sort_unstable();
    let input: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    assert_eq!(sorted, input);
    assert_eq!(stats.len(), 1);
    let tail = &emitted[emitted.len() - 100..];
    assert!(tail.windows(2).all(|w| w[0] < w[1]), "{tail:?}");
}

#[test]
fn states_of_different_steps_or_an_ended_run_do_not_merge() {
    let docs = documents(200, 30, 5);
    let units = Units::new(&docs, 9);
    let config = warmup(Mode::Repack, BatchSize::Rows(4), None, 0);
    let state_after = |rank: usize, steps: usize| {
        let epochs = EpochConfig::default().with_rank(rank, 2);
        let mut p = plan(&config, epochs, &units);
        drive(&mut p, &units, steps).unwrap();
        p.state()
    };
    let err = crate::MergedState::merge(&[state_after(0, 2), state_after(1, 3)]).unwrap_err();
    assert!(
        err.to_string().contains("rank 1's step is 3, rank 0's 2"),
        "{err}"
    );
    let err = crate::MergedState::merge(&[]).unwrap_err();
    assert!(err.to_string().contains("no states"), "{err}");
    let ended = state_after(0, usize::MAX);
    let err = crate::MergedState::merge(&[ended.clone(), ended]).unwrap_err();
    assert!(err.to_string().contains("not inside an epoch"), "{err}");
}

#[test]
fn ranks_with_a_shuffle_buffer_do_not_read_their_units_twice() {
    // The documents a rank's shuffle buffer holds when its share is read are its own: they go
    // to the batches before any unit is read again, and best fit packs a partial window then
    // (neither did once: ranks re-read units whose tokens the epoch did not need, and best fit
    // over a window larger than a rank's share emitted repeated documents).
    let docs = documents(400, 50, 12);
    let units = Units::new(&docs, 9);
    let best_fit_window = warmup(Mode::PackBestfit, BatchSize::Rows(4), None, 5)
        .with_keep_last(true)
        .with_pack_window(crate::DEFAULT_PACK_WINDOW);
    let configs = modes()
        .into_iter()
        .map(|mode| warmup(mode, BatchSize::Rows(4), None, 5).with_keep_last(true))
        .chain([best_fit_window]);
    for config in configs {
        let mode = config.mode();
        for world in [2, 3, 4] {
            for rank in 0..world {
                let epochs = EpochConfig::default().with_rank(rank, world).with_seed(4);
                let mut p = plan(&config, epochs, &units);
                let batches = drive(&mut p, &units, usize::MAX).unwrap();
                assert!(!batches.is_empty());
                let stats = p.stats();
                assert_eq!(stats.units_repeated, 0, "{mode}, rank {rank} of {world}");
                assert!(stats.is_balanced(), "{mode}: {stats:?}");
            }
        }
    }
}

/// Drives `plan`, skipping the units in `bad` (as the loader does under `on_error = "skip"`).
fn drive_skipping(
    plan: &mut EpochPlan,
    units: &Units,
    limit: usize,
    bad: &[usize],
) -> Vec<ScheduledBatch> {
    let mut out = Vec::new();
    let mut reads: Option<crate::Reads> = None;
    let mut next = 0u64;
    while out.len() < limit {
        match plan.next_action().unwrap() {
            Action::Emit(b) => out.push(b),
            Action::Read { reads: r, .. } => {
                next = r.start;
                reads = Some(r);
            }
            Action::Await { .. } => {
                let r = reads.as_ref().unwrap();
                let Some(unit) = r.unit_at(next) else {
                    plan.end_of_reads().unwrap();
                    continue;
                };
                let origin = Origin {
                    epoch: r.epoch,
                    unit: next,
                    first_document: 0,
                };
                next += 1;
                if bad.contains(&unit) {
                    plan.push_skipped(origin.unit, format!("unit {unit}"))
                        .unwrap();
                } else {
                    plan.push(run(&units.units[unit], origin)).unwrap();
                }
            }
            Action::Finished => break,
        }
    }
    out
}

#[test]
fn a_rank_reading_its_units_again_resumes_identically_at_every_batch() {
    // Half of the rank's units skipped: it reads its share again to fill the epoch's batches,
    // through its shuffle buffer; a checkpoint anywhere, that zone included, resumes the same.
    let docs = documents(300, 60, 7);
    let units = Units::new(&docs, 11);
    for mode in [Mode::Repack, Mode::PackBestfit] {
        let config = warmup(mode, BatchSize::Tokens(128), None, 4);
        let epochs = EpochConfig::default()
            .with_rank(0, 2)
            .with_epochs(2)
            .with_seed(1);
        let mut whole = plan(&config, epochs.clone(), &units);
        let order: Vec<usize> = whole.reads().order.to_vec();
        let bad: Vec<usize> = order.iter().copied().skip(1).step_by(2).collect();
        let full = drive_skipping(&mut whole, &units, usize::MAX, &bad);
        assert!(
            whole.stats().units_repeated > 0,
            "{mode}: the share is read again"
        );
        for cut in 1..full.len() {
            let mut first = plan(&config, epochs.clone(), &units);
            let mut batches = drive_skipping(&mut first, &units, cut, &bad);
            let state = roundtrip(&first.state());
            let mut second = resume(&config, epochs.clone(), &units, &state).unwrap();
            batches.extend(drive_skipping(&mut second, &units, usize::MAX, &bad));
            assert_eq!(
                fingerprint(&batches),
                fingerprint(&full),
                "{mode} cut at {cut}"
            );
        }
    }
}

#[test]
fn a_merged_state_that_does_not_fit_is_refused_not_a_panic() {
    let docs = documents(200, 30, 5);
    let units = Units::new(&docs, 9);
    let config = warmup(Mode::Repack, BatchSize::Rows(4), None, 0);
    let states: Vec<PlanState> = (0..2)
        .map(|rank| {
            let mut p = plan(&config, EpochConfig::default().with_rank(rank, 2), &units);
            drive(&mut p, &units, 3).unwrap();
            p.state()
        })
        .collect();
    let merged = serde_json::to_value(crate::MergedState::merge(&states).unwrap()).unwrap();
    let resume_from = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut value = merged.clone();
        edit(&mut value);
        let state: crate::MergedState = serde_json::from_value(value).unwrap();
        let core = WarmupCore::new(config.build().unwrap());
        EpochPlan::resume_merged(units.info(), EpochConfig::default(), core, &state)
    };
    assert!(resume_from(&|_| {}).is_ok());
    let err = resume_from(&|v| v["positions"] = serde_json::json!([])).unwrap_err();
    assert!(err.to_string().contains("0 ranks' positions"), "{err}");
    let err = resume_from(&|v| v["positions"][0][1] = serde_json::json!(999_999)).unwrap_err();
    assert!(err.to_string().contains("document 999999"), "{err}");
    let err = resume_from(&|v| v["step_in_epoch"] = serde_json::json!(99)).unwrap_err();
    assert!(err.to_string().contains("batch 99 of the epoch"), "{err}");
}

#[test]
fn a_segment_limit_bounds_packed_rows_and_their_fixed_cu_seqlens() {
    let docs = documents(300, 20, 7);
    let units = Units::new(&docs, 25);
    for mode in [Mode::PackGreedy, Mode::PackBestfit] {
        let config = warmup(mode, BatchSize::Rows(4), None, 0).with_max_segments_per_row(Some(3));
        let built = config.build().unwrap();
        let mut p = plan(&config, EpochConfig::default(), &units);
        let batches = drive(&mut p, &units, usize::MAX).unwrap();
        assert!(!batches.is_empty());
        for b in &batches {
            let segments = b.batch.get("segment_ids").unwrap().to_rows_i64();
            assert!(segments.iter().flatten().all(|&s| s <= 3), "{mode:?}");
            let size = built.fixed_cu_seqlens_len(b.seq_len);
            assert_eq!(size, 4 * (3 + 1).min(b.seq_len) + 1);
            let varlen = b.batch.varlen(Some(size)).unwrap().unwrap();
            assert_eq!(varlen.cu_seqlens.len(), size);
        }
        // Every token is accounted for: emitted, or in the dropped last partial batch.
        let stats = p.stats();
        assert_eq!(
            stats.tokens_in,
            docs.iter().map(|d| d.len() as u64).sum::<u64>()
        );
        assert_eq!(stats.tokens_out + stats.tokens_dropped, stats.tokens_in);
    }
    for mode in [Mode::Repack, Mode::Truncate, Mode::Reshape] {
        let err = warmup(mode, BatchSize::Rows(4), None, 0)
            .with_max_segments_per_row(Some(3))
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("max_segments_per_row"), "{err}");
    }
    let zero = warmup(Mode::PackGreedy, BatchSize::Rows(4), None, 0)
        .with_max_segments_per_row(Some(0))
        .build();
    assert!(zero.unwrap_err().to_string().contains("at least 1 segment"));
}

#[test]
fn packed_rows_without_a_mask_count_the_same_real_tokens() {
    // Best fit pads its rows and the kept last batch is padded: without `attention_mask` the
    // padding must still not count as tokens (the packer counts them).
    let docs = documents(200, 30, 11);
    let units = Units::new(&docs, 25);
    for mode in [Mode::PackGreedy, Mode::PackBestfit] {
        let full = warmup(mode, BatchSize::Tokens(64), Some(9), 0).with_keep_last(true);
        let fields = crate::PackFields::from_names(["position_ids"]).unwrap();
        let lean = full.clone().with_pack_fields(fields);
        let all = drive(
            &mut plan(&full, EpochConfig::default(), &units),
            &units,
            usize::MAX,
        );
        let mut p = plan(&lean, EpochConfig::default(), &units);
        let some = drive(&mut p, &units, usize::MAX).unwrap();
        let all = all.unwrap();
        assert_eq!(all.len(), some.len(), "{mode:?}");
        assert!(
            all.iter()
                .any(|b| b.tokens < b.batch.input_ids().unwrap().numel() as u64)
        );
        for (a, b) in all.iter().zip(&some) {
            assert_eq!(a.tokens, b.tokens, "{mode:?} step {}", a.step);
            assert_eq!(a.batch.get("position_ids"), b.batch.get("position_ids"));
            assert_eq!(a.batch.input_ids(), b.batch.input_ids());
            assert!(b.batch.get("attention_mask").is_none());
        }
        let stats = p.stats();
        assert_eq!(stats.tokens_out, all.iter().map(|b| b.tokens).sum::<u64>());
        assert_eq!(stats.tokens_out + stats.tokens_dropped, stats.tokens_in);
    }
    let err = warmup(Mode::Repack, BatchSize::Rows(4), None, 0)
        .with_pack_fields(crate::PackFields::INPUT_IDS_ONLY)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("pack_fields"), "{err}");
}

#[test]
fn a_packer_sink_under_a_cutting_mode_or_used_before_counts_the_batchs_tokens() {
    use seqwarm_batcher::{PackerConfig, RowSink, Tokens};
    let schedule = ScheduleConfig::linear(8, 32, 0.5, 4000);
    let doc = || Documents::single((0..1000).collect::<Vec<i32>>());
    // Truncate cuts the packer's 32-token rows to 8: the batch holds 16 tokens, not 64.
    let truncate = WarmupConfig::new(schedule.clone())
        .with_mode(Mode::Truncate)
        .with_batch_size(BatchSize::Rows(2))
        .build()
        .unwrap();
    let mut core = WarmupCore::with_sink(truncate, PackerConfig::default().build());
    core.push(doc()).unwrap();
    let batch = core.next_batch().unwrap().unwrap();
    assert_eq!(batch.tokens, batch.batch.token_count() as u64);
    assert_eq!(batch.tokens, 16);
    // A sink that handed out rows before the core took it: those are no batch of the core's.
    let mut used = PackerConfig::default().build();
    let ids = Tensor::vector((0..64).collect::<Vec<i32>>());
    used.push_document(Tokens::new(&ids), None).unwrap();
    assert!(used.pop(32, 2).unwrap().is_some());
    let greedy = WarmupConfig::new(schedule)
        .with_mode(Mode::PackGreedy)
        .with_batch_size(BatchSize::Rows(2))
        .build()
        .unwrap();
    let mut core = WarmupCore::with_sink(greedy, used);
    core.push(doc()).unwrap();
    let batch = core.next_batch().unwrap().unwrap();
    assert_eq!(batch.tokens, 16);
}

#[test]
fn the_largest_step_of_a_token_budget_in_composers_cuts_is_at_the_shortest_length() {
    // 64-token budget, lengths 8 to 64: truncate reads 64 / 8 = 8 rows of the maximum length
    // at the start (512 tokens), one row at the end; repack reads whole rows of the length.
    let budget = BatchSize::Tokens(64);
    let truncate = warmup(Mode::Truncate, budget, None, 0).build().unwrap();
    assert_eq!(truncate.largest_step_tokens(), 512);
    let repack = warmup(Mode::Repack, budget, None, 0).build().unwrap();
    assert_eq!(repack.largest_step_tokens(), 64);
    let rows = warmup(Mode::Truncate, BatchSize::Rows(3), None, 0)
        .build()
        .unwrap();
    assert_eq!(rows.largest_step_tokens(), 3 * 64);
}

/// Issue 22, point 7: a merged state resumed on a huge world size spun in a loop over
/// `0..world_size` (2^40 never ended); it is now refused at once, as a plain state is.
#[test]
fn a_merged_state_on_more_ranks_than_units_is_refused_at_once() {
    let docs = documents(200, 30, 5);
    let units = Units::new(&docs, 9);
    let config = warmup(Mode::Repack, BatchSize::Rows(4), None, 0);
    let states: Vec<PlanState> = (0..2)
        .map(|rank| {
            let mut p = plan(&config, EpochConfig::default().with_rank(rank, 2), &units);
            drive(&mut p, &units, 3).unwrap();
            p.state()
        })
        .collect();
    let merged = crate::MergedState::merge(&states).unwrap();
    for world in [units.units.len() + 1, 1_000_000_000, 1 << 40] {
        let core = WarmupCore::new(config.build().unwrap());
        let epochs = EpochConfig::default().with_rank(0, world);
        let Err(err) = EpochPlan::resume_merged(units.info(), epochs, core, &merged) else {
            panic!("{world} ranks: accepted");
        };
        assert!(err.to_string().contains("row groups"), "{world}: {err}");
    }
}

/// Issue 22, point 1: a merged state resumed on many ranks late in the last epoch emitted 0
/// batches on every rank and exited 0, most of the epoch neither emitted nor counted. A rest
/// that cannot give every rank one batch is an error that says to use fewer ranks.
#[test]
fn a_rest_that_cannot_feed_every_rank_in_the_last_epoch_is_an_error_not_an_empty_run() {
    let docs = documents(240, 30, 7);
    let units = Units::new(&docs, 6);
    let config = warmup(Mode::Repack, BatchSize::Tokens(256), None, 0);
    let states: Vec<PlanState> = (0..4)
        .map(|rank| {
            let mut p = plan(&config, EpochConfig::default().with_rank(rank, 4), &units);
            let epoch_steps = p.steps_per_epoch().unwrap() as usize;
            drive(&mut p, &units, epoch_steps - 1).unwrap();
            p.state()
        })
        .collect();
    let merged = crate::MergedState::merge(&states).unwrap();
    let world = units.units.len();
    let mut refused = 0;
    for rank in 0..world {
        let core = WarmupCore::new(config.build().unwrap());
        let epochs = EpochConfig::default().with_rank(rank, world);
        match EpochPlan::resume_merged(units.info(), epochs, core, &merged) {
            Err(e) => {
                assert!(e.to_string().contains("resume on fewer ranks"), "{e}");
                refused += 1;
            }
            Ok(mut p) => {
                let batches = drive(&mut p, &units, usize::MAX).unwrap();
                assert!(
                    !batches.is_empty(),
                    "rank {rank} of {world}: resumed to nothing"
                );
            }
        }
    }
    assert_eq!(
        refused, world,
        "every rank sees the same rest, so every rank refuses"
    );
}

/// What `stats` emitted, cut or dropped: with nothing buffered, everything they took in.
fn accounted(stats: &[Stats]) -> u64 {
    stats
        .iter()
        .map(|s| s.tokens_out + s.tokens_cut + s.tokens_dropped)
        .sum()
}

/// Tokens dropped by all ranks.
fn dropped(stats: &[Stats]) -> u64 {
    stats.iter().map(|s| s.tokens_dropped).sum()
}

/// 400 documents of tokens >= 1 (0 is padding) in units of 9, and their tokens.
fn elastic_corpus() -> (Units, u64) {
    let docs: Vec<Vec<i32>> = documents(400, 50, 12)
        .into_iter()
        .map(|d| d.into_iter().map(|t| t + 1).collect())
        .collect();
    let total = docs.iter().map(|d| d.len() as u64).sum();
    (Units::new(&docs, 9), total)
}

#[test]
fn an_elastic_resume_emits_or_counts_every_token_of_the_epoch() {
    // Issue 22, point 1. Merged and resumed on another number of ranks, the ranks left units
    // of the epoch neither read nor counted: the rest's batch count took a partly read unit as
    // empty, the rest was dealt round-robin whatever each rank held, and what a rank had not
    // reached when the epoch ended was not counted. Now every token of the epoch is emitted
    // once or counted as dropped, as in an uninterrupted multi-rank run (checked too), and
    // about as few are dropped as such a run on the new ranks drops.
    let (units, total) = elastic_corpus();
    let (mut elastic, mut uninterrupted) = (0u64, 0u64);
    for mode in [Mode::Repack, Mode::PackGreedy, Mode::PackBestfit] {
        for shuffle_buffer in [0, 5] {
            let config = warmup(mode, BatchSize::Rows(4), None, shuffle_buffer);
            let steps_per_epoch = |world: usize| {
                let epochs = EpochConfig::default().with_rank(0, world).with_seed(4);
                plan(&config, epochs, &units).steps_per_epoch().unwrap() as usize
            };
            // (old ranks, new ranks, also midway through the epoch): 4 -> 24 only early, while
            // the rest still feeds every new rank.
            for (from, to, midway) in [
                (4, 2, true),
                (4, 3, true),
                (4, 4, true),
                (4, 5, true),
                (28, 7, true),
                (4, 24, false),
            ] {
                let what = format!("{mode}, shuffle buffer {shuffle_buffer}, {to} ranks");
                let (_, plain, _) = elastic_run(&config, true, &units, &[to], &[]);
                assert_eq!(accounted(&plain), total, "{what}, uninterrupted: {plain:?}");
                let last = steps_per_epoch(from);
                let mut steps = vec![1];
                if midway {
                    steps.push(last / 2);
                }
                steps.retain(|&s| s >= 1 && s < last);
                steps.dedup();
                for step in steps {
                    let what = format!("{what}, after {step} steps on {from}");
                    let (emitted, stats, counts) =
                        elastic_run(&config, true, &units, &[from, to], &[step]);
                    assert!(
                        counts.iter().all(|c| c.iter().all(|&n| n == c[0])),
                        "{what}: {counts:?}"
                    );
                    assert!(counts[1][0] > 0, "{what}: no batch after the resume");
                    let unique: std::collections::BTreeSet<i64> = emitted.iter().copied().collect();
                    assert_eq!(unique.len(), emitted.len(), "{what}: a token emitted twice");
                    assert!(
                        stats
                            .iter()
                            .all(|s| s.tokens_buffered == 0 && s.units_repeated == 0),
                        "{what}: {stats:?}"
                    );
                    assert_eq!(
                        stats.iter().map(|s| s.tokens_out).sum::<u64>(),
                        emitted.len() as u64,
                        "{what}"
                    );
                    assert_eq!(
                        accounted(&stats),
                        total,
                        "{what}: every token of the epoch emitted or counted: {stats:?} {counts:?}"
                    );
                    // Ranks stop in lockstep, each giving up what it holds then: within one
                    // batch of the longest shape per rank of the uninterrupted run, and no more
                    // than it over all the cases.
                    let slack = to as u64 * 4 * 64;
                    assert!(
                        dropped(&stats) <= dropped(&plain) + slack,
                        "{what}: {} dropped, {} by the uninterrupted run",
                        dropped(&stats),
                        dropped(&plain)
                    );
                    elastic += dropped(&stats);
                    uninterrupted += dropped(&plain);
                }
            }
        }
    }
    assert!(
        elastic <= uninterrupted,
        "{elastic} tokens dropped after elastic resumes, {uninterrupted} without"
    );
}

#[test]
fn a_checkpoint_inside_a_unit_records_the_tokens_taken_from_it() {
    // What an elastic resume counts on of a partly read unit: its footer's tokens less those
    // its old rank took. Units are read in two runs here, and resumed from the middle.
    let docs = documents(300, 40, 9);
    let units = Units::new(&docs, 11);
    for mode in [Mode::Repack, Mode::PackBestfit] {
        let config = warmup(mode, BatchSize::Rows(4), None, 3);
        let epochs = EpochConfig::default().with_rank(1, 2).with_seed(2);
        let mut p = plan(&config, epochs.clone(), &units);
        let order = p.reads().order.to_vec();
        let taken = |state: &PlanState| {
            let (position, document) = state.position();
            let unit = &units.units[order[position as usize % order.len()]];
            unit[..document as usize]
                .iter()
                .map(|d| d.len() as u64)
                .sum::<u64>()
        };
        let mut driver = Driver::new(&units);
        for step in 0..12 {
            if driver.run(&mut p, 1).unwrap().is_empty() {
                break;
            }
            let state = roundtrip(&p.state());
            assert_eq!(
                state.unit_tokens(),
                Some(taken(&state)),
                "{mode}, step {step}"
            );
            let mut resumed = resume(&config, epochs.clone(), &units, &state).unwrap();
            drive(&mut resumed, &units, 1).unwrap();
            let later = resumed.state();
            assert_eq!(
                later.unit_tokens(),
                Some(taken(&later)),
                "{mode}, step {step}, resumed"
            );
        }
    }
}

/// Issue 22, point 6: `keep_last` padded the sub-row remainder into one more row than
/// Composer's `drop_last=False` over Hugging Face's `group_texts` (which drops it).
/// `LastBatch::FullRows` is Composer's: the complete rows as a final batch of fewer rows.
#[test]
fn full_rows_is_composers_drop_last_false_over_group_texts() {
    let docs = documents(101, 90, 8);
    let units = Units::new(&docs, 10);
    let (eos, rows, max) = (99_999i64, 3usize, 64usize);
    let stream: Vec<i64> = docs
        .iter()
        .flat_map(|d| d.iter().map(|&t| i64::from(t)).chain([eos]))
        .collect();
    let blocks = stream.len() / max;
    assert_ne!(
        blocks % rows,
        0,
        "a partial last batch, or the test proves nothing"
    );
    assert_ne!(
        stream.len() % max,
        0,
        "a sub-row remainder, or the test proves nothing"
    );
    for mode in [Mode::Truncate, Mode::Reshape] {
        let config = |last: crate::LastBatch| {
            WarmupConfig::new(ScheduleConfig::composer(8, 64, 0.6, 100).with_step(8))
                .with_mode(mode)
                .with_batch_size(BatchSize::Rows(rows))
                .with_eos_id(Some(eos))
                .with_last_batch(last)
        };
        let run = |last| {
            let epochs = EpochConfig::default().with_shuffle_units(false);
            drive(&mut plan(&config(last), epochs, &units), &units, usize::MAX).unwrap()
        };
        let warmup = config(crate::LastBatch::FullRows).build().unwrap();
        let full = run(crate::LastBatch::FullRows);
        assert_eq!(full.len(), blocks.div_ceil(rows), "{mode}");
        // Composer: group_texts' blocks, batched by `rows` with the last batch short, each
        // batch cut at its step's length.
        for (step, b) in full.iter().enumerate() {
            let first = step * rows;
            let chunk = &stream[first * max..(first + rows).min(blocks) * max];
            let len = warmup.schedule().seq_len_at(step as u64) as usize;
            let expected: Vec<Vec<i64>> = match mode {
                Mode::Truncate => chunk.chunks(max).map(|r| r[..len].to_vec()).collect(),
                _ => chunk[..chunk.len() / len * len]
                    .chunks(len)
                    .map(<[i64]>::to_vec)
                    .collect(),
            };
            assert_eq!(
                b.batch.input_ids().unwrap().to_rows_i64(),
                expected,
                "{mode} step {step}"
            );
        }
        let last = full.last().unwrap();
        let padded = run(crate::LastBatch::Padded);
        let padded_last = padded.last().unwrap();
        if mode == Mode::Truncate {
            assert_eq!(last.batch.rows(), blocks % rows);
            assert_eq!(
                padded_last.batch.rows(),
                blocks % rows + 1,
                "one padded row more"
            );
        }
        // Everything accounted: the remainder after the last complete row is dropped.
        let mut p = plan(
            &config(crate::LastBatch::FullRows),
            EpochConfig::default().with_shuffle_units(false),
            &units,
        );
        drive(&mut p, &units, usize::MAX).unwrap();
        let stats = p.stats();
        assert!(stats.is_balanced());
        assert_eq!(stats.tokens_dropped, (stream.len() % max) as u64, "{mode}");
    }
    // Only Composer's modes have rows of the maximum length to complete.
    let err = WarmupConfig::new(ScheduleConfig::linear(8, 64, 0.5, 40))
        .with_mode(Mode::Repack)
        .with_last_batch(crate::LastBatch::FullRows)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("keep_last"), "{err}");
}

/// Late in an epoch most of what is left is held rather than unread (best fit's window): the
/// old ranks' held pieces are dealt one by one, not each rank's whole, so more new ranks still
/// each get a batch and the ranks end evenly (4 -> 5 late in the epoch was refused, and
/// 4 -> 3 dropped four times what an uninterrupted 3-rank run drops).
#[test]
fn what_old_ranks_held_is_spread_over_the_new_ranks() {
    let (units, total) = elastic_corpus();
    let config = warmup(Mode::PackBestfit, BatchSize::Rows(2), None, 0).with_pack_window(60);
    let steps = plan(
        &config,
        EpochConfig::default().with_rank(0, 4).with_seed(4),
        &units,
    )
    .steps_per_epoch()
    .unwrap() as usize;
    for to in [3, 5] {
        let late = steps - 2;
        let (_, plain, _) = elastic_run(&config, true, &units, &[to], &[]);
        let (emitted, stats, counts) = elastic_run(&config, true, &units, &[4, to], &[late]);
        assert!(
            counts[1].iter().all(|&n| n == counts[1][0] && n > 0),
            "{to}: {counts:?}"
        );
        let unique: std::collections::BTreeSet<i64> = emitted.iter().copied().collect();
        assert_eq!(unique.len(), emitted.len(), "{to}: a token twice");
        assert_eq!(accounted(&stats), total, "{to}: {stats:?}");
        assert!(
            dropped(&stats) <= dropped(&plain) + to as u64 * 2 * 64,
            "{to}: {} dropped, {} uninterrupted",
            dropped(&stats),
            dropped(&plain)
        );
    }
}

/// Drives a plan as the loader does under kept steps: each unit's documents go in as the
/// plan's input hint says (placeholders for what only a skipped step takes, when the unit
/// completes that step; a kept step's rest widened; else half a unit at a time).
struct HintDriver<'a> {
    units: &'a Units,
    reads: Option<crate::Reads>,
    position: u64,
    document: usize,
    /// Runs pushed as placeholders.
    placeholders: usize,
}

impl<'a> HintDriver<'a> {
    fn new(units: &'a Units) -> Self {
        Self {
            units,
            reads: None,
            position: 0,
            document: 0,
            placeholders: 0,
        }
    }

    fn run(&mut self, plan: &mut EpochPlan) -> Result<Vec<ScheduledBatch>, StageError> {
        let mut out = Vec::new();
        loop {
            match plan.next_action()? {
                Action::Emit(batch) => out.push(batch),
                Action::Read { reads, .. } => {
                    (self.position, self.document) = (reads.start, 0);
                    self.reads = Some(reads);
                }
                Action::Await { .. } => self.read_next(plan)?,
                Action::Finished => return Ok(out),
            }
        }
    }

    fn read_next(&mut self, plan: &mut EpochPlan) -> Result<(), StageError> {
        use crate::{InputHint, Plan};
        let Some(r) = &self.reads else {
            panic!("awaiting before any reads");
        };
        let Some(unit) = r.unit_at(self.position) else {
            assert!(
                !plan.core().holds_placeholders(),
                "placeholders at the end of reads"
            );
            return plan.end_of_reads();
        };
        let docs = &self.units.units[unit][self.document..];
        if docs.is_empty() {
            // Where the loader would wait for the next row group: a checkpoint here must hold
            // no placeholders.
            assert!(
                !plan.core().holds_placeholders(),
                "placeholders across a wait"
            );
            (self.position, self.document) = (self.position + 1, 0);
            return Ok(());
        }
        let origin = Origin {
            epoch: r.epoch,
            unit: self.position,
            first_document: self.document as u64,
        };
        let eos = usize::from(plan.core().warmup().eos_id().is_some());
        // Documents 0..n hold tokens(n) tokens, each EOS counted.
        let tokens = |n: usize| docs[..n].iter().map(|d| d.len() + eos).sum::<usize>();
        let (n, placeholder) = match Plan::input_hint(plan, 0, origin) {
            // As the loader: placeholders only when this unit's rest completes the step.
            Some(InputHint::Skipped { tokens: wanted }) if tokens(docs.len()) >= wanted => {
                let fit = (0..=docs.len())
                    .take_while(|&n| tokens(n) <= wanted)
                    .last()
                    .unwrap_or(0);
                if fit > 0 { (fit, true) } else { (1, false) }
            }
            Some(InputHint::Kept { tokens: wanted }) => {
                let n = (1..=docs.len())
                    .find(|&n| tokens(n) >= wanted)
                    .unwrap_or(docs.len());
                (n, false)
            }
            _ => (docs.len().div_ceil(2), false),
        };
        self.document += n;
        let documents = if placeholder {
            self.placeholders += 1;
            let offsets = (0..=n).map(|k| tokens(k) - k * eos).collect();
            Documents::placeholders(seqwarm_batcher::DType::I32, offsets)?
        } else {
            run(&docs[..n], origin)
        };
        plan.push(documents.with_origin(origin))
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Under kept steps every step is still emitted, in order, with the same counts; the kept
    /// ones are the batches of the whole stream, although the input that only skipped steps
    /// take went in as placeholders and their tokens were dropped by count.
    #[test]
    fn kept_steps_hand_out_the_whole_streams_batches(
        mode in any_mode(),
        count in 1usize..60,
        max_doc in 1usize..80,
        seed in any::<u64>(),
        rows in 1usize..5,
        tokens in any::<bool>(),
        eos in proptest::option::of(0i64..5),
        shuffle in prop_oneof![Just(0usize), 1usize..6],
        keep_last in any::<bool>(),
        world in 1usize..3,
        stride in 1u64..5,
        offset in 0u64..4,
    ) {
        prop_assume!(offset < stride);
        let docs = documents(count, max_doc, seed);
        let units = Units::new(&docs, 4);
        prop_assume!(units.units.len() >= world);
        let sizing = if tokens { BatchSize::Tokens(rows * 64) } else { BatchSize::Rows(rows) };
        let config = warmup(mode, sizing, eos, shuffle).with_keep_last(keep_last);
        let epochs = EpochConfig::default().with_rank(world - 1, world).with_epochs(2);
        let make = || {
            let core = WarmupCore::new(config.build().unwrap());
            EpochPlan::new(units.info(), epochs.clone(), core)
        };
        let Ok(mut whole) = make() else { return Ok(()) };
        let all = drive(&mut whole, &units, usize::MAX).unwrap();
        let mut kept_plan = make().unwrap();
        let kept = crate::KeptSteps::new(stride, offset).unwrap();
        crate::Plan::set_kept_steps(&mut kept_plan, Some(kept));
        let mut driver = HintDriver::new(&units);
        let emitted = driver.run(&mut kept_plan).unwrap();
        let steps = |b: &[ScheduledBatch]| b.iter().map(|b| (b.step, b.seq_len, b.tokens)).collect::<Vec<_>>();
        prop_assert_eq!(steps(&emitted), steps(&all));
        let only_kept = |b: &[ScheduledBatch]| fingerprint(&b.iter().filter(|b| kept.contains(b.step)).cloned().collect::<Vec<_>>());
        prop_assert_eq!(only_kept(&emitted), only_kept(&all));
        prop_assert_eq!(kept_plan.stats(), whole.stats());
        if stride == 1 || mode.is_packing() || shuffle > 0 {
            prop_assert_eq!(driver.placeholders, 0);
        }
    }
}

/// Repack over many short documents, every second step kept: placeholders do go in, and a
/// skipped step's batch has no fields.
#[test]
fn skipped_steps_take_placeholders_and_build_nothing() {
    let docs = documents(400, 30, 7);
    let units = Units::new(&docs, 50);
    let config = warmup(Mode::Repack, BatchSize::Rows(4), None, 0);
    let core = WarmupCore::new(config.build().unwrap());
    let mut plan = EpochPlan::new(units.info(), EpochConfig::default(), core).unwrap();
    crate::Plan::set_kept_steps(&mut plan, crate::KeptSteps::new(2, 1));
    let mut driver = HintDriver::new(&units);
    let batches = driver.run(&mut plan).unwrap();
    assert!(
        driver.placeholders > 10,
        "{} placeholder runs",
        driver.placeholders
    );
    assert!(
        batches
            .iter()
            .filter(|b| b.step % 2 == 0)
            .all(|b| b.batch.is_empty())
    );
    assert!(
        batches
            .iter()
            .filter(|b| b.step % 2 == 1)
            .all(|b| !b.batch.is_empty())
    );
}

/// Placeholders where a kept step would read them are refused, not handed over as zeros.
#[test]
fn placeholders_for_a_kept_step_are_refused() {
    let config = warmup(Mode::Repack, BatchSize::Rows(2), None, 0);
    let mut core = WarmupCore::new(config.build().unwrap());
    let placeholders = || Documents::placeholders(seqwarm_batcher::DType::I32, vec![0, 5, 9]);
    // No kept steps set: every step is kept.
    let err = core.push(placeholders().unwrap()).unwrap_err().to_string();
    assert!(err.contains("placeholder"), "{err}");
    core.set_kept_steps(crate::KeptSteps::new(2, 0));
    let err = core.push(placeholders().unwrap()).unwrap_err().to_string();
    assert!(err.contains("placeholder"), "{err}");
    core.set_kept_steps(crate::KeptSteps::new(2, 1));
    core.push(placeholders().unwrap()).unwrap();
}
