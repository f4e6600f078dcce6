//! [`LoaderBuilder`]: a [`LoaderConfig`] plus what only code can give (a runtime, object
//! stores, a checkpoint), then `build()`.

use std::sync::Arc;

use object_store::ObjectStore;
use seqwarm_batcher::DType;
use seqwarm_stage::{
    EpochBoundary, EpochPlan, MixturePlan, Plan, UnitInfo, WarmupConfig, WarmupCore,
};
use tokio::runtime::Handle;

use seqwarm_format::OnError;

use crate::cache::ShardCache;
use crate::catalog::{Catalog, CatalogKey, FooterReads, TokenCount, build_catalog};
use crate::config::LoaderConfig;
use crate::error::{LoaderError, Result};
use crate::layout::{DecodeOptions, ShardLayout};
use crate::loader::Loader;
use crate::mapped::MappedFiles;
use crate::prefetch::Prefetch;
use crate::read::ReadSettings;
use crate::retry::RetryPolicy;
use crate::runtime::{IoRuntime, current_runtime};
use crate::source::{Listing, list_shards_and_manifests};
use crate::state::{DataIdentity, Identity, LoaderState};
use crate::stores::Stores;

/// Configures and builds a [`Loader`].
///
/// ```
/// use futures_util::StreamExt;
/// use seqwarm_format::{OutputLayout, ShardWriter};
/// use seqwarm_loader::{BatchSize, LoaderBuilder, Mode, ScheduleConfig, WarmupConfig};
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
/// let schedule = ScheduleConfig::linear(16, 128, 0.5, 40).with_step(16);
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
    config: LoaderConfig,
    runtime: Option<Handle>,
    stores: Stores,
    state: Option<LoaderState>,
    catalog: Option<Arc<Catalog>>,
}

impl LoaderBuilder {
    /// Shards from these locations (files, directories, globs or object-store URLs), through
    /// this warmup stage, every other setting at its default.
    pub fn new<I, S>(locations: I, warmup: WarmupConfig) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::from_config(locations, LoaderConfig::new(warmup))
    }

    /// Shards from these locations with every setting from `config`.
    pub fn from_config<I, S>(locations: I, config: LoaderConfig) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            locations: locations.into_iter().map(Into::into).collect(),
            config,
            runtime: None,
            stores: Stores::default(),
            state: None,
            catalog: None,
        }
    }

    /// The settings so far.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Layout and column names.
    #[must_use]
    pub fn with_layout(mut self, layout: ShardLayout) -> Self {
        self.config.layout = layout;
        self
    }
    /// Seed of the shard order (and of the document shuffle, unless it has its own).
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.config.epochs = self.config.epochs.with_seed(seed);
        self
    }
    /// This process's rank and the number of ranks.
    #[must_use]
    pub fn with_rank(mut self, rank: usize, world_size: usize) -> Self {
        self.config.epochs = self.config.epochs.with_rank(rank, world_size);
        self
    }
    /// Read-ahead settings.
    #[must_use]
    pub fn with_prefetch(mut self, prefetch: Prefetch) -> Self {
        self.config.prefetch = prefetch;
        self
    }
    /// Shuffle the row-group order each epoch (default true).
    #[must_use]
    pub fn with_shuffle_units(mut self, shuffle: bool) -> Self {
        self.config.epochs = self.config.epochs.with_shuffle_units(shuffle);
        self
    }
    /// Epochs to run; `None` runs until another end condition.
    #[must_use]
    pub fn with_epochs(mut self, epochs: Option<u64>) -> Self {
        self.config.epochs = self.config.epochs.with_epochs(epochs.unwrap_or(0));
        self
    }
    /// What one rank does with the tokens left at an epoch's end; `None` for the mode's
    /// default ([`EpochBoundary::default_for`]).
    #[must_use]
    pub fn with_epoch_boundary(mut self, boundary: Option<EpochBoundary>) -> Self {
        self.config.epochs = self.config.epochs.with_epoch_boundary(boundary);
        self
    }
    /// Stop after this many batches in total.
    #[must_use]
    pub fn with_max_steps(mut self, steps: Option<u64>) -> Self {
        self.config.epochs = self.config.epochs.with_max_steps(steps);
        self
    }
    /// Stop once this many tokens have been emitted in total.
    #[must_use]
    pub fn with_max_tokens(mut self, tokens: Option<u64>) -> Self {
        self.config.epochs = self.config.epochs.with_max_tokens(tokens);
        self
    }
    /// Reject token ids outside `[0, vocab_size)`.
    #[must_use]
    pub fn with_vocab_size(mut self, vocab_size: Option<u64>) -> Self {
        self.config.vocab_size = vocab_size;
        self
    }
    /// What to do with unreadable shards.
    #[must_use]
    pub fn with_on_error(mut self, policy: OnError) -> Self {
        self.config.on_error = policy;
        self
    }
    /// Object-store retries.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.config.retry = retry;
        self
    }
    /// Token dtype of the emitted batches (default i32).
    #[must_use]
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.config.dtype = dtype;
        self
    }
    /// Threads of the I/O runtime the loader starts for object-store shards when no runtime is
    /// given.
    #[must_use]
    pub fn with_io_threads(mut self, threads: usize) -> Self {
        self.config.io_threads = threads;
        self
    }
    /// Check each row group against the CRC32 that seqwarm's shard writer records in the
    /// footer (on by default; Parquet page CRCs are checked whenever a page has one).
    #[must_use]
    pub fn with_verify_checksums(mut self, verify: bool) -> Self {
        self.config.verify_checksums = verify;
        self
    }
    /// Read local row groups through a read-only memory map of their byte range (on by
    /// default: the CRC and the decoder read the page cache in place), or, when `false`,
    /// through positioned reads into owned buffers, which a shard truncated underneath a
    /// running loader cannot crash (see `docs/reliability.md`).
    #[must_use]
    pub fn with_memory_map(mut self, map: bool) -> Self {
        self.config.memory_map = map;
        self
    }
    /// Keeps remote shards in `dir` once downloaded, at most `limit` bytes of them (`None`: no
    /// limit), so that later epochs and later runs read them locally (`docs/loader.md`, "The
    /// shard cache"). Processes on one machine may share the directory.
    #[must_use]
    pub fn with_cache(mut self, dir: impl Into<std::path::PathBuf>, limit: Option<u64>) -> Self {
        self.config.cache_dir = Some(dir.into());
        self.config.cache_limit = limit;
        self
    }
    /// Continue from a checkpoint.
    #[must_use]
    pub fn with_state(mut self, state: LoaderState) -> Self {
        self.state = Some(state);
        self
    }
    /// Runs everything (decoding, blocking local reads, object-store requests) on this runtime;
    /// the loader then starts none of its own. Without it, the loader uses the runtime `build`
    /// runs on, and starts an I/O runtime only when some shard is in an object store.
    #[must_use]
    pub fn with_runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }
    /// Reads URLs with `prefix`'s scheme and authority (`s3://bucket`) from `store`, instead
    /// of a store built from the environment. The object path is the URL's path.
    pub fn with_object_store(mut self, prefix: &str, store: Arc<dyn ObjectStore>) -> Result<Self> {
        self.stores.insert(prefix, store)?;
        Ok(self)
    }

    /// Lists the shards and reads every footer once, with this builder's locations, layout,
    /// bad-shard policy, retries and stores: to size a schedule from the data
    /// ([`Catalog::token_count`]) before building, then handed back with
    /// [`LoaderBuilder::with_catalog`] so that no footer is read twice.
    pub async fn open_catalog(&self) -> Result<Arc<Catalog>> {
        let runtime = self.runtime_handle("LoaderBuilder::open_catalog()")?;
        let listing = self.list(&runtime).await?;
        let io = self.io_runtime(listing.has_remote(), &runtime)?;
        self.read_footers(listing, &runtime, &io).await
    }

    /// Builds on `catalog` (from [`LoaderBuilder::open_catalog`] with the same locations,
    /// layout and bad-shard policy) instead of listing the shards and reading their footers
    /// again. A catalog of other settings is refused at `build()`. The catalog's shards keep
    /// the object stores they were listed with: the row groups are read through those, not
    /// through stores given to this builder.
    #[must_use]
    pub fn with_catalog(mut self, catalog: Arc<Catalog>) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// The settings a catalog of this builder depends on.
    fn catalog_key(&self) -> CatalogKey {
        CatalogKey {
            locations: self.locations.clone(),
            layout: self.config.layout.clone(),
            on_error: self.config.on_error,
        }
    }

    fn runtime_handle(&self, caller: &str) -> Result<Handle> {
        match self.runtime.clone() {
            Some(handle) => Ok(handle),
            None => current_runtime(&format!("{caller} (or give one with with_runtime)")),
        }
    }

    async fn list(&self, runtime: &Handle) -> Result<Listing> {
        if self.locations.is_empty() {
            return Err(LoaderError::Config {
                field: "shards",
                reason: "no shard locations given".into(),
            });
        }
        list_shards_and_manifests(&self.locations, self.config.retry, &self.stores, runtime).await
    }

    /// The runtime for object-store requests: the caller's when it gave one, else a small one
    /// of the loader's own when any shard is remote.
    fn io_runtime(&self, remote: bool, runtime: &Handle) -> Result<IoRuntime> {
        match (&self.runtime, remote) {
            (None, true) => IoRuntime::start(self.config.io_threads.max(1)),
            _ => Ok(IoRuntime::borrowed(runtime.clone())),
        }
    }

    async fn read_footers(
        &self,
        listing: Listing,
        runtime: &Handle,
        io: &IoRuntime,
    ) -> Result<Arc<Catalog>> {
        let opened = self.catalog_key();
        let catalog = build_catalog(
            listing.shards,
            listing.manifests,
            &FooterReads {
                layout: &self.config.layout,
                policy: self.config.on_error,
                retry: self.config.retry,
                runtime,
                io: &io.handle(),
            },
        )
        .await?;
        Ok(Arc::new(catalog.opened_with(opened)))
    }

    /// Lists the shards, reads their footers (or takes the catalog given), checks layouts and
    /// the checkpoint, and builds the loader: one driver over the plan of these settings (the
    /// epoch plan, or a mixture with `sources`), one reader per source.
    pub async fn build(self) -> Result<Loader> {
        self.config.check()?;
        let config = self.config.clone();
        let runtime = self.runtime_handle("LoaderBuilder::build()")?;
        let mixture = config.mixture()?;
        let (catalogs, io) = if mixture.is_some() {
            self.source_catalogs(&config, &runtime).await?
        } else {
            let (catalog, io) = self.shards_catalog(&runtime).await?;
            (vec![catalog], io)
        };
        let appended = eos_to_append(&config, &catalogs)?;
        let identity = Identity {
            settings: settings_of(&config, appended)?,
            data: DataIdentity::of(catalogs.iter().flat_map(|c| c.files())),
        };
        let core = WarmupCore::new(stage_warmup(&config, appended)?);
        if let Some(state) = &self.state {
            state.check(&identity, config.vocab_size)?;
        }
        let state = self.state.as_ref();
        let epochs = config.epochs.clone();
        let plan: Box<dyn Plan> = if let Some(mixture) = mixture {
            let units: Vec<Arc<[UnitInfo]>> =
                catalogs.iter().map(|c| Arc::from(c.unit_infos())).collect();
            let mixture = mixture.build()?;
            Box::new(match state {
                Some(state) => {
                    let Some(saved) = state.mixture() else {
                        return Err(LoaderError::State {
                            reason: "the checkpoint is of a loader without `sources`".into(),
                        });
                    };
                    MixturePlan::resume(units, mixture, epochs, core, saved)?
                }
                None => MixturePlan::new(units, mixture, epochs, core)?,
            })
        } else {
            let units = catalogs[0].unit_infos();
            Box::new(match state.map(|s| (s.plan(), s.merged())) {
                Some((Some(plan), _)) => EpochPlan::resume(units, epochs, core, plan)?,
                Some((None, Some(merged))) => {
                    EpochPlan::resume_merged(units, epochs, core, merged)?
                }
                Some((None, None)) => {
                    return Err(LoaderError::State {
                        reason: "the checkpoint is of a mixture (a loader with `sources`)".into(),
                    });
                }
                None => EpochPlan::new(units, epochs, core)?,
            })
        };
        let read = read_settings(&config, runtime, &io)?;
        Ok(Loader::new(catalogs, plan, read, &config, identity, io))
    }

    /// The catalog of this builder's shard locations (or the one given), and the I/O runtime
    /// that reads them.
    async fn shards_catalog(&self, runtime: &Handle) -> Result<(Arc<Catalog>, IoRuntime)> {
        if let Some(catalog) = &self.catalog {
            catalog.check_opened_with(&self.catalog_key())?;
            let io = self.io_runtime(catalog.has_remote_shards(), runtime)?;
            return Ok((Arc::clone(catalog), io));
        }
        let listing = self.list(runtime).await?;
        let io = self.io_runtime(listing.has_remote(), runtime)?;
        Ok((self.read_footers(listing, runtime, &io).await?, io))
    }

    /// Each mixture source's shards listed and cataloged with its layout, and the I/O runtime
    /// that reads them all.
    async fn source_catalogs(
        &self,
        config: &LoaderConfig,
        runtime: &Handle,
    ) -> Result<(Vec<Arc<Catalog>>, IoRuntime)> {
        let invalid = |reason: &str| LoaderError::Config {
            field: "sources",
            reason: reason.into(),
        };
        if !self.locations.is_empty() {
            return Err(invalid("give shard locations or `sources`, not both"));
        }
        if self.catalog.is_some() {
            return Err(invalid(
                "a catalog given with with_catalog does not apply to `sources`",
            ));
        }
        if config.sources.is_empty() {
            return Err(invalid("a mixture needs at least one source"));
        }
        let mut listings = Vec::new();
        for source in &config.sources {
            listings.push(
                list_shards_and_manifests(&source.shards, config.retry, &self.stores, runtime)
                    .await?,
            );
        }
        let io = self.io_runtime(listings.iter().any(Listing::has_remote), runtime)?;
        let mut catalogs = Vec::new();
        for (source, listing) in config.sources.iter().zip(listings) {
            let reads = FooterReads {
                layout: source.layout.as_ref().unwrap_or(&config.layout),
                policy: config.on_error,
                retry: config.retry,
                runtime,
                io: &io.handle(),
            };
            let catalog = build_catalog(listing.shards, listing.manifests, &reads).await?;
            catalogs.push(Arc::new(catalog));
        }
        Ok((catalogs, io))
    }
}

/// The EOS id the stage appends after each document ([`Catalog::eos_to_append`]): the same for
/// every source, since one stage cannot append it to some sources only.
fn eos_to_append(config: &LoaderConfig, catalogs: &[Arc<Catalog>]) -> Result<Option<i64>> {
    let mut first: Option<(Option<i64>, &str)> = None;
    for (i, catalog) in catalogs.iter().enumerate() {
        let name = config.sources.get(i).map_or("shards", |s| s.name.as_str());
        let appended = catalog.eos_to_append(config.warmup.eos_id())?;
        match first {
            None => first = Some((appended, name)),
            Some((earlier, earlier_name)) if earlier != appended => {
                return Err(LoaderError::Config {
                    field: "eos_id",
                    reason: format!(
                        "source `{earlier_name}` and source `{name}` differ in whether their \
                         documents already end with EOS id {} (their manifests say so for one \
                         only): one stage cannot append it to some sources only; preprocess \
                         them alike",
                        config.warmup.eos_id().unwrap_or_default()
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(first.and_then(|(appended, _)| appended))
}

/// The settings a checkpoint records (see [`LoaderConfig`]'s fingerprint), with
/// `eos_id_in_data` when the configured `eos_id` is not appended because the documents already
/// end with it: a checkpoint taken before seqwarm read the manifest's EOS appended it a second
/// time, and resuming it now would change its batches, so such a state is refused by that key.
fn settings_of(config: &LoaderConfig, appended: Option<i64>) -> Result<serde_json::Value> {
    let mut settings = config.fingerprint()?;
    if let (Some(eos), None) = (config.warmup.eos_id(), appended)
        && let serde_json::Value::Object(map) = &mut settings
    {
        map.insert("eos_id_in_data".into(), serde_json::Value::from(eos));
    }
    Ok(settings)
}

/// The stage's settings: the configured warmup, with the shuffle seed defaulting to the plan's
/// and `eos` the id to append after each document ([`Catalog::eos_to_append`]).
fn stage_warmup(config: &LoaderConfig, eos: Option<i64>) -> Result<seqwarm_stage::Warmup> {
    Ok(config
        .warmup
        .clone()
        .with_default_shuffle_seed(config.epochs.seed())
        .with_eos_id(eos)
        .build()?)
}

/// How the loader reads row groups, from its settings.
fn read_settings(config: &LoaderConfig, runtime: Handle, io: &IoRuntime) -> Result<ReadSettings> {
    Ok(ReadSettings {
        decode: DecodeOptions {
            dtype: config.dtype,
            vocab_size: config.vocab_size,
            signed: false,
        },
        retry: config.retry,
        runtime,
        io: io.handle(),
        verify_checksums: config.verify_checksums,
        maps: config.memory_map.then(|| Arc::new(MappedFiles::default())),
        cache: match &config.cache_dir {
            Some(dir) => Some(Arc::new(ShardCache::open(dir, config.cache_limit)?)),
            None => None,
        },
    })
}

/// The tokens and documents in the shards at `locations`, from their footers alone (for
/// sizing a schedule to an epoch before building a loader); exact where the footers allow.
pub async fn count_tokens(locations: &[String], layout: &ShardLayout) -> Result<TokenCount> {
    let runtime = current_runtime("count_tokens")?;
    let retry = RetryPolicy::default();
    let listing = list_shards_and_manifests(locations, retry, &Stores::default(), &runtime).await?;
    let io = if listing.has_remote() {
        IoRuntime::start(1)?
    } else {
        IoRuntime::borrowed(runtime.clone())
    };
    let catalog = build_catalog(
        listing.shards,
        listing.manifests,
        &FooterReads {
            layout,
            policy: OnError::Fail,
            retry,
            runtime: &runtime,
            io: &io.handle(),
        },
    )
    .await?;
    Ok(catalog.token_count())
}
