// Shared by this crate's build.rs and the root package's (through `include!`): link
// arguments do not travel from a library's build script to the binaries that use it, so every
// package with binaries that run libtorch emits them itself.

/// Without `--no-as-needed` the linker drops libtorch_cuda (nothing references its symbols
/// directly; it registers the CUDA backend from a static initializer), and CUDA is then
/// silently unavailable. The rpath lets the binaries run without LD_LIBRARY_PATH where
/// libtorch was at build time; elsewhere (a binary carried to another machine)
/// LD_LIBRARY_PATH points at that machine's copy.
fn link_libtorch(lib_dir: &std::path::Path) {
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    println!("cargo:rustc-link-arg=-ltorch");
    if lib_dir.join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}
