"""Baseline against sequence length warmup (SLW) on a GPT-2-small-shaped model, fed by
``seqwarm.Loader``: one run per process, the same model, data order, tokens and learning-rate
schedule; only the length schedule differs. ``scripts/gpu-compare`` runs it (baseline, then
SLW) and summarizes the runs with ``scripts/compare-summary``.

    python examples/python/slw_compare.py --train T --val V --run-dir out/b --warmup none
    python examples/python/slw_compare.py --train T --val V --run-dir out/s --warmup 0.3

Every step carries the same token budget (``--batch-tokens``; rows = budget / length), so
both runs take the same steps of the same tokens: SLW's steps are cheaper while the length is
short (attention), and the held-out loss shows what the curriculum does per token. The length
schedule and the learning rate both count tokens.

Writes ``metrics.jsonl`` in the run directory in ``seqwarm train``'s format (one line per
step: ``step``, ``tokens``, ``elapsed_s`` of training, ``loss``, ``seq_len``, and
``eval_loss`` where evaluated), which ``scripts/compare-summary`` reads, and ``memory.json``:
the warm pass and the allocator's figures (peak reserved bytes, device allocations after the
warm pass, allocation retries).

On a machine without CUDA it is a dry run: a two-layer model, short lengths and few steps.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import seqwarm
import seqwarm.torch


class Block(nn.Module):
    """Pre-LayerNorm transformer block; attention through ``scaled_dot_product_attention``
    (causal, so the flash kernel applies on a GPU)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp(self.ln2(x))


class GPT2(nn.Module):
    """GPT-2's shape: learned positions, tied input and output embeddings, no dropout."""

    def __init__(self, vocab_size: int, max_len: int, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_len, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tokens.weight
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.tokens(input_ids) + self.positions(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def learning_rate(tokens: int, peak: float, total: int) -> float:
    """Linear warmup over 2% of the tokens, then cosine decay to a tenth of the peak."""
    warmup = max(1, total // 50)
    if tokens < warmup:
        return peak * (tokens + 1) / warmup
    progress = min(1.0, (tokens - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def next_token_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))


def held_out_batches(val: str, rows: int, length: int, count: int) -> List[torch.Tensor]:
    """The first ``count`` batches of ``rows`` x ``length`` of the held-out shards (constant
    length, no shuffling): the same tokens for every evaluation of every run."""
    loader = seqwarm.Loader(val, seqwarm.Schedule.constant(length), mode="repack", batch_rows=rows, shuffle_buffer=0, shuffle_units=False, epochs=0, max_steps=count)
    batches = [batch["input_ids"].to(torch.long) for batch in loader]
    loader.close()
    return batches


def stat(name: str, device: torch.device) -> Optional[int]:
    return int(torch.cuda.memory_stats(device).get(name, 0)) if device.type == "cuda" else None


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, help="training shards")
    parser.add_argument("--val", required=True, help="held-out shards")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--warmup", default="none", help="'none' (baseline: constant --max-len) or the SLW duration, e.g. 0.3")
    parser.add_argument("--tokens", type=int, default=16 * 2**20, help="training tokens of every run")
    parser.add_argument("--batch-tokens", type=int, default=32 * 1024, help="tokens per step at every length")
    parser.add_argument("--min-len", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=1024)
    parser.add_argument("--step", type=int, default=8, help="length granularity of the warmup")
    parser.add_argument("--vocab-size", type=int, default=50304, help="embedding rows (GPT-2's 50 257, padded to a multiple of 64)")
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--lr", type=float, default=6e-4)
    parser.add_argument("--eval-every", type=int, default=50, help="steps between held-out evaluations")
    parser.add_argument("--eval-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    if not gpu:  # dry run: the same code path, small enough for a CPU
        args.width, args.layers, args.heads = 64, 2, 4
        args.min_len, args.max_len = min(args.min_len, 32), min(args.max_len, 128)
        args.batch_tokens = min(args.batch_tokens, 8 * args.max_len)
        args.tokens = min(args.tokens, 40 * args.batch_tokens)
        args.eval_every, args.eval_batches = min(args.eval_every, 10), min(args.eval_batches, 2)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.run_dir, exist_ok=True)
    torch.manual_seed(args.seed)

    if args.warmup == "none":
        schedule = seqwarm.Schedule.constant(args.max_len, total=args.tokens, unit="tokens")
    else:
        schedule = seqwarm.Schedule.linear(min=args.min_len, max=args.max_len, duration=float(args.warmup), total=args.tokens, step=args.step, unit="tokens")
    max_rows = args.batch_tokens // args.max_len
    evaluation = [b.to(device) for b in held_out_batches(args.val, max_rows, args.max_len, args.eval_batches)]
    loader = seqwarm.Loader(args.train, schedule, mode="repack", batch_tokens=args.batch_tokens, seed=args.seed, epochs=0, max_tokens=args.tokens)

    model = GPT2(args.vocab_size, args.max_len, args.width, args.layers, args.heads).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1, fused=gpu)
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=gpu)
    # The warm pass at the largest shape: in the SLW run, later and longer steps then find
    # their memory already reserved.
    warm = seqwarm.torch.warm_pass(model, max_rows, args.max_len, args.vocab_size, loss_fn=lambda logits, ids: F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1)), autocast_dtype=torch.bfloat16 if gpu else None)
    allocations_after_warm = stat("num_device_alloc", device)

    def evaluate() -> float:
        model.eval()
        with torch.no_grad(), autocast:
            losses = [float(next_token_loss(model, ids)) for ids in evaluation]
        model.train()
        return sum(losses) / len(losses)

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize(device)

    metrics = open(os.path.join(args.run_dir, "metrics.jsonl"), "w")
    tokens_seen, elapsed, step = 0, 0.0, -1
    record: Dict[str, object] = {}
    model.train()
    sync()
    started = time.perf_counter()
    for batch in loader:
        step = batch.step
        ids = batch["input_ids"].to(device, dtype=torch.long, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(tokens_seen, args.lr, args.tokens)
        with autocast:
            loss = next_token_loss(model, ids)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens_seen += ids.numel()
        record = {"step": step, "tokens": tokens_seen, "seq_len": batch.seq_len}
        if step % args.eval_every == 0:
            sync()
            elapsed += time.perf_counter() - started
            record.update(loss=float(loss.detach()), elapsed_s=elapsed, eval_loss=evaluate())
            print(json.dumps(record), flush=True)
            sync()
            started = time.perf_counter()
        else:
            record["elapsed_s"] = elapsed + time.perf_counter() - started
        metrics.write(json.dumps(record) + "\n")
    sync()
    elapsed += time.perf_counter() - started
    record.update(step=step, tokens=tokens_seen, elapsed_s=elapsed, loss=float(loss.detach()), eval_loss=evaluate())
    metrics.write(json.dumps(record) + "\n")
    metrics.close()
    print(json.dumps(record), flush=True)
    loader.close()
    memory = {
        "device": torch.cuda.get_device_name(device) if gpu else "cpu",
        "warmup": args.warmup,
        "parameters": sum(p.numel() for p in model.parameters()),
        "warm_pass_s": warm.seconds,
        "peak_reserved_bytes": stat("reserved_bytes.all.peak", device),
        "device_allocations_after_warm_pass": None if allocations_after_warm is None else stat("num_device_alloc", device) - allocations_after_warm,
        "allocation_retries": stat("num_alloc_retries", device),
        "steps": step + 1,
        "tokens": tokens_seen,
        "training_s": elapsed,
    }
    with open(os.path.join(args.run_dir, "memory.json"), "w") as f:
        json.dump(memory, f)
    print(json.dumps(memory), flush=True)


if __name__ == "__main__":
    main()
