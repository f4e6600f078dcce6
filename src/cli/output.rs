//! Writing to the terminal without panicking. `println!` and `eprintln!` panic when stdout or
//! stderr is a closed pipe or a full disk; the commands write through these instead, and
//! [`is_broken_pipe`] lets `main` end quietly when a reader such as `head` has gone away, as
//! Unix tools do.

use std::io::ErrorKind;

/// Writes a line to stdout, returning the I/O error (a closed pipe ends the command quietly in
/// `main`; any other failure is reported).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Writes a line for the user to stderr. A failure to write it is ignored: there is nowhere
/// left to report it.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub(crate) use {note, outln};

/// Whether `error` comes from writing to a pipe whose reader has closed it.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(ErrorKind::BrokenPipe)
    })
}
