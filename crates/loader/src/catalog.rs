//! The catalog: every shard's footer read once, its layout checked, its row groups listed as
//! work units; and the deterministic order in which each rank reads them.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt, stream};
use parquet::DecodeResult;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataPushDecoder};
use seqwarm_format::OnError;
use seqwarm_format::checksum::{ROW_GROUP_CRC32_KEY, decode_row_group_crcs};
use seqwarm_format::flat::{DOCUMENT_LENGTHS_KEY, decode_document_lengths};
use seqwarm_stage::UnitInfo;
use tokio::runtime::Handle;
use tokio::sync::OnceCell;

use crate::error::{LoaderError, Result, panic_message};
use crate::fetch::{Fetcher, on_blocking_thread};
use crate::layout::{ResolvedLayout, ShardLayout};
use crate::manifest::{MANIFEST_FILE, Manifest, RowGroupCounts};
use crate::retry::RetryPolicy;
use crate::source::{ShardFile, parent};

pub(crate) struct Shard {
    pub file: ShardFile,
    /// Its footer: read while the catalog was built, or, for a shard a manifest described,
    /// when one of its row groups is first read.
    footer: OnceCell<std::result::Result<Arc<Footer>, String>>,
    /// The row groups a manifest described (`(documents, tokens)` each), checked against the
    /// footer when it is read; empty when the footer was read at startup.
    promised: RowGroupCounts,
    /// The id each of its documents already ends with, when the manifest beside it says the
    /// run that wrote it appended one.
    ends_with: Option<i64>,
}

/// What a shard's footer says, as the read path needs it.
pub(crate) struct Footer {
    pub metadata: ArrowReaderMetadata,
    pub layout: ResolvedLayout,
    pub projection: ProjectionMask,
    /// Every row group of the file, by index.
    pub row_groups: Vec<RowGroup>,
}

/// One row group's reading details from the footer.
pub(crate) struct RowGroup {
    pub rows: usize,
    /// Document lengths from the flat layout's footer metadata.
    pub document_lengths: Option<Arc<[u64]>>,
    /// The CRC32 of the row group's bytes, when the footer has one (`checksum.rs`).
    pub crc: Option<u32>,
}

/// One row group: the unit of reading, shuffling and rank assignment.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub shard: usize,
    pub row_group: usize,
    /// Tokens the row group holds: exactly when `tokens_exact`, else at least.
    pub tokens: u64,
    /// Whether `tokens` is exact.
    pub tokens_exact: bool,
    /// Documents the row group holds, when the footer (or the manifest) says.
    pub documents: Option<u64>,
    /// Documents it holds at most (the rows, when the count is not known).
    pub max_documents: u64,
}

/// All shards and their row groups.
pub struct Catalog {
    pub(crate) shards: Vec<Shard>,
    pub(crate) units: Vec<Unit>,
    /// Shards skipped under [`OnError::Skip`], with the reason.
    skipped: Vec<String>,
    /// The layout footers are read with (also later, for shards a manifest described).
    layout: ShardLayout,
    /// What it was opened with, when a builder opened it (checked when it is reused).
    opened: Option<CatalogKey>,
}

/// The settings a catalog depends on: a builder that reuses one must have the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CatalogKey {
    pub locations: Vec<String>,
    pub layout: ShardLayout,
    pub on_error: OnError,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("shards", &self.shards.len())
            .field("units", &self.units.len())
            .field("skipped", &self.skipped)
            .field("opened", &self.opened)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Shards skipped under [`OnError::Skip`], each with the reason.
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    pub(crate) fn opened_with(mut self, key: CatalogKey) -> Self {
        self.opened = Some(key);
        self
    }

    /// Refuses a catalog opened with other locations, layout or bad-shard policy.
    pub(crate) fn check_opened_with(&self, key: &CatalogKey) -> Result<()> {
        match &self.opened {
            Some(opened) if opened == key => Ok(()),
            _ => Err(LoaderError::Config {
                field: "catalog",
                reason: "the catalog given to with_catalog was opened with other locations, \
                         layout or on_error setting than this builder's"
                    .into(),
            }),
        }
    }

    /// Number of readable shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
    /// Number of row groups.
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }
    /// The tokens and documents of all shards, from footers alone.
    pub fn token_count(&self) -> TokenCount {
        let sum = |a: u64, b: u64| a.saturating_add(b);
        TokenCount {
            tokens: self.units.iter().map(|u| u.tokens).fold(0, sum),
            tokens_exact: self.units.iter().all(|u| u.tokens_exact),
            documents: self
                .units
                .iter()
                .map(|u| u.documents)
                .try_fold(0, |a, d| Some(sum(a, d?))),
        }
    }

    /// The units as the epoch plan sees them.
    pub(crate) fn unit_infos(&self) -> Vec<UnitInfo> {
        self.units
            .iter()
            .map(|u| UnitInfo {
                documents: u.max_documents,
                tokens: u.tokens,
            })
            .collect()
    }

    /// Shards whose footers were not read at startup because a manifest described them
    /// (each is read, and checked against the manifest, when the shard is first read).
    pub fn deferred_footers(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| !s.promised.is_empty())
            .count()
    }

    /// Top-level columns that some shard has and the layout does not read (an
    /// `attention_mask` the layout was not told to use, say), sorted; of the footers read so
    /// far.
    pub fn unread_columns(&self) -> Vec<String> {
        let mut unread = std::collections::BTreeSet::new();
        for footer in self
            .shards
            .iter()
            .filter_map(|s| s.footer.get()?.as_ref().ok())
        {
            let read = footer.layout.columns();
            for field in footer.metadata.schema().fields() {
                if !read.contains(&field.name().as_str()) {
                    unread.insert(field.name().clone());
                }
            }
        }
        unread.into_iter().collect()
    }

    /// The end-of-document id the stage should append after each document, given the one
    /// configured (`eos_id`): the configured id, unless the manifests beside the shards say
    /// every document already ends with it, in which case `None`, so that no boundary gets a
    /// second EOS (`seqwarm preprocess` appends one unless `--no-eos`). An id that differs
    /// from the manifest's, or shards of which only some already end their documents with it,
    /// are refused: either would put two different (or uneven) ends between documents.
    pub fn eos_to_append(&self, configured: Option<i64>) -> Result<Option<i64>> {
        let Some(eos) = configured else {
            return Ok(None);
        };
        let refuse = |reason: String| LoaderError::Config {
            field: "eos_id",
            reason,
        };
        let mut ended = 0usize;
        for shard in &self.shards {
            match shard.ends_with {
                Some(id) if id == eos => ended += 1,
                Some(id) => {
                    return Err(refuse(format!(
                        "{}/{MANIFEST_FILE} says every document already ends with EOS id \
                         {id}; eos_id {eos} would add a second, different end token after each \
                         (leave eos_id out to read the documents as written)",
                        parent(&shard.file.display)
                    )));
                }
                None => {}
            }
        }
        match ended {
            0 => Ok(Some(eos)),
            n if n == self.shards.len() => {
                tracing::info!(
                    "eos_id {eos}: the manifest says every document already ends with it; \
                     none is appended"
                );
                Ok(None)
            }
            n => Err(refuse(format!(
                "{n} of {} shards already end every document with EOS id {eos} (their \
                 manifest says so) and the others do not: appending it would double it in \
                 some documents, and not appending would leave others without; read them \
                 as separate sources, or preprocess them alike",
                self.shards.len()
            ))),
        }
    }

    /// Whether any shard is on an object store (reads then wait a round trip each).
    pub(crate) fn has_remote_shards(&self) -> bool {
        self.shards.iter().any(|s| s.file.local_path().is_none())
    }

    /// The bytes a read of `unit` fetches, about: its compressed size when its shard's footer
    /// was read, else the shard's size over its row groups (a manifest gives their number).
    /// What the read-ahead's byte window on object stores counts (`prefetch.rs`).
    pub(crate) fn unit_bytes(&self, unit: usize) -> u64 {
        let Some(unit) = self.units.get(unit) else {
            return 0;
        };
        let Some(shard) = self.shards.get(unit.shard) else {
            return 0;
        };
        match shard.footer.get() {
            Some(Ok(footer)) => footer
                .metadata
                .metadata()
                .row_groups()
                .get(unit.row_group)
                .map_or(0, |g| u64::try_from(g.compressed_size()).unwrap_or(0)),
            _ => shard.file.size / (shard.promised.len().max(1) as u64),
        }
    }

    /// The shard files, in catalog order.
    pub(crate) fn files(&self) -> impl Iterator<Item = &ShardFile> {
        self.shards.iter().map(|s| &s.file)
    }
}

/// What the footers say about the tokens of a set of shards ([`Catalog::token_count`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// The tokens: exactly when `tokens_exact`, else a lower bound.
    pub tokens: u64,
    /// Whether `tokens` is exact: flat shards always are; list shards are when their footers
    /// carry null counts (pyarrow's and arrow-rs's do).
    pub tokens_exact: bool,
    /// The documents, when every footer says (flat shards with footer boundaries, list
    /// shards).
    pub documents: Option<u64>,
}

impl TokenCount {
    /// The tokens a stage that appends an EOS to every document takes in (`eos` set): the
    /// tokens plus one per document, and whether that is exact.
    pub fn with_eos(&self, eos: bool) -> (u64, bool) {
        match (eos, self.documents) {
            (false, _) => (self.tokens, self.tokens_exact),
            (true, Some(documents)) => (self.tokens.saturating_add(documents), self.tokens_exact),
            (true, None) => (self.tokens, false),
        }
    }
}

/// The tokens of a list column chunk, from its footer: its leaf values less its null and empty
/// lists (each leaves one level without a value, counted in the chunk's null count). Without a
/// null count, at least the values less one per row.
fn list_tokens(column: &parquet::file::metadata::ColumnChunkMetaData, rows: u64) -> (u64, bool) {
    let values = u64::try_from(column.num_values()).unwrap_or(0);
    match column
        .statistics()
        .and_then(parquet::file::statistics::Statistics::null_count_opt)
    {
        Some(nulls) => (values.saturating_sub(nulls), true),
        None => (values.saturating_sub(rows), false),
    }
}

/// Reads a footer with parquet's push decoder: the last 64 KiB first, which holds footer
/// and metadata in one request in the common case, then whatever else it asks for.
async fn read_footer(fetcher: &mut Fetcher, file: &ShardFile) -> Result<ParquetMetaData> {
    let not_parquet = |source| LoaderError::NotParquet {
        file: file.display.clone(),
        source,
    };
    let io = |source| LoaderError::Io {
        file: file.display.clone(),
        source,
    };
    let mut decoder = ParquetMetaDataPushDecoder::try_new(file.size)
        .map_err(not_parquet)?
        .with_page_index_policy(PageIndexPolicy::Skip);
    let tail = file.size.saturating_sub(64 * 1024)..file.size;
    let data = fetcher
        .ranges(std::slice::from_ref(&tail))
        .await
        .map_err(io)?;
    decoder.push_ranges(vec![tail], data).map_err(not_parquet)?;
    loop {
        match decoder.try_decode().map_err(not_parquet)? {
            DecodeResult::NeedsData(ranges) => {
                let data = fetcher.ranges(&ranges).await.map_err(io)?;
                decoder.push_ranges(ranges, data).map_err(not_parquet)?;
            }
            DecodeResult::Data(metadata) => return Ok(metadata),
            DecodeResult::Finished => {
                return Err(not_parquet(parquet::errors::ParquetError::General(
                    "no metadata".into(),
                )));
            }
        }
    }
}

/// A shard's footer and its row groups as units (`shard` 0: the caller places them).
type OpenedShard = (Footer, Vec<Unit>);

async fn open_footer(
    file: ShardFile,
    layout: ShardLayout,
    retry: RetryPolicy,
    io: Handle,
) -> Result<OpenedShard> {
    let display = file.display.clone();
    let mut fetcher = Fetcher::new(&file, retry, &io);
    let footer = read_footer(&mut fetcher, &file).await?;
    let metadata = ArrowReaderMetadata::try_new(Arc::new(footer), ArrowReaderOptions::new())
        .map_err(|source| LoaderError::NotParquet {
            file: display.clone(),
            source,
        })?;
    let mut resolved = layout.resolve(&display, metadata.schema())?;
    let parquet = metadata.metadata();
    let lengths = if resolved.flat {
        document_lengths(&display, parquet)?
    } else {
        None
    };
    let crcs = row_group_crcs(&display, parquet)?;
    if lengths.is_some() {
        // The footer has the boundaries; the boolean column need not be decoded.
        resolved.document_start_column = None;
    }
    if parquet.file_metadata().num_rows() == 0 {
        return Err(LoaderError::EmptyShard { file: display });
    }
    let roots: Vec<usize> = resolved
        .columns()
        .iter()
        .filter_map(|c| metadata.schema().index_of(c).ok())
        .collect();
    let projection = ProjectionMask::roots(metadata.parquet_schema(), roots);
    let leaf = metadata.parquet_schema().columns().iter().position(|c| {
        c.path()
            .parts()
            .first()
            .is_some_and(|p| *p == resolved.token_column)
    });
    let row_groups: Vec<RowGroup> = parquet
        .row_groups()
        .iter()
        .enumerate()
        .map(|(i, rg)| RowGroup {
            rows: usize::try_from(rg.num_rows()).unwrap_or(0),
            document_lengths: lengths.as_ref().map(|l| Arc::from(l[i].as_slice())),
            crc: crcs.as_ref().map(|c| c[i]),
        })
        .collect();
    let units = parquet
        .row_groups()
        .iter()
        .enumerate()
        .filter(|(_, rg)| rg.num_rows() > 0)
        .map(|(i, rg)| {
            let document_lengths = row_groups[i].document_lengths.as_ref();
            let rows = row_groups[i].rows;
            let (tokens, tokens_exact) = match leaf {
                _ if resolved.flat => (rows as u64, true),
                Some(l) => list_tokens(rg.column(l), rows as u64),
                None => (0, false),
            };
            let documents = match document_lengths {
                Some(lengths) => Some(lengths.len() as u64),
                // A boundary column is not counted in the footer.
                None if resolved.flat && resolved.document_start_column.is_some() => None,
                // Without one, a flat row group is one document.
                None if resolved.flat => Some(1),
                None => Some(rows as u64),
            };
            Unit {
                shard: 0,
                row_group: i,
                tokens,
                tokens_exact,
                documents,
                max_documents: document_lengths.map_or(rows as u64, |l| l.len() as u64),
            }
        })
        .collect();
    Ok((
        Footer {
            metadata,
            layout: resolved,
            projection,
            row_groups,
        },
        units,
    ))
}

/// The flat layout's per-row-group document lengths from the footer, checked against the
/// row counts; `None` when the file has none.
fn document_lengths(
    file: &str,
    parquet: &parquet::file::metadata::ParquetMetaData,
) -> Result<Option<Vec<Vec<u64>>>> {
    let Some(text) = parquet
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == DOCUMENT_LENGTHS_KEY))
        .and_then(|k| k.value.as_deref())
    else {
        return Ok(None);
    };
    let invalid = |reason: String| LoaderError::Metadata {
        file: file.into(),
        key: DOCUMENT_LENGTHS_KEY,
        reason,
    };
    let lengths =
        decode_document_lengths(text).ok_or_else(|| invalid("not valid base64 LEB128".into()))?;
    if lengths.len() != parquet.num_row_groups() {
        return Err(invalid(format!(
            "{} row groups described, the file has {}",
            lengths.len(),
            parquet.num_row_groups()
        )));
    }
    for (i, (rg, l)) in parquet.row_groups().iter().zip(&lengths).enumerate() {
        let Some(sum) = l.iter().try_fold(0u64, |a, &b| a.checked_add(b)) else {
            return Err(invalid(format!(
                "row group {i}: document lengths overflow a 64-bit count"
            )));
        };
        if i64::try_from(sum).ok() != Some(rg.num_rows()) {
            return Err(invalid(format!(
                "row group {i}: document lengths add up to {sum}, the row group has {} rows",
                rg.num_rows()
            )));
        }
    }
    Ok(Some(lengths))
}

/// Opens a local shard's footer now, on the calling (blocking) thread. A footer parser that
/// panics on hostile bytes fails this shard (which `on_error` may skip), not its batch.
fn open_local_now(
    file: ShardFile,
    layout: ShardLayout,
    retry: RetryPolicy,
    io: Handle,
) -> Result<OpenedShard> {
    let location = file.display.clone();
    let open = open_footer(file, layout, retry, io);
    std::panic::catch_unwind(AssertUnwindSafe(|| open.now_or_never()))
        .unwrap_or_else(|panic| Some(Err(footer_panicked(&location, panic.as_ref()))))
        .unwrap_or_else(|| {
            Err(LoaderError::Location {
                location,
                reason: "a local read waited on something other than the file".into(),
            })
        })
}

/// Opens a remote shard's footer, a panicking parser failing this shard only.
async fn open_remote(
    file: ShardFile,
    layout: ShardLayout,
    retry: RetryPolicy,
    io: Handle,
) -> Result<OpenedShard> {
    let location = file.display.clone();
    AssertUnwindSafe(open_footer(file, layout, retry, io))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| Err(footer_panicked(&location, panic.as_ref())))
}

/// A footer parser that panicked on hostile bytes: an error of this shard alone.
fn footer_panicked(location: &str, panic: &(dyn std::any::Any + Send)) -> LoaderError {
    LoaderError::Location {
        location: location.into(),
        reason: format!("reading the footer panicked: {}", panic_message(panic)),
    }
}

/// A shard that no longer is what the manifest beside it says.
fn changed_since_manifest(file: &str, difference: &str) -> LoaderError {
    LoaderError::Metadata {
        file: file.into(),
        key: MANIFEST_FILE,
        reason: format!(
            "{difference}: the shard changed after the manifest was written (rerun preprocess, \
             or delete the manifest to read the shards as they are)"
        ),
    }
}

/// The footer's units must be the row groups the manifest promised.
fn check_promise(file: &str, promised: &RowGroupCounts, units: &[Unit]) -> Result<()> {
    let kept = units.len() == promised.len()
        && units
            .iter()
            .zip(promised)
            .enumerate()
            .all(|(i, (u, &(documents, tokens)))| {
                u.row_group == i
                    && u.documents == Some(documents)
                    && if u.tokens_exact {
                        u.tokens == tokens
                    } else {
                        u.tokens <= tokens
                    }
            });
    if kept {
        return Ok(());
    }
    let footer: Vec<(Option<u64>, u64)> = units.iter().map(|u| (u.documents, u.tokens)).collect();
    Err(changed_since_manifest(
        file,
        &format!(
            "the manifest describes its row groups as (documents, tokens) {promised:?}, the \
             footer as {footer:?}"
        ),
    ))
}

impl Catalog {
    /// Shard `index`'s footer: the one read at startup, or (a shard a manifest described)
    /// read now, once, and checked against the manifest.
    pub(crate) async fn footer(
        &self,
        index: usize,
        retry: RetryPolicy,
        runtime: &Handle,
        io: &Handle,
    ) -> Result<Arc<Footer>> {
        let Some(shard) = self.shards.get(index) else {
            return Err(LoaderError::Config {
                field: "shard",
                reason: format!("no shard {index} in a catalog of {}", self.shards.len()),
            });
        };
        // A footer that cannot be read is tried once: its shard's other row groups fail
        // (or are skipped) with the same reason instead of reading it again each time.
        let mut first_error = None;
        let opened = shard
            .footer
            .get_or_init(|| async {
                match self.open_deferred(shard, retry, runtime, io).await {
                    Ok(footer) => Ok(Arc::new(footer)),
                    Err(e) => {
                        let reason = e.to_string();
                        first_error = Some(e);
                        Err(reason)
                    }
                }
            })
            .await;
        match opened {
            Ok(footer) => Ok(Arc::clone(footer)),
            Err(reason) => Err(first_error.unwrap_or_else(|| LoaderError::Location {
                location: shard.file.display.clone(),
                reason: format!("its footer could not be read: {reason}"),
            })),
        }
    }

    /// Reads a shard's footer after startup, and checks it against what the manifest said.
    async fn open_deferred(
        &self,
        shard: &Shard,
        retry: RetryPolicy,
        runtime: &Handle,
        io: &Handle,
    ) -> Result<Footer> {
        let (file, layout, io) = (shard.file.clone(), self.layout.clone(), io.clone());
        if let (Some(path), false) = (file.local_path(), shard.promised.is_empty()) {
            // Its size came from the manifest, unchecked until now.
            let actual = std::fs::metadata(path).map_err(|e| LoaderError::Location {
                location: file.display.clone(),
                reason: e.to_string(),
            })?;
            if actual.len() != file.size {
                return Err(changed_since_manifest(
                    &file.display,
                    &format!(
                        "the file has {} bytes, the manifest says {}",
                        actual.len(),
                        file.size
                    ),
                ));
            }
        }
        let (footer, units) = if file.local_path().is_some() {
            let what = file.display.clone();
            on_blocking_thread(runtime, &what, async move {
                open_local_now(file, layout, retry, io)
            })
            .await?
        } else {
            open_remote(file, layout, retry, io).await?
        };
        check_promise(&shard.file.display, &shard.promised, &units)?;
        Ok(footer)
    }
}

/// Where and how the catalog reads footers.
pub(crate) struct FooterReads<'a> {
    pub layout: &'a ShardLayout,
    pub policy: OnError,
    pub retry: RetryPolicy,
    /// Runs the blocking reads of local shards.
    pub runtime: &'a Handle,
    /// Runs object-store requests.
    pub io: &'a Handle,
}

/// Remote footers requested at once. A request costs a round trip (20-50 ms to an object
/// store), not CPU: 20 000 footers at 20 ms took 4.8 s at 128 in flight and 3.0 s at 512
/// (`benches/python/bench_remote.py`; the rest is the listing's pages, one after another, and
/// the client's own work). Object stores serve thousands of requests at once.
pub(crate) const REMOTE_FOOTER_REQUESTS: usize = 512;
/// Local footers read by one blocking task, one after another: a hand-off to a blocking thread
/// costs a wake-up, about as much as reading a small footer from the page cache.
const LOCAL_FOOTERS_PER_TASK: usize = 64;

/// A shard ready to place in the catalog: its footer (`None`: read later), its units, and
/// the row groups a manifest promised (empty: none).
type Placed = (Option<Footer>, Vec<Unit>, RowGroupCounts);

/// Builds the catalog, in the order of `files`: shards that a manifest in `manifests`
/// describes (same directory, name and size) from the manifest, their footers read later;
/// every other footer read now (local ones in batches on blocking threads, as many batches at
/// once as there are cores; remote ones as concurrent requests).
pub(crate) async fn build_catalog(
    files: Vec<ShardFile>,
    manifests: Vec<(String, Manifest)>,
    reads: &FooterReads<'_>,
) -> Result<Catalog> {
    let manifest_of = |file: &ShardFile| -> Option<&Manifest> {
        let dir = parent(&file.display);
        manifests.iter().find(|(d, _)| d == dir).map(|(_, m)| m)
    };
    let promise = |file: &ShardFile| -> Option<RowGroupCounts> {
        manifest_of(file)?
            .row_groups(file.name(), file.size)
            .cloned()
    };
    let ends_with = |file: &ShardFile| manifest_of(file).and_then(|m| m.eos_of(file.name()));
    let mut deferred: Vec<(usize, ShardFile, RowGroupCounts)> = Vec::new();
    let mut now: Vec<(usize, ShardFile)> = Vec::new();
    for (index, file) in files.into_iter().enumerate() {
        match promise(&file) {
            Some(counts) => deferred.push((index, file, counts)),
            None => now.push((index, file)),
        }
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let (local, remote): (Vec<_>, Vec<_>) =
        now.into_iter().partition(|(_, f)| f.local_path().is_some());
    let local_batches: Vec<Vec<(usize, ShardFile)>> = local
        .chunks(LOCAL_FOOTERS_PER_TASK)
        .map(<[_]>::to_vec)
        .collect();
    let local_opened = stream::iter(local_batches)
        .map(|batch| {
            let (layout, retry, io) = (reads.layout.clone(), reads.retry, reads.io.clone());
            let what = batch
                .first()
                .map(|(_, f)| f.display.clone())
                .unwrap_or_default();
            let work = async move {
                Ok(batch
                    .into_iter()
                    .map(|(index, file)| {
                        let opened =
                            open_local_now(file.clone(), layout.clone(), retry, io.clone());
                        (index, file, opened)
                    })
                    .collect::<Vec<_>>())
            };
            async move { on_blocking_thread(reads.runtime, &what, work).await }
        })
        .buffered(cores.max(1))
        .collect::<Vec<_>>();
    let remote_opened = stream::iter(remote)
        .map(|(index, file)| {
            let (layout, retry, io) = (reads.layout.clone(), reads.retry, reads.io.clone());
            async move {
                (
                    index,
                    file.clone(),
                    open_remote(file, layout, retry, io).await,
                )
            }
        })
        .buffered(REMOTE_FOOTER_REQUESTS)
        .collect::<Vec<_>>();
    let (local_opened, remote_opened) = futures_util::join!(local_opened, remote_opened);
    let mut read_now = remote_opened;
    for batch in local_opened {
        read_now.extend(batch?);
    }
    let mut opened: Vec<(usize, ShardFile, Result<Placed>)> = read_now
        .into_iter()
        .map(|(i, f, r)| {
            (
                i,
                f,
                r.map(|(footer, units)| (Some(footer), units, Vec::new())),
            )
        })
        .collect();
    opened.extend(deferred.into_iter().map(|(i, file, counts)| {
        let units = counts
            .iter()
            .enumerate()
            .map(|(row_group, &(documents, tokens))| Unit {
                shard: 0,
                row_group,
                tokens,
                tokens_exact: true,
                documents: Some(documents),
                max_documents: documents,
            })
            .collect();
        (i, file, Ok((None, units, counts)))
    }));
    opened.sort_by_key(|(index, _, _)| *index);
    let policy = reads.policy;
    let mut catalog = Catalog {
        shards: Vec::new(),
        units: Vec::new(),
        skipped: Vec::new(),
        layout: reads.layout.clone(),
        opened: None,
    };
    for (_, file, result) in opened {
        match result {
            Ok((footer, units, promised)) => {
                let index = catalog.shards.len();
                catalog.shards.push(Shard {
                    ends_with: ends_with(&file),
                    file,
                    footer: footer
                        .map_or_else(OnceCell::new, |f| OnceCell::new_with(Some(Ok(Arc::new(f))))),
                    promised,
                });
                catalog
                    .units
                    .extend(units.into_iter().map(|u| Unit { shard: index, ..u }));
            }
            Err(e) if policy == OnError::Skip => {
                tracing::warn!("skipping shard {}: {e}", file.display);
                catalog.skipped.push(e.to_string());
            }
            Err(e) => return Err(e),
        }
    }
    if catalog.units.is_empty() {
        return Err(LoaderError::Config {
            field: "shards",
            reason: format!(
                "no readable row groups ({} shards skipped)",
                catalog.skipped.len()
            ),
        });
    }
    // One deferred footer per manifest is read now: the shards of one preprocess run share
    // their schema, so a layout that does not fit them (`--labels` on shards without any, say)
    // fails here, at build time, as it does without a manifest.
    let mut checked: Vec<&str> = Vec::new();
    for index in 0..catalog.shards.len() {
        let shard = &catalog.shards[index];
        let dir = parent(&shard.file.display);
        if shard.promised.is_empty() || checked.contains(&dir) {
            continue;
        }
        checked.push(dir);
        if let Err(e) = catalog
            .footer(index, reads.retry, reads.runtime, reads.io)
            .await
            && policy == OnError::Fail
        {
            return Err(e);
        }
    }
    Ok(catalog)
}

/// The footer's row-group CRCs, one per row group; `None` when the file has none.
pub(crate) fn row_group_crcs(file: &str, parquet: &ParquetMetaData) -> Result<Option<Vec<u32>>> {
    let Some(text) = parquet
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == ROW_GROUP_CRC32_KEY))
        .and_then(|k| k.value.as_deref())
    else {
        return Ok(None);
    };
    let invalid = |reason: String| LoaderError::Metadata {
        file: file.into(),
        key: ROW_GROUP_CRC32_KEY,
        reason,
    };
    let crcs = decode_row_group_crcs(text)
        .ok_or_else(|| invalid("not comma-separated 8-digit hexadecimal CRCs".into()))?;
    if crcs.len() != parquet.num_row_groups() {
        return Err(invalid(format!(
            "{} row groups described, the file has {}",
            crcs.len(),
            parquet.num_row_groups()
        )));
    }
    Ok(Some(crcs))
}
