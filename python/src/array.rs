//! [`TokenArray`]: one field of a batch, handed to NumPy (and from there to PyTorch) without
//! copying: it exposes the Rust buffer through NumPy's array interface, and the array keeps
//! it alive as its base for as long as any view of it lives.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use seqwarm_batcher::{DType, Tensor};

/// A batch field's tokens in Rust memory (`numpy.asarray` reads it without a copy).
#[pyclass(frozen, module = "seqwarm._seqwarm")]
pub struct TokenArray {
    tensor: Tensor,
}

impl TokenArray {
    pub fn new(tensor: Tensor) -> Self {
        Self { tensor }
    }
}

/// NumPy's name of an element type, in this machine's byte order.
fn typestr(dtype: DType) -> &'static str {
    match (dtype, cfg!(target_endian = "little")) {
        (DType::I32, true) => "<i4",
        (DType::I64, true) => "<i8",
        (DType::I32, false) => ">i4",
        (DType::I64, false) => ">i8",
    }
}

#[pymethods]
impl TokenArray {
    /// NumPy's array interface (version 3) over the Rust buffer. Writable: each batch owns
    /// its elements (the loader never reads a batch's tokens after yielding it), so editing
    /// them in place changes that batch alone.
    #[getter]
    fn __array_interface__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        // Interned keys: this runs once per field per batch, and fresh key strings were a
        // third of `numpy.asarray`'s time.
        let size = self.tensor.dtype().size();
        let interface = PyDict::new(py);
        interface.set_item(intern!(py, "version"), 3)?;
        let typestr = match typestr(self.tensor.dtype()) {
            "<i4" => intern!(py, "<i4"),
            "<i8" => intern!(py, "<i8"),
            other => &pyo3::types::PyString::new(py, other),
        };
        interface.set_item(intern!(py, "typestr"), typestr)?;
        let shape = self.tensor.shape().dims();
        interface.set_item(intern!(py, "shape"), PyTuple::new(py, shape)?)?;
        if !self.tensor.is_contiguous() {
            // Absent means C-contiguous.
            let strides: Vec<usize> = self.tensor.strides().iter().map(|s| s * size).collect();
            interface.set_item(intern!(py, "strides"), PyTuple::new(py, strides)?)?;
        }
        let address = self.tensor.buffer().as_ptr() as usize;
        interface.set_item(intern!(py, "data"), (address, false))?;
        Ok(interface)
    }

    /// The shape, as NumPy and PyTorch give it.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.tensor.shape().dims()
    }

    fn __repr__(&self) -> String {
        format!(
            "TokenArray(shape={:?}, dtype={})",
            self.tensor.shape().dims(),
            self.tensor.dtype()
        )
    }
}
