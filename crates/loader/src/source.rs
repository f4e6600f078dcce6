//! Finding shards: local files, directories and globs, or object-store URLs.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ListResult, ObjectMeta, ObjectStore, ObjectStoreExt};
use seqwarm_format::paths::{self, is_parquet};
use tokio::runtime::Handle;
use url::Url;

use crate::error::{LoaderError, Result};
use crate::manifest::{MANIFEST_FILE, Manifest};
use crate::retry::RetryPolicy;
use crate::stores::Stores;

/// One shard file: where it is and how large.
#[derive(Clone)]
pub struct ShardFile {
    /// The location as the user would write it (a path or URL), used in messages.
    pub display: String,
    /// Its size in bytes.
    pub size: u64,
    pub(crate) place: Place,
}

/// Where a shard's bytes are read from.
#[derive(Clone)]
pub(crate) enum Place {
    /// The local file system, read directly (positioned reads on a blocking thread).
    Local(PathBuf),
    /// An object store.
    Store {
        store: Arc<dyn ObjectStore>,
        path: Path,
        /// The object's version as listed (its ETag, else its modification time): what tells
        /// a cached copy of it from one of an object rewritten since (`cache.rs`).
        version: Option<String>,
    },
}

impl ShardFile {
    /// The file's path when it is on the local file system.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match &self.place {
            Place::Local(path) => Some(path),
            Place::Store { .. } => None,
        }
    }

    /// The object's version as its store listed it (`None` for local files).
    pub(crate) fn version(&self) -> Option<&str> {
        match &self.place {
            Place::Store { version, .. } => version.as_deref(),
            Place::Local(_) => None,
        }
    }

    /// The file's name (its last path segment), which identifies it in a checkpoint wherever
    /// the data set is mounted.
    pub(crate) fn name(&self) -> &str {
        name_of(&self.display)
    }
}

/// A location's last path segment (a path's or a URL's).
fn name_of(location: &str) -> &str {
    location.rsplit(['/', '\\']).next().unwrap_or(location)
}

/// A location's directory part (a path's or a URL's), without the last separator: where the
/// catalog looks for a shard's manifest.
pub(crate) fn parent(location: &str) -> &str {
    location.rsplit_once(['/', '\\']).map_or("", |(dir, _)| dir)
}

/// A manifest's bytes, parsed; `None` (with a warning) when they cannot be read or do not parse:
/// every footer is read instead.
fn parse_manifest(
    shown: &str,
    bytes: std::result::Result<impl AsRef<[u8]>, String>,
) -> Option<Manifest> {
    match bytes.and_then(|b| Manifest::parse(b.as_ref())) {
        Ok(manifest) => Some(manifest),
        Err(e) => {
            tracing::warn!("{shown}: not read, every footer is read instead: {e}");
            None
        }
    }
}

impl std::fmt::Debug for ShardFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardFile")
            .field("display", &self.display)
            .field("size", &self.size)
            .field("local", &self.local_path())
            .finish_non_exhaustive()
    }
}

fn is_url(location: &str) -> bool {
    Url::parse(location).is_ok_and(|u| u.scheme().len() > 1 && location.contains("://"))
}

fn location_error(location: &str, reason: impl std::fmt::Display) -> LoaderError {
    LoaderError::Location {
        location: location.into(),
        reason: reason.to_string(),
    }
}

/// Lists the Parquet shards at each location, in a stable order (sorted within a location,
/// locations in the order given). A location is a file, a directory (its `*.parquet` files),
/// a glob (`data/*.parquet`), or a URL of a file or a prefix. Local listing runs on a blocking
/// thread of `runtime`.
pub(crate) async fn list_shards(
    locations: &[String],
    retry: RetryPolicy,
    stores: &Stores,
    runtime: &Handle,
) -> Result<Vec<ShardFile>> {
    Ok(list_shards_and_manifests(locations, retry, stores, runtime)
        .await?
        .shards)
}

/// What listing the locations found.
pub(crate) struct Listing {
    /// The shards, in order.
    pub shards: Vec<ShardFile>,
    /// The manifest of each location that is a directory or prefix and has a readable one,
    /// with that directory (as the shards' locations spell it, without the last separator).
    pub manifests: Vec<(String, Manifest)>,
}

impl Listing {
    /// Whether any shard is on an object store.
    pub(crate) fn has_remote(&self) -> bool {
        self.shards.iter().any(|f| f.local_path().is_none())
    }
}

/// [`list_shards`], and the manifests beside them.
pub(crate) async fn list_shards_and_manifests(
    locations: &[String],
    retry: RetryPolicy,
    stores: &Stores,
    runtime: &Handle,
) -> Result<Listing> {
    let mut out = Listing {
        shards: Vec::new(),
        manifests: Vec::new(),
    };
    for location in locations {
        let (found, manifest) = if is_url(location) {
            list_url(location, retry, stores).await?
        } else {
            let owned = location.clone();
            let known: Vec<String> = out.manifests.iter().map(|(d, _)| d.clone()).collect();
            runtime
                .spawn_blocking(move || list_local(&owned, &known))
                .await
                .map_err(|e| location_error(location, e))??
        };
        if found.is_empty() {
            return Err(LoaderError::NoShards {
                location: location.clone(),
            });
        }
        out.shards.extend(found);
        out.manifests.extend(manifest);
    }
    Ok(out)
}

/// `list_shards` with the default stores and retries, on the current runtime: what the
/// benchmarks and tools use to find files.
pub async fn find_shards(locations: &[String]) -> Result<Vec<ShardFile>> {
    list_shards(
        locations,
        RetryPolicy::default(),
        &Stores::default(),
        &crate::runtime::current_runtime("find_shards")?,
    )
    .await
}

/// The shards at a location, and its manifest (with the directory its shards are in).
type Listed = (Vec<ShardFile>, Option<(String, Manifest)>);

/// The shards at a local location, and the manifest of the directory they are in: the
/// location's own for a directory, else (a file, a glob) the one beside the shards when they
/// all sit in one directory, so that its EOS and row groups count however the shards are
/// named. `known`: directories whose manifest an earlier location of the same list read.
fn list_local(location: &str, known: &[String]) -> Result<Listed> {
    let found = paths::expand(location, is_parquet).map_err(|e| location_error(location, e))?;
    let dir = if std::path::Path::new(location).is_dir() {
        Some(std::path::PathBuf::from(location))
    } else {
        let mut parents = found
            .iter()
            .map(|p| p.parent().unwrap_or(std::path::Path::new("")));
        let first = parents.next();
        first
            .filter(|&first| parents.all(|p| p == first))
            .map(std::path::Path::to_path_buf)
    };
    let shards_dir = found
        .first()
        .map(|f| parent(&f.display().to_string()).to_string());
    let manifest = match (dir, &shards_dir) {
        (Some(_), Some(shown)) if known.contains(shown) => None,
        (Some(dir), _) => {
            let path = dir.join(MANIFEST_FILE);
            // No manifest is the usual case for other tools' shards: nothing to warn about.
            std::fs::read(&path)
                .ok()
                .and_then(|bytes| parse_manifest(&path.display().to_string(), Ok(bytes)))
        }
        _ => None,
    };
    // The working directory once, not once per file (`std::path::absolute` asks each time).
    let cwd = if found.iter().any(|p| p.is_relative()) {
        Some(std::env::current_dir().map_err(|e| location_error(location, e))?)
    } else {
        None
    };
    let shards = found
        .into_iter()
        .map(|p| {
            let display = p.display().to_string();
            let absolute = match &cwd {
                Some(cwd) if p.is_relative() => {
                    std::path::absolute(cwd.join(&p)).map_err(|e| location_error(&display, e))?
                }
                _ => std::path::absolute(&p).map_err(|e| location_error(&display, e))?,
            };
            // A shard the manifest describes takes its size from it (checked when its footer
            // is read): no `stat` per shard at startup. Named as the catalog matches it.
            let described = manifest.as_ref().and_then(|m| m.size_of(name_of(&display)));
            let size = match described {
                Some(size) => size,
                None => std::fs::metadata(&absolute)
                    .map_err(|e| location_error(&display, e))?
                    .len(),
            };
            Ok(ShardFile {
                display,
                size,
                place: Place::Local(absolute),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((shards, manifest.zip(shards_dir).map(|(m, d)| (d, m))))
}

async fn list_url(location: &str, retry: RetryPolicy, stores: &Stores) -> Result<Listed> {
    let url = Url::parse(location).map_err(|e| location_error(location, e))?;
    let (store, path) = stores.resolve(&url)?;
    let base = location.trim_end_matches('/');
    let root = format!("{}://{}", url.scheme(), url.authority());
    let place = |store: &Arc<dyn ObjectStore>, meta: &ObjectMeta| {
        if url.scheme() == "file" {
            Place::Local(PathBuf::from(format!("/{}", meta.location)))
        } else {
            Place::Store {
                store: Arc::clone(store),
                path: meta.location.clone(),
                version: meta
                    .e_tag
                    .clone()
                    .or_else(|| Some(meta.last_modified.to_rfc3339())),
            }
        }
    };
    // A single object first; otherwise a prefix to list.
    if is_parquet(std::path::Path::new(location)) {
        let meta = retry
            .run(location, || store.head(&path))
            .await
            .map_err(|source| LoaderError::Io {
                file: location.into(),
                source,
            })?;
        return Ok((
            vec![ShardFile {
                display: base.into(),
                size: meta.size,
                place: place(&store, &meta),
            }],
            None,
        ));
    }
    let prefix = if path.as_ref().is_empty() {
        None
    } else {
        Some(&path)
    };
    let listed = if matches!(url.scheme(), "http" | "https") {
        list_by_levels(&store, prefix, location).await?
    } else {
        store
            .list(prefix)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|source| LoaderError::Io {
                file: location.into(),
                source,
            })?
    };
    let manifest_path = prefix.map_or_else(
        || Path::from(MANIFEST_FILE),
        |p| p.clone().join(MANIFEST_FILE),
    );
    let manifest = match listed.iter().find(|m| m.location == manifest_path) {
        Some(meta) => {
            let shown = format!("{root}/{}", meta.location);
            let read = retry
                .run(&shown, || async {
                    store.get(&meta.location).await?.bytes().await
                })
                .await;
            parse_manifest(&shown, read.map_err(|e| e.to_string()))
                .map(|m| (parent(&shown).to_string(), m))
        }
        None => None,
    };
    let mut metas: Vec<_> = listed
        .into_iter()
        .filter(|m| is_parquet(std::path::Path::new(m.location.as_ref())))
        .collect();
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    let shards = metas
        .into_iter()
        .map(|m| ShardFile {
            display: format!("{root}/{}", m.location),
            size: m.size,
            place: place(&store, &m),
        })
        .collect();
    Ok((shards, manifest))
}

/// Directory listings of an HTTP (WebDAV) prefix in flight at once.
const LISTINGS_IN_FLIGHT: usize = 16;
/// Levels below the listed prefix at the most: deeper is a loop (a server that follows a
/// symbolic link to a directory above lists it again and again), not a data set.
const MAX_LISTING_DEPTH: usize = 32;
/// Directories listed at the most, for the same reason (two links to `.` double them per level).
const MAX_LISTED_DIRECTORIES: usize = 10_000;

/// Everything below `prefix`, one directory level per request (`PROPFIND` with `Depth: 1`),
/// the levels of a directory's subdirectories asked for together. `ObjectStore::list` on an
/// HTTP store asks for the whole tree at once (`Depth: infinity`), which nginx, Apache
/// (`DavDepthInfinity Off`, its default) and most WebDAV servers refuse with 403; every
/// server that lists at all answers `Depth: 1`. A subdirectory is followed only when it is
/// one level below the one listed (so each is listed once, from its parent); a tree deeper than
/// [`MAX_LISTING_DEPTH`] or wider than [`MAX_LISTED_DIRECTORIES`] is refused as a loop. Like
/// `ObjectStore::list`, a level is asked for once (the client's own retries aside): a server
/// that does not answer `PROPFIND` is said so at once.
async fn list_by_levels(
    store: &Arc<dyn ObjectStore>,
    prefix: Option<&Path>,
    location: &str,
) -> Result<Vec<ObjectMeta>> {
    let io = |source| LoaderError::Io {
        file: location.into(),
        source,
    };
    let mut found = Vec::new();
    let mut listed = 0;
    // Each directory's entries, relative to it: a directory that lists the same as one above
    // it is that directory again.
    let mut signatures = std::collections::HashMap::new();
    let mut directories = vec![prefix.cloned()];
    let mut depth = 0;
    while !directories.is_empty() {
        if depth > MAX_LISTING_DEPTH || listed > MAX_LISTED_DIRECTORIES {
            let deepest = directories[0].as_ref().map_or("", Path::as_ref).to_owned();
            return Err(LoaderError::Config {
                field: "shards",
                reason: format!(
                    "listing {location} went {depth} levels and {listed} directories deep (at \
                     /{deepest}): a loop, such as a symbolic link to a directory above it \
                     that the server follows; name the shards or a directory without one"
                ),
            });
        }
        listed += directories.len();
        let levels: Vec<_> = futures_util::stream::iter(directories.drain(..))
            .map(|directory| async move {
                let level = store.list_with_delimiter(directory.as_ref()).await;
                level.map(|level| (directory, level))
            })
            .buffer_unordered(LISTINGS_IN_FLIGHT)
            .try_collect()
            .await
            .map_err(io)?;
        for (directory, level) in levels {
            let signature = listing_signature(directory.as_ref(), &level);
            if let Some(above) = ancestors(directory.as_ref())
                .find(|above| signatures.get(above) == Some(&signature))
            {
                return Err(LoaderError::Config {
                    field: "shards",
                    reason: format!(
                        "listing {location}: /{} lists the same entries as /{} above it, a loop \
                         (a symbolic link to a directory above it that the server follows); \
                         name the shards or a directory without one",
                        directory.as_ref().map_or("", Path::as_ref),
                        above.as_ref().map_or("", Path::as_ref)
                    ),
                });
            }
            signatures.insert(directory.clone(), signature);
            found.extend(level.objects);
            let parts = directory.as_ref().map_or(0, |d| d.parts().count());
            directories.extend(
                level
                    .common_prefixes
                    .into_iter()
                    .filter(|sub| {
                        sub.parts().count() == parts + 1
                            && directory.as_ref().is_none_or(|d| sub.prefix_matches(d))
                    })
                    .map(Some),
            );
        }
        depth += 1;
    }
    Ok(found)
}

/// A directory's entries relative to it (names, sizes and versions of its objects; names of its
/// subdirectories), sorted.
fn listing_signature(directory: Option<&Path>, level: &ListResult) -> Vec<(String, u64, String)> {
    let skip = directory.map_or(0, |d| d.parts().count());
    let relative = |path: &Path| {
        path.parts()
            .skip(skip)
            .map(|p| p.as_ref().to_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    let mut entries: Vec<(String, u64, String)> = level
        .objects
        .iter()
        .map(|m| {
            let version = m
                .e_tag
                .clone()
                .unwrap_or_else(|| m.last_modified.to_rfc3339());
            (relative(&m.location), m.size, version)
        })
        .chain(
            level
                .common_prefixes
                .iter()
                .map(|p| (relative(p), 0, String::from("/"))),
        )
        .collect();
    entries.sort();
    entries
}

/// The directories above `directory`, nearest first, down to the root (`None`).
fn ancestors(directory: Option<&Path>) -> impl Iterator<Item = Option<Path>> {
    let parts: Vec<String> = directory.map_or_else(Vec::new, |d| {
        d.parts().map(|p| p.as_ref().to_owned()).collect()
    });
    // The parts as they are encoded in the path: parsed, not encoded again.
    (0..parts.len()).rev().filter_map(move |n| match n {
        0 => Some(None),
        n => Path::parse(parts[..n].join("/")).ok().map(Some),
    })
}
