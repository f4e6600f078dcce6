//! [`Loader`]: Parquet shards in, warmup-scheduled batches out. A thin async driver: the epoch
//! plan (sans IO, `seqwarm-stage`) decides what to read and when to stop; this reads it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::stream::FusedStream;
use seqwarm_stage::{Action, EpochPlan, ScheduledBatch, Stats, Warmup};
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
    plan: EpochPlan,
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

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("catalog", &self.catalog)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Loader {
    pub(crate) fn new(
        catalog: Arc<Catalog>,
        plan: EpochPlan,
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

    /// The shards and row groups found.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.plan.stats()
    }

    /// What the shard cache did (`None` without `cache_dir`).
    pub fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.read.cache.as_ref().map(|cache| cache.stats())
    }

    /// Why each skipped shard or row group was skipped (skip-and-count policy).
    pub fn skipped(&self) -> Vec<String> {
        let mut all = self.catalog.skipped.clone();
        all.extend(self.plan.skipped().iter().cloned());
        all
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.plan.epoch()
    }

    /// Batches each rank emits per epoch, when several ranks must stay in step.
    pub fn steps_per_epoch(&self) -> Option<u64> {
        self.plan.steps_per_epoch()
    }

    /// The warmup stage's settings (schedule, mode, sizing).
    pub fn warmup(&self) -> &Warmup {
        self.plan.core().warmup()
    }

    /// The shape of the next batch.
    pub fn next_shape(&self) -> seqwarm_stage::StepShape {
        self.plan.core().next_shape()
    }

    /// A checkpoint at the current batch boundary.
    pub fn state(&self) -> LoaderState {
        LoaderState::new(&self.identity, self.plan.state())
    }

    fn fail(&mut self, e: impl Into<LoaderError>) -> Poll<Option<Result<ScheduledBatch>>> {
        self.finished = true;
        self.prefetcher = None;
        self.narrow = None;
        Poll::Ready(Some(Err(e.into())))
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
            let action = match this.plan.next_action() {
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
                                if let Err(e) = this.plan.push(documents) {
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
                            this.plan.push(documents)
                        }
                        Poll::Ready(Some(Ok(Item::Narrow(narrow)))) => {
                            this.narrow = Some(narrow);
                            Ok(())
                        }
                        Poll::Ready(Some(Ok(Item::Skipped { position, reason }))) => {
                            this.plan.push_skipped(position, reason)
                        }
                        Poll::Ready(Some(Err(e))) => return this.fail(e),
                        Poll::Ready(Some(Ok(Item::End))) => {
                            this.prefetcher = None;
                            this.plan.end_of_reads()
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
