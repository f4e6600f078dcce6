//! Builds the allocator-statistics shim against the libtorch that torch-sys found, and makes
//! this crate's own test and example binaries load libtorch's CUDA library.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=shim/memory.cpp");
    println!("cargo:rerun-if-changed=link_libtorch.rs");
    println!("cargo:rerun-if-env-changed=SEQWARM_TORCH_CXX11_ABI");
    // torch-sys declares `links = "tch"` and exports the directory it linked against.
    let Some(lib_dir) = env::var_os("DEP_TCH_LIBTORCH_LIB").map(PathBuf::from) else {
        panic!("torch-sys did not export DEP_TCH_LIBTORCH_LIB; is torch-sys a direct dependency?");
    };
    let root = lib_dir.parent().unwrap_or(Path::new("/"));
    let abi = env::var("SEQWARM_TORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("shim/memory.cpp")
        .include(root.join("include"))
        .include(root.join("include/torch/csrc/api/include"))
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("seqwarm_memory_shim");
    link_libtorch(&lib_dir);
}

include!("link_libtorch.rs");
