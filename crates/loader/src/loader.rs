//! [`Loader`]: Parquet shards in, warmup-scheduled batches out. A thin async driver: the epoch
//! plan (sans IO, `seqwarm-stage`, any [`Plan`]) decides what to read and when to stop; this
//! reads it, one reader per source the plan names.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use futures_util::ready;
use futures_util::stream::FusedStream;
use seqwarm_stage::{Action, InputHint, KeptSteps, Plan, Reads, ScheduledBatch, Stats, Warmup};

use seqwarm_format::OnError;

use crate::catalog::Catalog;
use crate::config::LoaderConfig;
use crate::error::{LoaderError, Result};
use crate::narrow::{NarrowRun, Take};
use crate::prefetch::{Item, Prefetch, Prefetcher, spawn};
use crate::read::ReadSettings;
use crate::runtime::IoRuntime;
use crate::state::{Identity, LoaderState};

/// A stream of warmup-scheduled batches read from Parquet shards.
///
/// Built by [`crate::LoaderBuilder`]. Shards and row groups are read ahead with bounded
/// concurrency and a bounded queue; [`Loader::state`] checkpoints at any batch boundary.
pub struct Loader {
    /// The sans-IO plan: the epoch plan over one set of shards, or a mixture of several.
    plan: Box<dyn Plan>,
    /// One reader per source the plan names, in its order (one for a plain loader).
    sources: Vec<SourceReader>,
    read: ReadSettings,
    prefetch: Prefetch,
    policy: OnError,
    /// Kept for the loader's lifetime when the loader started it.
    _io: IoRuntime,
    identity: Identity,
    finished: bool,
    /// The steps handed out ([`Loader::set_kept_steps`]); `None`: all.
    kept: Option<KeptSteps>,
}

/// One source's shards and the reads in flight for it.
struct SourceReader {
    catalog: Arc<Catalog>,
    prefetcher: Option<Prefetcher>,
    /// A `uint16` row group taken from the queue and not yet all handed to the plan.
    narrow: Option<NarrowRun>,
    /// The reads the prefetcher goes on with after the current ones (the plan's
    /// [`Plan::upcoming_reads`]), until the plan asks for them.
    queued: Option<Reads>,
    /// Whether the current reads' [`Item::End`] was taken from the queue.
    ended: bool,
}

impl SourceReader {
    fn stop(&mut self) {
        self.prefetcher = None;
        self.narrow = None;
        self.queued = None;
    }

    /// Starts `reads`: with the prefetcher already reading them when the reads before them
    /// ended and they are the ones it was told come next, else with a new one (reads left
    /// before their end, as ranks stop an epoch, drop what is queued, as before). Then tells
    /// it what follows them, if the plan knows.
    fn start(
        &mut self,
        reads: Reads,
        upcoming: Option<Reads>,
        make: impl FnOnce(Reads) -> Prefetcher,
    ) {
        // New reads (a new epoch's): the rest of a `uint16` row group of the last one goes
        // with its other queued row groups (ranks stop an epoch at the same batch,
        // mid-row-group; docs/loader.md). Not taken in, it is not counted.
        self.narrow = None;
        match self.prefetcher.as_ref() {
            Some(_) if self.ended && self.queued.as_ref() == Some(&reads) => {}
            _ => self.prefetcher = Some(make(reads)),
        }
        self.ended = false;
        self.queued = None;
        if let (Some(prefetcher), Some(next)) = (self.prefetcher.as_ref(), upcoming) {
            prefetcher.then_read(next.clone());
            self.queued = Some(next);
        }
    }
}

impl std::fmt::Debug for Loader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("catalog", &self.sources[0].catalog)
            .field("plan", &self.plan)
            .finish_non_exhaustive()
    }
}

impl Loader {
    /// A loader driving `plan` over `catalogs`, one per source the plan names (at least one).
    pub(crate) fn new(
        catalogs: Vec<Arc<Catalog>>,
        plan: Box<dyn Plan>,
        read: ReadSettings,
        config: &LoaderConfig,
        identity: Identity,
        io: IoRuntime,
    ) -> Self {
        debug_assert!(!catalogs.is_empty(), "a loader reads at least one source");
        Self {
            plan,
            sources: catalogs
                .into_iter()
                .map(|catalog| SourceReader {
                    catalog,
                    prefetcher: None,
                    narrow: None,
                    queued: None,
                    ended: false,
                })
                .collect(),
            read,
            prefetch: config.prefetch(),
            policy: config.on_error(),
            _io: io,
            identity,
            finished: false,
            kept: None,
        }
    }

    /// Hands out only `kept`'s steps (`None`, the default: every step), for processes that
    /// share one stream: PyTorch DataLoader worker `w` of `N` takes steps `w, w + N, ...`.
    /// The other steps are still scheduled and counted, so the batches handed out are those
    /// of the whole stream; in the row modes (`repack`, `truncate`, `truncate-keep-eos`,
    /// `reshape`, no shuffle buffer) their tokens are dropped by count, never copied, and a
    /// `uint16` row group's tokens that only they take are never widened.
    ///
    /// Set it before the first batch. [`Loader::state`] stays a checkpoint of the whole
    /// stream: placeholders go in only when the row group at hand completes the skipped step,
    /// so the stage has taken them before the loader waits for anything.
    pub fn set_kept_steps(&mut self, kept: Option<KeptSteps>) {
        let kept = kept.filter(|k| !k.is_all());
        if kept != self.kept {
            self.kept = kept;
            self.plan.set_kept_steps(kept);
        }
    }

    /// The shards and row groups found (a mixture's first source's; all of them:
    /// [`Loader::source_catalogs`]).
    pub fn catalog(&self) -> &Catalog {
        &self.sources[0].catalog
    }

    /// Each source's catalog, for a mixture (`None` otherwise).
    pub fn source_catalogs(&self) -> Option<Vec<&Catalog>> {
        self.plan
            .source_stats()
            .map(|_| self.sources.iter().map(|s| s.catalog.as_ref()).collect())
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.plan.stats()
    }

    /// What was drawn from each source of a mixture (`None` otherwise).
    pub fn source_stats(&self) -> Option<Vec<seqwarm_stage::SourceStats>> {
        self.plan.source_stats()
    }

    /// What the shard cache did (`None` without `cache_dir`).
    pub fn cache_stats(&self) -> Option<crate::CacheStats> {
        self.read.cache.as_ref().map(|cache| cache.stats())
    }

    /// Why each skipped shard or row group was skipped (skip-and-count policy).
    pub fn skipped(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .sources
            .iter()
            .flat_map(|s| s.catalog.skipped().iter().cloned())
            .collect();
        all.extend(self.plan.skipped().iter().cloned());
        all
    }

    /// The current epoch (0 for a mixture: its sources count their own, in
    /// [`Loader::source_stats`]).
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
        debug_assert!(
            !self.plan.core().holds_placeholders(),
            "placeholders are only buffered inside a poll"
        );
        LoaderState::new(&self.identity, self.plan.checkpoint())
    }

    fn fail(&mut self, e: impl Into<LoaderError>) -> Poll<Option<Result<ScheduledBatch>>> {
        self.finished = true;
        self.sources.iter_mut().for_each(SourceReader::stop);
        Poll::Ready(Some(Err(e.into())))
    }
}

/// A plan named a source the loader was not given: a bug in the plan, reported.
fn unknown_source(source: usize, count: usize) -> LoaderError {
    LoaderError::Config {
        field: "sources",
        reason: format!("the plan named source {source} of {count}"),
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
            let step = match action {
                Action::Emit(batch) => {
                    if this.kept.is_none_or(|k| k.contains(batch.step)) {
                        return Poll::Ready(Some(Ok(batch)));
                    }
                    Ok(())
                }
                Action::Finished => {
                    this.finished = true;
                    this.sources.iter_mut().for_each(SourceReader::stop);
                    return Poll::Ready(None);
                }
                Action::Read { source, reads } => {
                    let (read, prefetch, policy) = (this.read.clone(), this.prefetch, this.policy);
                    let count = this.sources.len();
                    // Not with a shard cache: its later epochs read local copies, with no round
                    // trip to hide, and reading the next epoch's shards while this one's are
                    // still in use would fill a size-limited cache with pinned entries, so that
                    // reads bypass it instead of evicting (tests/object_store_s3.rs).
                    let upcoming = match this.read.cache {
                        Some(_) => None,
                        None => this.plan.upcoming_reads(source),
                    };
                    this.sources
                        .get_mut(source)
                        .ok_or_else(|| unknown_source(source, count))
                        .map(|s| {
                            let catalog = Arc::clone(&s.catalog);
                            s.start(reads, upcoming, |reads| {
                                spawn(catalog, reads, read, prefetch, policy)
                            });
                        })
                }
                Action::Await { source } => match this.poll_source(source, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(step) => step,
                },
            };
            if let Err(e) = step {
                return this.fail(e);
            }
        }
    }
}

impl Loader {
    /// Hands the plan what `source` has next: the rest of a `uint16` row group first, widened
    /// a chunk at a time just before the stage copies it into batches (`narrow.rs`), then what
    /// its reads' queue holds.
    fn poll_source(&mut self, source: usize, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let count = self.sources.len();
        let Some(reader) = self.sources.get_mut(source) else {
            return Poll::Ready(Err(unknown_source(source, count)));
        };
        let plan = &mut self.plan;
        if let Some(narrow) = reader.narrow.as_mut() {
            let eos = plan.core().warmup().eos_id().is_some();
            let take = match plan.input_hint(source, narrow.next_origin()) {
                Some(InputHint::Kept { tokens }) => Take::AtLeast(tokens),
                // Placeholders only when this run completes the step: then it takes them before
                // the loader waits for anything, and a checkpoint never holds their zeros.
                Some(InputHint::Skipped { tokens }) if narrow.holds(tokens, eos) => {
                    Take::Placeholders { tokens, eos }
                }
                _ => Take::Chunk,
            };
            match narrow.next_documents(take) {
                Some(Ok(documents)) => {
                    return Poll::Ready(plan.push(source, documents).map_err(Into::into));
                }
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => reader.narrow = None,
            }
        }
        let Some(prefetcher) = reader.prefetcher.as_mut() else {
            return Poll::Ready(Err(LoaderError::Config {
                field: "reads",
                reason: format!("the plan awaited source {source} before asking for its reads"),
            }));
        };
        Poll::Ready(match ready!(prefetcher.rx.poll_recv(cx)) {
            Some(Ok(Item::Documents(documents))) => {
                plan.push(source, documents).map_err(Into::into)
            }
            Some(Ok(Item::Narrow(narrow))) => {
                reader.narrow = Some(narrow);
                Ok(())
            }
            Some(Ok(Item::Skipped { position, reason })) => plan
                .push_skipped(source, position, reason)
                .map_err(Into::into),
            Some(Ok(Item::End)) => {
                reader.ended = true;
                if reader.queued.is_none() {
                    reader.prefetcher = None;
                }
                plan.end_of_reads(source).map_err(Into::into)
            }
            Some(Err(e)) => Err(e),
            None => Err(LoaderError::ReaderStopped {
                reason: format!("source {source}'s queue closed before the end of its reads"),
            }),
        })
    }
}

impl FusedStream for Loader {
    fn is_terminated(&self) -> bool {
        self.finished
    }
}
