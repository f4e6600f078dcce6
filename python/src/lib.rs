//! `seqwarm._seqwarm`: the Rust half of the `seqwarm` Python package. It keeps to what only
//! Rust can do: run the loader on its own threads, hand batches over without copying tokens,
//! and check settings and schedules with the library's own rules. The Python half
//! (`python/seqwarm/`) shapes that into a PyTorch data source.

mod array;
mod cli;
mod errors;
mod loader;
mod raw_plan;
mod schedule;
mod writer;

use pyo3::prelude::*;

/// The extension's own allocator, as polars does: the loader allocates and frees a row group's
/// buffers many times a second, and glibc's malloc, in a Python process, hands them back to the
/// kernel and faults them in again each time (about twice the page faults of the same stream
/// in the CLI, measured with `perf stat`). Memory NumPy and PyTorch allocate is not affected.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The extension module.
#[pymodule]
fn _seqwarm(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<array::TokenArray>()?;
    m.add_class::<loader::RawLoader>()?;
    m.add_class::<raw_plan::RawPlanLoader>()?;
    m.add_class::<writer::RawShardWriter>()?;
    m.add_function(wrap_pyfunction!(writer::preprocess_files, m)?)?;
    m.add_function(wrap_pyfunction!(writer::merge_manifests, m)?)?;
    m.add_function(wrap_pyfunction!(writer::join_runs, m)?)?;
    m.add_function(wrap_pyfunction!(writer::document_lengths, m)?)?;
    m.add_function(wrap_pyfunction!(writer::shard_files, m)?)?;
    m.add_function(wrap_pyfunction!(cli::run_cli, m)?)?;
    m.add_function(wrap_pyfunction!(loader::default_settings, m)?)?;
    m.add_function(wrap_pyfunction!(loader::check_settings, m)?)?;
    m.add_function(wrap_pyfunction!(raw_plan::check_plan_settings, m)?)?;
    m.add_function(wrap_pyfunction!(loader::merge_states, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::check_schedule, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::plan, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::read_table, m)?)?;
    m.add_function(wrap_pyfunction!(schedule::parse_shapes, m)?)?;
    Ok(())
}
