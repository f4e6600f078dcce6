//! [`RetryPolicy`]: transient object-store errors retried with exponential backoff.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Retries of transient object-store errors, with exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            initial_backoff_ms: 50,
            max_backoff_ms: 2_000,
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it succeeds, fails permanently, or retries run out.
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, mut attempt: F) -> object_store::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut backoff = self.initial_backoff_ms;
        let mut tries = 0;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if tries < self.max_retries && is_transient(&e) => {
                    tries += 1;
                    tracing::warn!(
                        retry = tries,
                        backoff_ms = backoff,
                        "{what}: transient error: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(self.max_backoff_ms);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Errors worth another attempt: anything but a definite answer from the store.
pub(crate) fn is_transient(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::NotModified { .. }
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::RetryPolicy;

    fn generic(message: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: message.to_string().into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_backoff() {
        let attempts = AtomicU32::new(0);
        let policy = RetryPolicy::default();
        let started = tokio::time::Instant::now();
        let result = policy
            .run("test", || async {
                if attempts.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(generic("connection reset"))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(result.unwrap(), 7);
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        // 50 ms, then 100 ms of (paused, virtual) backoff.
        assert_eq!(started.elapsed().as_millis(), 150);
    }

    #[tokio::test(start_paused = true)]
    async fn definite_errors_and_exhausted_retries_fail() {
        let attempts = AtomicU32::new(0);
        let result: object_store::Result<()> = RetryPolicy::default()
            .run("test", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(object_store::Error::NotFound {
                    path: "x".into(),
                    source: "gone".into(),
                })
            })
            .await;
        assert!(matches!(result, Err(object_store::Error::NotFound { .. })));
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        let attempts = AtomicU32::new(0);
        let policy = RetryPolicy {
            max_retries: 3,
            ..RetryPolicy::default()
        };
        let result: object_store::Result<()> = policy
            .run("test", || async {
                attempts.fetch_add(1, Ordering::SeqCst);
                Err(generic("timeout"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
    }
}
