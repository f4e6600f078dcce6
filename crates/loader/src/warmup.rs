//! [`WarmupStream`]: the warmup stage as an adapter over any stream of documents.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use pin_project_lite::pin_project;

use crate::config::WarmupConfig;
use crate::core::{ScheduledBatch, Stats, WarmupCore};
use crate::documents::Documents;
use crate::error::{LoaderError, Result};

pin_project! {
    /// Wraps a stream of [`Documents`] (or anything convertible into them) and yields batches
    /// already cut, reshaped, repacked or packed to the scheduled length.
    ///
    /// Created by [`WarmupStreamExt::warmup`]. The schedule is evaluated once per emitted
    /// batch, from the progress the previous batches made.
    #[must_use = "streams do nothing unless polled"]
    pub struct WarmupStream<S> {
        #[pin]
        inner: S,
        core: WarmupCore,
        inner_done: bool,
        failed: bool,
    }
}

impl<S> WarmupStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, config: WarmupConfig) -> Result<Self> {
        Ok(Self {
            inner,
            core: WarmupCore::new(config)?,
            inner_done: false,
            failed: false,
        })
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped stream, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream, pinned.
    pub fn get_pin_mut(self: Pin<&mut Self>) -> Pin<&mut S> {
        self.project().inner
    }

    /// Unwraps the inner stream; buffered tokens are discarded.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The sans-IO core (progress, counters, checkpoint state).
    pub fn core(&self) -> &WarmupCore {
        &self.core
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }
}

impl<S, D, E> Stream for WarmupStream<S>
where
    S: Stream<Item = std::result::Result<D, E>>,
    D: Into<Documents>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<ScheduledBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.failed {
            return Poll::Ready(None);
        }
        loop {
            let step = if *this.inner_done {
                this.core.finish()
            } else {
                this.core.next_batch()
            };
            match step {
                Ok(Some(batch)) => return Poll::Ready(Some(Ok(batch))),
                Ok(None) if *this.inner_done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    *this.failed = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(documents))) => {
                    if let Err(e) = this.core.push(documents.into()) {
                        *this.failed = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Some(Err(LoaderError::Input(e.into()))));
                }
                Poll::Ready(None) => *this.inner_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Adds [`WarmupStreamExt::warmup`] to every stream of documents.
pub trait WarmupStreamExt: Stream + Sized {
    /// Wraps this stream in the warmup stage.
    ///
    /// ```
    /// use futures_util::{StreamExt, stream};
    /// use seqwarm_loader::{BatchSize, Documents, Mode, WarmupConfig, WarmupStreamExt};
    /// use seqwarm_schedule::ScheduleConfig;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let schedule = ScheduleConfig::linear(8, 32, 0.5, 8).build()?;
    /// let docs = (0..100).map(|i| Ok::<_, std::io::Error>(Documents::single(vec![i as i32; 20])));
    /// let config = WarmupConfig::new(schedule).with_mode(Mode::Repack).with_batch_size(BatchSize::Rows(4));
    /// let batches: Vec<_> = stream::iter(docs).warmup(config)?.collect().await;
    /// let first = batches[0].as_ref().unwrap();
    /// assert_eq!((first.seq_len, first.batch.rows()), (8, 4));
    /// # Ok::<(), seqwarm_loader::LoaderError>(())
    /// # }).unwrap();
    /// ```
    fn warmup(self, config: WarmupConfig) -> Result<WarmupStream<Self>> {
        WarmupStream::new(self, config)
    }
}

impl<S: Stream> WarmupStreamExt for S {}
