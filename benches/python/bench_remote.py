"""The loader on an object store with a round trip of ``--latency`` ms per request: startup over
many shards, and streaming against the same server with no delay.

    cargo build --release && cargo build --release -p seqwarm-testkit --bin latency-s3
    python3 benches/python/bench_remote.py

Two servers, each started twice on 127.0.0.1 (once delayed, once answering at once), serve the
same files:

- ``latency-s3`` (``crates/testkit/src/bin/latency-s3.rs``): a small S3-compatible server that
  serves a directory from memory and answers every request after ``--latency`` ms;
  ``seqwarm stream`` reads ``s3://bench/...`` through ``AWS_ENDPOINT``.
- nginx (where it is installed with its ``dav-ext`` and ``echo`` modules; Debian: ``nginx
  libnginx-mod-http-dav-ext libnginx-mod-http-echo``), its WebDAV listing on, the delay added
  by ``echo_sleep`` before each request is served (this kernel has no ``netem``);
  ``seqwarm stream`` reads ``http://127.0.0.1:PORT/bench/...``. ``curl`` fetching the same
  bytes from the undelayed nginx is the transfer's own time.

The servers share the machine's cores with the client: on a small machine their sending is part
of what is measured, so each case alternates the delayed and the undelayed server ``--repeat``
times and reports medians and the spread of the per-repeat ratio.

1. Startup: ``--shards`` small shards (one row group each, ``seqwarm preprocess --shard-tokens
   1``), time to the first batch, local and remote (latency-s3).
2. Streaming, ``repack``, ``--epochs`` passes, default settings: ``--copies`` copies of the shards
   of ``--data`` (default: the demo corpus: 40 shards of 512 KiB row groups), and one large
   shard of the same row groups (``--large-tokens`` tokens).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]


NGINX_MODULES = "/usr/lib/nginx/modules"


def start_server(binary: str, root: str, latency_ms: float) -> "tuple[subprocess.Popen, int]":
    server = subprocess.Popen([binary, "--root", root, "--latency-ms", str(int(latency_ms))], stdout=subprocess.PIPE, text=True)
    line = server.stdout.readline() if server.stdout else ""
    if not line.startswith("listening on "):
        server.kill()
        raise SystemExit(f"latency-s3 did not start: {line!r}")
    return server, int(line.split()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_nginx(scratch: str, root: str, latency_ms: float) -> "Optional[tuple[subprocess.Popen, int]]":
    """nginx serving ``root`` with its WebDAV listing, each request ``latency_ms`` late; ``None``
    where nginx or its modules are not installed."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    modules = [os.path.join(NGINX_MODULES, f"ngx_http_{m}_module.so") for m in ("dav_ext", "echo")]
    if binary is None or not all(os.path.exists(m) for m in modules):
        return None
    port = free_port()
    home = os.path.join(scratch, f"nginx-{port}")
    os.makedirs(home)
    delay = f"echo_sleep {latency_ms / 1000:.3f}; " if latency_ms > 0 else ""
    config = "".join(f"load_module {m};\n" for m in modules) + (
        f"daemon off;\npid {home}/pid;\nerror_log {home}/error.log;\nevents {{}}\nhttp {{\n access_log off;\n"
        f" client_body_temp_path {home}/body; proxy_temp_path {home}/proxy; fastcgi_temp_path {home}/fcgi;"
        f" uwsgi_temp_path {home}/uwsgi; scgi_temp_path {home}/scgi;\n sendfile on;\n"
        f" server {{\n  listen 127.0.0.1:{port};\n  root {root};\n"
        f"  location / {{ {delay}echo_exec @serve; }}\n  location @serve {{ dav_ext_methods PROPFIND OPTIONS; }}\n }}\n}}\n"
    )
    path = os.path.join(home, "nginx.conf")
    with open(path, "w") as f:
        f.write(config)
    server = subprocess.Popen([binary, "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(500):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            time.sleep(0.01)
    server.kill()
    raise SystemExit(f"nginx did not start: see {home}/error.log")


def timed(command: List[str], env: Dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:4])} ...: {done.stderr[-1500:]}")
    return time.perf_counter() - started


def spread(values: List[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=20.0, help="ms added to every request")
    parser.add_argument("--shards", type=int, default=20000, help="small shards for the startup run")
    parser.add_argument("--data", help="a directory of shards for the streaming run (default: the demo corpus)")
    parser.add_argument("--copies", type=int, default=10, help="copies of --data's shards in the streaming run")
    parser.add_argument("--large-tokens", type=int, default=60_000_000, help="tokens of the one large shard")
    parser.add_argument("--epochs", type=int, default=16, help="passes over them")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    parser.add_argument("--server", default=str(REPO / "target" / "release" / "latency-s3"))
    args = parser.parse_args()
    for binary, build in ((args.seqwarm, "cargo build --release"), (args.server, "cargo build --release -p seqwarm-testkit --bin latency-s3")):
        if not os.path.exists(binary):
            raise SystemExit(f"{binary} is missing: run `{build}`")

    scratch = tempfile.mkdtemp(prefix="seqwarm-remote-")
    # nginx started as root serves as `nobody`, which must see the files.
    os.chmod(scratch, 0o755)
    root = os.path.join(scratch, "root")
    bucket = os.path.join(root, "bench")
    small, data, large = (os.path.join(bucket, name) for name in ("small", "data", "large"))
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
        # One large shard of 512 KiB row groups: words drawn at random, about a token each.
        words = [f"w{i}" for i in range(5000)]
        rng = random.Random(0)
        text = os.path.join(scratch, "large.jsonl")
        with open(text, "w") as f:
            for _ in range(args.large_tokens // 2000):
                f.write('{"text": "%s"}\n' % " ".join(rng.choices(words, k=1000)))
        subprocess.run([args.seqwarm, "preprocess", text, "-o", large, "--shard-tokens", str(4 * args.large_tokens), "--row-group-tokens", "262144"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

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

        nginx = [start_nginx(scratch, root, latency) for latency in (args.latency, 0)]
        servers.extend(n[0] for n in nginx if n is not None)
        stores = [("latency-s3", lambda port, path: f"s3://bench/{path}", delayed_port, at_once_port)]
        if nginx[0] is not None and nginx[1] is not None:
            stores.append(("nginx", lambda port, path: f"http://127.0.0.1:{port}/bench/{path}", nginx[0][1], nginx[1][1]))
        else:
            print("nginx with its dav-ext and echo modules is not installed: latency-s3 only")
        whole = [args.seqwarm, "stream", "--mode", "repack", "--batch-tokens", "65536", "--min", "64", "--max", "1024", "--epochs", str(args.epochs), "--total", "100000"]
        for case, path in ((f"{args.copies * len(list(Path(source).glob('*.parquet')))} shards", "data/"), ("one large shard", "large/")):
            local = [timed(whole + [os.path.join(bucket, path)], env[at_once_port]) for _ in range(args.repeat)]
            print(f"{case}, {args.epochs} passes, repack: local {spread(local)} s")
            for name, url, slow_port, fast_port in stores:
                slow, fast, ratios, rest_ratios = [], [], [], []
                for _ in range(args.repeat):
                    run = lambda port, command: timed(command + [url(port, path)], env.get(port, env[at_once_port]))  # noqa: E731
                    slow.append(run(slow_port, whole))
                    fast.append(run(fast_port, whole))
                    ratios.append(slow[-1] / fast[-1])
                    # The same to the first batch: the listing's, the footers' and the first
                    # row group's round trips, which no read-ahead hides.
                    first_slow, first_fast = run(slow_port, whole + ["--max-steps", "1"]), run(fast_port, whole + ["--max-steps", "1"])
                    rest_ratios.append((slow[-1] - first_slow) / (fast[-1] - first_fast))
                print(f"  {name}: at {args.latency:.0f} ms {spread(slow)} s, at 0 ms {spread(fast)} s: "
                      f"{spread(ratios)}x the time at 0 ms; after the first batch {spread(rest_ratios)}x")  # fmt: skip
                if name == "nginx":
                    files = sorted(p.name for p in Path(bucket, path).glob("*.parquet"))
                    urls = [f"http://127.0.0.1:{fast_port}/bench/{path}{f}" for f in files] * args.epochs
                    curl = [timed(["curl", "-s", *urls], env[at_once_port]) for _ in range(args.repeat)]
                    print(f"  curl of the same bytes from the 0 ms nginx: {spread(curl)} s; seqwarm at 0 ms {statistics.median(fast) / statistics.median(curl):.2f}x its time")  # fmt: skip
    finally:
        for server in servers:
            server.terminate()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
