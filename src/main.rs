//! The `seqwarm` command line (the Python package's `seqwarm` console script runs the same
//! [`seqwarm::cli`]).

#![forbid(unsafe_code)]

/// mimalloc, as the Python extension uses: preprocess and the stream allocate and free
/// multi-MiB buffers many times a second, which glibc's malloc hands back to the kernel and
/// faults in (zeroed) again each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(seqwarm::cli::run(std::env::args_os()))
}
