//! The warmup pipeline end to end: Composer-exactness, resume, ranks, determinism.

mod common;

use futures_util::StreamExt;
use seqwarm_loader::{
    BatchSize, Loader, LoaderBuilder, LoaderState, Mode, Prefetch, ScheduledBatch, WarmupConfig,
};
use seqwarm_schedule::ScheduleConfig;

async fn drain(loader: &mut Loader, limit: Option<usize>) -> Vec<ScheduledBatch> {
    let mut out = Vec::new();
    while limit.is_none_or(|l| out.len() < l) {
        match loader.next().await {
            Some(b) => out.push(b.unwrap()),
            None => break,
        }
    }
    out
}

/// The batches (hashed) of a run stopped after `cut` batches, its checkpoint taken through
/// JSON, and resumed: each loader from `build`.
async fn interrupted(build: impl Fn() -> LoaderBuilder, cut: usize) -> Vec<String> {
    let mut first = build().build().await.unwrap();
    let mut hashes = common::hash_batches(&drain(&mut first, Some(cut)).await);
    let state = serde_json::to_string(&first.state()).unwrap();
    drop(first);
    let state: LoaderState = serde_json::from_str(&state).unwrap();
    let mut second = build().with_state(state).build().await.unwrap();
    hashes.extend(common::hash_batches(&drain(&mut second, None).await));
    hashes
}

fn composer_schedule(total: u64) -> seqwarm_schedule::Schedule {
    ScheduleConfig::composer(8, 64, 0.6, total)
        .with_step(8)
        .build()
        .unwrap()
}

/// Composer's pipeline written out independently: concatenate documents each followed by
/// EOS, cut rows of max length, B rows per step, then `set_batch_sequence_length` at the
/// schedule's length for that step.
fn composer_reference(
    docs: &[Vec<i32>],
    eos: i64,
    rows: usize,
    max: usize,
    truncate: bool,
    total: u64,
) -> Vec<Vec<Vec<i64>>> {
    let stream: Vec<i64> = docs
        .iter()
        .flat_map(|d| d.iter().map(|&t| i64::from(t)).chain([eos]))
        .collect();
    let schedule = composer_schedule(total);
    let per_step = rows * max;
    (0..stream.len() / per_step)
        .map(|step| {
            let chunk = &stream[step * per_step..(step + 1) * per_step];
            let len = schedule.seq_len_at(step as u64) as usize;
            if len >= max {
                chunk.chunks(max).map(<[i64]>::to_vec).collect()
            } else if truncate {
                chunk.chunks(max).map(|r| r[..len].to_vec()).collect()
            } else {
                let keep = per_step / len * len;
                chunk[..keep].chunks(len).map(<[i64]>::to_vec).collect()
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composer_pipeline_is_bit_exact() {
    let dir = common::temp_dir("composer");
    let docs = common::documents(400, 70, 7);
    common::write_rows(&dir.join("a.parquet"), &docs[..200], 50);
    common::write_rows(&dir.join("b.parquet"), &docs[200..], 64);
    let total = 60;
    for truncate in [true, false] {
        let mode = if truncate {
            Mode::Truncate
        } else {
            Mode::Reshape
        };
        let warmup = WarmupConfig::new(composer_schedule(total))
            .with_mode(mode)
            .with_batch_size(BatchSize::Rows(3))
            .with_eos_id(Some(50_256));
        let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup)
            .with_shuffle_units(false)
            .build()
            .await
            .unwrap();
        let got = drain(&mut loader, None).await;
        let expected = composer_reference(&docs, 50_256, 3, 64, truncate, total);
        assert_eq!(
            got.len(),
            expected.len(),
            "truncate={truncate}: batch count"
        );
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(
                &g.batch.input_ids().unwrap().to_rows_i64(),
                e,
                "truncate={truncate}, step {i}"
            );
        }
        println!(
            "composer pipeline (truncate={truncate}): {} batches identical",
            got.len()
        );
    }
}

fn modes() -> Vec<(Mode, usize)> {
    vec![
        (Mode::TruncateKeepEos, 0),
        (Mode::Reshape, 0),
        (Mode::Repack, 0),
        (Mode::Repack, 16),
        (Mode::PackGreedy, 0),
        (Mode::PackBestfit, 16),
    ]
}

fn resumable(dir: &std::path::Path, mode: Mode, shuffle: usize) -> LoaderBuilder {
    let schedule = ScheduleConfig::linear(8, 64, 0.5, 60).build().unwrap();
    let warmup = WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(if mode.is_composer() {
            BatchSize::Rows(2)
        } else {
            BatchSize::Tokens(256)
        })
        .with_eos_id(Some(0))
        .with_keep_last(true)
        .with_pack_window(8)
        .with_shuffle_buffer(shuffle, 5);
    LoaderBuilder::new([dir.display().to_string()], warmup)
        .with_seed(11)
        .with_epochs(Some(2))
        .with_prefetch(Prefetch {
            concurrency: 3,
            queue: 2,
            ..Prefetch::default()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_and_resumed_streams_are_byte_identical() {
    let dir = common::temp_dir("resume");
    let docs = common::documents(240, 60, 3);
    common::write_rows(&dir.join("a.parquet"), &docs[..120], 17);
    common::write_flat(&dir.join("b.parquet"), &docs[120..], 900);
    let mut rng = 0x1234_5678u64;
    for (mode, shuffle) in modes() {
        let mut loader = resumable(&dir, mode, shuffle).build().await.unwrap();
        let full = common::hash_batches(&drain(&mut loader, None).await);
        assert!(full.len() > 20, "{mode:?}: only {} batches", full.len());
        for _ in 0..3 {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let cut = 1 + (rng >> 33) as usize % (full.len() - 1);
            let hashes = interrupted(|| resumable(&dir, mode, shuffle), cut).await;
            assert_eq!(
                hashes.len(),
                full.len(),
                "{mode:?} shuffle {shuffle}: resumed at {cut}"
            );
            let differ = hashes.iter().zip(&full).position(|(a, b)| a != b);
            assert_eq!(
                differ, None,
                "{mode:?} shuffle {shuffle}: resumed at {cut}, first differing batch"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_with_other_settings_is_refused() {
    let dir = common::temp_dir("resume-refused");
    common::write_rows(&dir.join("a.parquet"), &common::documents(50, 40, 1), 10);
    let mut loader = resumable(&dir, Mode::Repack, 0).build().await.unwrap();
    drain(&mut loader, Some(2)).await;
    let state = loader.state();
    let err = resumable(&dir, Mode::Reshape, 0)
        .with_state(state)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("settings differ"), "{err}");
}

fn document_ids(batches: &[ScheduledBatch]) -> std::collections::BTreeSet<i64> {
    batches
        .iter()
        .flat_map(|b| b.batch.input_ids().unwrap().to_vec_i64())
        .filter(|&t| t > 0)
        .map(|t| (t - 1) / 1000)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranks_get_disjoint_data_and_stay_in_step() {
    let dir = common::temp_dir("ranks");
    // 49 documents: token (d * 1000 + p) + 1 identifies its document.
    let docs = common::documents(49, 200, 9);
    common::write_rows(&dir.join("a.parquet"), &docs[..30], 4);
    common::write_rows(&dir.join("b.parquet"), &docs[30..], 3);
    for mode in [Mode::Repack, Mode::Reshape] {
        let mut runs = Vec::new();
        for rank in 0..3 {
            let schedule = ScheduleConfig::linear(8, 32, 0.5, 40).build().unwrap();
            let warmup = WarmupConfig::new(schedule)
                .with_mode(mode)
                .with_batch_size(BatchSize::Rows(2));
            let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup)
                .with_seed(3)
                .with_rank(rank, 3)
                .with_epochs(Some(2))
                .build()
                .await
                .unwrap();
            let first_epoch = loader.steps_per_epoch().unwrap();
            assert!(first_epoch >= 8, "{first_epoch} steps in epoch 0");
            let batches = drain(&mut loader, None).await;
            assert_eq!(loader.stats().units_skipped, 0);
            runs.push(batches);
        }
        let lengths: Vec<Vec<usize>> = runs
            .iter()
            .map(|r| r.iter().map(|b| b.seq_len).collect())
            .collect();
        assert_eq!(lengths[0], lengths[1], "{mode:?}");
        assert_eq!(lengths[1], lengths[2], "{mode:?}");
        assert!(!lengths[0].is_empty());
        // Within the first epoch the ranks' documents are disjoint.
        let first_epoch = runs[0].iter().take_while(|b| b.step < 8).count();
        let sets: Vec<_> = runs
            .iter()
            .map(|r| document_ids(&r[..first_epoch]))
            .collect();
        for a in 0..3 {
            for b in a + 1..3 {
                assert!(
                    sets[a].is_disjoint(&sets[b]),
                    "{mode:?}: ranks {a} and {b} share documents"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_a_function_of_seed_and_epoch() {
    let dir = common::temp_dir("order");
    let docs = common::documents(200, 50, 4);
    common::write_rows(&dir.join("a.parquet"), &docs, 10);
    let run = |seed: u64| {
        let dir = dir.clone();
        async move {
            let schedule = ScheduleConfig::linear(8, 32, 0.5, 40).build().unwrap();
            let warmup = WarmupConfig::new(schedule).with_shuffle_buffer(32, seed);
            let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup)
                .with_seed(seed)
                .with_epochs(Some(2))
                .build()
                .await
                .unwrap();
            common::hash_batches(&drain(&mut loader, None).await)
        }
    };
    let a = run(1).await;
    assert_eq!(a, run(1).await);
    assert_ne!(a, run(2).await);
}

/// A `uint16` row group is widened a chunk of documents at a time as the stage takes it
/// (`narrow.rs`): row groups far larger than a chunk read exactly like the same documents
/// stored as `int32`, and a checkpoint taken inside one (between chunks or inside a chunk)
/// resumes to the same batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_uint16_row_groups_read_and_resume_like_int32() {
    use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
    let docs = common::documents(5_000, 120, 9);
    let write = |dir: &std::path::Path, encoding: ShardEncoding| {
        let path = dir.join("long.parquet");
        let file = std::fs::File::create(&path).unwrap();
        // About 300 000 tokens: two row groups, each several chunks long.
        let mut writer =
            ShardWriter::with_encoding(file, OutputLayout::Flat, 200_000, encoding, "long")
                .unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        writer.finish().unwrap();
    };
    let (narrow, wide) = (common::temp_dir("long-u16"), common::temp_dir("long-i32"));
    write(&narrow, ShardEncoding::Uint16);
    write(&wide, ShardEncoding::Plain);
    let build = |dir: &std::path::Path, mode: Mode, shuffle: usize| {
        let schedule = ScheduleConfig::linear(64, 512, 0.5, 400).build().unwrap();
        let warmup = WarmupConfig::new(schedule)
            .with_mode(mode)
            .with_batch_size(if mode.is_composer() {
                BatchSize::Rows(16)
            } else {
                BatchSize::Tokens(8_192)
            })
            .with_keep_last(true)
            .with_shuffle_buffer(shuffle, 5);
        LoaderBuilder::new([dir.display().to_string()], warmup)
            .with_seed(3)
            .with_epochs(Some(2))
            .with_dtype(seqwarm_batcher::DType::I64)
    };
    let mut rng = 0x9e37_79b9u64;
    for (mode, shuffle) in [
        (Mode::Truncate, 0),
        (Mode::Reshape, 0),
        (Mode::Repack, 32),
        (Mode::PackBestfit, 0),
    ] {
        let full = common::hash_batches(
            &drain(
                &mut build(&narrow, mode, shuffle).build().await.unwrap(),
                None,
            )
            .await,
        );
        let as_int32 = common::hash_batches(
            &drain(
                &mut build(&wide, mode, shuffle).build().await.unwrap(),
                None,
            )
            .await,
        );
        assert!(full.len() > 40, "{mode:?}: only {} batches", full.len());
        // Row groups mapped in place (the default) and read into buffers give the same bytes.
        for dir in [&narrow, &wide] {
            let read = common::hash_batches(
                &drain(
                    &mut build(dir, mode, shuffle)
                        .with_memory_map(false)
                        .build()
                        .await
                        .unwrap(),
                    None,
                )
                .await,
            );
            assert_eq!(read, full, "{mode:?}: {} read, not mapped", dir.display());
        }
        assert_eq!(
            full, as_int32,
            "{mode:?} shuffle {shuffle}: uint16 against int32"
        );
        for _ in 0..3 {
            rng = rng
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let cut = 1 + (rng >> 33) as usize % (full.len() - 1);
            let hashes = interrupted(|| build(&narrow, mode, shuffle), cut).await;
            assert_eq!(hashes, full, "{mode:?} shuffle {shuffle}: resumed at {cut}");
        }
        // Two ranks stop each epoch at the same batch, mid-row-group: the rest of a uint16
        // row group must not leak into the next epoch.
        for rank in 0..2 {
            let ranked = |dir: &std::path::Path| build(dir, mode, shuffle).with_rank(rank, 2);
            let narrow_rank = common::hash_batches(
                &drain(&mut ranked(&narrow).build().await.unwrap(), None).await,
            );
            let wide_rank =
                common::hash_batches(&drain(&mut ranked(&wide).build().await.unwrap(), None).await);
            assert!(narrow_rank.len() > 10, "{mode:?} rank {rank}");
            assert_eq!(
                narrow_rank, wide_rank,
                "{mode:?} shuffle {shuffle} rank {rank} of 2"
            );
        }
    }
}

/// A DataLoader worker's share (`Loader::set_kept_steps`): the steps `offset, offset +
/// stride, ...` of the whole stream, byte for byte, though the other steps' tokens are
/// dropped by count and the `uint16` documents only they take are never widened. Over long
/// row groups, two epochs, one rank and two, with and without EOS and a shuffle buffer (which
/// turns placeholders off), and a pack mode (whose other steps are built and dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_steps_are_the_whole_streams_steps() {
    use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
    use seqwarm_loader::KeptSteps;
    let docs = common::documents(5_000, 120, 11);
    let dir = common::temp_dir("kept-steps");
    let file = std::fs::File::create(dir.join("long.parquet")).unwrap();
    let mut writer = ShardWriter::with_encoding(
        file,
        OutputLayout::Flat,
        200_000,
        ShardEncoding::Uint16,
        "long",
    )
    .unwrap();
    for d in &docs {
        writer.write_document(d).unwrap();
    }
    writer.finish().unwrap();
    let build = |mode: Mode, shuffle: usize, eos: Option<i64>, world: usize| {
        let schedule = ScheduleConfig::linear(64, 512, 0.5, 400).build().unwrap();
        let warmup = WarmupConfig::new(schedule)
            .with_mode(mode)
            .with_batch_size(BatchSize::Rows(8))
            .with_keep_last(true)
            .with_eos_id(eos)
            .with_shuffle_buffer(shuffle, 5);
        LoaderBuilder::new([dir.display().to_string()], warmup)
            .with_seed(3)
            .with_epochs(Some(2))
            .with_rank(world - 1, world)
    };
    for (mode, shuffle, eos) in [
        (Mode::Repack, 0, None),
        (Mode::Repack, 0, Some(7)),
        (Mode::Truncate, 0, None),
        (Mode::TruncateKeepEos, 0, Some(7)),
        (Mode::Reshape, 0, None),
        (Mode::Repack, 16, None),
        (Mode::PackGreedy, 0, Some(7)),
    ] {
        for world in [1, 2] {
            let mut all = build(mode, shuffle, eos, world).build().await.unwrap();
            let whole = drain(&mut all, None).await;
            assert!(whole.len() > 40, "{mode:?}: only {} batches", whole.len());
            let hashes = common::hash_batches(&whole);
            for (stride, offset) in [(2, 1), (3, 0), (8, 5)] {
                let mut loader = build(mode, shuffle, eos, world).build().await.unwrap();
                loader.set_kept_steps(KeptSteps::new(stride, offset));
                let share = drain(&mut loader, None).await;
                let steps: Vec<u64> = share.iter().map(|b| b.step).collect();
                let expected: Vec<u64> = (0..whole.len() as u64)
                    .filter(|s| s % stride == offset)
                    .collect();
                let what = format!(
                    "{mode:?} shuffle {shuffle} eos {eos:?} world {world}, steps {offset} mod {stride}"
                );
                assert_eq!(steps, expected, "{what}");
                let kept: Vec<String> = hashes
                    .iter()
                    .enumerate()
                    .filter(|(s, _)| *s as u64 % stride == offset)
                    .map(|(_, h)| h.clone())
                    .collect();
                assert_eq!(common::hash_batches(&share), kept, "{what}");
                assert_eq!(loader.stats(), all.stats(), "{what}");
            }
        }
    }
}
