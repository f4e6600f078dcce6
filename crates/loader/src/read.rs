//! Reading one work unit (a row group) into documents: parquet's push decoder says which byte
//! ranges it needs, [`Fetcher`] fetches them, and the decoded batch becomes [`Documents`]. A
//! flat PLAIN column takes the fast path (`plain.rs`) instead.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;

use parquet::DecodeResult;
use parquet::arrow::push_decoder::ParquetPushDecoderBuilder;
use parquet::errors::ParquetError;
use seqwarm_batcher::{Tensor, Values};
use seqwarm_stage::Documents;
use tokio::runtime::Handle;

use crate::cache::{RowGroupCrc, ShardCache};
use crate::catalog::{Catalog, Footer, RowGroup, Shard, Unit};
use crate::checksum;
use crate::error::{LoaderError, Result, panic_message};
use crate::fetch::{Fetcher, on_blocking_thread};
use crate::layout::{DecodeOptions, Place, decode, offsets_from_lengths};
use crate::mapped::MappedFiles;
use crate::narrow::NarrowRun;
use crate::plain::{self, PlainValues};
use crate::retry::RetryPolicy;

/// What reading a unit gives: decoded documents, or a `uint16` row group still at its stored
/// width (widened a chunk at a time as the stage takes it, `narrow.rs`).
#[derive(Debug)]
pub(crate) enum Run {
    Wide(Documents),
    Narrow(NarrowRun),
}

impl Run {
    /// Documents in the run.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Wide(d) => d.len(),
            Self::Narrow(n) => n.len(),
        }
    }
}

/// How units are read.
#[derive(Clone)]
pub(crate) struct ReadSettings {
    pub decode: DecodeOptions,
    pub retry: RetryPolicy,
    /// Runs decoding (remote shards) and the blocking reads of local ones.
    pub runtime: Handle,
    /// Runs object-store requests.
    pub io: Handle,
    /// Check row groups against the CRC32 in their footer, when it has one.
    pub verify_checksums: bool,
    /// Where local row groups are mapped, unless they are read into buffers (`mapped.rs`).
    pub maps: Option<Arc<MappedFiles>>,
    /// Where remote shards are kept once downloaded, if anywhere (`cache.rs`).
    pub cache: Option<Arc<ShardCache>>,
}

/// Reads and decodes unit `unit` of `catalog`: local shards on a blocking thread, remote ones
/// on the runtime (their requests on the I/O runtime).
pub(crate) async fn read_unit(
    catalog: Arc<Catalog>,
    unit: usize,
    settings: &ReadSettings,
) -> Result<Vec<Run>> {
    let Some(u) = catalog.units.get(unit) else {
        return Err(LoaderError::Config {
            field: "unit",
            reason: format!("no unit {unit} in a catalog of {}", catalog.units.len()),
        });
    };
    let shard = &catalog.shards[u.shard];
    let footer = catalog
        .footer(u.shard, settings.retry, &settings.runtime, &settings.io)
        .await?;
    // A decoder that panics on hostile bytes (arrow-rs has had such bugs) fails this row group
    // with a decode error that names it, not the whole reader.
    let decode = decode_error(shard, &footer, u);
    let panicked = move |panic: Box<dyn std::any::Any + Send>| {
        Err(decode(ParquetError::General(format!(
            "the decoder panicked: {}",
            panic_message(panic.as_ref())
        ))))
    };
    let mut fetcher =
        Fetcher::new(&shard.file, settings.retry, &settings.io).with_maps(settings.maps.clone());
    if let Some(cache) = &settings.cache {
        let (footer, verify) = (Arc::clone(&footer), settings.verify_checksums);
        let crcs = move || {
            if verify {
                row_group_crcs(&footer)
            } else {
                Vec::new()
            }
        };
        fetcher = fetcher
            .through_cache(cache, &shard.file, crcs, &settings.runtime)
            .await?;
    }
    if !fetcher.is_local() {
        let read = AssertUnwindSafe(read_now(&catalog, &footer, unit, fetcher, settings));
        return read.catch_unwind().await.unwrap_or_else(panicked);
    }
    let display = format!("{} row group {}", shard.file.display, u.row_group);
    let runtime = settings.runtime.clone();
    let settings = settings.clone();
    let read = async move {
        let read = AssertUnwindSafe(read_now(&catalog, &footer, unit, fetcher, &settings));
        read.catch_unwind().await.unwrap_or_else(panicked)
    };
    on_blocking_thread(&runtime, &display, read).await
}

/// Each row group's byte range and footer CRC32, for the row groups that have one: what a
/// download into the cache is checked against.
fn row_group_crcs(footer: &Footer) -> Vec<RowGroupCrc> {
    let parquet = footer.metadata.metadata();
    footer
        .row_groups
        .iter()
        .enumerate()
        .filter_map(|(i, group)| {
            let range = checksum::row_group_range(parquet.row_group(i))?;
            Some((i, range, group.crc?))
        })
        .collect()
}

/// A failure fetching a unit's bytes (a shard deleted mid-run, a network error that outlived
/// the retries).
fn io_error(shard: &Shard, unit: &Unit) -> impl Fn(object_store::Error) -> LoaderError {
    let file = format!("{} row group {}", shard.file.display, unit.row_group);
    move |source| LoaderError::Io {
        file: file.clone(),
        source,
    }
}

/// Bytes that do not decode.
fn decode_error(
    shard: &Shard,
    footer: &Footer,
    unit: &Unit,
) -> impl Fn(ParquetError) -> LoaderError + use<> {
    let (file, row_group, column) = (
        shard.file.display.clone(),
        unit.row_group,
        footer.layout.token_column.clone(),
    );
    move |source| LoaderError::Decode {
        file: file.clone(),
        row_group,
        column: column.clone(),
        source,
    }
}

async fn read_now(
    catalog: &Catalog,
    footer: &Footer,
    unit: usize,
    mut fetcher: Fetcher,
    settings: &ReadSettings,
) -> Result<Vec<Run>> {
    let u = &catalog.units[unit];
    let shard = &catalog.shards[u.shard];
    let Some(group) = footer.row_groups.get(u.row_group) else {
        return Err(LoaderError::Metadata {
            file: shard.file.display.clone(),
            key: "row groups",
            reason: format!(
                "no row group {} in a footer of {}",
                u.row_group,
                footer.row_groups.len()
            ),
        });
    };
    if let Some(run) = read_plain(shard, footer, group, u, &mut fetcher, settings).await? {
        return Ok(vec![run]);
    }
    let (io, undecodable) = (io_error(shard, u), decode_error(shard, footer, u));
    // With a row-group CRC, the row group's bytes are fetched and checked first, and the
    // decoder is served from them.
    let verified = match (settings.verify_checksums, group.crc) {
        (true, Some(expected)) => {
            let rg = footer.metadata.metadata().row_group(u.row_group);
            let range = checksum::row_group_range(rg).ok_or_else(|| overflow(shard, u))?;
            let mut data = fetcher
                .ranges(std::slice::from_ref(&range))
                .await
                .map_err(&io)?;
            let bytes = data.pop().unwrap_or_default();
            checksum::verify_row_group(shard, u, expected, &bytes)?;
            Some(plain::ChunkAt {
                base: range.start,
                bytes,
            })
        }
        _ => None,
    };
    let mut decoder = ParquetPushDecoderBuilder::new_with_metadata(footer.metadata.clone())
        .with_row_groups(vec![u.row_group])
        .with_projection(footer.projection.clone())
        // One record batch per row group: whole documents, no stitching.
        .with_batch_size(group.rows.max(1))
        .build()
        .map_err(&undecodable)?;
    let place = Place {
        file: &shard.file.display,
        row_group: u.row_group,
    };
    let mut out = Vec::new();
    loop {
        let step = match decoder.try_decode() {
            Ok(step) => step,
            Err(e) if checksum::is_page_crc_error(&e) => {
                return Err(locate_bad_page(shard, footer, group, u, &mut fetcher)
                    .await
                    .unwrap_or(undecodable(e)));
            }
            Err(e) => return Err(undecodable(e)),
        };
        match step {
            DecodeResult::NeedsData(ranges) => {
                let served = verified
                    .as_ref()
                    .and_then(|chunk| ranges.iter().map(|r| chunk.range(r)).collect());
                let data = match served {
                    Some(data) => data,
                    None => fetcher.ranges(&ranges).await.map_err(&io)?,
                };
                decoder.push_ranges(ranges, data).map_err(&undecodable)?;
            }
            DecodeResult::Data(batch) => out.push(Run::Wide(decode(
                &place,
                &batch,
                &footer.layout,
                group.document_lengths.as_deref(),
                settings.decode,
            )?)),
            DecodeResult::Finished => return Ok(out),
        }
    }
}

/// The flat layout's fast path (`plain.rs`): `None` when the row group does not qualify (not
/// flat-v1, not PLAIN INT32, a vocabulary check asked for) or turns out not to, and the
/// general reader takes over.
async fn read_plain(
    shard: &Shard,
    footer: &Footer,
    group: &RowGroup,
    unit: &Unit,
    fetcher: &mut Fetcher,
    settings: &ReadSettings,
) -> Result<Option<Run>> {
    let (Some(lengths), true, None) = (
        &group.document_lengths,
        footer.layout.flat,
        settings.decode.vocab_size,
    ) else {
        return Ok(None);
    };
    let schema = footer.metadata.parquet_schema();
    let Some(leaf) = schema.columns().iter().position(|c| {
        c.path()
            .parts()
            .first()
            .is_some_and(|p| *p == footer.layout.token_column)
    }) else {
        return Ok(None);
    };
    let column = footer
        .metadata
        .metadata()
        .row_group(unit.row_group)
        .column(leaf);
    let Some(width) = plain::eligible(column, settings.decode.dtype) else {
        return Ok(None);
    };
    let (start, length) = column.byte_range();
    let max_def_level = schema.column(leaf).max_def_level();
    // A required column written as one page (what ShardWriter does for PLAIN) is a page header
    // followed by the values: the header's length is the chunk's size less the values'.
    let values_at = (max_def_level == 0)
        .then(|| {
            usize::try_from(length)
                .ok()?
                .checked_sub(group.rows.checked_mul(width.bytes())?)
        })
        .flatten();
    let end = start
        .checked_add(length)
        .ok_or_else(|| overflow(shard, unit))?;
    let expected_crc = group.crc.filter(|_| settings.verify_checksums);
    if expected_crc.is_some()
        && checksum::row_group_range(footer.metadata.metadata().row_group(unit.row_group))
            != Some(start..end)
    {
        // The CRC covers more than this column: the general reader checks it.
        return Ok(None);
    }
    let mapped = fetcher.is_local() && settings.maps.is_some();
    let (bytes, checked) = fetcher
        .aligned(start..end, values_at)
        .await
        .map_err(io_error(shard, unit))?;
    if let (Some(expected), false) = (expected_crc, checked) {
        checksum::verify_row_group(shard, unit, expected, &bytes)?;
        fetcher.mark_checked(start..end);
    }
    match plain::decode_plain(bytes, column, group.rows, max_def_level, width) {
        Ok(values) => {
            tracing::trace!(file = %shard.file.display, row_group = unit.row_group, "plain fast path");
            let offsets = offsets_from_lengths(lengths);
            Ok(Some(match values {
                PlainValues::Int32(tokens) if mapped => {
                    Run::Wide(Documents::new(owned(&tokens), offsets)?)
                }
                PlainValues::Int32(tokens) => Run::Wide(Documents::new(tokens, offsets)?),
                PlainValues::Uint16(values) => Run::Narrow(
                    NarrowRun::new(values, offsets, settings.decode.dtype).ok_or_else(|| {
                        LoaderError::Metadata {
                            file: shard.file.display.clone(),
                            key: "document lengths",
                            reason: format!(
                                "row group {}: the documents' lengths do not add up to its {} tokens",
                                unit.row_group, group.rows
                            ),
                        }
                    })?,
                ),
            }))
        }
        Err(plain::PlainError::Page { index, source }) if checksum::is_page_crc_error(&source) => {
            Err(checksum::page_error(
                shard,
                unit,
                &footer.layout.token_column,
                index,
            ))
        }
        Err(plain::PlainError::Parquet(source) | plain::PlainError::Page { source, .. }) => {
            Err(decode_error(shard, footer, unit)(source))
        }
        // The general reader handles it (and reports nulls with their row).
        Err(_) => Ok(None),
    }
}

/// `tokens` copied into memory of their own. Tokens decoded in place from a read-only map of
/// the file must not become a batch's storage: the Python package hands batches out writable.
fn owned(tokens: &Tensor) -> Tensor {
    match tokens.storage() {
        Values::I32(v) => Tensor::vector(v.to_vec()),
        Values::I64(v) => Tensor::vector(v.to_vec()),
    }
}

/// A row group whose footer byte ranges overflow.
fn overflow(shard: &Shard, unit: &Unit) -> LoaderError {
    LoaderError::Metadata {
        file: shard.file.display.clone(),
        key: "column chunk byte range",
        reason: format!("row group {}: offset plus length overflows", unit.row_group),
    }
}

/// After the decoder refused a page for its CRC: which page of which projected column, by
/// walking each column chunk's pages. `None` when no page fails on its own (then the decoder's
/// error stands).
async fn locate_bad_page(
    shard: &Shard,
    footer: &Footer,
    group: &RowGroup,
    unit: &Unit,
    fetcher: &mut Fetcher,
) -> Option<LoaderError> {
    let row_group = footer.metadata.metadata().row_group(unit.row_group);
    for (leaf, column) in row_group.columns().iter().enumerate() {
        if !footer.projection.leaf_included(leaf) {
            continue;
        }
        let (start, length) = column.byte_range();
        let range = start..start.checked_add(length)?;
        let bytes = fetcher
            .ranges(std::slice::from_ref(&range))
            .await
            .ok()?
            .pop()?;
        if let Some(page) = checksum::first_bad_page(start, bytes, column, group.rows) {
            let name = column.column_path().string();
            return Some(checksum::page_error(shard, unit, &name, page));
        }
    }
    None
}
