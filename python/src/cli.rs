//! The `seqwarm` command line inside the package: the console script (`seqwarm.__main__`)
//! hands its arguments to the same Rust code the `seqwarm` binary runs.

use std::ffi::OsString;

use pyo3::prelude::*;

/// Runs the command line `argv` (the program's name first) with the GIL released, and
/// returns its exit status.
#[pyfunction]
pub fn run_cli(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    py.detach(|| seqwarm::cli::run(argv))
}
