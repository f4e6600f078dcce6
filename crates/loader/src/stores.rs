//! Object stores by URL: the ones a caller gave ([`crate::LoaderBuilder::with_object_store`]),
//! else one built from the URL and the environment, for the backends compiled in (cargo
//! features `aws`, `gcp`, `azure`, `http`).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use url::Url;

use crate::error::{LoaderError, Result};

/// Stores given by the caller, keyed by `scheme://authority`.
#[derive(Clone, Default)]
pub(crate) struct Stores {
    given: Vec<(String, Arc<dyn ObjectStore>)>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.given.iter().map(|(k, _)| k))
            .finish()
    }
}

/// The `scheme://authority` part of a URL, which selects its store.
fn store_key(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.authority())
}

fn location_error(location: &str, reason: impl std::fmt::Display) -> LoaderError {
    LoaderError::Location {
        location: location.into(),
        reason: reason.to_string(),
    }
}

impl Stores {
    /// Uses `store` for every URL under `prefix`'s scheme and authority (`s3://bucket`).
    pub(crate) fn insert(&mut self, prefix: &str, store: Arc<dyn ObjectStore>) -> Result<()> {
        let url = Url::parse(prefix).map_err(|e| location_error(prefix, e))?;
        let key = store_key(&url);
        self.given.retain(|(k, _)| *k != key);
        self.given.push((key, store));
        Ok(())
    }

    /// The store for `url` and the object path within it.
    pub(crate) fn resolve(&self, url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
        let key = store_key(url);
        match self.given.iter().find(|(k, _)| *k == key) {
            Some((_, store)) => Ok((Arc::clone(store), object_path(url)?)),
            None => store_for_url(url),
        }
    }
}

fn object_path(url: &Url) -> Result<Path> {
    Path::from_url_path(url.path()).map_err(|e| location_error(url.as_str(), e))
}

/// The store for a URL, built from the environment as each backend's `from_env` reads it (e.g.
/// `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_ALLOW_HTTP`), and the object path within it. A
/// scheme whose backend is not compiled in is an error that names the cargo feature.
pub fn store_for_url(url: &Url) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let path = object_path(url)?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "file" => Arc::new(LocalFileSystem::new()),
        scheme => remote_store(url, scheme)?,
    };
    Ok((store, path))
}

/// A backend compiled out: which feature would bring it.
#[allow(dead_code)] // unused when every backend is compiled in
fn not_compiled(url: &Url, feature: &str) -> LoaderError {
    location_error(
        url.as_str(),
        format!(
            "this build has no `{feature}` backend (cargo feature `{feature}` of seqwarm-loader)"
        ),
    )
}

fn remote_store(url: &Url, scheme: &str) -> Result<Arc<dyn ObjectStore>> {
    #[allow(unused_variables)]
    let fail = |e: object_store::Error| location_error(url.as_str(), e);
    match scheme {
        #[cfg(feature = "aws")]
        "s3" => Ok(Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        )),
        #[cfg(not(feature = "aws"))]
        "s3" => Err(not_compiled(url, "aws")),
        #[cfg(feature = "gcp")]
        "gs" => Ok(Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        )),
        #[cfg(not(feature = "gcp"))]
        "gs" => Err(not_compiled(url, "gcp")),
        #[cfg(feature = "azure")]
        "az" | "abfs" | "abfss" | "azure" => Ok(Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .build()
                .map_err(fail)?,
        )),
        #[cfg(not(feature = "azure"))]
        "az" | "abfs" | "abfss" | "azure" => Err(not_compiled(url, "azure")),
        #[cfg(feature = "http")]
        "http" | "https" => Ok(Arc::new(
            object_store::http::HttpBuilder::new()
                .with_url(store_key(url))
                // An `http://` URL asks for plain HTTP; the client refuses it unless told.
                .with_client_options(
                    object_store::ClientOptions::new().with_allow_http(url.scheme() == "http"),
                )
                .build()
                .map_err(fail)?,
        )),
        #[cfg(not(feature = "http"))]
        "http" | "https" => Err(not_compiled(url, "http")),
        other => Err(location_error(
            url.as_str(),
            format!("unsupported scheme `{other}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use url::Url;

    use super::Stores;

    #[test]
    fn a_given_store_serves_its_scheme_and_authority() {
        let mut stores = Stores::default();
        let memory = Arc::new(InMemory::new());
        stores.insert("s3://bucket", memory).unwrap();
        let (_, path) = stores
            .resolve(&Url::parse("s3://bucket/shards/a.parquet").unwrap())
            .unwrap();
        assert_eq!(path.as_ref(), "shards/a.parquet");
        let other = stores.resolve(&Url::parse("ftp://elsewhere/x").unwrap());
        assert!(
            other
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme `ftp`")
        );
    }
}
