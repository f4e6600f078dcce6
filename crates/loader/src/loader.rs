//! [`Loader`]: Parquet shards in, warmup-scheduled batches out.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use seqwarm_batcher::DType;
use serde::{Deserialize, Serialize};

use crate::catalog::{BadShardPolicy, Catalog, build_catalog};
use crate::config::{BatchSize, Mode, WarmupConfig};
use crate::core::{CoreState, ScheduledBatch, Stats, WarmupCore};
use crate::error::{LoaderError, Result};
use crate::layout::{DecodeOptions, ShardLayout};
use crate::prefetch::{Item, Prefetch, Prefetcher, ReadSettings, spawn};
use crate::reader::RetryPolicy;
use crate::source::list_shards;

/// Format version of [`LoaderState`].
pub const STATE_VERSION: u32 = 1;

/// A checkpoint of a [`Loader`] at a batch boundary. Serialize it (JSON) with your model
/// checkpoint; a loader built with [`LoaderBuilder::with_state`] continues with
/// byte-identical batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// The settings that must match on resume (mode, schedule, sizing, seed, ranks, ...).
    pub fingerprint: String,
    /// Epoch of the next unread document.
    pub epoch: u64,
    /// Position of its row group in this rank's order for that epoch.
    pub unit: u64,
    /// Documents of that row group already taken.
    pub document: u64,
    /// Batches emitted in the current epoch (multi-rank runs cap this).
    pub step_in_epoch: u64,
    /// The warmup core: progress, carried tokens, shuffle buffer, counters.
    pub core: CoreState,
}

/// Configures and builds a [`Loader`].
///
/// ```
/// use futures_util::StreamExt;
/// use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, OutputLayout, ShardWriter, WarmupConfig};
/// use seqwarm_schedule::ScheduleConfig;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A directory with one shard of 200 documents.
/// let dir = std::env::temp_dir().join(format!("seqwarm-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let file = std::fs::File::create(dir.join("shard-0.parquet")).unwrap();
/// let mut writer = ShardWriter::new(file, OutputLayout::Flat, 4096, "shard-0").unwrap();
/// for doc in 0..200 {
///     writer.write_document(&vec![doc; 100]).unwrap();
/// }
/// writer.finish().unwrap();
///
/// let schedule = ScheduleConfig::linear(16, 128, 0.5, 40).with_step(16).build()?;
/// let warmup = WarmupConfig::new(schedule)
///     .with_mode(Mode::Repack)
///     .with_batch_size(BatchSize::Tokens(512));
/// let mut loader = LoaderBuilder::new([dir.display().to_string()], warmup)
///     .with_seed(17)
///     .build()
///     .await?;
/// let first = loader.next().await.unwrap()?;
/// assert_eq!((first.seq_len, first.batch.rows()), (16, 32)); // 512 tokens at length 16
/// while let Some(batch) = loader.next().await {
///     let batch = batch?;
///     assert_eq!(batch.batch.seq_len(), batch.seq_len);
/// }
/// assert_eq!(loader.stats().documents, 200);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # Ok::<(), seqwarm_loader::LoaderError>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LoaderBuilder {
    locations: Vec<String>,
    warmup: WarmupConfig,
    layout: ShardLayout,
    seed: u64,
    rank: usize,
    world_size: usize,
    prefetch: Prefetch,
    shuffle_units: bool,
    epochs: Option<u64>,
    max_steps: Option<u64>,
    max_tokens: Option<u64>,
    vocab_size: Option<u64>,
    policy: BadShardPolicy,
    retry: RetryPolicy,
    dtype: DType,
    io_threads: usize,
    state: Option<LoaderState>,
}

impl LoaderBuilder {
    /// Shards from these locations (files, directories, globs or object-store URLs).
    pub fn new<I, S>(locations: I, warmup: WarmupConfig) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            locations: locations.into_iter().map(Into::into).collect(),
            warmup,
            layout: ShardLayout::default(),
            seed: 0,
            rank: 0,
            world_size: 1,
            prefetch: Prefetch::default(),
            shuffle_units: true,
            epochs: Some(1),
            max_steps: None,
            max_tokens: None,
            vocab_size: None,
            policy: BadShardPolicy::Fail,
            retry: RetryPolicy::default(),
            dtype: DType::I32,
            io_threads: 1,
            state: None,
        }
    }
    /// Layout and column names.
    #[must_use]
    pub fn with_layout(mut self, layout: ShardLayout) -> Self {
        self.layout = layout;
        self
    }
    /// Seed of the shard order (and of the sample shuffle, via the warmup config).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// This process's rank and the number of ranks.
    #[must_use]
    pub fn with_rank(mut self, rank: usize, world_size: usize) -> Self {
        self.rank = rank;
        self.world_size = world_size;
        self
    }
    /// Read-ahead settings.
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: Prefetch) -> Self {
        self.prefetch = prefetch;
        self
    }
    /// Shuffle the row-group order each epoch (default true).
    #[must_use]
    pub fn with_shuffle_units(mut self, shuffle: bool) -> Self {
        self.shuffle_units = shuffle;
        self
    }
    /// Epochs to run; `None` runs until another end condition.
    #[must_use]
    pub fn with_epochs(mut self, epochs: Option<u64>) -> Self {
        self.epochs = epochs;
        self
    }
    /// Stop after this many batches in total.
    #[must_use]
    pub fn with_max_steps(mut self, steps: Option<u64>) -> Self {
        self.max_steps = steps;
        self
    }
    /// Stop once this many tokens have been emitted in total.
    #[must_use]
    pub fn with_max_tokens(mut self, tokens: Option<u64>) -> Self {
        self.max_tokens = tokens;
        self
    }
    /// Reject token ids outside `[0, vocab_size)`.
    #[must_use]
    pub fn with_vocab_size(mut self, vocab_size: Option<u64>) -> Self {
        self.vocab_size = vocab_size;
        self
    }
    /// What to do with unreadable shards.
    #[must_use]
    pub fn with_bad_shard_policy(mut self, policy: BadShardPolicy) -> Self {
        self.policy = policy;
        self
    }
    /// Object-store retries.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
    /// Token dtype of the emitted batches (default i32).
    #[must_use]
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }
    /// Threads of the dedicated I/O runtime.
    #[must_use]
    pub fn with_io_threads(mut self, threads: usize) -> Self {
        self.io_threads = threads;
        self
    }
    /// Continue from a checkpoint.
    #[must_use]
    pub fn with_state(mut self, state: LoaderState) -> Self {
        self.state = Some(state);
        self
    }

    fn fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct Fingerprint<'a> {
            mode: Mode,
            schedule: &'a seqwarm_schedule::ScheduleConfig,
            batch_size: BatchSize,
            eos: Option<i64>,
            shuffle_buffer: usize,
            shuffle_seed: u64,
            seed: u64,
            rank: usize,
            world_size: usize,
            shuffle_units: bool,
            dtype: DType,
        }
        serde_json::to_string(&Fingerprint {
            mode: self.warmup.mode,
            schedule: self.warmup.schedule.config(),
            batch_size: self.warmup.batch_size,
            eos: self.warmup.eos_id,
            shuffle_buffer: self.warmup.shuffle_buffer,
            shuffle_seed: self.warmup.shuffle_seed,
            seed: self.seed,
            rank: self.rank,
            world_size: self.world_size,
            shuffle_units: self.shuffle_units,
            dtype: self.dtype,
        })
        .unwrap_or_default()
    }

    /// Lists the shards, reads their footers, checks layouts and builds the loader. Must be
    /// called inside a tokio runtime (decoding runs on it; I/O runs on a dedicated one).
    pub async fn build(self) -> Result<Loader> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(LoaderError::Config {
                field: "rank",
                reason: format!("rank {} is not in 0..{}", self.rank, self.world_size),
            });
        }
        if self.locations.is_empty() {
            return Err(LoaderError::Config {
                field: "shards",
                reason: "no shard locations given".into(),
            });
        }
        let io = IoRuntime::new(self.io_threads.max(1))?;
        let files = list_shards(&self.locations, self.retry).await?;
        let catalog = build_catalog(
            files,
            &self.layout,
            self.policy,
            self.retry,
            io.handle(),
            self.prefetch.concurrency.max(4),
        )
        .await?;
        let mut core = WarmupCore::new(self.warmup.clone())?;
        let fingerprint = self.fingerprint();
        let (epoch, start, skip, step_in_epoch) = match &self.state {
            Some(state) => {
                if state.version != STATE_VERSION {
                    return Err(LoaderError::State {
                        reason: format!(
                            "version {} (this build reads {STATE_VERSION})",
                            state.version
                        ),
                    });
                }
                if state.fingerprint != fingerprint {
                    return Err(LoaderError::State {
                        reason: format!(
                            "settings differ from the checkpoint's:\n  checkpoint: {}\n  now:        {fingerprint}",
                            state.fingerprint
                        ),
                    });
                }
                core.restore(&state.core)?;
                (state.epoch, state.unit, state.document, state.step_in_epoch)
            }
            None => (0, 0, 0, 0),
        };
        let mut loader = Loader {
            catalog: Arc::new(catalog),
            core,
            settings: self,
            fingerprint,
            io,
            epoch,
            order: Arc::new(Vec::new()),
            steps_per_epoch: None,
            step_in_epoch,
            start,
            skip,
            prefetcher: None,
            draining: false,
            finished: false,
            skipped: Vec::new(),
        };
        loader.plan_epoch();
        Ok(loader)
    }
}

/// A lower bound on the tokens in the shards at `locations`, from their footers alone (for
/// sizing a schedule to one epoch before building a loader).
pub async fn estimate_tokens(locations: &[String], layout: &ShardLayout) -> Result<u64> {
    let io = IoRuntime::new(1)?;
    let retry = RetryPolicy::default();
    let files = list_shards(locations, retry).await?;
    let catalog = build_catalog(files, layout, BadShardPolicy::Fail, retry, io.handle(), 4).await?;
    Ok(catalog.tokens_lower_bound())
}

/// Owns the dedicated I/O runtime; shut down without blocking (safe inside async code).
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("seqwarm-io")
            .enable_all()
            .build()
            .map_err(|e| LoaderError::Config {
                field: "io_threads",
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        Ok(Self(Some(runtime)))
    }
    fn handle(&self) -> tokio::runtime::Handle {
        match &self.0 {
            Some(rt) => rt.handle().clone(),
            None => tokio::runtime::Handle::current(),
        }
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// A stream of warmup-scheduled batches read from Parquet shards.
///
/// Built by [`LoaderBuilder`]. Shards and row groups are read ahead with bounded concurrency
/// and a bounded queue; [`Loader::state`] checkpoints at any batch boundary.
pub struct Loader {
    catalog: Arc<Catalog>,
    core: WarmupCore,
    settings: LoaderBuilder,
    fingerprint: String,
    io: IoRuntime,
    epoch: u64,
    order: Arc<Vec<usize>>,
    steps_per_epoch: Option<u64>,
    step_in_epoch: u64,
    start: u64,
    skip: u64,
    prefetcher: Option<Prefetcher>,
    draining: bool,
    finished: bool,
    skipped: Vec<String>,
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("catalog", &self.catalog)
            .field("epoch", &self.epoch)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// The shards and row groups found.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Why each skipped shard or row group was skipped (skip-and-count policy).
    pub fn skipped(&self) -> Vec<String> {
        let mut all = self.catalog.skipped.clone();
        all.extend(self.skipped.iter().cloned());
        all
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches each rank emits per epoch, when several ranks must stay in step.
    pub fn steps_per_epoch(&self) -> Option<u64> {
        self.steps_per_epoch
    }

    /// The warmup core (schedule progress, next shape).
    pub fn core(&self) -> &WarmupCore {
        &self.core
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> LoaderState {
        let (epoch, unit, document) = match self.core.position() {
            Some(o) => (o.epoch, o.unit, o.first_document),
            None => (self.epoch, self.start, self.skip),
        };
        LoaderState {
            version: STATE_VERSION,
            fingerprint: self.fingerprint.clone(),
            epoch,
            unit,
            document,
            step_in_epoch: self.step_in_epoch,
            core: self.core.state(),
        }
    }

    fn multi_rank(&self) -> bool {
        self.settings.world_size > 1
    }

    /// Orders this epoch's units and, with several ranks, fixes the epoch's batch count.
    fn plan_epoch(&mut self) {
        let s = &self.settings;
        self.order = Arc::new(self.catalog.rank_order(
            s.seed,
            self.epoch,
            s.shuffle_units,
            s.rank,
            s.world_size,
        ));
        self.steps_per_epoch = if self.multi_rank() {
            let least = (0..s.world_size)
                .map(|r| {
                    self.catalog
                        .rank_order(s.seed, self.epoch, s.shuffle_units, r, s.world_size)
                        .iter()
                        .map(|&u| self.catalog.units[u].tokens_lower_bound)
                        .sum::<u64>()
                })
                .min()
                .unwrap_or(0);
            Some(supported_steps(&self.core, least))
        } else {
            None
        };
    }

    fn read_settings(&self) -> ReadSettings {
        ReadSettings {
            prefetch: self.settings.prefetch,
            policy: self.settings.policy,
            decode: DecodeOptions {
                dtype: self.settings.dtype,
                vocab_size: self.settings.vocab_size,
                signed: false,
            },
            retry: self.settings.retry,
            io: self.io.handle(),
        }
    }

    fn limits_reached(&self) -> bool {
        let p = self.core.progress();
        self.settings.max_steps.is_some_and(|m| p.steps >= m)
            || self.settings.max_tokens.is_some_and(|m| p.tokens >= m)
    }

    fn next_epoch(&mut self) -> bool {
        self.epoch += 1;
        self.start = 0;
        self.skip = 0;
        self.step_in_epoch = 0;
        self.prefetcher = None;
        if self.settings.epochs.is_some_and(|e| self.epoch >= e) {
            return false;
        }
        self.plan_epoch();
        true
    }
}

/// How many batches `tokens` tokens are sure to fill, simulating the schedule from the
/// core's current progress (each batch consuming its rows times its row length).
fn supported_steps(core: &WarmupCore, tokens: u64) -> u64 {
    let config = core.config();
    let schedule = config.schedule();
    let max = schedule.max_len();
    let mut progress = core.progress();
    let mut left = tokens;
    let mut steps = 0;
    loop {
        let len = schedule.seq_len(&progress);
        let rows = config.rows_at(usize::try_from(len).unwrap_or(usize::MAX)) as u64;
        let row_len = if config.mode().is_composer() {
            max
        } else {
            len
        };
        let need = rows * row_len;
        if need > left || need == 0 {
            return steps;
        }
        left -= need;
        let (out_rows, out_tokens) = match config.mode() {
            Mode::Reshape => (need / len, need / len * len),
            _ => (rows, rows * len),
        };
        progress.advance(out_rows, out_tokens);
        steps += 1;
    }
}

impl Stream for Loader {
    type Item = Result<ScheduledBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            if this.limits_reached() {
                this.finished = true;
                this.prefetcher = None;
                return Poll::Ready(None);
            }
            if this.draining {
                return match this.core.finish() {
                    Ok(Some(batch)) => Poll::Ready(Some(Ok(batch))),
                    Ok(None) => {
                        this.finished = true;
                        Poll::Ready(None)
                    }
                    Err(e) => {
                        this.finished = true;
                        Poll::Ready(Some(Err(e)))
                    }
                };
            }
            if this
                .steps_per_epoch
                .is_some_and(|n| this.step_in_epoch >= n)
            {
                // Every rank stops the epoch at the same batch; what is left is dropped and
                // counted (docs/loader.md).
                this.core.discard_buffered();
                if !this.next_epoch() {
                    this.finished = true;
                    return Poll::Ready(None);
                }
                continue;
            }
            match this.core.next_batch() {
                Ok(Some(batch)) => {
                    this.step_in_epoch += 1;
                    return Poll::Ready(Some(Ok(batch)));
                }
                Ok(None) => {}
                Err(e) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            if this.prefetcher.is_none() {
                let repeat = this.multi_rank();
                this.prefetcher = Some(spawn(
                    Arc::clone(&this.catalog),
                    this.epoch,
                    Arc::clone(&this.order),
                    this.start,
                    this.skip,
                    repeat,
                    this.read_settings(),
                ));
            }
            let Some(prefetcher) = this.prefetcher.as_mut() else {
                continue;
            };
            match prefetcher.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok(Item::Documents(documents)))) => {
                    // Positions past the epoch's order are a rank re-reading its own row groups.
                    let origin = documents.origin();
                    if origin.unit >= this.order.len() as u64 && origin.first_document == 0 {
                        this.core.stats_mut().units_repeated += 1;
                    }
                    if let Err(e) = this.core.push(documents) {
                        this.finished = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Ok(Item::Skipped(reason)))) => {
                    this.core.stats_mut().units_skipped += 1;
                    this.skipped.push(reason);
                }
                Poll::Ready(Some(Ok(Item::Barren))) => {
                    this.finished = true;
                    return Poll::Ready(Some(Err(LoaderError::Config {
                        field: "shards",
                        reason: format!("rank {} has no readable row groups", this.settings.rank),
                    })));
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    this.prefetcher = None;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    // This epoch's row groups are all read.
                    if !this.next_epoch() {
                        this.draining = true;
                    }
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
