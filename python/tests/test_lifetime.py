"""Threads, the GIL and Ctrl-C: the loader's threads end with close() and with garbage
collection, the GIL is free while a batch is made, and Ctrl-C interrupts a blocked wait."""

from __future__ import annotations

import gc
import http.server
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import seqwarm
from conftest import linear


def threads() -> int:
    """This process's threads, Rust ones included (Linux)."""
    return len(os.listdir("/proc/self/task"))


def settle(target: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while threads() > target and time.monotonic() < deadline:
        time.sleep(0.02)
    return threads()


pytestmark = pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs /proc (Linux)")


def test_close_joins_every_thread(corpus: dict) -> None:
    before = threads()
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, threads=3)
    iterator = iter(loader)
    next(iterator)
    assert threads() >= before + 3
    loader.close()
    assert threads() == before
    loader.close()  # twice is fine


def test_garbage_collection_stops_the_threads(corpus: dict) -> None:
    before = threads()
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, threads=2)
    next(iter(loader))
    assert threads() > before
    del loader
    gc.collect()
    assert settle(before) == before


def test_the_gil_is_released_while_batches_are_made(corpus: dict) -> None:
    # A Python thread counting while the main thread drains the loader gets to run.
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, epochs=3)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        batches = sum(1 for _ in loader)
    finally:
        stop.set()
        counter.join()
    assert batches > 0 and counted[0] > 0


class StallingHandler(http.server.BaseHTTPRequestHandler):
    """Serves a directory with range requests, but answers only those for a file's tail (its
    footer): a read of the data pages hangs, as on a store that stopped answering."""

    directory = "."

    def _file(self) -> "Path":
        return Path(self.directory) / self.path.lstrip("/")

    def do_HEAD(self) -> None:  # noqa: N802 (the http.server API)
        size = self._file().stat().st_size
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        data = self._file().read_bytes()
        ranged = self.headers.get("Range", "")
        if not ranged.startswith("bytes="):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        first, _, last = ranged[len("bytes=") :].partition("-")
        start = int(first) if first else len(data) - int(last)
        end = int(last) if first and last else len(data) - 1
        if end < len(data) - 1:
            time.sleep(60)
            return
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self.wfile.write(data[start : end + 1])

    def log_message(self, *args: object) -> None:
        pass


def test_ctrl_c_interrupts_a_blocked_iteration(corpus: dict) -> None:
    directory = corpus["dir"]
    handler = type("Handler", (StallingHandler,), {"directory": directory})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/shard-0.parquet"
    loader = seqwarm.Loader(url, linear(), batch_rows=4, retry={"max_retries": 0})
    # Python's own Ctrl-C handler, whatever this process inherited: a shell that starts a job in
    # the background (as CI may) starts it with SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(threading.main_thread().ident, signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            next(iter(loader))
        waited = time.monotonic() - started
        assert waited < 5, f"Ctrl-C took {waited:.1f} s to land"
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
        loader.close()
        server.shutdown()
