"""CPU time of ``seqwarm.Loader`` under a PyTorch ``DataLoader(num_workers=N)``: the workers'
total against one worker's, on the same shards and job, measured in the same run.

    .venv/bin/python benches/python/bench_workers.py                  # N = 1, 2, 4, 8
    .venv/bin/python benches/python/bench_workers.py --workers 1,2,4 --repeat 5 --mode truncate

Every worker runs the whole stream and hands over the steps ``w, w + N, ...`` (so the
batches are those of ``num_workers=0``); the steps it does not hand over are counted, not
built. What this measures is the cost of that: the CPU time (user + system) of all the
worker processes together, from ``RUSAGE_CHILDREN`` after the DataLoader has joined them, over
one whole pass of the demo corpus (flat ``uint16`` shards, as ``seqwarm bench`` writes them,
linked ``--copies`` times). Each worker runs with ``threads=0`` (one core per process, what
``seqwarm.Loader`` documents for workers). The main process's own time (receiving the
tensors) is shown beside it and not counted. Beside each N, the same DataLoader over a
dataset that does no work (ready zero tensors of the batch's size, each worker its own
steps): what PyTorch's worker processes and transfers cost by themselves. Runs of each N
alternate; the median of ``--repeat`` counts, with the spread (min-max) beside it.
"""

from __future__ import annotations

import argparse
import warnings
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loader import REPO, demo_sets  # noqa: E402


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def one_run(shards: str, mode: str, workers: int, batch_tokens: int, max_len: int, total_steps: int) -> "tuple[float, float, int]":
    """Workers' CPU seconds, the main process's CPU seconds and the batches received."""
    import seqwarm
    import torch.utils.data

    schedule = seqwarm.Schedule.linear(min=64, max=max_len, duration=0.3, total=total_steps, step=64)
    loader = seqwarm.Loader([shards], schedule, mode=mode, batch_tokens=batch_tokens, threads=0, prefetch_concurrency=1, prefetch_queue=1)
    data = torch.utils.data.DataLoader(loader, batch_size=None, num_workers=workers, multiprocessing_context="fork")
    children, own = child_cpu(), own_cpu()
    batches = 0
    for batch in data:
        batch["input_ids"]
        batches += 1
    del data  # joins the workers, so that their time is in RUSAGE_CHILDREN
    return child_cpu() - children, own_cpu() - own, batches


def floor_run(workers: int, batches: int, batch_tokens: int) -> float:
    """Workers' CPU seconds of the same DataLoader over a dataset that does no work: each
    worker yields ready zero tensors of the batch's size for its own steps. What the
    DataLoader's processes and transfers cost by themselves, with no stream to run."""
    import torch
    import torch.utils.data

    class Ready(torch.utils.data.IterableDataset):
        def __iter__(self):
            info = torch.utils.data.get_worker_info()
            worker, count = (info.id, info.num_workers) if info else (0, 1)
            for _ in range(worker, batches, count):
                yield {"input_ids": torch.zeros(batch_tokens // 1024, 1024, dtype=torch.int32)}

    data = torch.utils.data.DataLoader(Ready(), batch_size=None, num_workers=workers, multiprocessing_context="fork")
    children = child_cpu()
    for batch in data:
        batch["input_ids"]
    del data
    return child_cpu() - children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4,8", help="worker counts, comma-separated (the first is the baseline)")
    parser.add_argument("--mode", default="repack")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=65536)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--copies", type=int, default=2, help="copies of the demo corpus (8M tokens each)")
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"), help="the CLI (cargo build --release)")
    args = parser.parse_args()
    # More workers than this VM's cores is the point here, not a mistake.
    warnings.filterwarnings("ignore", message="This DataLoader will create")
    counts = [int(n) for n in args.workers.split(",")]
    scratch = tempfile.TemporaryDirectory(prefix="seqwarm-bench-")
    shards = demo_sets(args.seqwarm, args.copies, scratch.name)["demo flat"]
    total_steps = args.copies * 8_000_000 // args.batch_tokens
    runs: "dict[int, list]" = {n: [] for n in counts}
    floors: "dict[int, list]" = {n: [] for n in counts}
    for _ in range(args.repeat):
        for n in counts:
            runs[n].append(one_run(shards, args.mode, n, args.batch_tokens, args.max_len, total_steps))
            floors[n].append(floor_run(n, runs[n][-1][2], args.batch_tokens))
    batches = {runs[n][0][2] for n in counts}
    if len(batches) != 1:
        raise SystemExit(f"the worker counts received different numbers of batches: {batches}")
    base = statistics.median(r[0] for r in runs[counts[0]])
    floor_base = statistics.median(floors[counts[0]])
    print(f"mode {args.mode}, {batches.pop()} batches, workers' CPU seconds (median of {args.repeat}), against {counts[0]} worker(s)")
    print(f"{'workers':>7} {'CPU s':>7} {'ratio':>6} {'spread':>12} {'main CPU s':>10} {'no-work DataLoader':>19} {'its ratio':>9}")
    for n in counts:
        cpu = [r[0] for r in runs[n]]
        ratios = [c / base for c in cpu]
        floor = statistics.median(floors[n])
        print(
            f"{n:>7} {statistics.median(cpu):>7.2f} {statistics.median(ratios):>6.2f} {min(ratios):>5.2f}-{max(ratios):<5.2f} "
            f"{statistics.median(r[1] for r in runs[n]):>10.2f} {floor:>19.2f} {floor / floor_base:>9.2f}",
            flush=True,
        )
    scratch.cleanup()


if __name__ == "__main__":
    main()
