//! Elastic resume end to end: the states of 4 ranks merged (through JSON) and resumed on 1, 2
//! and 3 ranks, with no token of the epoch lost or read twice; and where the rest of the epoch
//! divides evenly, the whole epoch emitted exactly, in the order of its units.

mod common;

use std::collections::BTreeSet;

use futures_util::StreamExt;
use seqwarm_loader::{
    BatchSize, LoaderBuilder, LoaderError, LoaderState, Mode, Stats, WarmupConfig,
};
use seqwarm_schedule::ScheduleConfig;

/// 500 documents of 1..=60 tokens, token `1 + document * 100 + position`: each unique.
fn documents() -> Vec<Vec<i32>> {
    common::documents(500, 60, 21)
        .iter()
        .enumerate()
        .map(|(d, doc)| (0..doc.len()).map(|p| (1 + d * 100 + p) as i32).collect())
        .collect()
}

fn warmup(mode: Mode) -> WarmupConfig {
    let schedule = ScheduleConfig::linear(8, 64, 0.5, 60).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(BatchSize::Rows(4))
        .with_keep_last(true)
        .with_shuffle_buffer(4, 1)
}

fn builder(dir: &std::path::Path, mode: Mode, rank: usize, world: usize) -> LoaderBuilder {
    LoaderBuilder::new([dir.display().to_string()], warmup(mode))
        .with_rank(rank, world)
        .with_seed(3)
}

/// Each rank of `world` from `state` (fresh when `None`) for at most `steps` batches: the real
/// tokens emitted, each rank's batch count, counters and state (through JSON).
async fn run_ranks(
    dir: &std::path::Path,
    mode: Mode,
    world: usize,
    state: Option<&LoaderState>,
    steps: usize,
) -> (Vec<i64>, Vec<usize>, Vec<Stats>, Vec<LoaderState>) {
    let (mut tokens, mut counts, mut stats, mut states) = (vec![], vec![], vec![], vec![]);
    for rank in 0..world {
        let mut b = builder(dir, mode, rank, world);
        if let Some(state) = state {
            b = b.with_state(state.clone());
        }
        let mut loader = b.build().await.unwrap();
        let mut n = 0;
        while n < steps {
            let Some(batch) = loader.next().await else {
                break;
            };
            // Padding is id 0 (the packer's batches have no attention mask to tell it).
            let real = common::real_tokens(&batch.unwrap().batch);
            tokens.extend(real.into_iter().filter(|&t| t != 0));
            n += 1;
        }
        counts.push(n);
        stats.push(loader.stats());
        let json = serde_json::to_string(&loader.state()).unwrap();
        states.push(LoaderState::from_json(&json).unwrap());
    }
    (tokens, counts, stats, states)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_ranks_resume_on_one_two_and_three_without_losing_or_repeating_a_token() {
    let dir = common::temp_dir("elastic");
    let docs = documents();
    for (i, part) in docs.chunks(100).enumerate() {
        common::write_flat(&dir.join(format!("s{i}.parquet")), part, 300);
    }
    let input: BTreeSet<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    for mode in [Mode::Repack, Mode::PackBestfit, Mode::Truncate] {
        let (before, counts, _, states) = run_ranks(&dir, mode, 4, None, 5).await;
        assert_eq!(counts, vec![5; 4]);
        // Given in any order.
        let mut shuffled = states.clone();
        shuffled.rotate_left(1);
        let merged = LoaderState::merge(&shuffled).unwrap();
        let merged = LoaderState::from_json(&merged.to_json().unwrap()).unwrap();
        assert_eq!((merged.merged_ranks(), merged.step()), (Some(4), 5));
        for world in [1, 2, 3] {
            let what = format!("{}: 4 ranks, then {world}", mode.name());
            let (after, counts, stats, _) =
                run_ranks(&dir, mode, world, Some(&merged), usize::MAX).await;
            assert!(
                counts.iter().all(|&c| c == counts[0] && c > 0),
                "{what}: {counts:?} {stats:?}"
            );
            let emitted: Vec<i64> = before.iter().chain(&after).copied().collect();
            let unique: BTreeSet<i64> = emitted.iter().copied().collect();
            assert_eq!(
                unique.len(),
                emitted.len(),
                "{what}: a token emitted twice: {stats:?} {counts:?} before {}",
                before.len()
            );
            assert!(unique.is_subset(&input), "{what}");
            let sum = |f: fn(&Stats) -> u64| stats.iter().map(f).sum::<u64>();
            assert_eq!(sum(|s| s.units_repeated), 0, "{what}");
            assert_eq!(sum(|s| s.tokens_out), emitted.len() as u64, "{what}");
            assert_eq!(
                sum(|s| s.tokens_in),
                sum(|s| s.tokens_out) + sum(|s| s.tokens_cut) + sum(|s| s.tokens_dropped),
                "{what}: every token taken in is emitted, cut or dropped (and counted)"
            );
            if world == 1 {
                // One rank reads the whole rest of the epoch: every token, exactly once.
                assert_eq!(sum(|s| s.tokens_in), input.len() as u64, "{what}");
                if mode != Mode::Truncate {
                    assert_eq!(unique, input, "{what}");
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merging_refuses_what_is_not_one_step_of_one_run_and_a_plain_state_says_to_merge() {
    let dir = common::temp_dir("elastic-refused");
    let docs = documents();
    for (i, part) in docs.chunks(100).enumerate() {
        common::write_flat(&dir.join(format!("s{i}.parquet")), part, 300);
    }
    let (_, _, _, states) = run_ranks(&dir, Mode::Repack, 2, None, 3).await;
    let err = LoaderState::merge(&states[..1]).unwrap_err();
    assert!(
        err.to_string().contains("rank 0 of 2, but 1 states"),
        "{err}"
    );
    let err = LoaderState::merge(&[states[0].clone(), states[0].clone()]).unwrap_err();
    assert!(err.to_string().contains("two states of rank 0"), "{err}");
    let (_, _, _, later) = run_ranks(&dir, Mode::Repack, 2, None, 4).await;
    let err = LoaderState::merge(&[states[0].clone(), later[1].clone()]).unwrap_err();
    assert!(err.to_string().contains("step"), "{err}");
    let merged = LoaderState::merge(&states).unwrap();
    let err = LoaderState::merge(&[merged]).unwrap_err();
    assert!(err.to_string().contains("merged already"), "{err}");
    // A rank's own state on another number of ranks: refused, saying how to do it.
    let err = builder(&dir, Mode::Repack, 0, 3)
        .with_state(states[0].clone())
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, LoaderError::State { .. }), "{err:?}");
    assert!(err.to_string().contains("seqwarm merge-states"), "{err}");
}

/// Each rank of `world` from `state` to the end of the epoch: its batches' real tokens, one
/// list per batch, and the step of its first batch.
async fn batches_of_ranks(
    builder: impl Fn(usize) -> LoaderBuilder,
    world: usize,
    state: Option<&LoaderState>,
    steps: usize,
) -> Vec<(Vec<Vec<i64>>, u64)> {
    let mut ranks = Vec::new();
    for rank in 0..world {
        let mut b = builder(rank);
        if let Some(state) = state {
            b = b.with_state(state.clone());
        }
        let mut loader = b.build().await.unwrap();
        let (mut batches, mut first) = (Vec::new(), None);
        while batches.len() < steps {
            let Some(batch) = loader.next().await else {
                break;
            };
            let batch = batch.unwrap();
            first.get_or_insert(batch.step);
            batches.push(common::real_tokens(&batch.batch));
        }
        ranks.push((batches, first.unwrap_or(u64::MAX)));
    }
    ranks
}

/// The ranks' batches in the order a data-parallel step consumes them: step by step, rank by
/// rank.
fn in_step_order(ranks: &[(Vec<Vec<i64>>, u64)]) -> Vec<i64> {
    let steps = ranks.iter().map(|(b, _)| b.len()).max().unwrap_or(0);
    (0..steps)
        .flat_map(|s| ranks.iter().filter_map(move |(b, _)| b.get(s)))
        .flatten()
        .copied()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_ranks_then_two_or_three_emit_the_epoch_exactly_and_in_unit_order() {
    // 24 units (one row group each) of 4 documents of 64 tokens: 256 tokens, exactly one batch
    // of a 256-token budget at every length of the schedule (64, 128). Units in order, no
    // document shuffle: 4 ranks take units 0-11 in 3 steps; the rest divides evenly among 2 or
    // 3 ranks, so the epoch is emitted whole, every token once, in the order of the units.
    let dir = common::temp_dir("elastic-exact");
    let mut input = Vec::new();
    for unit in 0..24 {
        let docs: Vec<Vec<i32>> = (0..4)
            .map(|d| (0..64).map(|p| 1 + unit * 1000 + d * 100 + p).collect())
            .collect();
        input.extend(docs.iter().flatten().map(|&t| i64::from(t)));
        common::write_flat(&dir.join(format!("u{unit:02}.parquet")), &docs, 1 << 20);
    }
    for mode in [Mode::Repack, Mode::PackGreedy] {
        let builder = |world: usize| {
            let dir = dir.clone();
            move |rank: usize| {
                let schedule = ScheduleConfig::linear(64, 128, 0.5, 12)
                    .with_step(64)
                    .build()
                    .unwrap();
                let warmup = WarmupConfig::new(schedule)
                    .with_mode(mode)
                    .with_batch_size(BatchSize::Tokens(256));
                LoaderBuilder::new([dir.display().to_string()], warmup)
                    .with_rank(rank, world)
                    .with_shuffle_units(false)
                    .with_seed(3)
            }
        };
        let mut states = Vec::new();
        let mut before = Vec::new();
        for rank in 0..4 {
            let mut loader = builder(4)(rank).build().await.unwrap();
            let mut batches = Vec::new();
            for _ in 0..3 {
                batches.push(common::real_tokens(
                    &loader.next().await.unwrap().unwrap().batch,
                ));
            }
            before.push((batches, 0));
            states.push(loader.state());
        }
        let merged = LoaderState::merge(&states).unwrap();
        let merged = LoaderState::from_json(&merged.to_json().unwrap()).unwrap();
        let first = in_step_order(&before);
        assert!(first == input[..12 * 256], "{}: 4 ranks", mode.name());
        for (world, steps) in [(2, 6), (3, 4)] {
            let what = format!("{}: 4 ranks, then {world}", mode.name());
            let after = batches_of_ranks(builder(world), world, Some(&merged), usize::MAX).await;
            let shape: Vec<(usize, u64)> = after.iter().map(|(b, s)| (b.len(), *s)).collect();
            assert_eq!(
                shape,
                vec![(steps, 3); world],
                "{what}: batches and first step"
            );
            let emitted: Vec<i64> = first
                .iter()
                .chain(&in_step_order(&after))
                .copied()
                .collect();
            // The whole epoch, every token once, in the order of the units.
            let differs = emitted.iter().zip(&input).position(|(a, b)| a != b);
            let units: Vec<Vec<i64>> = after
                .iter()
                .map(|(b, _)| b.iter().map(|t| t[0] / 1000).collect())
                .collect();
            assert!(
                emitted.len() == input.len() && differs.is_none(),
                "{what}: {} tokens emitted of {}, first difference at {differs:?}: {:?}; units by rank {units:?}",
                emitted.len(),
                input.len(),
                differs.map(|i| &emitted[i..(i + 4).min(emitted.len())])
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_stay_in_lockstep_over_later_epochs_after_an_elastic_resume() {
    // Two epochs; 4 ranks checkpoint early, midway and late in the first (late: some new
    // ranks' share of the rest is empty, and they hold only what they inherit), then 2, 3 or
    // 5 ranks finish the run: every rank emits the same number of batches.
    let dir = common::temp_dir("elastic-epochs");
    let docs = documents();
    for (i, part) in docs.chunks(100).enumerate() {
        common::write_flat(&dir.join(format!("s{i}.parquet")), part, 300);
    }
    let two_epochs = |rank: usize, world: usize, mode: Mode| {
        builder(&dir, mode, rank, world).with_epochs(Some(2))
    };
    for mode in [Mode::Repack, Mode::PackBestfit] {
        for k in [3, 8, 12] {
            let mut states = Vec::new();
            for rank in 0..4 {
                let mut loader = two_epochs(rank, 4, mode).build().await.unwrap();
                for _ in 0..k {
                    let batch = loader.next().await.unwrap().unwrap();
                    assert_eq!(
                        batch.epoch,
                        0,
                        "{}: step {k} is in the first epoch",
                        mode.name()
                    );
                }
                states.push(loader.state());
            }
            let merged = LoaderState::merge(&states).unwrap();
            for world in [2, 3, 5] {
                let mut counts = Vec::new();
                for rank in 0..world {
                    let mut loader = two_epochs(rank, world, mode)
                        .with_state(merged.clone())
                        .build()
                        .await
                        .unwrap();
                    let mut per_epoch = [0usize; 2];
                    while let Some(batch) = loader.next().await {
                        per_epoch[batch.unwrap().epoch as usize] += 1;
                    }
                    counts.push(per_epoch);
                }
                assert!(
                    counts.iter().all(|c| *c == counts[0]) && counts[0][1] > 0,
                    "{}: 4 ranks for {k} steps, then {world}: batches per epoch {counts:?}",
                    mode.name()
                );
            }
        }
    }
}
