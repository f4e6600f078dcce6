//! [`RawPlanLoader`]: the plans over raw token files behind `seqwarm.Loader`
//! (`mode="decompose"`: dataset decomposition; `mode="chunk"`: fixed-length rows under a
//! batch-size schedule), one batch per `next`, on the calling thread with the GIL released.
//! They read memory-mapped files, so there is nothing to read ahead on other threads.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use seqwarm_batcher::Tensor;
use seqwarm_loader::{
    ChunkSettings, ChunkedLoader, ChunkedState, DecomposeSettings, DecomposedLoader,
    DecomposedState, LoaderError,
};

use crate::array::TokenArray;
use crate::errors::{config_error, loader_error, state_error};

/// The loader behind `seqwarm.Loader(mode="decompose")` and `mode="chunk"`.
#[pyclass(frozen, module = "seqwarm._seqwarm")]
pub struct RawPlanLoader {
    loader: Mutex<Option<PlanLoader>>,
}

/// The plans: each an iterator of batches with a checkpoint and a way to pass a step over.
enum PlanLoader {
    Decomposed(DecomposedLoader),
    Chunked(ChunkedLoader),
}

/// One batch of either plan, as the tuple needs it.
struct PlanBatch {
    step: u64,
    epoch: u64,
    seq_len: u64,
    rows: usize,
    input_ids: Vec<i64>,
    lr_multiplier: f64,
}

impl PlanLoader {
    fn open(
        files: &[String],
        mode: &str,
        settings_json: &str,
        epochs: u64,
        state_json: Option<&str>,
    ) -> Result<Self, PlanError> {
        let state_error =
            |e: serde_json::Error| PlanError::State(format!("not a {mode} state: {e}"));
        match mode {
            "decompose" => {
                let settings: DecomposeSettings = parse_settings(settings_json)?;
                let state: Option<DecomposedState> = state_json
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(state_error)?;
                let loader = DecomposedLoader::open(files, settings, epochs)?;
                Ok(Self::Decomposed(match &state {
                    Some(state) => loader.with_state(state)?,
                    None => loader,
                }))
            }
            "chunk" => {
                let settings: ChunkSettings = parse_settings(settings_json)?;
                let state: Option<ChunkedState> = state_json
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(state_error)?;
                let loader = ChunkedLoader::open(files, settings, epochs)?;
                Ok(Self::Chunked(match &state {
                    Some(state) => loader.with_state(state)?,
                    None => loader,
                }))
            }
            other => Err(PlanError::Settings(format!(
                "mode {other:?} is not a plan over raw token files (decompose, chunk)"
            ))),
        }
    }

    fn next_step(&self) -> u64 {
        match self {
            Self::Decomposed(l) => l.next_step(),
            Self::Chunked(l) => l.next_step(),
        }
    }

    fn skip(&mut self) -> Result<bool, LoaderError> {
        match self {
            Self::Decomposed(l) => Ok(l.skip()),
            Self::Chunked(l) => l.skip(),
        }
    }

    fn next_batch(&mut self) -> Option<Result<PlanBatch, LoaderError>> {
        Some(match self {
            Self::Decomposed(l) => l.next()?.map(|b| PlanBatch {
                step: b.step,
                epoch: b.epoch,
                seq_len: b.seq_len,
                rows: b.pieces.len(),
                input_ids: b.input_ids,
                lr_multiplier: 1.0,
            }),
            Self::Chunked(l) => l.next()?.map(|b| PlanBatch {
                step: b.step,
                epoch: b.epoch,
                seq_len: b.seq_len,
                rows: b.instances.len(),
                input_ids: b.input_ids,
                lr_multiplier: b.lr_multiplier,
            }),
        })
    }

    fn state_json(&self) -> serde_json::Result<String> {
        match self {
            Self::Decomposed(l) => serde_json::to_string(&l.state()),
            Self::Chunked(l) => serde_json::to_string(&l.state()),
        }
    }
}

/// Why a plan did not open.
enum PlanError {
    Settings(String),
    State(String),
    Loader(LoaderError),
}

impl From<LoaderError> for PlanError {
    fn from(e: LoaderError) -> Self {
        Self::Loader(e)
    }
}

fn parse_settings<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, PlanError> {
    serde_json::from_str(json)
        .map_err(|e| PlanError::Settings(format!("settings are not valid: {e}")))
}

impl RawPlanLoader {
    fn lock(&self) -> MutexGuard<'_, Option<PlanLoader>> {
        crate::loader::lock(&self.loader)
    }

    fn closed_error(py: Python<'_>) -> PyErr {
        crate::loader::closed_error(py)
    }
}

#[pymethods]
impl RawPlanLoader {
    /// Maps the files, checks the settings (`mode` "decompose" or "chunk") and the
    /// checkpoint, finds the documents where the plan needs them: `epochs` whole epochs.
    #[new]
    #[pyo3(signature = (files, mode, settings_json, epochs, state_json = None))]
    #[allow(clippy::needless_pass_by_value)] // pyo3 extracts a Python list as an owned Vec
    fn new(
        py: Python<'_>,
        files: Vec<String>,
        mode: &str,
        settings_json: &str,
        epochs: u64,
        state_json: Option<&str>,
    ) -> PyResult<Self> {
        let opened =
            py.detach(|| PlanLoader::open(&files, mode, settings_json, epochs, state_json));
        let loader = opened.map_err(|e| match e {
            PlanError::Settings(reason) => config_error(py, "settings", reason),
            PlanError::State(reason) => state_error(py, reason),
            PlanError::Loader(e) => loader_error(py, &e),
        })?;
        Ok(Self {
            loader: Mutex::new(Some(loader)),
        })
    }

    /// The next batch whose step is `offset` modulo `stride`, as `(fields, step, epoch,
    /// seq_len, tokens, None, None, lr_multiplier)` (the shape of `RawLoader.next`), or
    /// `None` at the end.
    /// The batches of other steps are passed over without reading their tokens.
    #[pyo3(signature = (stride = 1, offset = 0))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        stride: u64,
        offset: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        crate::loader::check_stride(py, stride, offset)?;
        let item = py.detach(|| {
            let mut guard = self.lock();
            let loader = guard.as_mut()?;
            while loader.next_step() % stride != offset {
                match loader.skip() {
                    Ok(true) => {}
                    Ok(false) => return Some(None),
                    Err(e) => return Some(Some(Err(e))),
                }
            }
            Some(loader.next_batch())
        });
        match item {
            None => Err(Self::closed_error(py)),
            Some(None) => Ok(None),
            Some(Some(Err(e))) => Err(loader_error(py, &e)),
            Some(Some(Ok(batch))) => batch_tuple(py, batch).map(Some),
        }
    }

    /// The checkpoint after the last batch returned, as JSON text.
    fn state_json(&self, py: Python<'_>) -> PyResult<String> {
        let state = self.lock().as_ref().map(PlanLoader::state_json);
        let state = state.ok_or_else(|| Self::closed_error(py))?;
        state.map_err(|e| state_error(py, e.to_string()))
    }

    /// The step of the next batch (batches emitted so far, a resumed run's included).
    fn next_step(&self, py: Python<'_>) -> PyResult<u64> {
        let step = self.lock().as_ref().map(PlanLoader::next_step);
        step.ok_or_else(|| Self::closed_error(py))
    }

    /// Batches each rank emits per epoch (the same on every rank); `None` for a chunk plan,
    /// whose steps per epoch follow its batch-size schedule.
    fn steps_per_epoch(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let steps = self.lock().as_ref().map(|l| match l {
            PlanLoader::Decomposed(l) => Some(l.decomposition().steps_per_epoch()),
            PlanLoader::Chunked(_) => None,
        });
        steps.ok_or_else(|| Self::closed_error(py))
    }

    /// The plan, as JSON text: per length the pieces and the batches per epoch, the steps per
    /// epoch, the documents, and the tokens no batch uses (`seqwarm stream`'s table); for a
    /// chunk plan, the instances per epoch, the length and the batch schedule.
    fn plan_json(&self, py: Python<'_>) -> PyResult<String> {
        let guard = self.lock();
        let loader = guard.as_ref().ok_or_else(|| Self::closed_error(py))?;
        let loader = match loader {
            PlanLoader::Decomposed(l) => l,
            PlanLoader::Chunked(l) => {
                let chunks = l.chunks();
                let table = serde_json::json!({
                    "seq_len": chunks.config().seq_len,
                    "tokens": l.files().tokens(),
                    "instances": chunks.instances(),
                    "batch_schedule": chunks.config().batch_schedule,
                    "epochs": l.epochs(),
                });
                return Ok(table.to_string());
            }
        };
        let plan = loader.decomposition();
        let index = plan.index();
        let lengths: Vec<serde_json::Value> = index
            .pieces_per_length()
            .iter()
            .zip(plan.batches_per_length())
            .map(|(&(length, pieces), &(_, batches))| {
                serde_json::json!({"length": length, "pieces": pieces, "batches": batches})
            })
            .collect();
        let table = serde_json::json!({
            "curriculum": plan.config().curriculum.name(),
            "tokens": loader.files().tokens(),
            "documents": index.documents(),
            "lengths": lengths,
            "steps_per_epoch": plan.steps_per_epoch(),
            "epochs": loader.epochs(),
            "tokens_dropped": index.tokens_dropped(),
            "tokens_unused_per_epoch": plan.tokens_unused_per_epoch(),
        });
        Ok(table.to_string())
    }

    /// Stops the loader (unmaps the files). Closing twice is a no-op.
    fn close(&self) {
        self.lock().take();
    }

    /// As `close` (no thread of its own to forget: the same in a forked process).
    fn abandon(&self) {
        self.lock().take();
    }

    /// Whether `close` (or `abandon`) was called.
    #[getter]
    fn closed(&self) -> bool {
        self.lock().is_none()
    }
}

/// A batch as `RawLoader.next` gives one: `input_ids` of `rows x seq_len`, no packing
/// fields, and the learning-rate factor.
fn batch_tuple(py: Python<'_>, batch: PlanBatch) -> PyResult<Bound<'_, PyTuple>> {
    let seq_len = usize::try_from(batch.seq_len).unwrap_or(usize::MAX);
    let tokens = batch.input_ids.len();
    let input_ids = Tensor::from_vec(batch.input_ids, batch.rows, seq_len)
        .map_err(|e| state_error(py, format!("batch {}: {e}", batch.step)))?;
    let fields = PyDict::new(py);
    fields.set_item("input_ids", TokenArray::new(input_ids))?;
    PyTuple::new(
        py,
        [
            fields.into_any(),
            batch.step.into_pyobject(py)?.into_any(),
            batch.epoch.into_pyobject(py)?.into_any(),
            batch.seq_len.into_pyobject(py)?.into_any(),
            tokens.into_pyobject(py)?.into_any(),
            py.None().into_bound(py),
            py.None().into_bound(py),
            batch.lr_multiplier.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Checks the settings (JSON text) of a plan over raw token files (`mode` "decompose" or
/// "chunk") as the loader would, without reading a file.
#[pyfunction]
pub fn check_plan_settings(py: Python<'_>, mode: &str, settings_json: &str) -> PyResult<()> {
    let invalid = |e: PlanError| match e {
        PlanError::Settings(reason) | PlanError::State(reason) => {
            config_error(py, "settings", reason)
        }
        PlanError::Loader(e) => loader_error(py, &e),
    };
    let checked = match mode {
        "decompose" => parse_settings::<DecomposeSettings>(settings_json)
            .and_then(|s| s.validate().map_err(PlanError::Loader)),
        "chunk" => parse_settings::<ChunkSettings>(settings_json)
            .and_then(|s| s.run.validate().map_err(|e| PlanError::Loader(e.into()))),
        other => Err(PlanError::Settings(format!(
            "mode {other:?} is not a plan over raw token files (decompose, chunk)"
        ))),
    };
    checked.map_err(invalid)
}
