"""The ``seqwarm`` command line: the console script ``pip install`` puts on the PATH, and
``python -m seqwarm``. It runs the same Rust code as the ``seqwarm`` binary built by cargo."""

from __future__ import annotations

import signal
import sys
from typing import List, Optional

from seqwarm._seqwarm import run_cli


def main(argv: Optional[List[str]] = None) -> int:
    """Runs ``seqwarm`` with ``argv`` (default: this process's arguments) and returns its exit
    status."""
    # Python defers SIGINT to its own handler, which cannot run while the command holds no
    # GIL: with the default action, Ctrl-C stops the command at once, as it stops the binary.
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    args = ["seqwarm", *(sys.argv[1:] if argv is None else argv)]
    sys.stdout.flush()
    sys.stderr.flush()
    return run_cli(args)


if __name__ == "__main__":
    sys.exit(main())
