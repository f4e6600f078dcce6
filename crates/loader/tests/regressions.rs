//! A regression suite of other loaders' known data bugs after a resume (issue 22): each test
//! names the family and the reports it comes from, and shows that seqwarm does not have it.
//! Every token of the corpus is unique (`1 + document * 100 + position`), so a token lost,
//! read twice or moved shows.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use seqwarm_loader::{BatchSize, Loader, LoaderBuilder, LoaderState, Mode, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

/// 420 documents of 1..=60 tokens in 3 flat shards of row groups of about 400 tokens.
fn corpus(name: &str) -> (PathBuf, Vec<i64>) {
    let dir = common::temp_dir(name);
    let docs: Vec<Vec<i32>> = common::documents(420, 60, 9)
        .iter()
        .enumerate()
        .map(|(d, doc)| (0..doc.len()).map(|p| (1 + d * 100 + p) as i32).collect())
        .collect();
    for (i, part) in docs.chunks(140).enumerate() {
        common::write_flat(&dir.join(format!("part-{i}.parquet")), part, 400);
    }
    let mut all: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    all.sort_unstable();
    (dir, all)
}

fn warmup(mode: Mode) -> WarmupConfig {
    let schedule = ScheduleConfig::linear(8, 64, 0.5, 80).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(if mode.is_composer() {
            BatchSize::Rows(4)
        } else {
            BatchSize::Tokens(256)
        })
        .with_keep_last(true)
        .with_shuffle_buffer(6, 2)
}

fn builder(dir: &Path, mode: Mode, rank: usize, world: usize, epochs: u64) -> LoaderBuilder {
    LoaderBuilder::new([dir.display().to_string()], warmup(mode))
        .with_rank(rank, world)
        .with_seed(11)
        .with_epochs(Some(epochs))
}

/// A batch as comparable values: step, epoch, and its token rows.
type Seen = (u64, u64, Vec<Vec<i64>>);

/// Up to `limit` batches; a stream that stops yielding for 30 s fails the test (a hang).
async fn take(loader: &mut Loader, limit: usize) -> Vec<Seen> {
    let mut out = Vec::new();
    while out.len() < limit {
        let next = tokio::time::timeout(Duration::from_secs(30), loader.next())
            .await
            .expect("the stream hung: no batch and no end within 30 s");
        let Some(batch) = next else { break };
        let batch = batch.unwrap();
        let rows = batch.batch.input_ids().unwrap().to_rows_i64();
        out.push((batch.step, batch.epoch, rows));
    }
    out
}

/// Real tokens (padding is id 0) of some batches.
fn tokens(batches: &[Seen]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|(_, _, rows)| rows.iter().flatten().copied())
        .filter(|&t| t != 0)
        .collect()
}

/// A state through JSON, as a checkpoint file carries it.
fn saved(loader: &Loader) -> LoaderState {
    LoaderState::from_json(&loader.state().to_json().unwrap()).unwrap()
}

/// `head` batches, then a resume from the state there to the end.
async fn interrupted(b: impl Fn() -> LoaderBuilder, head: usize) -> (Vec<Seen>, Vec<Seen>) {
    let mut first = b().build().await.unwrap();
    let before = take(&mut first, head).await;
    let state = saved(&first);
    let mut second = b().with_state(state).build().await.unwrap();
    (before, take(&mut second, usize::MAX).await)
}

/// Resumed from the state after `cut` batches, the run continues at step `cut` with exactly
/// the batches `whole` (the uninterrupted run) has from there.
async fn resumes_identically(
    b: impl Fn() -> LoaderBuilder,
    whole: &[Seen],
    cut: usize,
    what: &str,
) {
    let (_, rest) = interrupted(b, cut).await;
    assert_eq!(rest.first().map(|s| s.0), Some(cut as u64), "{what}");
    assert_eq!(rest, whole[cut..], "{what}");
}

/// Family: a resume restarts from sample 0 (MosaicML Streaming #437, #880). A resume continues
/// at the step it was taken at, with the batches an uninterrupted run has there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_restarting_from_sample_0_family_streaming_437_880() {
    let (dir, _) = corpus("family-restart");
    for mode in [Mode::Truncate, Mode::Repack, Mode::PackGreedy] {
        let b = || builder(&dir, mode, 0, 1, 2);
        let whole = take(&mut b().build().await.unwrap(), usize::MAX).await;
        assert!(whole.len() > 20, "{mode:?}: {}", whole.len());
        for cut in [1, whole.len() / 3, whole.len() - 1] {
            resumes_identically(b, &whole, cut, &format!("{mode:?} at {cut}")).await;
        }
    }
}

/// Family: packing plus resume repeats data (llm-foundry #1277). With documents packed into
/// rows (and a shuffle buffer), a resume at any step neither repeats nor skips a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packing_plus_resume_repeating_data_family_llm_foundry_1277() {
    let (dir, all) = corpus("family-packing");
    for mode in [Mode::PackGreedy, Mode::PackBestfit] {
        let b = || builder(&dir, mode, 0, 1, 1);
        let whole = take(&mut b().build().await.unwrap(), usize::MAX).await;
        let mut expected = tokens(&whole);
        expected.sort_unstable();
        assert_eq!(expected, all, "{mode:?}: one epoch is every token once");
        for cut in (1..whole.len()).step_by(3) {
            let (before, rest) = interrupted(b, cut).await;
            let mut got = tokens(&before);
            got.extend(tokens(&rest));
            let unique: HashSet<i64> = got.iter().copied().collect();
            assert_eq!(
                unique.len(),
                got.len(),
                "{mode:?} at {cut}: a token repeated"
            );
            got.sort_unstable();
            assert_eq!(got, all, "{mode:?} at {cut}");
        }
    }
}

/// Family: a resume drops an epoch (torchdata #1437). Resumed at the last batch of an epoch
/// and at the first of the next, the run still has every epoch, with as many batches each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_dropping_an_epoch_family_torchdata_1437() {
    let (dir, _) = corpus("family-epoch");
    for mode in [Mode::Truncate, Mode::Repack] {
        let b = || builder(&dir, mode, 0, 1, 3);
        let whole = take(&mut b().build().await.unwrap(), usize::MAX).await;
        let per_epoch = |batches: &[Seen]| {
            let mut counts = BTreeMap::new();
            for (_, epoch, _) in batches {
                *counts.entry(*epoch).or_insert(0usize) += 1;
            }
            counts
        };
        let counts = per_epoch(&whole);
        assert_eq!(
            counts.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2],
            "{mode:?}"
        );
        let mut boundaries = Vec::new();
        let mut at = 0;
        for n in counts.values().take(2) {
            at += n;
            boundaries.extend([at - 1, at, at + 1]);
        }
        for cut in boundaries {
            let (mut got, rest) = interrupted(b, cut).await;
            got.extend(rest);
            assert_eq!(per_epoch(&got), counts, "{mode:?} resumed at {cut}");
            assert_eq!(got, whole, "{mode:?} resumed at {cut}");
        }
    }
}

/// Family: workers or ranks silently get no data (Hugging Face datasets #8669). More ranks
/// than row groups is an error naming `world_size`; otherwise every rank gets data, disjoint
/// from the others', and all emit the same number of batches (a data-parallel job would hang
/// on a rank with fewer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_or_ranks_silently_getting_no_data_family_hf_datasets_8669() {
    let (dir, _) = corpus("family-no-data");
    let units = builder(&dir, Mode::Repack, 0, 1, 1)
        .open_catalog()
        .await
        .unwrap()
        .unit_count();
    let err = builder(&dir, Mode::Repack, 0, units + 1, 1)
        .build()
        .await
        .expect_err("more ranks than row groups")
        .to_string();
    assert!(err.contains("world_size"), "{err}");
    for world in [2, 3, units / 2] {
        let mut seen = HashSet::new();
        let mut counts = Vec::new();
        for rank in 0..world {
            let mut loader = builder(&dir, Mode::Repack, rank, world, 1)
                .build()
                .await
                .unwrap();
            let got = tokens(&take(&mut loader, usize::MAX).await);
            assert!(!got.is_empty(), "rank {rank} of {world} got no data");
            counts.push(loader.stats().batches);
            for t in got {
                assert!(seen.insert(t), "rank {rank} of {world}: token {t} twice");
            }
        }
        assert!(
            counts.iter().all(|&c| c == counts[0] && c > 0),
            "{world}: {counts:?}"
        );
    }
}

/// Family: a resume hangs (litData #213). A state taken at the end, or resumed twice in a row,
/// ends the stream; no resume waits forever (`take` fails a test on a 30 s silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_hangs_family_litdata_213() {
    let (dir, _) = corpus("family-hang");
    for mode in [Mode::Reshape, Mode::PackBestfit] {
        for world in [1, 2] {
            let b = || builder(&dir, mode, 0, world, 1);
            let mut loader = b().build().await.unwrap();
            let all = take(&mut loader, usize::MAX).await;
            let at_end = saved(&loader);
            let mut resumed = b().with_state(at_end.clone()).build().await.unwrap();
            assert!(take(&mut resumed, usize::MAX).await.is_empty(), "{mode:?}");
            let mut again = b().with_state(saved(&resumed)).build().await.unwrap();
            assert!(take(&mut again, usize::MAX).await.is_empty(), "{mode:?}");
            assert!(!all.is_empty());
        }
    }
}

/// Family: `skip` divided across ranks (torchtitan #1082). Each rank of 3 resumes at its own
/// step `k` (not `k / world_size`) with exactly its uninterrupted batches from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_divided_across_ranks_family_torchtitan_1082() {
    let (dir, _) = corpus("family-skip");
    let world = 3;
    for mode in [Mode::Truncate, Mode::PackGreedy] {
        for rank in 0..world {
            let b = || builder(&dir, mode, rank, world, 2);
            let whole = take(&mut b().build().await.unwrap(), usize::MAX).await;
            let cut = whole.len() / 2;
            resumes_identically(b, &whole, cut, &format!("{mode:?} rank {rank}")).await;
        }
    }
}

/// Family: resampling loses and repeats files (webdataset #453). Over three epochs every token
/// is emitted exactly three times (one rank, nothing dropped: the tail carries into the next
/// epoch and the last is kept); with two ranks, no token is read twice within an epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resampling_losing_and_repeating_files_family_webdataset_453() {
    let (dir, all) = corpus("family-resample");
    let mut loader = builder(&dir, Mode::Repack, 0, 1, 3).build().await.unwrap();
    let mut got = tokens(&take(&mut loader, usize::MAX).await);
    got.sort_unstable();
    let thrice: Vec<i64> = all.iter().flat_map(|&t| [t, t, t]).collect();
    assert_eq!(got, thrice, "every token three times over three epochs");
    let mut by_epoch: BTreeMap<u64, Vec<i64>> = BTreeMap::new();
    for rank in 0..2 {
        let mut loader = builder(&dir, Mode::Repack, rank, 2, 3)
            .build()
            .await
            .unwrap();
        for (step, epoch, rows) in take(&mut loader, usize::MAX).await {
            let _ = step;
            let real = rows.into_iter().flatten().filter(|&t| t != 0);
            by_epoch.entry(epoch).or_default().extend(real);
        }
    }
    assert_eq!(by_epoch.len(), 3);
    for (epoch, tokens) in by_epoch {
        let unique: HashSet<i64> = tokens.iter().copied().collect();
        assert_eq!(
            unique.len(),
            tokens.len(),
            "epoch {epoch}: a token read twice"
        );
        assert!(
            tokens.len() * 10 >= all.len() * 8,
            "epoch {epoch}: {} of {}",
            tokens.len(),
            all.len()
        );
    }
}
