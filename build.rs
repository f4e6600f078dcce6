//! With the `train` feature, makes the `seqwarm` binary load libtorch's CUDA library.
//!
//! libtorch_cuda registers the CUDA backend from a static initializer and nothing references
//! its symbols, so the linker's default `--as-needed` drops it and CUDA is silently
//! unavailable. Link arguments do not propagate from a library's build script to the
//! binaries that use it, hence this one; torch-sys is a direct dependency of this package so
//! that DEP_TCH_LIBTORCH_LIB is set here.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=crates/trainer/link_libtorch.rs");
    if std::env::var_os("CARGO_FEATURE_TRAIN").is_none() {
        return;
    }
    let Some(lib_dir) = std::env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!("feature `train`: torch-sys did not export DEP_TCH_LIBTORCH_LIB");
    };
    link_libtorch(&lib_dir);
}

include!("crates/trainer/link_libtorch.rs");
