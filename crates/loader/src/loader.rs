//! [`Loader`]: Parquet shards in, warmup-scheduled batches out. A thin async driver: the epoch
//! plan (sans IO, `seqwarm-stage`) decides what to read and when to stop; this reads it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::FusedStream;
use seqwarm_stage::{Action, EpochPlan, MixtureAction, MixturePlan, ScheduledBatch, Stats, Warmup};
use tokio::runtime::Handle;

use seqwarm_format::OnError;

use crate::catalog::Catalog;
use crate::config::LoaderConfig;
use crate::error::{LoaderError, Result};
use crate::narrow::NarrowRun;
use crate::prefetch::{Item, Prefetch, Prefetcher, spawn};
use crate::read::ReadSettings;
use crate::state::{Identity, LoaderState};

/// The runtime object-store requests run on: one the loader started (and shuts down without
/// blocking, so dropping a loader inside async code is safe), or the caller's.
pub(crate) struct IoRuntime {
    owned: Option<tokio::runtime::Runtime>,
    handle: Handle,
}

impl IoRuntime {
    pub(crate) fn start(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("seqwarm-io")
            .enable_all()
            .build()
            .map_err(|e| LoaderError::Config {
                field: "io_threads",
                reason: format!("cannot start the I/O runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        Ok(Self {
            owned: Some(runtime),
            handle,
        })
    }

    pub(crate) fn borrowed(handle: Handle) -> Self {
        Self {
            owned: None,
            handle,
        }
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.owned.take() {
            runtime.shutdown_background();
        }
    }
}

/// A stream of warmup-scheduled batches read from Parquet shards.
///
/// Built by [`crate::LoaderBuilder`]. Shards and row groups are read ahead with bounded
/// concurrency and a bounded queue; [`Loader::state`] checkpoints at any batch boundary.
pub struct Loader {
    catalog: Arc<Catalog>,
    plan: Plans,
    read: ReadSettings,
    prefetch: Prefetch,
    policy: OnError,
    prefetcher: Option<Prefetcher>,
    /// A `uint16` row group taken from the queue and not yet all handed to the plan.
    narrow: Option<NarrowRun>,
    /// Kept for the loader's lifetime when the loader started it.
    _io: IoRuntime,
    identity: Identity,
    finished: bool,
}

/// What the loader drives: the epoch plan over one set of shards, or a weighted mixture of
/// sources.
pub(crate) enum Plans {
    Epochs(EpochPlan),
    Mixture(MixtureDriver),
}

/// The epoch plan of `$this`, or the end of the stream for a mixture (whose loop is
/// `poll_mixture`); a borrow that ends with its statement.
macro_rules! epochs {
    ($this:expr) => {
        match &mut $this.plan {
            Plans::Epochs(plan) => plan,
            Plans::Mixture(_) => return Poll::Ready(None),
        }
    };
}

/// A mixture's sans-IO plan, and each source's catalog, reads in flight and `uint16` row group
/// being widened.
pub(crate) struct MixtureDriver {
    pub plan: MixturePlan,
    pub catalogs: Vec<Arc<Catalog>>,
    prefetchers: Vec<Option<Prefetcher>>,
    narrow: Vec<Option<NarrowRun>>,
}

impl MixtureDriver {
    pub(crate) fn new(plan: MixturePlan, catalogs: Vec<Arc<Catalog>>) -> Self {
        let n = catalogs.len();
        Self {
            plan,
            catalogs,
            prefetchers: (0..n).map(|_| None).collect(),
            narrow: (0..n).map(|_| None).collect(),
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("catalog", &self.catalog)
            .field(
                "plan",
                &match &self.plan {
                    Plans::Epochs(p) => format!("{p:?}"),
                    Plans::Mixture(m) => format!("{:?}", m.plan),
                },
            )
            .finish_non_exhaustive()
    }
}

impl Loader {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        plan: Plans,
        read: ReadSettings,
        config: &LoaderConfig,
        identity: Identity,
        io: IoRuntime,
    ) -> Self {
        Self {
            catalog,
            plan,
            read,
            prefetch: config.prefetch(),
            policy: config.on_error(),
            prefetcher: None,
            narrow: None,
            _io: io,
            identity,
            finished: false,
        }
    }

    /// The shards and row groups found (a mixture's first source's; all of them:
    /// [`Loader::source_catalogs`]).
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Each source's catalog, for a mixture (`None` otherwise).
    pub fn source_catalogs(&self) -> Option<Vec<&Catalog>> {
        match &self.plan {
            Plans::Mixture(m) => Some(m.catalogs.iter().map(AsRef::as_ref).collect()),
            Plans::Epochs(_) => None,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        match &self.plan {
            Plans::Mixture(m) => m.plan.stats(),
            Plans::Epochs(p) => p.stats(),
        }
    }

    /// What was drawn from each source of a mixture (`None` otherwise).
    pub fn source_stats(&self) -> Option<Vec<seqwarm_stage::SourceStats>> {
        match &self.plan {
            Plans::Mixture(m) => Some(m.plan.source_stats()),
            Plans::Epochs(_) => None,
        }
    }

    /// What the shard cache did (`None` without `cache_dir`).
    pub fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.read.cache.as_ref().map(|cache| cache.stats())
    }

    /// Why each skipped shard or row group was skipped (skip-and-count policy).
    pub fn skipped(&self) -> Vec<String> {
        let mut all = self.catalog.skipped.clone();
        match &self.plan {
            Plans::Mixture(m) => {
                for catalog in m.catalogs.iter().skip(1) {
                    all.extend(catalog.skipped.iter().cloned());
                }
                all.extend(m.plan.skipped().iter().cloned());
            }
            Plans::Epochs(p) => all.extend(p.skipped().iter().cloned()),
        }
        all
    }

    /// The current epoch (0 for a mixture: its sources count their own, in
    /// [`Loader::source_stats`]).
    pub fn epoch(&self) -> u64 {
        match &self.plan {
            Plans::Mixture(_) => 0,
            Plans::Epochs(p) => p.epoch(),
        }
    }

    /// Batches each rank emits per epoch, when several ranks must stay in step.
    pub fn steps_per_epoch(&self) -> Option<u64> {
        match &self.plan {
            Plans::Mixture(_) => None,
            Plans::Epochs(p) => p.steps_per_epoch(),
        }
    }

    /// The warmup stage's settings (schedule, mode, sizing).
    pub fn warmup(&self) -> &Warmup {
        match &self.plan {
            Plans::Mixture(m) => m.plan.core().warmup(),
            Plans::Epochs(p) => p.core().warmup(),
        }
    }

    /// The shape of the next batch.
    pub fn next_shape(&self) -> seqwarm_stage::StepShape {
        match &self.plan {
            Plans::Mixture(m) => m.plan.core().next_shape(),
            Plans::Epochs(p) => p.core().next_shape(),
        }
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> LoaderState {
        match &self.plan {
            Plans::Mixture(m) => LoaderState::of_mixture(&self.identity, m.plan.state()),
            Plans::Epochs(p) => LoaderState::new(&self.identity, p.state()),
        }
    }

    fn fail(&mut self, e: impl Into<LoaderError>) -> Poll<Option<Result<ScheduledBatch>>> {
        self.finished = true;
        self.prefetcher = None;
        self.narrow = None;
        if let Plans::Mixture(m) = &mut self.plan {
            m.prefetchers.iter_mut().for_each(|p| *p = None);
            m.narrow.iter_mut().for_each(|n| *n = None);
        }
        Poll::Ready(Some(Err(e.into())))
    }

    /// `poll_next` for a mixture: the plan says which source it needs, and that source's reads
    /// are started or awaited.
    fn poll_mixture(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<ScheduledBatch>>> {
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            let Plans::Mixture(m) = &mut self.plan else {
                return Poll::Ready(None);
            };
            let action = match m.plan.next_action() {
                Ok(action) => action,
                Err(e) => return self.fail(e),
            };
            let step = match action {
                MixtureAction::Emit(batch) => return Poll::Ready(Some(Ok(batch))),
                MixtureAction::Finished => {
                    self.finished = true;
                    m.prefetchers.iter_mut().for_each(|p| *p = None);
                    return Poll::Ready(None);
                }
                MixtureAction::Read { source, reads } => {
                    m.narrow[source] = None;
                    m.prefetchers[source] = Some(spawn(
                        Arc::clone(&m.catalogs[source]),
                        reads,
                        self.read.clone(),
                        self.prefetch,
                        self.policy,
                    ));
                    Ok(())
                }
                MixtureAction::Await { source } => {
                    if let Some(narrow) = m.narrow[source].as_mut() {
                        match narrow.next_documents() {
                            Some(Ok(documents)) => {
                                if let Err(e) = m.plan.push(source, documents) {
                                    return self.fail(e);
                                }
                                continue;
                            }
                            Some(Err(e)) => return self.fail(e),
                            None => m.narrow[source] = None,
                        }
                    }
                    let Some(prefetcher) = m.prefetchers[source].as_mut() else {
                        return self.fail(LoaderError::Config {
                            field: "reads",
                            reason: "the mixture awaited a source before asking for its reads"
                                .into(),
                        });
                    };
                    match prefetcher.rx.poll_recv(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(Item::Documents(documents)))) => {
                            m.plan.push(source, documents).map_err(LoaderError::from)
                        }
                        Poll::Ready(Some(Ok(Item::Narrow(narrow)))) => {
                            m.narrow[source] = Some(narrow);
                            Ok(())
                        }
                        Poll::Ready(Some(Ok(Item::Skipped { reason, .. }))) => m
                            .plan
                            .push_skipped(source, reason)
                            .map_err(LoaderError::from),
                        Poll::Ready(Some(Ok(Item::End))) => {
                            m.prefetchers[source] = None;
                            m.plan.end_of_reads(source).map_err(LoaderError::from)
                        }
                        Poll::Ready(Some(Err(e))) => Err(e),
                        Poll::Ready(None) => Err(LoaderError::ReaderStopped {
                            reason: "a source's queue closed before the end of its reads".into(),
                        }),
                    }
                }
            };
            if let Err(e) = step {
                return self.fail(e);
            }
        }
    }
}

impl Stream for Loader {
    type Item = Result<ScheduledBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if matches!(this.plan, Plans::Mixture(_)) {
            return this.poll_mixture(cx);
        }
        loop {
            if this.finished {
                return Poll::Ready(None);
            }
            let action = match epochs!(this).next_action() {
                Ok(action) => action,
                Err(e) => return this.fail(e),
            };
            match action {
                Action::Emit(batch) => return Poll::Ready(Some(Ok(batch))),
                Action::Finished => {
                    this.finished = true;
                    this.prefetcher = None;
                    this.narrow = None;
                    return Poll::Ready(None);
                }
                Action::Read(reads) => {
                    // A new epoch's reads: the rest of a `uint16` row group of the last one
                    // goes with its other queued row groups (ranks stop an epoch at the same
                    // batch, mid-row-group; docs/loader.md). Not taken in, it is not counted.
                    this.narrow = None;
                    this.prefetcher = Some(spawn(
                        Arc::clone(&this.catalog),
                        reads,
                        this.read.clone(),
                        this.prefetch,
                        this.policy,
                    ));
                }
                Action::Await => {
                    // The rest of a `uint16` row group first, widened a chunk at a time just
                    // before the stage copies it into batches (`narrow.rs`).
                    if let Some(narrow) = this.narrow.as_mut() {
                        match narrow.next_documents() {
                            Some(Ok(documents)) => {
                                if let Err(e) = epochs!(this).push(documents) {
                                    return this.fail(e);
                                }
                                continue;
                            }
                            Some(Err(e)) => return this.fail(e),
                            None => this.narrow = None,
                        }
                    }
                    let Some(prefetcher) = this.prefetcher.as_mut() else {
                        return this.fail(LoaderError::Config {
                            field: "reads",
                            reason: "the epoch plan awaited documents before asking for reads"
                                .into(),
                        });
                    };
                    let pushed = match prefetcher.rx.poll_recv(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(Item::Documents(documents)))) => {
                            epochs!(this).push(documents)
                        }
                        Poll::Ready(Some(Ok(Item::Narrow(narrow)))) => {
                            this.narrow = Some(narrow);
                            Ok(())
                        }
                        Poll::Ready(Some(Ok(Item::Skipped { position, reason }))) => {
                            epochs!(this).push_skipped(position, reason)
                        }
                        Poll::Ready(Some(Err(e))) => return this.fail(e),
                        Poll::Ready(Some(Ok(Item::End))) => {
                            this.prefetcher = None;
                            epochs!(this).end_of_reads()
                        }
                        Poll::Ready(None) => {
                            return this.fail(LoaderError::ReaderStopped {
                                reason: "its queue closed before the end of the epoch's reads"
                                    .into(),
                            });
                        }
                    };
                    if let Err(e) = pushed {
                        return this.fail(e);
                    }
                }
            }
        }
    }
}

impl FusedStream for Loader {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}
