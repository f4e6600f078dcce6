//! Reading shards in both layouts; every token arrives, in order, through every path.

mod common;

use futures_util::StreamExt;
use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, ScheduledBatch, WarmupConfig};
use seqwarm_schedule::ScheduleConfig;

fn warmup(mode: Mode) -> WarmupConfig {
    let schedule = ScheduleConfig::linear(16, 64, 0.5, 40).build().unwrap();
    WarmupConfig::new(schedule)
        .with_mode(mode)
        .with_batch_size(BatchSize::Rows(4))
}

async fn collect(builder: LoaderBuilder) -> (Vec<ScheduledBatch>, seqwarm_loader::Stats) {
    let mut loader = builder.build().await.unwrap();
    let mut out = Vec::new();
    while let Some(b) = loader.next().await {
        out.push(b.unwrap());
    }
    (out, loader.stats())
}

fn flat_tokens(batches: &[ScheduledBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| b.batch.input_ids().unwrap().to_vec_i64())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_and_flat_layouts_deliver_every_token_in_order() {
    let dir = common::temp_dir("layouts");
    let docs = common::documents(300, 90, 1);
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    common::write_rows(&dir.join("rows.parquet"), &docs, 37);
    common::write_flat(&dir.join("flat.parquet"), &docs, 2_000);
    common::write_flat_start_column(&dir.join("flat_column.parquet"), &docs, 2_000);
    for file in ["rows.parquet", "flat.parquet", "flat_column.parquet"] {
        let builder = LoaderBuilder::new(
            [dir.join(file).display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false);
        let (batches, stats) = collect(builder).await;
        let mut got = flat_tokens(&batches);
        // keep_last pads the final row: drop the padding by the attention mask.
        let last = batches.last().unwrap();
        if let Some(mask) = last.batch.get("attention_mask") {
            let pad = mask.to_vec_i64().iter().filter(|&&m| m == 0).count();
            got.truncate(got.len() - pad);
        }
        common::assert_same_tokens(&got, &expected, file);
        assert_eq!(stats.tokens_dropped, 0);
        assert_eq!(stats.documents, 300);
        for b in &batches[..batches.len() - 1] {
            assert_eq!(b.batch.seq_len(), b.seq_len);
            assert_eq!(b.batch.rows(), 4);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_writer_output_reads_back_in_both_layouts() {
    let dir = common::temp_dir("writer");
    let docs = common::documents(500, 120, 2);
    let expected: Vec<i64> = docs.iter().flatten().map(|&t| i64::from(t)).collect();
    for layout in [
        seqwarm_loader::OutputLayout::Flat,
        seqwarm_loader::OutputLayout::Rows,
    ] {
        let path = dir.join(format!("{layout:?}.parquet"));
        let mut writer = seqwarm_loader::ShardWriter::new(
            std::fs::File::create(&path).unwrap(),
            layout,
            3_000,
            "test",
        )
        .unwrap();
        for d in &docs {
            writer.write_document(d).unwrap();
        }
        let summary = writer.finish().unwrap();
        assert_eq!(summary.documents, 500);
        assert_eq!(summary.tokens as usize, expected.len());
        assert!(summary.row_groups > 5);
        let builder = LoaderBuilder::new(
            [path.display().to_string()],
            warmup(Mode::Repack).with_keep_last(true),
        )
        .with_shuffle_units(false);
        let mut loader = builder.build().await.unwrap();
        assert_eq!(loader.catalog().unit_count() as u64, summary.row_groups);
        let mut got = Vec::new();
        while let Some(b) = loader.next().await {
            let b = b.unwrap();
            let ids = b.batch.input_ids().unwrap().to_vec_i64();
            match b.batch.get("attention_mask") {
                Some(m) => got.extend(
                    ids.iter()
                        .zip(m.to_vec_i64())
                        .filter(|(_, m)| *m == 1)
                        .map(|(t, _)| *t),
                ),
                None => got.extend(ids),
            }
        }
        common::assert_same_tokens(&got, &expected, &format!("{layout:?}"));
        assert_eq!(loader.stats().documents, 500);
    }
}
