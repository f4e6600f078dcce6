//! The trainer's behaviour on CPU: shapes at every length, the warm pass's guarantees, a loss
//! that falls on a learnable task, and training end to end from Parquet shards.

use std::path::{Path, PathBuf};

use seqwarm_format::{OutputLayout, ShardWriter};
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;
use seqwarm_trainer::tch::{Device, Kind, Tensor};
use seqwarm_trainer::{
    GptConfig, Positions, RunOptions, StepRecord, Trainer, TrainerConfig, TrainerError,
    batch_to_input, run,
};

fn temp_dir(name: &str) -> PathBuf {
    seqwarm_testkit::temp_dir("trainer", name)
}

fn tiny(positions: Positions) -> GptConfig {
    GptConfig::new(97, 64)
        .with_layers(2)
        .with_heads(2)
        .with_width(32)
        .with_positions(positions)
}

/// A trainer on the CPU for `i32` token ids (what the loader delivers).
fn cpu_trainer(config: TrainerConfig) -> Trainer {
    Trainer::new(config, Device::Cpu, Kind::Int).unwrap()
}

fn snapshot(trainer: &Trainer) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = trainer
        .store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.detach().copy()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn same(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|((na, ta), (nb, tb))| na == nb && ta.equal(tb))
}

#[test]
fn forward_shapes_follow_the_batch_at_every_length() {
    for positions in [Positions::Learned, Positions::Alibi] {
        let trainer = cpu_trainer(TrainerConfig::new(tiny(positions), 1000));
        for (rows, len) in [(1, 2), (3, 8), (8, 24), (2, 64)] {
            let ids = Tensor::randint(97, [rows, len], (Kind::Int, Device::Cpu));
            let logits = trainer.model().forward(&ids, None).unwrap();
            assert_eq!(logits.size(), vec![rows, len, 97], "{positions:?}");
        }
        let too_long = Tensor::zeros([1, 65], (Kind::Int, Device::Cpu));
        assert!(matches!(
            trainer.model().forward(&too_long, None),
            Err(TrainerError::Config {
                field: "max_seq_len",
                ..
            })
        ));
    }
}

#[test]
fn attention_is_causal() {
    // Changing a later token must not change earlier logits, with either position scheme.
    for positions in [Positions::Learned, Positions::Alibi] {
        let trainer = cpu_trainer(TrainerConfig::new(tiny(positions), 1000));
        let a = Tensor::from_slice(&[5i32, 6, 7, 8, 9, 10]).view([1, 6]);
        let b = Tensor::from_slice(&[5i32, 6, 7, 8, 9, 42]).view([1, 6]);
        let la = trainer.model().forward(&a, None).unwrap().narrow(1, 0, 5);
        let lb = trainer.model().forward(&b, None).unwrap().narrow(1, 0, 5);
        assert!(la.allclose(&lb, 1e-5, 1e-6, false), "{positions:?}");
    }
}

#[test]
fn packed_documents_do_not_see_each_other() {
    // Two documents in one row: changing the first must not change the second's logits when
    // segment ids are given, and does change them without (so the mask is what keeps them
    // apart).
    for positions in [Positions::Learned, Positions::Alibi] {
        let trainer = cpu_trainer(TrainerConfig::new(tiny(positions), 1000));
        let a = Tensor::from_slice(&[5i32, 6, 7, 20, 21, 22]).view([1, 6]);
        let b = Tensor::from_slice(&[9i32, 1, 3, 20, 21, 22]).view([1, 6]);
        let segments = Tensor::from_slice(&[0i32, 0, 0, 1, 1, 1]).view([1, 6]);
        let positions_ids = Tensor::from_slice(&[0i64, 1, 2, 0, 1, 2]).view([1, 6]);
        let second = |ids: &Tensor, masked: bool| {
            trainer
                .model()
                .forward_segments(ids, Some(&positions_ids), masked.then_some(&segments))
                .unwrap()
                .narrow(1, 3, 3)
        };
        assert!(
            second(&a, true).allclose(&second(&b, true), 1e-5, 1e-6, false),
            "{positions:?}"
        );
        assert!(
            !second(&a, false).allclose(&second(&b, false), 1e-5, 1e-6, false),
            "{positions:?}"
        );
        // Within a document, attention stays causal.
        let c = Tensor::from_slice(&[5i32, 6, 7, 20, 21, 90]).view([1, 6]);
        let first_two = |ids: &Tensor| {
            trainer
                .model()
                .forward_segments(ids, Some(&positions_ids), Some(&segments))
                .unwrap()
                .narrow(1, 0, 5)
        };
        assert!(
            first_two(&a).allclose(&first_two(&c), 1e-5, 1e-6, false),
            "{positions:?}"
        );
    }
}

#[test]
fn an_out_of_vocabulary_id_is_an_error_not_a_panic() {
    let trainer = cpu_trainer(TrainerConfig::new(tiny(Positions::Learned), 1000));
    let ids = Tensor::from_slice(&[1i32, 2, 500]).view([1, 3]);
    let err = trainer.model().forward(&ids, None).unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[test]
fn the_warm_pass_changes_no_weights_and_no_optimizer_state() {
    for positions in [Positions::Learned, Positions::Alibi] {
        let mut trainer = cpu_trainer(TrainerConfig::new(tiny(positions), 1000));
        let before = snapshot(&trainer);
        let moments_before: Vec<Tensor> = trainer
            .optimizer()
            .state_tensors()
            .into_iter()
            .map(|(_, t)| t.copy())
            .collect();
        let report = trainer.warm_pass(4, 64).unwrap();
        assert_eq!((report.rows, report.seq_len), (4, 64));
        assert!(same(&before, &snapshot(&trainer)), "weights changed");
        assert_eq!(trainer.optimizer().steps(), 0);
        for ((name, after), before) in trainer
            .optimizer()
            .state_tensors()
            .iter()
            .zip(&moments_before)
        {
            assert!(after.equal(before), "optimizer state {name} changed");
        }
        // Gradients exist (the backward ran) and are cleared.
        let mut seen = 0;
        for (name, var) in trainer.store().variables() {
            let grad = var.grad();
            if grad.defined() {
                seen += 1;
                assert_eq!(grad.ne(0.0).sum(Kind::Int64).int64_value(&[]), 0, "{name}");
            }
        }
        assert_eq!(seen, trainer.store().variables().len());
        // The next real step is the same as without the warm pass.
        let mut cold = cpu_trainer(TrainerConfig::new(tiny(positions), 1000));
        let batch =
            seqwarm_batcher::Batch::from_input_ids::<i32>((0..32).map(|i| i % 97).collect(), 2, 16)
                .unwrap();
        let input = batch_to_input(0, &batch, Device::Cpu).unwrap();
        let (warm_loss, _, _) = trainer.train_step(&input, 0).unwrap();
        let (cold_loss, _, _) = cold.train_step(&input, 0).unwrap();
        assert!(warm_loss.allclose(&cold_loss, 1e-6, 1e-7, false));
        assert!(
            same(&snapshot(&trainer), &snapshot(&cold)),
            "the warm pass leaked into training"
        );
    }
}

/// Rows counting up from a random start (mod 97): the next token follows from the current
/// one, which a model learns in a few dozen steps.
fn counting_batch(seed: u64, rows: usize, len: usize) -> seqwarm_batcher::Batch {
    let mut state = seed
        .wrapping_mul(2_862_933_555_777_941_757)
        .wrapping_add(3_037_000_493);
    let mut values = Vec::with_capacity(rows * len);
    for _ in 0..rows {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        let start = (state >> 40) as usize % 97;
        values.extend((0..len).map(|i| ((start + i) % 97) as i32));
    }
    seqwarm_batcher::Batch::from_input_ids::<i32>(values, rows, len).unwrap()
}

#[test]
fn loss_falls_on_a_learnable_task_at_growing_lengths() {
    for positions in [Positions::Learned, Positions::Alibi] {
        let mut config = TrainerConfig::new(tiny(positions), 60 * 8 * 32);
        config.lr.peak_lr = 3e-3;
        let mut trainer = cpu_trainer(config);
        let mut tokens = 0;
        let mut losses = Vec::new();
        for step in 0..60u64 {
            let len = 8 + (step as usize / 10) * 8; // 8 -> 48, as a warmup would
            let batch = counting_batch(step, 8, len);
            let input = batch_to_input(step, &batch, Device::Cpu).unwrap();
            let (loss, norm, _) = trainer.train_step(&input, tokens).unwrap();
            assert!(norm.is_some());
            tokens += (8 * len) as u64;
            losses.push(loss.double_value(&[]));
        }
        let first = losses[..5].iter().sum::<f64>() / 5.0;
        let last = losses[55..].iter().sum::<f64>() / 5.0;
        eprintln!("{positions:?}: loss {first:.3} -> {last:.3}");
        assert!(
            first > 4.0,
            "{positions:?}: untrained loss {first} should be near ln 97"
        );
        assert!(last < 0.6 * first, "{positions:?}: loss {first} -> {last}");
    }
}

fn write_shards(dir: &Path, shards: usize, docs_per_shard: usize) {
    let mut state = 12_345u64;
    for s in 0..shards {
        let path = dir.join(format!("shard-{s:03}.parquet"));
        let file = std::fs::File::create(&path).unwrap();
        let mut writer =
            ShardWriter::new(file, OutputLayout::Flat, 4096, &path.display().to_string()).unwrap();
        for _ in 0..docs_per_shard {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let len = 10 + (state >> 33) as usize % 120;
            let start = (state >> 50) as i32 % 90;
            let doc: Vec<i32> = (0..len).map(|i| (start + i as i32) % 96).collect();
            writer.write_document(&doc).unwrap();
        }
        writer.finish().unwrap();
    }
}

/// The runtime the loader reads ahead on (its threads outlive the call through the handle).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn loader(dir: &Path, steps: u64) -> LoaderBuilder {
    let schedule = ScheduleConfig::linear(16, 64, 0.5, steps)
        .with_step(16)
        .build()
        .unwrap();
    let warmup = WarmupConfig::new(schedule)
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(4))
        .with_eos_id(Some(96));
    LoaderBuilder::new([dir.display().to_string()], warmup)
        .with_seed(7)
        .with_max_steps(Some(steps))
        .with_vocab_size(Some(97))
}

fn read_metrics(path: &Path) -> Vec<StepRecord> {
    seqwarm_trainer::read_metrics(path).unwrap()
}

#[test]
fn trains_from_parquet_through_the_stream_and_resumes_exactly() {
    let data = temp_dir("data");
    write_shards(&data, 2, 60);
    let steps = 12;
    let trainer_config = || TrainerConfig::new(tiny(Positions::Learned), steps * 4 * 64);

    // Uninterrupted.
    let full_dir = temp_dir("full");
    let mut full = cpu_trainer(trainer_config());
    let mut options = RunOptions::new(&full_dir);
    options.warm_pass = Some((4, 64));
    options.eval_every = Some(6);
    let mut seen = 0;
    let eval = vec![batch_to_input(0, &counting_batch(1, 2, 64), Device::Cpu).unwrap()];
    let summary = run(
        &mut full,
        runtime().handle(),
        loader(&data, steps),
        &eval,
        &options,
        |_| {
            seen += 1;
        },
    )
    .unwrap();
    assert_eq!(summary.steps, steps);
    assert_eq!(seen, steps as usize);
    assert!(summary.warm.is_some());
    assert!(summary.final_eval_loss.is_some());
    let records = read_metrics(&full_dir.join("metrics.jsonl"));
    assert_eq!(records.len(), steps as usize);
    let lengths: Vec<i64> = records.iter().map(|r| r.seq_len).collect();
    assert_eq!(lengths.first(), Some(&16));
    assert_eq!(lengths.last(), Some(&64));
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
    assert!(
        records
            .iter()
            .all(|r| r.loss.is_finite() && r.tokens > 0 && r.rows == 4)
    );
    assert!(records[5].eval_loss.is_some() && records[11].eval_loss.is_some());
    assert_eq!(records.last().unwrap().tokens, summary.tokens);
    assert!(full_dir.join("checkpoint/model.safetensors").exists());

    // Interrupted after 6 steps (the loader stops there), then resumed to 12.
    let part_dir = temp_dir("part");
    let mut first = cpu_trainer(trainer_config());
    let mut options = RunOptions::new(&part_dir);
    options.checkpoint_every = Some(3);
    run(
        &mut first,
        runtime().handle(),
        loader(&data, steps).with_max_steps(Some(6)),
        &[],
        &options,
        |_| {},
    )
    .unwrap();
    drop(first);
    let mut resumed = cpu_trainer(trainer_config());
    options.resume = true;
    let summary = run(
        &mut resumed,
        runtime().handle(),
        loader(&data, steps),
        &[],
        &options,
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.steps, 6);
    let records_resumed = read_metrics(&part_dir.join("metrics.jsonl"));
    let steps_logged: Vec<u64> = records_resumed.iter().map(|r| r.step).collect();
    assert_eq!(steps_logged, (0..steps).collect::<Vec<_>>());
    for (a, b) in records.iter().zip(&records_resumed) {
        assert_eq!((a.seq_len, a.tokens), (b.seq_len, b.tokens));
        assert!(
            (a.loss - b.loss).abs() < 1e-4,
            "step {}: {} vs {}",
            a.step,
            a.loss,
            b.loss
        );
    }
    let (a, b) = (snapshot(&full), snapshot(&resumed));
    for ((name, ta), (_, tb)) in a.iter().zip(&b) {
        assert!(
            ta.allclose(tb, 1e-4, 1e-5, false),
            "{name} differs after resume"
        );
    }
}

#[test]
fn packed_batches_train_with_their_positions_and_segments() {
    let data = temp_dir("pack-data");
    write_shards(&data, 1, 80);
    let dir = temp_dir("pack");
    let schedule = ScheduleConfig::linear(16, 64, 0.5, 4)
        .with_step(16)
        .build()
        .unwrap();
    let warmup = WarmupConfig::new(schedule)
        .with_mode(Mode::PackGreedy)
        .with_batch_size(BatchSize::Rows(4))
        .with_eos_id(Some(96));
    let builder = LoaderBuilder::new([data.display().to_string()], warmup)
        .with_max_steps(Some(4))
        .with_vocab_size(Some(97));
    let mut trainer = cpu_trainer(TrainerConfig::new(tiny(Positions::Alibi), 10_000));
    let summary = run(
        &mut trainer,
        runtime().handle(),
        builder,
        &[],
        &RunOptions::new(&dir),
        |_| {},
    )
    .unwrap();
    assert_eq!(summary.steps, 4);
    assert!(summary.final_loss.is_some_and(f64::is_finite));
}

#[test]
fn a_checkpoint_for_another_model_is_refused_by_name() {
    let data = temp_dir("mismatch-data");
    write_shards(&data, 1, 40);
    let dir = temp_dir("mismatch");
    let mut trainer = cpu_trainer(TrainerConfig::new(tiny(Positions::Learned), 10_000));
    run(
        &mut trainer,
        runtime().handle(),
        loader(&data, 2),
        &[],
        &RunOptions::new(&dir),
        |_| {},
    )
    .unwrap();
    let other = tiny(Positions::Learned).with_width(64);
    let mut trainer = cpu_trainer(TrainerConfig::new(other, 10_000));
    let mut options = RunOptions::new(&dir);
    options.resume = true;
    let err = run(
        &mut trainer,
        runtime().handle(),
        loader(&data, 2),
        &[],
        &options,
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, TrainerError::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("meta.json"), "{err}");
}
