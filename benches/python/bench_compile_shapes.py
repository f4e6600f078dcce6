"""Wall-clock of a short torch.compile'd training run under a sequence-length warmup, with and
without a shape policy (docs/schedules.md, "Shape policies").

Each configuration trains the same small GPT-shaped model on the same random tokens for the
same steps, compiled with inductor, and reports the compilations dynamo made (its
`unique_graphs` counter), the time spent before training (the pre-compile pass), the training
loop's time, and the total. The configurations:

- `static, no policy`: `torch.compile(dynamic=False)`, the path CUDA graphs need: one
  compilation per length, until dynamo's recompile limit (8 by default) sends the frame back to
  eager for the rest of the run;
- `static, no policy, limit raised`: the same with the limit raised, so every length compiles;
- `automatic dynamic, no policy`: PyTorch's default (`dynamic=None`): after the second length
  it compiles one kernel with a symbolic length and reuses it;
- `static, even:K + precompile`: the policy's K lengths, each compiled by
  `seqwarm.torch.precompile` before training; training compiles nothing.

    python benches/python/bench_compile_shapes.py [--steps 60] [--k 4] [--device cpu]

Prints one table row per configuration (and `--json` for a machine-readable line). On a GPU,
`--device cuda --compile-mode reduce-overhead` runs the same comparison with CUDA graphs
(`scripts/gpu-check` does); `cudagraph_skips` in the JSON counts graphs inductor would not
capture.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

import torch
import torch._dynamo
import torch._dynamo.utils

import seqwarm
import seqwarm.torch

VOCAB = 2048


class Block(torch.nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.proj = torch.nn.Linear(width, width)
        self.norm2 = torch.nn.LayerNorm(width)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(width, 4 * width), torch.nn.GELU(), torch.nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(width, dim=-1)
        shape = (rows, length, self.heads, width // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))
        attended = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(attended.transpose(1, 2).reshape(rows, length, width))
        return x + self.mlp(self.norm2(x))


class Gpt(torch.nn.Module):
    def __init__(self, width: int = 128, layers: int = 2, heads: int = 4, max_len: int = 1024) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, width)
        self.position = torch.nn.Embedding(max_len, width)
        self.blocks = torch.nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, VOCAB, bias=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.embed(ids) + self.position(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def loss_of(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))


def run(
    name: str,
    schedule: seqwarm.Schedule,
    rows: int,
    dynamic: Optional[bool],
    precompile: bool,
    recompile_limit: Optional[int],
    device: str,
    compile_mode: Optional[str],
) -> Dict[str, Any]:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    limit = recompile_limit if recompile_limit is not None else torch._dynamo.config.recompile_limit
    plan = seqwarm.plan(schedule, batch_rows=rows)
    steps = schedule.total or 0
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randint(0, VOCAB, (rows, plan.seq_len_at(s)), generator=generator) for s in range(steps)]
    with torch._dynamo.config.patch(recompile_limit=limit):
        started = time.perf_counter()
        model = torch.compile(Gpt(max_len=schedule.max).to(device), dynamic=dynamic, mode=compile_mode)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        if precompile:
            seqwarm.torch.precompile(model, plan, vocab_size=VOCAB, loss_fn=loss_of)
        before_training = time.perf_counter() - started
        graphs_before = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        loop_started = time.perf_counter()
        loss = torch.zeros(())
        for ids in batches:
            ids = ids.to(device)
            loss = loss_of(model(ids), ids)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss = loss.detach()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        loop = time.perf_counter() - loop_started
    graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    return {
        "config": name,
        "lengths": len(plan.shapes),
        "graphs": graphs,
        "graphs_in_training": graphs - graphs_before,
        "before_training_s": round(before_training, 1),
        "training_s": round(loop, 1),
        "total_s": round(before_training + loop, 1),
        "final_loss": round(float(loss), 4),
        "tokens_given_up": plan.tokens_given_up,
        # With mode="reduce-overhead" (CUDA graphs): graphs inductor declined to capture.
        "cudagraph_skips": int(torch._dynamo.utils.counters["inductor"]["cudagraph_skips"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--min", type=int, default=64)
    parser.add_argument("--max", type=int, default=512)
    parser.add_argument("--step", type=int, default=32)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile-mode", default=None, help="torch.compile's mode, e.g. reduce-overhead (CUDA graphs)")
    parser.add_argument("--only", default=None, help="comma-separated: static, static-unlimited, dynamic, policy (default: all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    ramp = dict(min=args.min, max=args.max, duration=args.duration, total=args.steps, step=args.step)
    plain = seqwarm.Schedule.composer(**ramp)
    bounded = seqwarm.Schedule.composer(**ramp, shapes=args.k)
    configs = {
        "static": ("static, no policy", plain, False, False, None),
        "static-unlimited": ("static, no policy, limit raised", plain, False, False, 1000),
        "dynamic": ("automatic dynamic, no policy", plain, None, False, None),
        "policy": (f"static, even:{args.k} + precompile", bounded, False, True, None),
    }
    if args.worker is not None:
        # One configuration, in this process: the parent reads the JSON line.
        name, schedule, dynamic, precompile, limit = configs[args.worker]
        print(json.dumps(run(name, schedule, args.rows, dynamic, precompile, limit, args.device, args.compile_mode)))
        return
    results: List[Dict[str, Any]] = []
    print(f"torch {torch.__version__}, device {args.device}, mode {args.compile_mode}, {args.steps} steps of {args.rows} rows, composer {args.min}->{args.max} step {args.step} over {args.duration}")
    print(f"{'configuration':<36} {'lengths':>7} {'graphs':>6} {'in training':>11} {'before (s)':>10} {'training (s)':>12} {'total (s)':>9} {'loss':>7}")
    chosen = args.only.split(",") if args.only else list(configs)
    unknown = [key for key in chosen if key not in configs]
    if unknown:
        parser.error(f"--only: unknown configurations {unknown}; choose from {list(configs)}")
    for key in chosen:
        # Each configuration in a fresh process with an empty inductor cache: otherwise a later
        # one reuses the kernels an earlier one compiled for the same shapes.
        with tempfile.TemporaryDirectory(prefix="seqwarm-inductor-") as cache:
            env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache)
            argv = [a for a in sys.argv[1:] if a != "--json"]
            done = subprocess.run(
                [sys.executable, __file__, *argv, "--worker", key], env=env, check=True, stdout=subprocess.PIPE, text=True
            )
        r = json.loads(done.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['config']:<36} {r['lengths']:>7} {r['graphs']:>6} {r['graphs_in_training']:>11} "
            f"{r['before_training_s']:>10} {r['training_s']:>12} {r['total_s']:>9} {r['final_loss']:>7}",
            flush=True,
        )
    if args.json:
        print(json.dumps(results))


if __name__ == "__main__":
    main()
