"""Tokens per second delivered as PyTorch tensors by ``seqwarm.Loader``, against the Rust
stream alone and the Python peer (pyarrow + numpy with Composer's cut), measured in the same
run on the same shards.

    .venv/bin/python benches/python/bench_loader.py                 # one core, then all cores
    .venv/bin/python benches/python/bench_loader.py --threads one --repeat 5

The shards: the demo corpus (8M tokens) in four encodings (flat uint16, flat PLAIN, flat
zstd, rows zstd), each linked ``--copies`` times into a set. The Rust numbers and the peer's come from
``seqwarm bench SET --json``, run first; then this process reads the same shards through
``seqwarm.Loader`` with the same schedule (linear from 64 in steps of 64 over 30% of an epoch),
batch budget and read-ahead. "One core" pins every process to one CPU
(``sched_setaffinity``): the Rust stream on a current-thread runtime, the Python loader with
``threads=0`` (all work on the iterating thread), one row group in flight; "all cores" leaves
them free, with a runtime thread and a row group in flight per core. Rust and Python runs
alternate; the best of ``--repeat`` of each counts (the peer runs once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MODES = ("repack", "reshape", "truncate")


def demo_sets(binary: str, copies: int, scratch: str) -> dict:
    """The demo corpus in its four encodings (written by ``seqwarm bench`` on first use),
    each linked ``copies`` times into a directory of its own: a run long enough to time."""
    out = os.path.join(scratch, "demo.json")
    subprocess.run(
        [binary, "bench", "--repeat", "1", "--modes", "repack", "--all-encodings", "--json", out],
        check=True, cwd=REPO, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    with open(out) as f:
        locations = json.load(f)["locations"]
    sets = {}
    for name, (directory,) in locations.items():
        target = os.path.join(scratch, name.replace(" ", "-"))
        os.makedirs(target)
        for copy in range(copies):
            for shard in sorted(Path(directory).glob("*.parquet")):
                os.symlink(shard, os.path.join(target, f"{copy}-{shard.name}"))
        sets[name] = target
    return sets


def rust_bench(binary: str, shards: str, threads: str, repeat: int, batch_tokens: int, max_len: int, pin: bool, modes: "tuple[str, ...]", peer: bool) -> dict:
    out = os.path.join(shards, "..", f"bench-{os.path.basename(shards)}-{threads}.json")
    command = [
        binary, "bench", shards, "--threads", threads, "--repeat", str(repeat), "--modes", ",".join(modes),
        "--batch-tokens", str(batch_tokens), "--max-len", str(max_len), "--json", out,
    ]  # fmt: skip
    if peer:
        command += ["--peer", "python", "--python", sys.executable]
    preexec = (lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})) if pin else None
    subprocess.run(command, check=True, cwd=REPO, preexec_fn=preexec, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        return json.load(f)


def python_loader(locations: list, mode: str, batch_tokens: int, max_len: int, tokens: int, threads: str) -> "tuple[float, int]":
    """One timed run of seqwarm.Loader, building included (as the Rust bench's is)."""
    import seqwarm

    cores = len(os.sched_getaffinity(0))
    one = threads == "one"
    schedule = seqwarm.Schedule.linear(min=64, max=max_len, duration=0.3, total=max(1, tokens // batch_tokens), step=64)
    loader = seqwarm.Loader(
        locations,
        schedule,
        mode=mode,
        batch_tokens=batch_tokens,
        threads=0 if one else cores,
        prefetch_concurrency=1 if one else cores,
        prefetch_queue=1 if one else 2 * cores,
    )
    started = time.perf_counter()
    for batch in loader:
        batch["input_ids"]  # a torch.Tensor over the loader's memory
    seconds = time.perf_counter() - started
    tokens_in = loader.stats()["tokens_in"]
    loader.close()
    return seconds, tokens_in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", choices=["one", "all", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=65536)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--copies", type=int, default=4, help="copies of the demo corpus per set (8M tokens each)")
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"), help="the CLI (cargo build --release)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    results = []
    scratch = tempfile.TemporaryDirectory(prefix="seqwarm-bench-")
    sets = demo_sets(args.seqwarm, args.copies, scratch.name)
    for threads in ["one", "all"] if args.threads == "both" else [args.threads]:
        pin = threads == "one"
        print(f"\n{threads} core(s): tokens/s (millions), best of {args.repeat}")
        print(f"{'shards':<12} {'mode':<9} {'Rust stream':>12} {'Python tensors':>15} {'ratio':>6} {'Python peer':>12} {'vs peer':>8}")
        for name, shards in sets.items():
            peers = rust_bench(args.seqwarm, shards, threads, 1, args.batch_tokens, args.max_len, pin, MODES, True)["peer"]
            everything = os.sched_getaffinity(0)
            for mode in MODES:
                # Rust and Python runs alternate, so that a slow spell of a shared machine
                # hits both; the best of each counts.
                best_rust, best_python, tokens = float("inf"), float("inf"), 0
                for _ in range(args.repeat):
                    row = next(
                        r
                        for r in rust_bench(args.seqwarm, shards, threads, 1, args.batch_tokens, args.max_len, pin, (mode,), False)["rows"]
                        if r["what"] == f"stream {mode}"
                    )
                    best_rust = min(best_rust, row["seconds"])
                    if pin:
                        os.sched_setaffinity(0, {min(everything)})
                    seconds, tokens = python_loader([shards], mode, args.batch_tokens, args.max_len, row["tokens"], threads)
                    os.sched_setaffinity(0, everything)
                    best_python = min(best_python, seconds)
                rust_rate, rate = row["tokens"] / best_rust, tokens / best_python
                peer = next((p for p in peers if p["what"] == mode), None)
                peer_rate = peer["tokens_per_s"] if peer else None
                result = {
                    "threads": threads,
                    "shards": name,
                    "mode": mode,
                    "tokens": tokens,
                    "rust_tokens_per_s": rust_rate,
                    "python_tokens_per_s": rate,
                    "ratio_to_rust": rate / rust_rate,
                    "peer_tokens_per_s": peer_rate,
                    "ratio_to_peer": rate / peer_rate if peer_rate else None,
                }
                results.append(result)
                peer_text = f"{peer_rate / 1e6:>12.1f} {rate / peer_rate:>7.1f}x" if peer_rate else f"{'-':>12} {'-':>8}"
                print(f"{name:<12} {mode:<9} {rust_rate / 1e6:>12.1f} {rate / 1e6:>15.1f} {result['ratio_to_rust']:>6.2f} {peer_text}", flush=True)
            os.sched_setaffinity(0, everything)
    scratch.cleanup()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
