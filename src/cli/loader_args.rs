//! Loader flags shared by `stream` and `bench`, mirrored by a config file.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use seqwarm::batcher::PackStrategy;
use seqwarm::loader::{BadShardPolicy, BatchSize, LoaderBuilder, Mode, Prefetch, WarmupConfig};
use seqwarm::schedule::Schedule;
use serde::{Deserialize, Serialize};

/// The warmup stage's mode, as a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModeArg {
    /// Composer truncate: max-length rows cut to the scheduled length.
    Truncate,
    /// Composer truncate, moving each row's last real token into the cut row.
    TruncateKeepEos,
    /// Composer reshape: max-length rows re-flowed into rows of the scheduled length.
    Reshape,
    /// Lossless: rows of exactly the scheduled length, remainder carried.
    Repack,
    /// Document packing, greedy.
    PackGreedy,
    /// Document packing, best fit decreasing over `--pack-window` documents.
    PackBestfit,
}

impl ModeArg {
    /// The loader mode.
    pub fn mode(self, window: usize) -> Mode {
        match self {
            Self::Truncate => Mode::Truncate {
                preserve_end_of_sequence: false,
            },
            Self::TruncateKeepEos => Mode::Truncate {
                preserve_end_of_sequence: true,
            },
            Self::Reshape => Mode::Reshape,
            Self::Repack => Mode::Repack,
            Self::PackGreedy => Mode::Pack {
                strategy: PackStrategy::Greedy,
            },
            Self::PackBestfit => Mode::Pack {
                strategy: PackStrategy::BestFitDecreasing { window },
            },
        }
    }

    /// Every mode, in table order.
    pub const ALL: [ModeArg; 6] = [
        Self::Truncate,
        Self::TruncateKeepEos,
        Self::Reshape,
        Self::Repack,
        Self::PackGreedy,
        Self::PackBestfit,
    ];

    /// The flag spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncate => "truncate",
            Self::TruncateKeepEos => "truncate-keep-eos",
            Self::Reshape => "reshape",
            Self::Repack => "repack",
            Self::PackGreedy => "pack-greedy",
            Self::PackBestfit => "pack-bestfit",
        }
    }
}

/// Loader flags. Each overrides the same-named key of `--config` (kebab-case keys).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoaderArgs {
    /// Mode: truncate, truncate-keep-eos, reshape, repack, pack-greedy, pack-bestfit [default: repack].
    #[arg(long)]
    pub mode: Option<ModeArg>,
    /// Documents per best-fit window [default: 256].
    #[arg(long)]
    pub pack_window: Option<usize>,
    /// Fixed rows per batch.
    #[arg(long, conflicts_with = "batch_tokens")]
    pub batch_rows: Option<usize>,
    /// Token budget per batch: rows = budget / scheduled length [default: 32768].
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Token appended after every document.
    #[arg(long)]
    pub eos_id: Option<i64>,
    /// Padding id.
    #[arg(long)]
    pub pad_id: Option<i64>,
    /// Emit the final partial batch (padded) instead of dropping it.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub keep_last: Option<bool>,
    /// Seed of the row-group order and the document shuffle [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shuffle documents through a buffer of this many [default: 0, off].
    #[arg(long)]
    pub shuffle_buffer: Option<usize>,
    /// Keep the row groups in file order instead of shuffling them per epoch.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub no_shuffle_units: Option<bool>,
    /// This process's rank [default: 0].
    #[arg(long)]
    pub rank: Option<usize>,
    /// Number of ranks [default: 1].
    #[arg(long)]
    pub world_size: Option<usize>,
    /// Row groups fetched and decoded at once [default: 2].
    #[arg(long)]
    pub prefetch_concurrency: Option<usize>,
    /// Decoded row groups waiting for the consumer [default: 4].
    #[arg(long)]
    pub prefetch_queue: Option<usize>,
    /// Epochs [default: 1; 0 = until another limit].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Stop after this many batches.
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Stop once this many tokens were emitted.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Reject token ids outside [0, vocab-size).
    #[arg(long)]
    pub vocab_size: Option<u64>,
    /// Bad shards: fail or skip [default: fail].
    #[arg(long)]
    pub on_error: Option<PolicyArg>,
}

/// `--on-error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyArg {
    /// Stop with the error.
    Fail,
    /// Skip and count.
    Skip,
}

macro_rules! overlay {
    ($cli:expr, $file:expr, $($field:ident),+) => {
        $( if $cli.$field.is_none() { $cli.$field = $file.$field.clone(); } )+
    };
}
// Shared with `train`'s options, which exist only with the `train` feature.
#[cfg_attr(not(feature = "train"), allow(unused_imports))]
pub(crate) use overlay;

impl LoaderArgs {
    /// Flags over the config file's values.
    pub fn merged(&self, file: &LoaderArgs) -> LoaderArgs {
        let mut out = self.clone();
        overlay!(
            out,
            file,
            mode,
            pack_window,
            batch_rows,
            batch_tokens,
            eos_id,
            pad_id,
            keep_last,
            seed,
            shuffle_buffer,
            no_shuffle_units,
            rank,
            world_size,
            prefetch_concurrency,
            prefetch_queue,
            epochs,
            max_steps,
            max_tokens,
            vocab_size,
            on_error
        );
        out
    }

    /// The batch sizing.
    pub fn batch_size(&self) -> BatchSize {
        match (self.batch_rows, self.batch_tokens) {
            (Some(rows), _) => BatchSize::Rows(rows),
            (None, tokens) => BatchSize::Tokens(tokens.unwrap_or(32_768)),
        }
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
            .unwrap_or(ModeArg::Repack)
            .mode(self.pack_window.unwrap_or(256))
    }

    /// The warmup stage for `schedule`.
    pub fn warmup(&self, schedule: Schedule) -> WarmupConfig {
        WarmupConfig::new(schedule)
            .with_mode(self.mode())
            .with_batch_size(self.batch_size())
            .with_eos_id(self.eos_id)
            .with_pad_id(self.pad_id.unwrap_or(0))
            .with_keep_last(self.keep_last.unwrap_or(false))
            .with_shuffle_buffer(self.shuffle_buffer.unwrap_or(0), self.seed.unwrap_or(0))
    }

    /// A loader builder over `shards`.
    pub fn builder(&self, shards: &[String], schedule: Schedule) -> LoaderBuilder {
        let epochs = match self.epochs {
            Some(0) => None,
            Some(n) => Some(n),
            None => Some(1),
        };
        LoaderBuilder::new(shards.iter().cloned(), self.warmup(schedule))
            .with_seed(self.seed.unwrap_or(0))
            .with_rank(self.rank.unwrap_or(0), self.world_size.unwrap_or(1))
            .with_shuffle_units(!self.no_shuffle_units.unwrap_or(false))
            .with_prefetch(Prefetch {
                concurrency: self.prefetch_concurrency.unwrap_or(2),
                queue: self.prefetch_queue.unwrap_or(4),
            })
            .with_epochs(epochs)
            .with_max_steps(self.max_steps)
            .with_max_tokens(self.max_tokens)
            .with_vocab_size(self.vocab_size)
            .with_bad_shard_policy(match self.on_error {
                Some(PolicyArg::Skip) => BadShardPolicy::Skip,
                _ => BadShardPolicy::Fail,
            })
    }
}

/// A whole-command config file: the schedule keys under `[schedule]`, loader keys at the top.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandConfig {
    /// Shard locations.
    pub shards: Vec<String>,
    /// The schedule (same keys as a schedule file).
    pub schedule: Option<seqwarm::schedule::ScheduleConfig>,
    /// Loader settings.
    #[serde(flatten)]
    pub loader: LoaderArgs,
}

/// Reads a TOML (`.toml`) or JSON config file.
pub fn read_command_config(path: &PathBuf) -> anyhow::Result<CommandConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config {}", path.display()))?;
    let parsed = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(anyhow::Error::from)
    } else {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    };
    parsed.with_context(|| format!("invalid config {}", path.display()))
}
