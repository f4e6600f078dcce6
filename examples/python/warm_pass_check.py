"""What ``seqwarm.torch.warm_pass`` buys in a PyTorch run fed by ``seqwarm.Loader``: the
allocator's reserved memory, device allocations during the length ramp and allocation
retries, with and without the warm pass, each in its own process (``scripts/gpu-check``
runs it on a GPU; on a CPU it is a dry run with a small model).

    python examples/python/warm_pass_check.py --warm on  > on.jsonl
    python examples/python/warm_pass_check.py --warm off > off.jsonl
    python examples/python/warm_pass_check.py --identity     # bit-identity of the next steps
    python examples/python/warm_pass_check.py --all out/     # all of it, and a table

Prints one JSON line per length and a summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import seqwarm  # noqa: E402
import seqwarm.torch  # noqa: E402
from train_gpt import GPT  # noqa: E402


def corpus(directory: str, vocab: int, tokens: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    docs, total = [], 0
    while total < tokens:
        n = int(rng.integers(64, 2048))
        docs.append(rng.integers(2, vocab, size=n, dtype=np.int32))
        total += n
    pq.write_table(pa.table({"input_ids": pa.array(docs, type=pa.list_(pa.int32()))}), os.path.join(directory, "c.parquet"), row_group_size=256)


def stat(name: str, device: torch.device) -> int:
    return int(torch.cuda.memory_stats(device).get(name, 0)) if device.type == "cuda" else 0


def ramp(args: argparse.Namespace) -> None:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    if not gpu:  # dry run: a small model, short lengths
        args.width, args.layers, args.heads, args.vocab = 64, 2, 4, 512
        args.min, args.max, args.step = 32, 128, 32
    lengths = list(range(args.min, args.max + 1, args.step))
    schedule = seqwarm.Schedule.fixed_discrete(
        difficulty=lengths, max_step=[args.steps * (i + 1) for i in range(len(lengths) - 1)]
    )
    steps = args.steps * len(lengths)
    torch.manual_seed(0)
    model = GPT(args.vocab, args.max, width=args.width, layers=args.layers, heads=args.heads, dropout=0.0).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=gpu)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=gpu)
    with tempfile.TemporaryDirectory() as data:
        corpus(data, args.vocab, tokens=steps * args.rows * args.max + 100_000)
        loader = seqwarm.Loader(data, schedule, batch_rows=args.rows, max_steps=steps, epochs=0)
        warm = None
        if args.warm == "on":
            warm = seqwarm.torch.warm_pass(model, args.rows, args.max, args.vocab, autocast_dtype=torch.bfloat16 if gpu else None)
        allocations_before = stat("num_device_alloc", device)
        per_length: dict = {}
        for batch in loader:
            ids = batch["input_ids"].to(device, dtype=torch.long, non_blocking=True)
            started = time.perf_counter()
            with autocast:
                logits = model(ids)
                loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if gpu:
                torch.cuda.synchronize(device)
            per_length.setdefault(batch.seq_len, []).append(time.perf_counter() - started)
        loader.close()
    for seq_len, times in per_length.items():
        print(json.dumps({"kind": "length", "seq_len": seq_len, "first_step_s": times[0], "steps_per_s": (len(times) - 1) / max(1e-9, sum(times[1:])) if len(times) > 1 else None}))
    print(
        json.dumps(
            {
                "kind": "summary",
                "device": torch.cuda.get_device_name(device) if gpu else "cpu",
                "warm": args.warm,
                "warm_pass_s": warm.seconds if warm else None,
                "parameters": sum(p.numel() for p in model.parameters()),
                "peak_reserved_bytes": stat("reserved_bytes.all.peak", device) or None,
                "total_bytes": torch.cuda.get_device_properties(device).total_memory if gpu else 0,
                "device_allocations_during_ramp": stat("num_device_alloc", device) - allocations_before if gpu else None,
                "allocation_retries": stat("num_alloc_retries", device) if gpu else None,
            }
        )
    )


def identity(args: argparse.Namespace) -> None:
    """Three steps of a model that ran the warm pass against one that did not, same seeds,
    deterministic algorithms: equal to the bit, or not."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.use_deterministic_algorithms(True)

    def make() -> "tuple[GPT, torch.optim.Optimizer]":
        torch.manual_seed(0)
        model = GPT(1000, 256, width=128, layers=2, heads=4, dropout=0.1).to(device)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-3)

    results = []
    for warm in (True, False):
        model, optimizer = make()
        if warm:
            seqwarm.torch.warm_pass(model, 8, 256, 1000)
        torch.manual_seed(1)
        losses = []
        for _ in range(3):
            ids = torch.randint(0, 1000, (8, 64), device=device)
            loss = F.cross_entropy(model(ids)[:, :-1].reshape(-1, 1000), ids[:, 1:].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        results.append((losses, [p.detach().cpu().clone() for p in model.parameters()]))
    same = results[0][0] == results[1][0] and all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    print(json.dumps({"kind": "identity", "device": str(device), "losses_equal": results[0][0] == results[1][0], "parameters_equal": same}))


def run_all(args: argparse.Namespace) -> None:
    """Every setting in its own process: warm pass on and off, then both again under a memory
    cap of 1.1x the warm run's peak (where growing shapes fragment into retries), then the
    identity check; a table at the end."""
    import subprocess

    os.makedirs(args.all, exist_ok=True)
    script = os.path.abspath(__file__)
    env = dict(os.environ, CUBLAS_WORKSPACE_CONFIG=":4096:8")

    def run(name: str, extra: list, more_env: dict) -> dict:
        path = os.path.join(args.all, f"{name}.jsonl")
        print(f"== {name}", flush=True)
        with open(path, "w") as out:
            done = subprocess.run([sys.executable, script, *extra], stdout=out, env={**env, **more_env})
        rows = [json.loads(line) for line in open(path) if line.strip()]
        summary = next((r for r in rows if r["kind"] in ("summary", "identity")), None)
        return {"name": name, "rc": done.returncode, "rows": rows, "summary": summary}

    results = [run("default-on", ["--warm", "on"], {}), run("default-off", ["--warm", "off"], {})]
    first = results[0]["summary"] or {}
    if first.get("peak_reserved_bytes") and first.get("total_bytes"):
        fraction = min(0.95, 1.1 * first["peak_reserved_bytes"] / first["total_bytes"])
        cap = {"PYTORCH_CUDA_ALLOC_CONF": f"per_process_memory_fraction:{fraction:.4f}"}
        print(f"== pressure: per_process_memory_fraction {fraction:.4f}", flush=True)
        results += [run("pressure-on", ["--warm", "on"], cap), run("pressure-off", ["--warm", "off"], cap)]
    identity_result = run("identity", ["--identity"], {})
    print("\n| setting | warm pass | peak reserved GiB | device allocations in ramp | allocation retries |")
    print("|---|---|---|---|---|")
    for r in results:
        s = r["summary"]
        if s is None:
            print(f"| {r['name']} | | did not finish (exit {r['rc']}) | | |")
            continue
        peak = f"{s['peak_reserved_bytes'] / 2**30:.2f}" if s["peak_reserved_bytes"] else "unavailable"
        setting, warm = r["name"].rsplit("-", 1)
        shown = lambda v: "-" if v is None else v  # noqa: E731
        print(f"| {setting} | {warm} | {peak} | {shown(s['device_allocations_during_ramp'])} | {shown(s['allocation_retries'])} |")
    print("\nsteps/s by length (first step at each length in parentheses, seconds):")
    for r in results:
        lengths = [x for x in r["rows"] if x["kind"] == "length"]
        text = ", ".join(f"{x['seq_len']}: {x['steps_per_s'] or 0:.2f} ({x['first_step_s']:.3f})" for x in lengths)
        print(f"{r['name']}: {text}")
    if results[0]["summary"]:
        s = results[0]["summary"]
        print(f"\ndevice {s['device']}, {s['parameters']} parameters, warm pass {s['warm_pass_s']:.2f} s")
    print(f"identity: {identity_result['summary']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", choices=["on", "off"], default="on")
    parser.add_argument("--identity", action="store_true", help="check bit-identity instead")
    parser.add_argument("--all", metavar="DIR", help="run every setting in its own process, results in DIR")
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--min", type=int, default=128)
    parser.add_argument("--max", type=int, default=1024)
    parser.add_argument("--step", type=int, default=128)
    parser.add_argument("--steps", type=int, default=4, help="steps per length")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    args = parser.parse_args()
    if args.all:
        run_all(args)
    elif args.identity:
        identity(args)
    else:
        ramp(args)


if __name__ == "__main__":
    main()
