"""seqwarm against the loaders users run today, on real GPT-2 tokens, each doing the same job
with every batch hashed to prove equal output; and the shard encodings' table (bytes per token
against tokens per second).

    cargo build --release && .venv/bin/python benches/python/bench_peers.py
    .venv/bin/python benches/python/bench_peers.py --repeat 5 --whole --json out/peers.json

The corpus: the Python standard library's sources (``*.py`` of the interpreter running this,
site-packages excluded; about 34 MB of real, public text on every machine), tokenized by
``seqwarm preprocess --tokenizer gpt2`` in each encoding (flat ``uint16``, the default; flat
``uint16`` with LZ4 or zstd pages; flat ``plain`` int32; flat ``zstd``; rows ``zstd``). The raw ``uint16``
file of the memmap peer holds the same tokens in the same order (read back from the ``uint16``
shards), as nanoGPT's ``prepare.py`` would write them.

The job (Composer's): ``--rows`` rows of ``--max-len`` per step, Composer's schedule from 64
to the maximum in steps of 8 over 30% of the epoch, ``truncate`` and ``reshape``, no
shuffling, ``--epochs`` epochs, batches as ``int64`` torch tensors. First every system's batches are
hashed (blake2b of each batch's contiguous bytes and shape) and compared; then each is timed:

- loop only: the iteration in this process (imports and corpus excluded, loader construction
  included), one core (``sched_setaffinity`` to one CPU; seqwarm with ``threads=0``), systems
  alternating, the best of ``--repeat``; then the memmap and seqwarm ``uint16`` on every core
  (seqwarm with its default threads);
- whole process: a fresh interpreter that imports, builds and iterates (``--whole``).

Peers (``benches/peers``): ``np.memmap`` (``memmap_peer.py``), and when installed Hugging
Face ``datasets`` (``hf_datasets_peer.py``) and MosaicML Streaming (``streaming_peer.py``), each
built once from the same raw tokens (not timed). The table in docs/benchmarks.md
("Against the loaders users run") comes from this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterable, List

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benches" / "peers"))
import memmap_peer  # noqa: E402

# Peers whose package is installed (not by scripts/python-env: `pip install datasets` and
# `pip install mosaicml-streaming`; Streaming pins another PyTorch, see docs/benchmarks.md).
OPTIONAL_PEERS = {"hf datasets": ("datasets", "hf_datasets_peer"), "mds streaming": ("streaming", "streaming_peer")}

ENCODINGS = (("uint16", "flat"), ("uint16_lz4", "flat"), ("uint16_zstd", "flat"), ("plain", "flat"), ("zstd", "flat"), ("zstd", "rows"))


def stdlib_sources() -> List[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(str(p) for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def preprocess(binary: str, inputs: List[str], out: str, encoding: str, layout: str) -> None:
    # A few test files of the standard library are not UTF-8 on purpose: skipped (and counted).
    done = subprocess.run(
        [binary, "preprocess", *inputs, "-o", out, "--tokenizer", "gpt2", "--encoding", encoding, "--layout", layout,
         "--shard-tokens", "4000000", "--on-error", "skip"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"seqwarm preprocess ({encoding}, {layout}) failed: {done.stderr[-2000:]}")


def raw_uint16(shards: str, out: str) -> int:
    """The tokens of flat ``uint16`` shards, in order, as one raw ``uint16`` file."""
    import pyarrow.parquet as pq

    total = 0
    with open(out, "wb") as f:
        for path in sorted(Path(shards).glob("*.parquet")):
            column = pq.read_table(path, columns=["tokens"]).column(0).combine_chunks()
            data = np.frombuffer(column.buffers()[1], dtype="<u2", count=len(column), offset=column.offset * 2)
            f.write(data.tobytes())
            total += len(data)
    return total


def shard_bytes(directory: str) -> int:
    return sum(p.stat().st_size for p in Path(directory).glob("*.parquet"))


def digest(batches: Iterable) -> List[str]:
    out = []
    for x in batches:
        x = x.contiguous()
        out.append(hashlib.blake2b(str(tuple(x.shape)).encode() + x.numpy().tobytes(), digest_size=16).hexdigest())
    return out


def seqwarm_batches(shards: str, schedule, rows: int, mode: str, steps: int, epochs: int, threads: "int | None") -> Iterable:
    import seqwarm

    loader = seqwarm.Loader(
        shards, schedule, mode=mode, batch_rows=rows, shuffle_buffer=0, shuffle_units=False, epochs=epochs,
        max_steps=steps, dtype="i64", threads=threads, prefetch_concurrency=1 if threads == 0 else None,
        prefetch_queue=1 if threads == 0 else None,
    )  # fmt: skip
    try:
        for batch in loader:
            yield batch["input_ids"]
    finally:
        loader.close()


def timed(run: Callable[[], Iterable]) -> "tuple[float, int]":
    started = time.perf_counter()
    tokens = 0
    for x in run():
        tokens += x.numel()
    return time.perf_counter() - started, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--modes", default="truncate,reshape")
    parser.add_argument("--epochs", type=int, default=8, help="passes over the corpus per timed run (one is only tens of milliseconds)")
    parser.add_argument("--whole", action="store_true", help="also time whole processes")
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"), help="the CLI (cargo build --release)")
    parser.add_argument("--scratch", help="keep the corpus here (default: a temporary directory)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    import torch

    import seqwarm

    torch.set_num_threads(1)
    scratch = args.scratch or tempfile.mkdtemp(prefix="seqwarm-peers-")
    inputs = stdlib_sources()
    sets: Dict[str, str] = {}
    for encoding, layout in ENCODINGS:
        name = f"{layout} {encoding}"
        directory = os.path.join(scratch, f"{layout}-{encoding}")
        if not os.path.exists(os.path.join(directory, "manifest.json")):
            preprocess(args.seqwarm, inputs, directory, encoding, layout)
        sets[name] = directory
    raw = os.path.join(scratch, "tokens.bin")
    tokens = raw_uint16(sets["flat uint16"], raw)
    per_step = args.rows * args.max_len
    steps = tokens // per_step * args.epochs
    schedule = seqwarm.Schedule.composer(min=64, max=args.max_len, duration=0.3, total=steps, step=8)
    plan = seqwarm.plan(schedule, mode="truncate", batch_rows=args.rows)
    lengths = [plan.seq_len_at(s) for s in range(steps)]
    lengths_path = os.path.join(scratch, "lengths.json")
    with open(lengths_path, "w") as f:
        json.dump(lengths, f)
    print(f"corpus: {len(inputs)} files, {tokens:,} GPT-2 tokens; {args.epochs} epochs, {steps} steps of {args.rows} x {args.max_len}")
    print("\nbytes per token on disk:")
    sizes = {"memmap uint16": os.path.getsize(raw) / tokens}
    sizes.update({name: shard_bytes(d) / tokens for name, d in sets.items()})
    for name, size in sizes.items():
        print(f"  {name:<16} {size:.3f}")

    everything = os.sched_getaffinity(0)
    one_cpu = {min(everything)}
    results = []
    import importlib
    import importlib.util

    peers = {}
    for name, (package, module) in OPTIONAL_PEERS.items():
        if importlib.util.find_spec(package) is None:
            print(f"  ({name}: not installed, skipped)")
            continue
        peer = importlib.import_module(module)
        peers[name] = (peer, peer.prepare(raw, os.path.join(scratch, module), args.max_len))
        sizes[name] = sum(p.stat().st_size for p in Path(peers[name][1]).rglob("*") if p.is_file()) / tokens
        print(f"  {name:<16} {sizes[name]:.3f}")
    for mode in args.modes.split(","):
        systems: Dict[str, Callable[[], Iterable]] = {
            "memmap uint16": lambda mode=mode: memmap_peer.batches(raw, lengths, args.rows, args.max_len, mode),
        }
        for name, (peer, path) in peers.items():
            systems[name] = lambda peer=peer, path=path, mode=mode: peer.batches(path, lengths, args.rows, args.max_len, mode)
        for name, directory in sets.items():
            systems[f"seqwarm {name}"] = lambda d=directory, mode=mode: seqwarm_batches(d, schedule, args.rows, mode, steps, args.epochs, 0)
        hashes = {name: digest(run()) for name, run in systems.items()}
        reference = hashes["memmap uint16"]
        for name, h in hashes.items():
            if h != reference:
                first = next((i for i, (a, b) in enumerate(zip(h, reference)) if a != b), min(len(h), len(reference)))
                raise SystemExit(f"{mode}: {name} gives different batches from the memmap peer (first at step {first}; {len(h)} vs {len(reference)} batches)")
        print(f"\n{mode}: {len(reference)} batches, identical in every system; one core, loop only, best of {args.repeat}")
        best = {name: float("inf") for name in systems}
        counted = {}
        os.sched_setaffinity(0, one_cpu)
        for _ in range(args.repeat):
            for name, run in systems.items():
                seconds, n = timed(run)
                best[name] = min(best[name], seconds)
                counted[name] = n
        os.sched_setaffinity(0, everything)
        base = counted["memmap uint16"] / best["memmap uint16"]
        print(f"  {'system':<24} {'M tokens/s':>11} {'vs memmap':>10}")
        for name in systems:
            rate = counted[name] / best[name]
            print(f"  {name:<24} {rate / 1e6:>11.1f} {rate / base:>9.2f}x")
            results.append({"mode": mode, "system": name, "tokens": counted[name], "seconds": best[name], "tokens_per_s": rate, "ratio_to_memmap": rate / base, "bytes_per_token": sizes.get(name.removeprefix("seqwarm "))})
        # Every core: the memmap loop cannot use a second one (NumPy's cast is single-threaded);
        # seqwarm with its default threads reads, checks and queues row groups on another.
        every = {
            "memmap uint16": systems["memmap uint16"],
            "seqwarm flat uint16": lambda mode=mode: seqwarm_batches(sets["flat uint16"], schedule, args.rows, mode, steps, args.epochs, None),
        }
        best_all = {name: float("inf") for name in every}
        for _ in range(args.repeat):
            for name, run in every.items():
                seconds, n = timed(run)
                best_all[name] = min(best_all[name], seconds)
                counted[name] = n
        base = counted["memmap uint16"] / best_all["memmap uint16"]
        print(f"  every core ({len(everything)}), seqwarm with its default threads, best of {args.repeat}:")
        for name in every:
            rate = counted[name] / best_all[name]
            print(f"  {name:<24} {rate / 1e6:>11.1f} {rate / base:>9.2f}x")
            results.append({"mode": mode, "system": name, "cores": len(everything), "tokens": counted[name], "seconds": best_all[name], "tokens_per_s": rate, "ratio_to_memmap": rate / base})
        if args.whole:
            whole = {
                "memmap uint16": [sys.executable, str(REPO / "benches" / "peers" / "memmap_peer.py"), "--data", raw, "--lengths", lengths_path, "--rows", str(args.rows), "--max-len", str(args.max_len), "--mode", mode],
                "seqwarm flat uint16": [sys.executable, "-c", (
                    "import json,sys,seqwarm\n"
                    f"s=seqwarm.Schedule.composer(min=64,max={args.max_len},duration=0.3,total={steps},step=8)\n"
                    f"l=seqwarm.Loader({sets['flat uint16']!r},s,mode={mode!r},batch_rows={args.rows},shuffle_buffer=0,shuffle_units=False,epochs={args.epochs},max_steps={steps},dtype='i64',threads=0)\n"
                    "print(sum(b['input_ids'].numel() for b in l))"
                )],
            }  # fmt: skip
            print(f"  whole process (interpreter, imports, loop), one core, best of {args.repeat}:")
            for name, command in whole.items():
                seconds = float("inf")
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, one_cpu))
                    seconds = min(seconds, time.perf_counter() - started)
                print(f"  {name:<24} {seconds:>8.2f} s")
                results.append({"mode": mode, "system": name, "whole_process_s": seconds})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    if not args.scratch:
        import shutil

        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
