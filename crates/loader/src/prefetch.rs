//! Reading ahead: the units an epoch plan asks for, fetched and decoded by spawned tasks with
//! bounded concurrency, in order, handed over through a bounded queue (so a slow consumer stops
//! the reading).

use std::sync::Arc;

use futures_util::{StreamExt, stream};
use seqwarm_stage::{Documents, Origin, Reads};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
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
    /// Row groups fetched at once when the shards are on an object store, where each request
    /// waits a round trip (instead of `concurrency`).
    #[serde(rename = "remote_prefetch_concurrency")]
    pub remote_concurrency: usize,
}

/// Locally two row groups in flight and four waiting: enough to hide a row group's read
/// behind the consumer at 2-4 bytes per token each (`docs/benchmarks.md`, peak memory). On an
/// object store 32 in flight: at a 20 ms round trip, with 2 MiB row groups, two requests at a
/// time deliver 0.14x of what the same server delivers without the delay, 16 0.55x, 32 0.73x,
/// 64 0.85x (`docs/benchmarks.md`, "On an object store"); 32 keeps the window near 64 MiB.
impl Default for Prefetch {
    fn default() -> Self {
        Self {
            concurrency: 2,
            queue: 4,
            remote_concurrency: 32,
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
    task: JoinHandle<()>,
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts reading `reads` in order, `prefetch` ahead; [`Item::End`] follows the last unit
/// (never sent when they cycle). Units that fail to read are skipped and reported under `policy`.
pub(crate) fn spawn(
    catalog: Arc<Catalog>,
    reads: Reads,
    settings: ReadSettings,
    prefetch: Prefetch,
    policy: OnError,
) -> Prefetcher {
    let (tx, rx) = mpsc::channel(prefetch.queue.max(1));
    let runtime = settings.runtime.clone();
    let task = runtime.spawn(async move {
        let concurrency = prefetch.concurrency_for(catalog.has_remote_shards()).max(1);
        let positions = (reads.start..).map_while(|p| reads.unit_at(p).map(|unit| (p, unit)));
        let mut units = stream::iter(positions)
            .map(|(position, unit)| {
                let catalog = Arc::clone(&catalog);
                let settings = settings.clone();
                let mut task = AbortOnDrop(
                    settings
                        .runtime
                        .clone()
                        .spawn(async move { read_unit(catalog, unit, &settings).await }),
                );
                async move { (position, (&mut task.0).await) }
            })
            .buffered(concurrency);
        while let Some((position, joined)) = units.next().await {
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
                                epoch: reads.epoch,
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
        // The consumer may be gone; then nobody is waiting for the end either.
        let _ = tx.send(Ok(Item::End)).await;
    });
    Prefetcher { rx, task }
}
