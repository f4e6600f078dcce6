"""The loader on an object store with a round trip of ``--latency`` ms per request: startup over
many shards, and streaming throughput against the same shards read locally.

    cargo build --release && .venv/bin/python benches/python/bench_remote.py

An S3-compatible server (moto, from ``scripts/python-env``) listens on 127.0.0.1; a small
proxy in this process forwards to it and holds every chunk a client sends for ``--latency``
ms (a request is one chunk: each request pays the delay once, as a round trip to a store
would). Shards are uploaded straight to the server; ``seqwarm stream`` reads them through the
proxy (``AWS_ENDPOINT``).

1. Startup: ``--shards`` small shards (one row group each), time to the first batch.
2. Throughput: the shards of ``--data`` (a directory of shards, e.g. ``seqwarm preprocess``
   output; default: the demo corpus) streamed whole, locally and through the proxy, with the
   default prefetch settings and with ``--prefetch-concurrency 16``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_proxy(listen: int, upstream: int, latency_s: float) -> None:
    async def pipe(reader, writer, delay):
        try:
            while data := await reader.read(1 << 16):
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(client_reader, client_writer):
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", upstream)
        await asyncio.gather(pipe(client_reader, server_writer, latency_s), pipe(server_reader, client_writer, 0))

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
        async with server:
            await server.serve_forever()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()


def wait_for(url: str) -> None:
    for _ in range(100):
        try:
            urllib.request.urlopen(url)
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def timed(command: list, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ...: {done.stderr[-1500:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=20.0, help="ms added to every request")
    parser.add_argument("--shards", type=int, default=2000, help="small shards for the startup run")
    parser.add_argument("--data", help="a directory of shards for the throughput run (default: the demo corpus)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    args = parser.parse_args()
    import boto3

    moto_port, proxy_port = free_port(), free_port()
    scratch = tempfile.mkdtemp(prefix="seqwarm-remote-")
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://127.0.0.1:{moto_port}/")
        start_proxy(proxy_port, moto_port, args.latency / 1000)
        s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{moto_port}", aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        env = dict(os.environ, AWS_ENDPOINT=f"http://127.0.0.1:{proxy_port}", AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")

        # 1. Startup over many small shards.
        small = os.path.join(scratch, "small")
        lines = os.path.join(scratch, "docs.jsonl")
        with open(lines, "w") as f:
            for i in range(args.shards):
                f.write('{"text": "document %d, a few words of text for a few tokens."}\n' % i)
        subprocess.run([args.seqwarm, "preprocess", lines, "-o", small, "--shard-tokens", "1"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for path in sorted(Path(small).glob("*.parquet")):
            s3.upload_file(str(path), "bench", f"small/{path.name}")
        first = [args.seqwarm, "stream", "--max-steps", "1", "--batch-rows", "4", "--min", "8", "--max", "64", "--total", "100"]
        local = min(timed(first + [small], env) for _ in range(args.repeat))
        remote = min(timed(first + ["s3://bench/small/"], env) for _ in range(args.repeat))
        print(f"startup, {args.shards} shards: local {local:.2f} s, remote at {args.latency:.0f} ms a request {remote:.2f} s")

        # 2. Throughput.
        data = args.data
        if data is None:
            subprocess.run([args.seqwarm, "bench", "--repeat", "1", "--modes", "repack"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            data = next(str(p) for p in Path(tempfile.gettempdir()).glob("seqwarm-demo-v*-flat-uint16"))
        for path in sorted(Path(data).glob("*.parquet")):
            s3.upload_file(str(path), "bench", f"data/{path.name}")
        whole = [args.seqwarm, "stream", "--mode", "repack", "--batch-tokens", "65536", "--min", "64", "--max", "1024", "--total", "1000"]
        local = min(timed(whole + [data], env) for _ in range(args.repeat))
        print(f"throughput: local {local:.2f} s")
        for extra in ([], ["--prefetch-concurrency", "16", "--prefetch-queue", "32"]):
            remote = min(timed(whole + extra + ["s3://bench/data/"], env) for _ in range(args.repeat))
            print(f"  remote {' '.join(extra) or '(default prefetch)'}: {remote:.2f} s, {local / remote:.2f}x the local throughput")
    finally:
        moto.terminate()
        subprocess.run(["rm", "-rf", scratch])


if __name__ == "__main__":
    main()
