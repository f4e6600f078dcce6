//! Reading ahead: the units an epoch plan asks for, fetched and decoded by spawned tasks with
//! bounded concurrency, in order, handed over through a bounded queue (so a slow consumer stops
//! the reading).

use std::sync::Arc;

use futures_util::{StreamExt, stream};
use seqwarm_stage::{Documents, Origin, Reads};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use seqwarm_format::OnError;

use crate::catalog::Catalog;
use crate::error::{LoaderError, Result};
use crate::narrow::NarrowRun;
use crate::read::{ReadSettings, Run, read_unit};

/// How far ahead to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prefetch {
    /// Row groups fetched and decoded at once (local shards).
    #[serde(rename = "prefetch_concurrency")]
    pub concurrency: usize,
    /// Decoded row groups waiting for the consumer.
    #[serde(rename = "prefetch_queue")]
    pub queue: usize,
    /// Row groups fetched at once at the most when the shards are on an object store, where
    /// each request waits a round trip (instead of `concurrency`).
    #[serde(rename = "remote_prefetch_concurrency")]
    pub remote_concurrency: usize,
    /// Bytes of row groups read ahead from an object store at the most: fetched or being
    /// fetched and not yet put in the queue (where up to `queue` decoded ones wait besides),
    /// counted by their size on the store. How many row groups are in flight follows from
    /// their sizes (at least two, at most `remote_concurrency`).
    #[serde(rename = "remote_prefetch_bytes")]
    pub remote_bytes: u64,
}

/// Locally two row groups in flight and four waiting: enough to hide a row group's read
/// behind the consumer at 2-4 bytes per token each (`docs/benchmarks.md`, peak memory). On an
/// object store, 64 MiB in flight: what hides a 20 ms round trip at about 1.6 GB/s (the rate
/// of a server that answers at once on loopback here), whatever the row groups' size — 128 of
/// 512 KiB, 32 of 2 MiB, two of 128 MiB (a count alone kept 16 MiB of small row groups in
/// flight, 0.34x the undelayed rate, or gigabytes of large ones; `docs/benchmarks.md`, "On
/// an object store"); at most 256 requests at once.
impl Default for Prefetch {
    fn default() -> Self {
        Self {
            concurrency: 2,
            queue: 4,
            remote_concurrency: 256,
            remote_bytes: 64 << 20,
        }
    }
}

impl Prefetch {
    /// Row groups in flight for shards that are `remote` (on an object store) or not.
    pub fn concurrency_for(&self, remote: bool) -> usize {
        if remote {
            self.remote_concurrency
        } else {
            self.concurrency
        }
    }
}

/// The read-ahead's byte budget on an object store: a unit holds its share from before its
/// read starts until its documents are handed over, so the bytes fetched and waiting stay
/// under the budget. A unit counts at most half of it, so that two are always in flight (one
/// row group larger than the budget is read while the one before it is handed over).
#[derive(Clone)]
struct ByteWindow {
    permits: Arc<Semaphore>,
    /// Permits in all: the budget in KiB.
    total: u32,
}

impl ByteWindow {
    fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(2, Semaphore::MAX_PERMITS.try_into().unwrap_or(u32::MAX));
        Self {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until `bytes` (at most half the budget) fit, and holds them until dropped.
    async fn hold(self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let share = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total / 2);
        // The semaphore is never closed, so this only fails if it were: then read unbounded.
        self.permits.acquire_many_owned(share).await.ok()
    }
}

/// One item from the reader.
pub(crate) enum Item {
    /// Documents of the unit at `origin.unit`, from `origin.first_document` on.
    Documents(Documents),
    /// The same, still at 2 bytes a token: the consumer widens it a chunk at a time.
    Narrow(NarrowRun),
    /// The unit at `position` was skipped under the skip policy, for `reason`.
    Skipped { position: u64, reason: String },
    /// Every unit of the reads was handed over. A queue that closes without it means the
    /// reader stopped early, which must not pass for the end of an epoch.
    End,
}

/// A spawned task that is aborted when dropped, so that dropping the loader (or the reader)
/// stops the row-group reads in flight instead of leaving them to finish unobserved.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running reader task; dropping it stops the task.
pub(crate) struct Prefetcher {
    pub rx: mpsc::Receiver<Result<Item>>,
    /// Reads to go on with once the ones before them end (see [`Prefetcher::then_read`]).
    more: mpsc::UnboundedSender<Reads>,
    task: JoinHandle<()>,
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Prefetcher {
    /// Reads `reads` after the ones given so far end, in the same read-ahead: their first
    /// units are fetched while the last ones before them are handed over, so the boundary
    /// (an epoch's end) costs no round trip. Their items follow the earlier reads'
    /// [`Item::End`].
    pub(crate) fn then_read(&self, reads: Reads) {
        // The task only stops with the prefetcher (or after an error it reported): then no
        // one is waiting for these items either.
        let _ = self.more.send(reads);
    }
}

/// What the reader works through, in order.
enum Work {
    /// The unit at `position` of the reads of `epoch`.
    Unit {
        epoch: u64,
        position: u64,
        unit: usize,
    },
    /// The end of one reads (not of cycling ones, which have none).
    End,
}

/// Starts reading `reads` in order, `prefetch` ahead; [`Item::End`] follows the last unit
/// (never sent when they cycle), then come the items of the reads given to
/// [`Prefetcher::then_read`], each followed by its own. Units that fail to read are skipped and
/// reported under `policy`.
pub(crate) fn spawn(
    catalog: Arc<Catalog>,
    reads: Reads,
    settings: ReadSettings,
    prefetch: Prefetch,
    policy: OnError,
) -> Prefetcher {
    let (tx, rx) = mpsc::channel(prefetch.queue.max(1));
    let (more, more_rx) = mpsc::unbounded_channel();
    let _ = more.send(reads);
    let runtime = settings.runtime.clone();
    let task = runtime.spawn(async move {
        let remote = catalog.has_remote_shards();
        let concurrency = prefetch.concurrency_for(remote).max(1);
        let window = remote.then(|| ByteWindow::new(prefetch.remote_bytes));
        let all_reads = stream::unfold(more_rx, |mut more_rx| async move {
            more_rx.recv().await.map(|reads| (reads, more_rx))
        });
        let mut units = all_reads
            .flat_map(|reads| {
                let epoch = reads.epoch;
                let positions = (reads.start..).map_while(move |position| {
                    reads.unit_at(position).map(|unit| Work::Unit {
                        epoch,
                        position,
                        unit,
                    })
                });
                stream::iter(positions.chain(std::iter::once(Work::End)))
            })
            // In order, so that the window's bytes go to the units the consumer takes first.
            .then(|work| {
                let bytes = match work {
                    Work::Unit { unit, .. } => catalog.unit_bytes(unit),
                    Work::End => 0,
                };
                let window = window.clone().filter(|_| bytes > 0);
                async move {
                    let held = match window {
                        Some(window) => window.hold(bytes).await,
                        None => None,
                    };
                    (work, held)
                }
            })
            .map(|(work, held)| {
                let read = match work {
                    Work::Unit { unit, .. } => {
                        let catalog = Arc::clone(&catalog);
                        let settings = settings.clone();
                        Some(AbortOnDrop(settings.runtime.clone().spawn(async move {
                            read_unit(catalog, unit, &settings).await
                        })))
                    }
                    Work::End => None,
                };
                async move {
                    let joined = match read {
                        Some(mut task) => Some((&mut task.0).await),
                        None => None,
                    };
                    (work, joined, held)
                }
            })
            .buffered(concurrency)
            .boxed();
        // `_held` gives the unit's bytes back to the window once its items are handed over.
        while let Some((work, joined, _held)) = units.next().await {
            let (
                Work::Unit {
                    epoch, position, ..
                },
                Some(joined),
            ) = (work, joined)
            else {
                if tx.send(Ok(Item::End)).await.is_err() {
                    return;
                }
                continue;
            };
            let result = joined.unwrap_or_else(|e| {
                Err(LoaderError::ReaderStopped {
                    reason: format!("reading row group at position {position}: {e}"),
                })
            });
            let items: Vec<Result<Item>> = match result {
                Ok(runs) => {
                    let mut first = 0u64;
                    runs.into_iter()
                        .map(|run| {
                            let origin = Origin {
                                epoch,
                                unit: position,
                                first_document: first,
                            };
                            first += run.len() as u64;
                            Ok(match run {
                                Run::Wide(d) => Item::Documents(d.with_origin(origin)),
                                Run::Narrow(n) => Item::Narrow(n.with_origin(origin)),
                            })
                        })
                        .collect()
                }
                Err(e) if policy == OnError::Skip => {
                    tracing::warn!("skipping row group: {e}");
                    vec![Ok(Item::Skipped {
                        position,
                        reason: e.to_string(),
                    })]
                }
                Err(e) => vec![Err(e)],
            };
            let failed = items.iter().any(Result::is_err);
            for item in items {
                if tx.send(item).await.is_err() {
                    return;
                }
            }
            if failed {
                return;
            }
        }
    });
    Prefetcher { rx, more, task }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use super::ByteWindow;

    #[tokio::test(start_paused = true)]
    async fn the_byte_window_holds_its_bytes_and_always_two_row_groups() {
        let window = ByteWindow::new(8 << 20);
        let wait = Duration::from_millis(10);
        // Four of 2 MiB fill it; a fifth waits until one is handed over.
        let mut held: Vec<_> = Vec::new();
        for _ in 0..4 {
            held.push(window.clone().hold(2 << 20).await);
        }
        assert!(timeout(wait, window.clone().hold(1)).await.is_err());
        held.pop();
        assert!(timeout(wait, window.clone().hold(2 << 20)).await.is_ok());
        drop(held);
        // A row group larger than the whole window counts half of it: two are in flight.
        let first = window.clone().hold(100 << 20).await;
        let second = window.clone().hold(100 << 20).await;
        assert!(first.is_some() && second.is_some());
        assert!(timeout(wait, window.clone().hold(1)).await.is_err());
        drop(first);
        assert!(timeout(wait, window.clone().hold(1)).await.is_ok());
    }
}
