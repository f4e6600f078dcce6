//! [`RawLoader`]: a Rust [`Loader`] on its own tokio runtime, driven from Python one batch at
//! a time. Row groups are read and decoded ahead on the runtime's threads; each `next` cuts
//! one batch with the GIL released, waking every [`WAKE`] to let Python handle Ctrl-C.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use seqwarm_batcher::Tensor;
use seqwarm_loader::{
    Loader, LoaderBuilder, LoaderConfig, LoaderError, LoaderState, ScheduledBatch, Warmup,
};
use seqwarm_stage::{KeptSteps, StageError};
use tokio::runtime::Runtime;

use crate::array::TokenArray;
use crate::errors::{config_error, loader_error, state_error};

/// How long a blocked `next` waits before it looks for a pending signal (Ctrl-C).
const WAKE: Duration = Duration::from_millis(50);
/// How long `close` waits for the runtime's threads to finish their current work.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// A loader and the runtime it runs on.
struct Running {
    runtime: Runtime,
    loader: Loader,
}

/// The Rust loader behind `seqwarm.Loader` (one per process that iterates).
#[pyclass(frozen, module = "seqwarm._seqwarm")]
pub struct RawLoader {
    running: Mutex<Option<Running>>,
    /// The stage's settings when `cu_seqlens` is padded to its fixed size (which depends on
    /// the step's shape); `None` when it is given exact.
    pad_cu_seqlens: Option<Warmup>,
}

/// What one wait for a batch gave.
enum Polled {
    Item(Option<seqwarm_loader::Result<ScheduledBatch>>),
    Waiting,
    Closed,
}

/// Reads settings given as JSON text (Python's keyword arguments, `json.dumps`-ed).
pub(crate) fn settings(py: Python<'_>, json: &str) -> PyResult<LoaderConfig> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| config_error(py, "settings", format!("settings are not JSON: {e}")))?;
    LoaderConfig::from_value(value).map_err(|e| loader_error(py, &e))
}

/// Locks a loader. A panic cannot happen while the lock is held (no Rust panic crosses into
/// Python), and a loader is sound between batches: a poisoned lock is still usable.
pub(crate) fn lock<T>(loader: &Mutex<T>) -> MutexGuard<'_, T> {
    loader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The error of a call on a closed loader.
pub(crate) fn closed_error(py: Python<'_>) -> PyErr {
    config_error(py, "loader", "the loader is closed".into())
}

impl RawLoader {
    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        lock(&self.running)
    }

    fn closed_error(py: Python<'_>) -> PyErr {
        closed_error(py)
    }
}

#[pymethods]
impl RawLoader {
    /// Lists the shards, reads their footers, checks the settings and the checkpoint, and
    /// starts a runtime of `threads` worker threads (all cores when `None`; none when 0: the
    /// calling thread does all the work inside `next`).
    #[new]
    #[pyo3(signature = (shards, settings_json, state_json = None, threads = None, pad_cu_seqlens = false))]
    fn new(
        py: Python<'_>,
        shards: Vec<String>,
        settings_json: &str,
        state_json: Option<&str>,
        threads: Option<usize>,
        pad_cu_seqlens: bool,
    ) -> PyResult<Self> {
        let config = settings(py, settings_json)?;
        let mut builder = LoaderBuilder::from_config(shards, config);
        if let Some(text) = state_json {
            let state = LoaderState::from_json(text).map_err(|e| loader_error(py, &e))?;
            builder = builder.with_state(state);
        }
        let mut runtime = match threads {
            // Everything on the calling thread, inside `next` (with the GIL released): no
            // reading ahead while Python runs, but no thread switches either.
            Some(0) => tokio::runtime::Builder::new_current_thread(),
            Some(threads) => {
                let mut runtime = tokio::runtime::Builder::new_multi_thread();
                runtime.worker_threads(threads);
                runtime
            }
            None => tokio::runtime::Builder::new_multi_thread(),
        };
        let runtime = runtime
            .thread_name("seqwarm")
            .enable_all()
            .build()
            .map_err(|e| config_error(py, "threads", format!("cannot start threads: {e}")))?;
        // Built as a task, so that waiting for it (footers from a slow store) wakes for Ctrl-C.
        let mut building = runtime.spawn(builder.build());
        let built = loop {
            let polled = py.detach(|| {
                runtime.block_on(async { tokio::time::timeout(WAKE, &mut building).await })
            });
            match polled {
                Ok(done) => break done,
                Err(_waiting) => {
                    if let Err(interrupt) = py.check_signals() {
                        building.abort();
                        runtime.shutdown_background();
                        return Err(interrupt);
                    }
                }
            }
        };
        match built {
            Ok(Ok(loader)) => Ok(Self {
                pad_cu_seqlens: pad_cu_seqlens.then(|| loader.warmup().clone()),
                running: Mutex::new(Some(Running { runtime, loader })),
            }),
            Ok(Err(e)) => {
                runtime.shutdown_background();
                Err(loader_error(py, &e))
            }
            Err(stopped) => {
                runtime.shutdown_background();
                let e = seqwarm_loader::LoaderError::ReaderStopped {
                    reason: format!("building the loader: {stopped}"),
                };
                Err(loader_error(py, &e))
            }
        }
    }

    /// The next batch whose step is `offset` modulo `stride` (every batch by default), as
    /// `(fields, step, epoch, seq_len, tokens)`, or `None` at the end. The steps skipped are
    /// scheduled and counted (the stream's state depends on them) but never reach Python; in
    /// the row modes their tokens are dropped by count, not copied
    /// (`Loader::set_kept_steps`).
    #[pyo3(signature = (stride = 1, offset = 0))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        stride: u64,
        offset: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        check_stride(py, stride, offset)?;
        loop {
            let polled = py.detach(|| {
                let mut guard = self.lock();
                let Some(Running { runtime, loader }) = guard.as_mut() else {
                    return Polled::Closed;
                };
                loader.set_kept_steps(KeptSteps::new(stride, offset));
                let item =
                    runtime.block_on(async { tokio::time::timeout(WAKE, loader.next()).await });
                // Composer's cut copies (`v[:, :seq_len].contiguous()`), so a truncated batch
                // is dense there; the stage's is a view with the full rows' stride. Made dense
                // here, without the GIL, for the batches handed out.
                item.map_or(Polled::Waiting, |item| {
                    Polled::Item(item.map(|batch| {
                        batch.map(|mut b| {
                            if b.step % stride == offset {
                                b.batch = b.batch.contiguous();
                            }
                            b
                        })
                    }))
                })
            });
            match polled {
                // Raises KeyboardInterrupt (or whatever a handler raises) on Ctrl-C. The
                // dropped wait loses nothing: the stream keeps its place between polls.
                Polled::Waiting => py.check_signals()?,
                Polled::Closed => return Err(Self::closed_error(py)),
                Polled::Item(None) => return Ok(None),
                Polled::Item(Some(Err(e))) => return Err(loader_error(py, &e)),
                Polled::Item(Some(Ok(batch))) if batch.step % stride == offset => {
                    return batch_tuple(py, &batch, self.pad_cu_seqlens.as_ref()).map(Some);
                }
                Polled::Item(Some(Ok(_))) => {}
            }
        }
    }

    /// The checkpoint after the last batch returned, as JSON text.
    fn state_json(&self, py: Python<'_>) -> PyResult<String> {
        let state = py.detach(|| self.lock().as_ref().map(|r| r.loader.state()));
        let state = state.ok_or_else(|| Self::closed_error(py))?;
        state
            .to_json()
            .map_err(|e| state_error(py, format!("cannot write the state: {e}")))
    }

    /// The step of the next batch (batches emitted so far, a resumed run's included).
    fn next_step(&self, py: Python<'_>) -> PyResult<u64> {
        let step = py.detach(|| self.lock().as_ref().map(|r| r.loader.state().step()));
        step.ok_or_else(|| Self::closed_error(py))
    }

    /// Where every token went so far, and what the shard cache did (its counters prefixed
    /// `cache_`, when there is one), as JSON text.
    fn stats_json(&self, py: Python<'_>) -> PyResult<String> {
        let stats = py.detach(|| {
            self.lock()
                .as_ref()
                .map(|r| (r.loader.stats(), r.loader.cache_stats()))
        });
        let (stats, cache) = stats.ok_or_else(|| Self::closed_error(py))?;
        let json = |e: serde_json::Error| state_error(py, e.to_string());
        let mut all = serde_json::to_value(stats).map_err(json)?;
        if let (Some(cache), serde_json::Value::Object(all)) = (cache, &mut all)
            && let serde_json::Value::Object(counts) = serde_json::to_value(cache).map_err(json)?
        {
            all.extend(counts.into_iter().map(|(k, v)| (format!("cache_{k}"), v)));
        }
        serde_json::to_string(&all).map_err(json)
    }

    /// What was drawn from each source of a mixture, as JSON text (`None` without sources).
    fn source_stats_json(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let stats = py.detach(|| self.lock().as_ref().map(|r| r.loader.source_stats()));
        let stats = stats.ok_or_else(|| Self::closed_error(py))?;
        stats
            .map(|s| serde_json::to_string(&s).map_err(|e| state_error(py, e.to_string())))
            .transpose()
    }

    /// Batches each rank emits per epoch, when ranks must stay in step.
    fn steps_per_epoch(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let steps = py.detach(|| self.lock().as_ref().map(|r| r.loader.steps_per_epoch()));
        steps.ok_or_else(|| Self::closed_error(py))
    }

    /// Why each skipped shard or row group was skipped.
    fn skipped(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let skipped = py.detach(|| self.lock().as_ref().map(|r| r.loader.skipped()));
        skipped.ok_or_else(|| Self::closed_error(py))
    }

    /// Stops the loader and joins its threads (waiting at most ten seconds for work in
    /// flight). Closing twice is a no-op.
    fn close(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(Running { runtime, loader }) = self.lock().take() {
                drop(loader);
                runtime.shutdown_timeout(CLOSE_WAIT);
            }
        });
    }

    /// Forgets the loader without touching its threads: in a process forked from the one that
    /// started them, they do not exist, and joining them would wait forever.
    fn abandon(&self) {
        if let Some(running) = self.lock().take() {
            std::mem::forget(running);
        }
    }

    /// Whether `close` (or `abandon`) was called.
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }
}

impl Drop for RawLoader {
    fn drop(&mut self) {
        // Garbage collection stops the threads too, without blocking the collector.
        if let Some(Running { runtime, loader }) = self.lock().take() {
            drop(loader);
            runtime.shutdown_background();
        }
    }
}

/// A batch as `(fields, step, epoch, seq_len, tokens, max_seqlen, cu_seqlens_count)`, the last
/// two `None` unless the batch is packed; fields share the Rust buffers. `cu_seqlens` is padded
/// to the step shape's fixed size when `pad_cu_seqlens` holds the stage's settings.
fn batch_tuple<'py>(
    py: Python<'py>,
    b: &ScheduledBatch,
    pad_cu_seqlens: Option<&Warmup>,
) -> PyResult<Bound<'py, PyTuple>> {
    let fields = PyDict::new(py);
    for (name, tensor) in b.batch.iter() {
        fields.set_item(name, TokenArray::new(tensor.clone()))?;
    }
    let fixed = pad_cu_seqlens.map(|warmup| warmup.fixed_cu_seqlens_len(b.seq_len));
    let varlen = b
        .batch
        .varlen(fixed)
        .map_err(|e| loader_error(py, &LoaderError::from(StageError::from(e))))?;
    let (mut max_seqlen, mut count) = (py.None(), py.None());
    if let Some(varlen) = varlen {
        // int32, as flash-attention's variable-length kernels take them, unless a batch
        // holds 2^31 tokens or more.
        let offsets = varlen.cu_seqlens;
        let tensor = match offsets.iter().map(|&o| i32::try_from(o)).collect() {
            Ok(small) => Tensor::vector::<i32>(small),
            Err(_) => Tensor::vector(offsets),
        };
        fields.set_item("cu_seqlens", TokenArray::new(tensor))?;
        max_seqlen = varlen.max_seqlen.into_pyobject(py)?.into_any().unbind();
        count = varlen.count.into_pyobject(py)?.into_any().unbind();
    }
    PyTuple::new(
        py,
        [
            fields.into_any(),
            b.step.into_pyobject(py)?.into_any(),
            b.epoch.into_pyobject(py)?.into_any(),
            b.seq_len.into_pyobject(py)?.into_any(),
            b.tokens.into_pyobject(py)?.into_any(),
            max_seqlen.into_bound(py),
            count.into_bound(py),
            // The stage's schedules keep the batch: the learning rate's factor is always 1.
            1.0f64.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Refuses a DataLoader worker's `(stride, offset)` that names no step: `next` takes the
/// steps `offset`, `offset + stride`, ...
pub(crate) fn check_stride(py: Python<'_>, stride: u64, offset: u64) -> PyResult<()> {
    if stride == 0 || offset >= stride {
        return Err(config_error(
            py,
            "stride",
            format!("offset {offset} of stride {stride}: need 0 <= offset < stride"),
        ));
    }
    Ok(())
}

/// Every loader setting with the library's default, as JSON text: the one home of the
/// defaults that the Python keyword arguments document.
#[pyfunction]
pub fn default_settings(py: Python<'_>) -> PyResult<String> {
    serde_json::to_string(&LoaderConfig::default())
        .map_err(|e| config_error(py, "settings", e.to_string()))
}

/// Worker threads of a Python loader's runtime at the most (as the library's I/O threads).
const MAX_THREADS: i64 = 1024;

/// Checks settings (JSON text) as the loader would, without reading any shard, and the
/// package's own two: the runtime's `threads` and `pad_cu_seqlens` (which only the pack modes'
/// `cu_seqlens` have).
#[pyfunction]
#[pyo3(signature = (settings_json, threads = None, pad_cu_seqlens = false))]
pub fn check_settings(
    py: Python<'_>,
    settings_json: &str,
    threads: Option<i64>,
    pad_cu_seqlens: bool,
) -> PyResult<()> {
    if let Some(count) = threads
        && !(0..=MAX_THREADS).contains(&count)
    {
        return Err(config_error(
            py,
            "threads",
            format!("threads: expected an integer in 0..={MAX_THREADS} or None, not {count}"),
        ));
    }
    let config = settings(py, settings_json)?;
    config.validate().map_err(|e| loader_error(py, &e))?;
    if pad_cu_seqlens && !config.warmup().mode().is_packing() {
        return Err(config_error(
            py,
            "pad_cu_seqlens",
            format!(
                "pad_cu_seqlens: only the pack modes (pack-greedy, pack-bestfit) make \
                 cu_seqlens; the mode is {}",
                config.warmup().mode()
            ),
        ));
    }
    if pad_cu_seqlens && !config.warmup().pack_fields().segment_ids {
        return Err(config_error(
            py,
            "pad_cu_seqlens",
            "pad_cu_seqlens: cu_seqlens is made from segment_ids, which pack_fields leaves out \
             (add \"segment_ids\")"
                .to_string(),
        ));
    }
    Ok(())
}

/// Combines the loader states (JSON text) that every rank took at one step into one that any
/// number of ranks resumes from (`LoaderState::merge`), as JSON text.
#[pyfunction]
#[allow(clippy::needless_pass_by_value)] // pyo3 extracts a Python list as an owned Vec
pub fn merge_states(py: Python<'_>, states_json: Vec<String>) -> PyResult<String> {
    let states = states_json
        .iter()
        .map(|text| LoaderState::from_json(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| loader_error(py, &e))?;
    let merged = LoaderState::merge(&states).map_err(|e| loader_error(py, &e))?;
    merged.to_json().map_err(|e| loader_error(py, &e))
}
