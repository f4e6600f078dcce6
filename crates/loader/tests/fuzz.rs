//! Bounded fuzzing of everything the loader reads from outside: shard bytes (footers,
//! document lengths, checksums, PLAIN and compressed pages), checkpoint state files and
//! settings. Whatever the input, the loader ends with batches or a typed error: it never
//! panics (a panic in a reading task would surface as `ReaderStopped`, which fails here too),
//! and a stream that ends without an error has counts that add up.
//!
//! Each target replays its committed corpus (`tests/fuzz-corpus/*.jsonl`: inputs that once
//! failed, or that reach the odd corners) and then `PROPTEST_CASES` (default 48) random
//! inputs. A failure found here becomes a corpus line and a fix.

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use futures_util::StreamExt;
use proptest::prelude::*;
use seqwarm_format::{OutputLayout, ShardEncoding, ShardWriter};
use seqwarm_loader::{
    BatchSize, LoaderBuilder, LoaderConfig, LoaderError, LoaderState, Mode, WarmupConfig,
};
use seqwarm_schedule::ScheduleConfig;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(48)
}

/// The shards every mutation starts from, written once: (name, bytes).
fn bases() -> &'static [(&'static str, Vec<u8>)] {
    static BASES: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    BASES.get_or_init(|| {
        let docs = common::documents(60, 40, 11);
        [
            ("flat_plain", OutputLayout::Flat, ShardEncoding::Plain),
            ("flat_uint16", OutputLayout::Flat, ShardEncoding::Uint16),
            (
                "flat_uint16_lz4",
                OutputLayout::Flat,
                ShardEncoding::Uint16Lz4,
            ),
            ("flat_zstd", OutputLayout::Flat, ShardEncoding::Zstd),
            ("rows_zstd", OutputLayout::Rows, ShardEncoding::Zstd),
        ]
        .into_iter()
        .map(|(name, layout, encoding)| {
            let mut bytes = Vec::new();
            let mut writer =
                ShardWriter::with_encoding(&mut bytes, layout, 400, encoding, name).unwrap();
            for d in &docs {
                writer.write_document(d).unwrap();
            }
            writer.finish().unwrap();
            (name, bytes)
        })
        .collect()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn warmup() -> WarmupConfig {
    WarmupConfig::new(ScheduleConfig::linear(8, 32, 0.5, 30).with_step(8))
        .with_mode(Mode::Repack)
        .with_batch_size(BatchSize::Rows(2))
}

/// Streams `builder` to its end (at most `limit` batches): the batches, or the error.
async fn stream(
    builder: LoaderBuilder,
    limit: usize,
) -> Result<(usize, seqwarm_loader::Stats), LoaderError> {
    let mut loader = builder.build().await?;
    let mut n = 0;
    while let Some(batch) = loader.next().await {
        batch?;
        n += 1;
        if n == limit {
            break;
        }
    }
    Ok((n, loader.stats()))
}

/// What no input may cause: a panic (`ReaderStopped`), or counts that do not add up.
fn assert_sound(result: &Result<(usize, seqwarm_loader::Stats), LoaderError>, what: &str) {
    match result {
        Err(LoaderError::ReaderStopped { reason }) => panic!("{what}: a reader panicked: {reason}"),
        Err(_) => {}
        Ok((_, stats)) => assert!(stats.is_balanced(), "{what}: {stats:?}"),
    }
}

/// One change to a shard's bytes, at a position counted from the start or, for the footer,
/// from the end.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
enum Mutation {
    FlipBit { at: usize, bit: u8 },
    FlipBitFromEnd { at: usize, bit: u8 },
    SetByteFromEnd { at: usize, value: u8 },
    Truncate { keep: usize },
    Insert { at: usize, bytes: Vec<u8> },
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let n = bytes.len();
        match *self {
            Self::FlipBit { at, bit } if n > 0 => bytes[at % n] ^= 1 << (bit % 8),
            Self::FlipBitFromEnd { at, bit } if n > 0 => bytes[n - 1 - at % n] ^= 1 << (bit % 8),
            Self::SetByteFromEnd { at, value } if n > 0 => bytes[n - 1 - at % n] = value,
            Self::Truncate { keep } => bytes.truncate(keep % (n + 1)),
            Self::Insert {
                at,
                bytes: ref extra,
            } => {
                let at = at % (n + 1);
                bytes.splice(at..at, extra.iter().copied());
            }
            _ => {}
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct ShardCase {
    base: String,
    mutations: Vec<Mutation>,
}

fn check_shard(case: &ShardCase, id: &str) {
    let base = bases()
        .iter()
        .find(|(name, _)| *name == case.base)
        .unwrap_or_else(|| panic!("no base shard {}", case.base));
    let mut bytes = base.1.clone();
    for m in &case.mutations {
        m.apply(&mut bytes);
    }
    let dir = common::temp_dir(&format!("fuzz-shard-{id}"));
    let path = dir.join("shard.parquet");
    std::fs::write(&path, &bytes).unwrap();
    let rt = runtime();
    for verify in [true, false] {
        let builder =
            LoaderBuilder::new([path.display().to_string()], warmup().with_keep_last(true))
                .with_shuffle_units(false)
                .with_verify_checksums(verify);
        let result = rt.block_on(stream(builder, usize::MAX));
        assert_sound(&result, &format!("{case:?} verify {verify}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn corpus(name: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_shard_corpus_runs_clean() {
    let lines = corpus("shards.jsonl");
    assert!(lines.len() >= 5);
    for (i, line) in lines.iter().enumerate() {
        let case: ShardCase =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {i}: {e}"));
        check_shard(&case, &format!("corpus-{i}"));
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        3 => (0usize..400, any::<u8>()).prop_map(|(at, bit)| Mutation::FlipBitFromEnd { at, bit }),
        2 => (0usize..400, any::<u8>()).prop_map(|(at, value)| Mutation::SetByteFromEnd { at, value }),
        1 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn mutated_shards_give_batches_or_a_typed_error(
        base in prop_oneof![Just("flat_plain"), Just("flat_zstd"), Just("rows_zstd")],
        mutations in proptest::collection::vec(mutation(), 1..4),
        id in any::<u32>(),
    ) {
        check_shard(&ShardCase { base: base.into(), mutations }, &id.to_string());
    }
}

/// A clean shard of the flat PLAIN base, for the state and settings targets.
fn clean_shard() -> &'static PathBuf {
    static SHARD: OnceLock<PathBuf> = OnceLock::new();
    SHARD.get_or_init(|| {
        let dir = common::temp_dir("fuzz-clean");
        let path = dir.join("clean.parquet");
        std::fs::write(&path, &bases()[0].1).unwrap();
        path
    })
}

/// A real checkpoint, taken after `after` batches, as JSON.
fn real_state(after: usize) -> Value {
    let rt = runtime();
    rt.block_on(async {
        let mut loader = LoaderBuilder::new([clean_shard().display().to_string()], warmup())
            .build()
            .await
            .unwrap();
        for _ in 0..after {
            loader.next().await.unwrap().unwrap();
        }
        let mut state: Value = serde_json::from_str(&loader.state().to_json().unwrap()).unwrap();
        // A version 2 state, written before the checksum: an edit then reaches the field checks
        // instead of stopping at the checksum (which catches every edit).
        state.as_object_mut().unwrap().remove("checksum");
        state["version"] = 2.into();
        state
    })
}

/// Replaces the leaf at `pick` (in document order) with `value`; objects and arrays count as
/// leaves too, so whole parts are replaced.
fn replace_leaf(value: &mut Value, pick: &mut usize, with: &Value) -> bool {
    if *pick == 0 {
        *value = with.clone();
        return true;
    }
    *pick -= 1;
    match value {
        Value::Object(map) => map.values_mut().any(|v| replace_leaf(v, pick, with)),
        Value::Array(items) => items.iter_mut().any(|v| replace_leaf(v, pick, with)),
        _ => false,
    }
}

fn check_state(text: &str, what: &str) {
    let Ok(state) = LoaderState::from_json(text) else {
        return;
    };
    let builder =
        LoaderBuilder::new([clean_shard().display().to_string()], warmup()).with_state(state);
    let result = runtime().block_on(stream(builder, 200));
    assert_sound(&result, what);
}

#[test]
fn the_state_corpus_runs_clean() {
    let lines = corpus("states.jsonl");
    assert!(lines.len() >= 3);
    for (i, line) in lines.iter().enumerate() {
        // Each line: values set (by JSON pointer) in a real state taken after `after` batches.
        let case: Value = serde_json::from_str(line).unwrap();
        let mut state = real_state(case["after"].as_u64().unwrap() as usize);
        for edit in case["edits"].as_array().unwrap() {
            let pointer = edit["pointer"].as_str().unwrap();
            let slot = state
                .pointer_mut(pointer)
                .unwrap_or_else(|| panic!("line {i}: no {pointer} in the state"));
            *slot = edit["value"].clone();
        }
        check_state(&state.to_string(), &format!("corpus line {i}"));
    }
}

/// JSON values that break assumptions: huge, negative, fractional, wrong types, empty.
fn hostile_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(u64::MAX)),
        Just(Value::from(-1)),
        Just(Value::from(0)),
        Just(Value::from(1)),
        Just(Value::from(0.5)),
        Just(Value::from(f64::MAX)),
        Just(Value::Null),
        Just(Value::from(true)),
        "[a-z_]{0,8}".prop_map(Value::from),
        Just(Value::Array(vec![])),
        Just(serde_json::json!({})),
        Just(serde_json::json!([1, 2, 3])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn edited_states_give_batches_or_a_typed_error(
        after in 0usize..12,
        edits in proptest::collection::vec((0usize..200, hostile_value()), 1..4),
    ) {
        let mut state = real_state(after);
        for (pick, value) in &edits {
            let mut pick = *pick;
            replace_leaf(&mut state, &mut pick, value);
        }
        check_state(&state.to_string(), &format!("{edits:?}"));
    }
}

fn check_settings(settings: &Value, what: &str) {
    let Ok(config) = LoaderConfig::from_value(settings.clone()) else {
        return;
    };
    let builder = LoaderBuilder::from_config([clean_shard().display().to_string()], config);
    let result = runtime().block_on(stream(builder, 50));
    assert_sound(&result, what);
}

#[test]
fn the_settings_corpus_runs_clean() {
    let lines = corpus("settings.jsonl");
    assert!(lines.len() >= 5);
    for (i, line) in lines.iter().enumerate() {
        let settings: Value = serde_json::from_str(line).unwrap();
        check_settings(&settings, &format!("corpus line {i}: {line}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Settings tables with every key the loader knows, and some it does not, set to hostile
    /// values; schedules too.
    #[test]
    fn hostile_settings_give_batches_or_a_typed_error(
        picks in proptest::collection::vec((0usize..64, hostile_value()), 1..5),
        schedule in proptest::collection::vec((0usize..16, hostile_value()), 0..3),
    ) {
        let Value::Object(defaults) = serde_json::to_value(LoaderConfig::default()).unwrap() else {
            unreachable!("a config serializes to a table")
        };
        let mut keys: Vec<String> = defaults.keys().cloned().collect();
        keys.extend(["batch_rows", "batch_tokens", "no_such_key"].map(String::from));
        let mut settings = serde_json::Map::new();
        for (pick, value) in picks {
            settings.insert(keys[pick % keys.len()].clone(), value);
        }
        let mut table = serde_json::json!({"kind": "linear", "min": 8, "max": 64, "duration": 0.5, "total": 40});
        let fields = ["kind", "min", "max", "step", "duration", "total", "unit", "root_degree",
            "total_curriculum_step", "difficulty", "max_step", "warmup_end"];
        for (pick, value) in schedule {
            table[fields[pick % fields.len()]] = value;
        }
        settings.insert("schedule".into(), table);
        let settings = Value::Object(settings);
        check_settings(&settings, &settings.to_string());
    }
}
