"""The loader on an object store with a round trip of ``--latency`` ms per request: startup over
many shards, and streaming throughput against the same shards read locally.

    cargo build --release && cargo build --release -p seqwarm-testkit --bin latency-s3
    python3 benches/python/bench_remote.py

The store is ``latency-s3`` (``crates/testkit/src/bin/latency-s3.rs``): a small S3-compatible server on 127.0.0.1 that serves a directory from memory and
answers every request after ``--latency`` ms, as a round trip to a store would. A second one
answers at once: the ceiling of this machine's loopback and of the client's own work, against
which the delayed one shows how much of the round trip the read-ahead hides. Both share the
machine's cores with the client: on a small machine the server's sending is part of what is
measured. ``seqwarm stream`` reads ``s3://bench/...`` through ``AWS_ENDPOINT``.

1. Startup: ``--shards`` small shards (one row group each, ``seqwarm preprocess --shard-tokens
   1``), time to the first batch, local and remote.
2. Throughput: ``--copies`` copies of the shards of ``--data`` (a directory of shards, e.g.
   ``seqwarm preprocess`` output; default: the demo corpus) streamed ``--epochs`` times, locally
   and from both servers, with the default read-ahead and with ``--remote-prefetch-concurrency``
   2 (the local default) and 64. (Read-ahead starts afresh at each epoch, so many passes over a
   small set would measure the epoch boundaries' round trips instead.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

REPO = Path(__file__).resolve().parents[2]


def start_server(binary: str, root: str, latency_ms: float) -> "tuple[subprocess.Popen, int]":
    server = subprocess.Popen([binary, "--root", root, "--latency-ms", str(int(latency_ms))], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"latency-s3 did not start: {line!r}")
    return server, int(line.split()[-1])


def timed(command: List[str], env: Dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ...: {done.stderr[-1500:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=20.0, help="ms added to every request")
    parser.add_argument("--shards", type=int, default=20000, help="small shards for the startup run")
    parser.add_argument("--data", help="a directory of shards for the throughput run (default: the demo corpus)")
    parser.add_argument("--copies", type=int, default=10, help="copies of --data's shards in the throughput run")
    parser.add_argument("--epochs", type=int, default=4, help="passes over them")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    parser.add_argument("--server", default=str(REPO / "target" / "release" / "latency-s3"))
    args = parser.parse_args()
    for binary, build in ((args.seqwarm, "cargo build --release"), (args.server, "cargo build --release -p seqwarm-testkit --bin latency-s3")):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} is missing: run `{build}`")

    scratch = tempfile.mkdtemp(prefix="seqwarm-remote-")
    bucket = os.path.join(scratch, "root", "bench")
    small, data = os.path.join(bucket, "small"), os.path.join(bucket, "data")
    servers: List[subprocess.Popen] = []
    try:
        lines = os.path.join(scratch, "docs.jsonl")
        with open(lines, "w") as f:
            for i in range(args.shards):
                f.write('{"text": "document %d, a few words of text for a few tokens."}\n' % i)
        subprocess.run([args.seqwarm, "preprocess", lines, "-o", small, "--shard-tokens", "1"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        source = args.data
        if source is None:
            subprocess.run([args.seqwarm, "bench", "--repeat", "1", "--modes", "repack"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            source = next(str(p) for p in Path(tempfile.gettempdir()).glob("seqwarm-demo-v*-flat-uint16"))
        os.makedirs(data)
        for copy in range(args.copies):
            for path in sorted(Path(source).glob("*.parquet")):
                shutil.copy(path, os.path.join(data, f"{copy:03}-{path.name}"))
        root = os.path.join(scratch, "root")
        delayed, delayed_port = start_server(args.server, root, args.latency)
        servers.append(delayed)
        at_once, at_once_port = start_server(args.server, root, 0)
        servers.append(at_once)
        env = {port: dict(os.environ, AWS_ENDPOINT=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                          AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1") for port in (delayed_port, at_once_port)}  # fmt: skip
        best = lambda command, port: min(timed(command, env[port]) for _ in range(args.repeat))  # noqa: E731

        first = [args.seqwarm, "stream", "--max-steps", "1", "--batch-rows", "4", "--min", "8", "--max", "64", "--total", "100"]
        local = best(first + [small], delayed_port)
        remote = best(first + ["s3://bench/small/"], delayed_port)
        ceiling = best(first + ["s3://bench/small/"], at_once_port)
        print(f"startup, {args.shards} shards: local {local:.2f} s; remote at {args.latency:.0f} ms a request {remote:.2f} s, at 0 ms {ceiling:.2f} s")

        whole = [args.seqwarm, "stream", "--mode", "repack", "--batch-tokens", "65536", "--min", "64", "--max", "1024", "--epochs", str(args.epochs), "--total", "100000"]
        local = best(whole + [data], delayed_port)
        print(f"throughput, {args.copies} copies x {args.epochs} passes: local {local:.2f} s")
        for extra in ([], ["--remote-prefetch-concurrency", "2"], ["--remote-prefetch-concurrency", "32"], ["--remote-prefetch-concurrency", "64"]):
            remote = best(whole + extra + ["s3://bench/data/"], delayed_port)
            ceiling = best(whole + extra + ["s3://bench/data/"], at_once_port)
            print(f"  remote {' '.join(extra) or '(defaults)'}: at {args.latency:.0f} ms {remote:.2f} s ({local / remote:.2f}x local, "
                  f"{ceiling / remote:.2f}x the 0 ms server); at 0 ms {ceiling:.2f} s ({local / ceiling:.2f}x local)")  # fmt: skip
    finally:
        for server in servers:
            server.terminate()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
