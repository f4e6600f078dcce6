//! Reading ahead: row groups fetched and decoded by spawned tasks with bounded concurrency,
//! handed over through a bounded queue (so a slow consumer stops the reading).

use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt, stream};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::catalog::{BadShardPolicy, Catalog, Shard, Unit};
use crate::documents::{Documents, Origin};
use crate::error::{LoaderError, Result};
use crate::layout::{DecodeOptions, Place, decode};
use crate::reader::{RetryPolicy, reader_for};

/// How far ahead to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prefetch {
    /// Row groups fetched and decoded at once.
    pub concurrency: usize,
    /// Decoded row groups waiting for the consumer.
    pub queue: usize,
}

impl Default for Prefetch {
    fn default() -> Self {
        Self {
            concurrency: 2,
            queue: 4,
        }
    }
}

/// One item from the reader.
pub(crate) enum Item {
    Documents(Documents),
    /// A row group skipped under the skip policy, with the reason.
    Skipped(String),
    /// A full pass over the rank's units produced no documents (with `repeat`).
    Barren,
}

#[derive(Clone)]
pub(crate) struct ReadSettings {
    pub prefetch: Prefetch,
    pub policy: BadShardPolicy,
    pub decode: DecodeOptions,
    pub retry: RetryPolicy,
    pub io: Handle,
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

/// Starts reading `order[start..]` (cycling through `order` forever when `repeat`), skipping
/// the first `skip` documents of the first unit.
pub(crate) fn spawn(
    catalog: Arc<Catalog>,
    epoch: u64,
    order: Arc<Vec<usize>>,
    start: u64,
    skip: u64,
    repeat: bool,
    settings: ReadSettings,
) -> Prefetcher {
    let (tx, rx) = mpsc::channel(settings.prefetch.queue.max(1));
    let task = tokio::spawn(async move {
        let len = order.len() as u64;
        let end = if repeat { u64::MAX } else { len };
        let mut since_documents = 0u64;
        let mut reads = stream::iter(start..end)
            .map(|position| {
                let catalog = Arc::clone(&catalog);
                let unit = order[(position % len.max(1)) as usize];
                let settings = settings.clone();
                let handle =
                    tokio::spawn(async move { read_unit(&catalog, unit, &settings).await });
                async move { (position, handle.await) }
            })
            .buffered(settings.prefetch.concurrency.max(1));
        while let Some((position, joined)) = reads.next().await {
            let result = match joined {
                Ok(r) => r,
                Err(e) => Err(LoaderError::Input(Box::new(e))),
            };
            let origin = Origin {
                epoch,
                unit: position,
                first_document: 0,
            };
            let items: Vec<Result<Item>> = match result {
                Ok(chunks) => {
                    let mut first = 0u64;
                    let mut items = Vec::new();
                    for chunk in chunks {
                        let n = chunk.len() as u64;
                        let chunk = chunk.with_origin(Origin {
                            first_document: first,
                            ..origin
                        });
                        first += n;
                        let chunk = if position == start && skip > 0 {
                            let local = skip.saturating_sub(chunk.origin().first_document);
                            match chunk.skip(usize::try_from(local).unwrap_or(usize::MAX)) {
                                Some(c) => c,
                                None => continue,
                            }
                        } else {
                            chunk
                        };
                        if !chunk.is_empty() {
                            since_documents = 0;
                            items.push(Ok(Item::Documents(chunk)));
                        }
                    }
                    items
                }
                Err(e) if settings.policy == BadShardPolicy::Skip => {
                    tracing::warn!("skipping row group: {e}");
                    vec![Ok(Item::Skipped(e.to_string()))]
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
            since_documents += 1;
            if repeat && since_documents > len {
                let _ = tx.send(Ok(Item::Barren)).await;
                return;
            }
        }
    });
    Prefetcher { rx, task }
}

/// A failure reading a row group: a read failure (a shard deleted mid-run, a network error
/// that outlived the retries) is reported as such, anything else as undecodable data.
fn read_error(shard: &Shard, unit: &Unit, e: ParquetError) -> LoaderError {
    let decode = |source| LoaderError::Decode {
        file: shard.file.display.clone(),
        row_group: unit.row_group,
        column: shard.layout.token_column.clone(),
        source,
    };
    match e {
        ParquetError::External(boxed) => match boxed.downcast::<object_store::Error>() {
            Ok(source) => LoaderError::Io {
                file: format!("{} row group {}", shard.file.display, unit.row_group),
                source: *source,
            },
            Err(other) => decode(ParquetError::External(other)),
        },
        source => decode(source),
    }
}

/// Fetches and decodes one row group.
pub(crate) async fn read_unit(
    catalog: &Catalog,
    unit: usize,
    settings: &ReadSettings,
) -> Result<Vec<Documents>> {
    let unit = &catalog.units[unit];
    let shard = &catalog.shards[unit.shard];
    let file = &shard.file;
    let place = Place {
        file: &file.display,
        row_group: unit.row_group,
    };
    let decode_error = |e: ParquetError| read_error(shard, unit, e);
    if let Some(documents) = read_plain(catalog, unit, settings).await? {
        return Ok(vec![documents]);
    }
    let reader = reader_for(file, settings.retry, settings.io.clone());
    let batches: Vec<_> =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader, shard.metadata.clone())
            .with_row_groups(vec![unit.row_group])
            .with_projection(shard.projection.clone())
            // One record batch per row group: whole documents, no stitching.
            .with_batch_size(unit.rows.max(1))
            .build()
            .map_err(decode_error)?
            .try_collect()
            .await
            .map_err(decode_error)?;
    batches
        .iter()
        .map(|batch| {
            decode(
                &place,
                batch,
                &shard.layout,
                unit.document_lengths.as_deref(),
                settings.decode,
            )
        })
        .collect()
}

/// The flat layout's fast path (`plain.rs`): `None` when the row group does not qualify (not
/// flat-v1, not PLAIN INT32, a vocabulary check asked for) or turns out not to, and the
/// general reader takes over.
async fn read_plain(
    catalog: &Catalog,
    unit: &Unit,
    settings: &ReadSettings,
) -> Result<Option<Documents>> {
    let shard = &catalog.shards[unit.shard];
    let (Some(lengths), true, None) = (
        &unit.document_lengths,
        shard.layout.flat,
        settings.decode.vocab_size,
    ) else {
        return Ok(None);
    };
    let schema = shard.metadata.parquet_schema();
    let Some(leaf) = schema.columns().iter().position(|c| {
        c.path()
            .parts()
            .first()
            .is_some_and(|p| *p == shard.layout.token_column)
    }) else {
        return Ok(None);
    };
    let column = shard
        .metadata
        .metadata()
        .row_group(unit.row_group)
        .column(leaf);
    if !crate::plain::eligible(column, settings.decode.dtype) {
        return Ok(None);
    }
    let (start, length) = column.byte_range();
    let max_def_level = schema.column(leaf).max_def_level();
    // A required column written as one page (what ShardWriter does for PLAIN) is a page header
    // followed by the values: the header's length is the chunk's size less the values'.
    let values_at = (max_def_level == 0)
        .then(|| {
            usize::try_from(length)
                .ok()?
                .checked_sub(unit.rows.checked_mul(4)?)
        })
        .flatten();
    let bytes = crate::reader::read_for_plain(
        &shard.file,
        settings.retry,
        settings.io.clone(),
        start..start + length,
        values_at,
    )
    .await
    .map_err(|e| read_error(shard, unit, e))?;
    match crate::plain::decode_plain(bytes, column, unit.rows, max_def_level) {
        Ok(tokens) => {
            tracing::trace!(file = %shard.file.display, row_group = unit.row_group, "plain fast path");
            Ok(Documents::new(
                tokens,
                crate::layout::offsets_from_lengths(lengths),
            ))
        }
        Err(crate::plain::PlainError::Parquet(source)) => Err(read_error(shard, unit, source)),
        // The general reader handles it (and reports nulls with their row).
        Err(_) => Ok(None),
    }
}
