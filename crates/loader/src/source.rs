//! Finding shards: local files, directories and globs, or object-store URLs.

use std::sync::Arc;

use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use url::Url;

use crate::error::{LoaderError, Result};
use crate::reader::RetryPolicy;

/// One shard file: where it is and how large.
#[derive(Clone)]
pub struct ShardFile {
    /// The location as the user would write it (a path or URL), used in messages and state.
    pub display: String,
    /// The store holding it.
    pub store: Arc<dyn ObjectStore>,
    /// Its path in the store.
    pub path: Path,
    /// Its size in bytes.
    pub size: u64,
    /// The file's path when it is on the local file system (read directly, not through the
    /// object store).
    pub local_path: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for ShardFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardFile")
            .field("display", &self.display)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

fn is_url(location: &str) -> bool {
    [
        "s3://", "gs://", "az://", "abfs://", "abfss://", "azure://", "http://", "https://",
        "file://",
    ]
    .iter()
    .any(|scheme| location.starts_with(scheme))
}

fn location_error(location: &str, reason: impl std::fmt::Display) -> LoaderError {
    LoaderError::Location {
        location: location.into(),
        reason: reason.to_string(),
    }
}

/// The store for a URL; credentials and endpoints come from the environment as for each
/// backend's `from_env` (e.g. `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`).
pub fn store_for_url(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let fail = |e: object_store::Error| location_error(url.as_str(), e);
    let path = Path::from_url_path(url.path()).map_err(|e| location_error(url.as_str(), e))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        ),
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        ),
        "az" | "abfs" | "abfss" | "azure" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        ),
        "http" | "https" => {
            let base = format!("{}://{}", url.scheme(), url.authority());
            Arc::new(
                object_store::http::HttpBuilder::new()
                    .with_url(base)
                    .build()
                    .map_err(fail)?,
            )
        }
        "file" => Arc::new(LocalFileSystem::new()),
        other => {
            return Err(location_error(
                url.as_str(),
                format!("unsupported scheme `{other}`"),
            ));
        }
    };
    Ok((store, path))
}

fn is_parquet(path: &str) -> bool {
    std::path::Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

/// Lists the Parquet shards at each location, in a stable order (sorted within a location,
/// locations in the order given). A location is a file, a directory (its `*.parquet`
/// files), a glob (`data/*.parquet`), or a URL of a file or a prefix.
pub async fn list_shards(locations: &[String], retry: RetryPolicy) -> Result<Vec<ShardFile>> {
    let mut out = Vec::new();
    for location in locations {
        let found = if is_url(location) {
            list_url(location, retry).await?
        } else {
            list_local(location)?
        };
        if found.is_empty() {
            return Err(LoaderError::NoShards {
                location: location.clone(),
            });
        }
        out.extend(found);
    }
    Ok(out)
}

fn list_local(location: &str) -> Result<Vec<ShardFile>> {
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new());
    let mut paths: Vec<std::path::PathBuf> = if location.contains(['*', '?', '[']) {
        glob::glob(location)
            .map_err(|e| location_error(location, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| location_error(location, e))?
    } else {
        let path = std::path::Path::new(location);
        let meta = std::fs::metadata(path).map_err(|e| location_error(location, e))?;
        if meta.is_dir() {
            std::fs::read_dir(path)
                .map_err(|e| location_error(location, e))?
                .map(|entry| entry.map(|e| e.path()))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| location_error(location, e))?
                .into_iter()
                .filter(|p| p.is_file() && is_parquet(&p.to_string_lossy()))
                .collect()
        } else {
            vec![path.to_path_buf()]
        }
    };
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let display = p.display().to_string();
            let absolute = std::path::absolute(&p).map_err(|e| location_error(&display, e))?;
            let size = std::fs::metadata(&absolute)
                .map_err(|e| location_error(&display, e))?
                .len();
            let path =
                Path::from_absolute_path(&absolute).map_err(|e| location_error(&display, e))?;
            Ok(ShardFile {
                display,
                store: Arc::clone(&store),
                path,
                size,
                local_path: Some(absolute),
            })
        })
        .collect()
}

async fn list_url(location: &str, retry: RetryPolicy) -> Result<Vec<ShardFile>> {
    let url = Url::parse(location).map_err(|e| location_error(location, e))?;
    let (store, path) = store_for_url(&url)?;
    let base = location.trim_end_matches('/');
    let root = format!("{}://{}", url.scheme(), url.authority());
    // A single object first; otherwise a prefix to list.
    if is_parquet(location) {
        let meta = retry
            .run(location, || store.head(&path))
            .await
            .map_err(|source| LoaderError::Io {
                file: location.into(),
                source,
            })?;
        return Ok(vec![ShardFile {
            display: base.into(),
            store,
            path,
            size: meta.size,
            local_path: (url.scheme() == "file").then(|| std::path::PathBuf::from(url.path())),
        }]);
    }
    let prefix = if path.as_ref().is_empty() {
        None
    } else {
        Some(&path)
    };
    let mut metas: Vec<_> = store
        .list(prefix)
        .try_collect::<Vec<_>>()
        .await
        .map_err(|source| LoaderError::Io {
            file: location.into(),
            source,
        })?
        .into_iter()
        .filter(|m| is_parquet(m.location.as_ref()))
        .collect();
    metas.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(metas
        .into_iter()
        .map(|m| ShardFile {
            display: format!("{root}/{}", m.location),
            store: Arc::clone(&store),
            local_path: (url.scheme() == "file")
                .then(|| std::path::PathBuf::from(format!("/{}", m.location))),
            path: m.location,
            size: m.size,
        })
        .collect())
}
