//! `seqwarm._seqwarm`: the Rust half of the `seqwarm` Python package. It keeps to what only
//! Rust can do: run the loader on its own threads, hand batches over without copying tokens,
//! and check settings and schedules with the library's own rules. The Python half
//! (`python/seqwarm/`) shapes that into a PyTorch data source.

mod array;
mod errors;
mod loader;
mod schedule;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _seqwarm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<array::TokenArray>()?;
    m.add_class::<loader::RawLoader>()?;
    m.add_function(wrap_pyfunction!(loader::default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(loader::check_settings, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::check_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::plan, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::read_table, m)?)?;
    Ok(())
}
