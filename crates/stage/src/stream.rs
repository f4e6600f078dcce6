//! [`WarmupStream`] (feature `futures`): the warmup stage as an adapter over any stream of
//! documents, as futures-util's adapters are: a pipeline that brings its own documents needs
//! this crate and `futures-core`, not the loader's Parquet and object-store stack.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_core::stream::FusedStream;
use pin_project_lite::pin_project;
use seqwarm_batcher::RowSink;

use crate::config::Warmup;
use crate::core::{ScheduledBatch, WarmupCore};
use crate::documents::Documents;
use crate::error::{Result, StageError};
use crate::sink::ModeSink;
use crate::stats::Stats;

pin_project! {
    /// Wraps a stream of [`Documents`] (or anything convertible into them) and yields batches
    /// already cut, reshaped, repacked or packed to the scheduled length.
    ///
    /// Created by [`WarmupStreamExt::warmup`]. The schedule is evaluated once per emitted
    /// batch, from the progress the previous batches made.
    #[must_use = "streams do nothing unless polled"]
    pub struct WarmupStream<S, K: RowSink = ModeSink> {
        #[pin]
        inner: S,
        core: WarmupCore<K>,
        inner_done: bool,
        terminated: bool,
    }
}

impl<S> WarmupStream<S> {
    /// Wraps `inner`, with the sink of `warmup`'s mode.
    pub fn new(inner: S, warmup: Warmup) -> Self {
        Self::with_core(inner, WarmupCore::new(warmup))
    }
}

impl<S, K: RowSink> WarmupStream<S, K> {
    /// Wraps `inner` around a core (a custom sink, or one restored from a checkpoint).
    pub fn with_core(inner: S, core: WarmupCore<K>) -> Self {
        Self {
            inner,
            core,
            inner_done: false,
            terminated: false,
        }
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

    /// The sans-IO core (progress, counters, checkpoint state, and where to read again).
    pub fn core(&self) -> &WarmupCore<K> {
        &self.core
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }
}

impl<S, K, D, E> Stream for WarmupStream<S, K>
where
    S: Stream<Item = std::result::Result<D, E>>,
    K: RowSink,
    D: Into<Documents>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Item = Result<ScheduledBatch>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut this = self.project();
        if *this.terminated {
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
                Ok(None) if *this.inner_done => {
                    *this.terminated = true;
                    return Poll::Ready(None);
                }
                Ok(None) => {}
                Err(e) => {
                    *this.terminated = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match this.inner.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(documents))) => {
                    if let Err(e) = this.core.push(documents.into()) {
                        *this.terminated = true;
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    *this.terminated = true;
                    return Poll::Ready(Some(Err(StageError::Input(e.into().into()))));
                }
                Poll::Ready(None) => *this.inner_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Nothing is known about the input's length, so only the end is certain.
    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.terminated {
            (0, Some(0))
        } else {
            (0, None)
        }
    }
}

impl<S, K: RowSink> FusedStream for WarmupStream<S, K>
where
    Self: Stream,
{
    fn is_terminated(&self) -> bool {
        self.terminated
    }
}

/// Adds [`WarmupStreamExt::warmup`] to every stream of documents.
pub trait WarmupStreamExt: Stream + Sized {
    /// Wraps this stream in the warmup stage. It cannot fail: the settings were checked when
    /// the [`Warmup`] was built.
    ///
    /// ```
    /// use futures_util::{StreamExt, stream};
    /// use seqwarm_stage::{BatchSize, Documents, Mode, WarmupConfig, WarmupStreamExt};
    /// use seqwarm_schedule::ScheduleConfig;
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let warmup = WarmupConfig::new(ScheduleConfig::linear(8, 32, 0.5, 8))
    ///     .with_mode(Mode::Repack)
    ///     .with_batch_size(BatchSize::Rows(4))
    ///     .build()?;
    /// let docs = (0..100).map(|i| Ok::<_, std::io::Error>(Documents::single(vec![i as i32; 20])));
    /// let batches: Vec<_> = stream::iter(docs).warmup(warmup).collect().await;
    /// let first = batches[0].as_ref().unwrap();
    /// assert_eq!((first.seq_len, first.batch.rows()), (8, 4));
    /// # Ok::<(), seqwarm_stage::StageError>(())
    /// # }).unwrap();
    /// ```
    fn warmup(self, warmup: Warmup) -> WarmupStream<Self> {
        WarmupStream::new(self, warmup)
    }
}

impl<S: Stream> WarmupStreamExt for S {}
