//! [`RawDecomposedLoader`]: the decomposition driver (`mode="decompose"`) behind
//! `seqwarm.Loader`, one batch per `next`, on the calling thread with the GIL released. It
//! reads memory-mapped raw token files, so there is nothing to read ahead on other threads.

use std::sync::{Mutex, MutexGuard};

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use seqwarm_batcher::Tensor;
use seqwarm_loader::{DecomposeSettings, DecomposedBatch, DecomposedLoader, DecomposedState};

use crate::array::TokenArray;
use crate::errors::{config_error, loader_error, state_error};

/// The decomposition loader behind `seqwarm.Loader(mode="decompose")`.
#[pyclass(frozen, module = "seqwarm._seqwarm")]
pub struct RawDecomposedLoader {
    loader: Mutex<Option<DecomposedLoader>>,
}

fn read_settings(py: Python<'_>, json: &str) -> PyResult<DecomposeSettings> {
    serde_json::from_str(json).map_err(|e| {
        config_error(
            py,
            "settings",
            format!("decomposition settings are not valid: {e}"),
        )
    })
}

impl RawDecomposedLoader {
    fn lock(&self) -> MutexGuard<'_, Option<DecomposedLoader>> {
        crate::loader::lock(&self.loader)
    }

    fn closed_error(py: Python<'_>) -> PyErr {
        crate::loader::closed_error(py)
    }
}

#[pymethods]
impl RawDecomposedLoader {
    /// Maps the files, finds their documents (the EOS scan), checks the settings and the
    /// checkpoint: `epochs` whole epochs.
    #[new]
    #[pyo3(signature = (files, settings_json, epochs, state_json = None))]
    #[allow(clippy::needless_pass_by_value)] // pyo3 extracts a Python list as an owned Vec
    fn new(
        py: Python<'_>,
        files: Vec<String>,
        settings_json: &str,
        epochs: u64,
        state_json: Option<&str>,
    ) -> PyResult<Self> {
        let settings = read_settings(py, settings_json)?;
        let state: Option<DecomposedState> = state_json
            .map(|text| {
                serde_json::from_str(text)
                    .map_err(|e| state_error(py, format!("not a decomposition state: {e}")))
            })
            .transpose()?;
        let opened = py.detach(|| {
            let loader = DecomposedLoader::open(&files, settings, epochs)?;
            match &state {
                Some(state) => loader.with_state(state),
                None => Ok(loader),
            }
        });
        let loader = opened.map_err(|e| loader_error(py, &e))?;
        Ok(Self {
            loader: Mutex::new(Some(loader)),
        })
    }

    /// The next batch whose step is `offset` modulo `stride`, as `(fields, step, epoch,
    /// seq_len, tokens, None, None)` (the shape of `RawLoader.next`), or `None` at the end.
    /// The batches of other steps are passed over without reading their tokens.
    #[pyo3(signature = (stride = 1, offset = 0))]
    fn next<'py>(
        &self,
        py: Python<'py>,
        stride: u64,
        offset: u64,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        if stride == 0 || offset >= stride {
            return Err(config_error(
                py,
                "stride",
                format!("offset {offset} of stride {stride}: need 0 <= offset < stride"),
            ));
        }
        let item = py.detach(|| {
            let mut guard = self.lock();
            let loader = guard.as_mut()?;
            while loader.next_step() % stride != offset {
                if !loader.skip() {
                    return Some(None);
                }
            }
            Some(loader.next())
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
        let state = self.lock().as_ref().map(DecomposedLoader::state);
        let state = state.ok_or_else(|| Self::closed_error(py))?;
        serde_json::to_string(&state).map_err(|e| state_error(py, e.to_string()))
    }

    /// The step of the next batch (batches emitted so far, a resumed run's included).
    fn next_step(&self, py: Python<'_>) -> PyResult<u64> {
        let step = self.lock().as_ref().map(DecomposedLoader::next_step);
        step.ok_or_else(|| Self::closed_error(py))
    }

    /// Batches each rank emits per epoch (the same on every rank).
    fn steps_per_epoch(&self, py: Python<'_>) -> PyResult<Option<u64>> {
        let steps = self
            .lock()
            .as_ref()
            .map(|l| l.decomposition().steps_per_epoch());
        steps.map(Some).ok_or_else(|| Self::closed_error(py))
    }

    /// The plan, as JSON text: per length the pieces and the batches per epoch, the steps per
    /// epoch, the documents, and the tokens no batch uses (`seqwarm stream`'s table).
    fn plan_json(&self, py: Python<'_>) -> PyResult<String> {
        let guard = self.lock();
        let loader = guard.as_ref().ok_or_else(|| Self::closed_error(py))?;
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

/// A batch as `RawLoader.next` gives one: `input_ids` of `rows x seq_len`, no packing fields.
fn batch_tuple(py: Python<'_>, batch: DecomposedBatch) -> PyResult<Bound<'_, PyTuple>> {
    let rows = batch.pieces.len();
    let seq_len = usize::try_from(batch.seq_len).unwrap_or(usize::MAX);
    let tokens = batch.input_ids.len();
    let input_ids = Tensor::from_vec(batch.input_ids, rows, seq_len)
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
        ],
    )
}

/// Checks decomposition settings (JSON text) as the loader would, without reading a file.
#[pyfunction]
pub fn check_decompose_settings(py: Python<'_>, settings_json: &str) -> PyResult<()> {
    read_settings(py, settings_json)?
        .validate()
        .map_err(|e| loader_error(py, &e))
}
