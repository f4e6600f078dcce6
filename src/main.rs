//! The `seqwarm` command line.

#![forbid(unsafe_code)]

mod cli;

/// mimalloc, as the Python extension uses: preprocess and the stream allocate and free
/// multi-MiB buffers many times a second, which glibc's malloc hands back to the kernel and
/// faults in (zeroed) again each time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
