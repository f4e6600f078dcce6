//! The tokio runtimes the loader runs on: the caller's, found where it is needed, and the small
//! I/O runtime it starts for object-store requests when the caller gave none.

use tokio::runtime::Handle;

use crate::error::{LoaderError, Result};

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

/// The tokio runtime `caller` is polled on: an error, not a panic, when polled by another
/// executor.
pub(crate) fn current_runtime(caller: &str) -> Result<Handle> {
    Handle::try_current().map_err(|e| LoaderError::Config {
        field: "runtime",
        reason: format!("{caller} needs a tokio runtime: {e}"),
    })
}
