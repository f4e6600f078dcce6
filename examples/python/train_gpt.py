"""A small GPT trained in PyTorch from seqwarm batches: the warm pass, a learning rate
scheduled in tokens, and a checkpoint that resumes exactly.

    python examples/python/train_gpt.py                       # demo corpus, 200 steps on CPU
    python examples/python/train_gpt.py --shards data/ --vocab-size 50257 --device cuda
    python examples/python/train_gpt.py --total 200 --steps 100 --checkpoint run.pt  # stop at 100
    python examples/python/train_gpt.py --total 200 --steps 200 --checkpoint run.pt  # go on

(The schedule spans ``--total`` steps; a checkpoint resumes only under the same schedule.)

With no ``--shards``, it writes a demo corpus (a toy language whose tokens have likely successors,
so that the loss visibly falls) with pyarrow into a temporary directory.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import seqwarm
import seqwarm.torch


class Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        causal = torch.triu(torch.ones(t, t, dtype=torch.bool, device=x.device), diagonal=1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """A decoder-only transformer: ``model(input_ids) -> logits``."""

    def __init__(self, vocab_size: int, max_len: int, width: int = 64, layers: int = 2, heads: int = 4, dropout: float = 0.1) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_len, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(width, heads, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.drop(self.tokens(input_ids) + self.positions(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


def demo_corpus(directory: str, vocab_size: int, documents: int = 3000, seed: int = 0) -> None:
    """Parquet shards of a toy language: each token is followed by a fixed successor (a
    permutation of the vocabulary), but one time in ten by a random token."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    successor = rng.permutation(np.arange(2, vocab_size))
    successor = np.concatenate([[2, 2], successor])  # ids 0 and 1 (padding, EOS) lead anywhere
    docs = []
    for _ in range(documents):
        length = int(rng.integers(40, 400))
        doc = np.empty(length, dtype=np.int32)
        doc[0] = rng.integers(2, vocab_size)
        noise = rng.random(length) < 0.1
        for i in range(1, length):
            doc[i] = rng.integers(2, vocab_size) if noise[i] else successor[doc[i - 1]]
        docs.append(doc)
    for i in range(4):
        part = docs[i::4]
        table = pa.table({"input_ids": pa.array(part, type=pa.list_(pa.int32()))})
        pq.write_table(table, os.path.join(directory, f"demo-{i}.parquet"), row_group_size=128)


def learning_rate(tokens: int, peak: float, warmup_tokens: int, total_tokens: int) -> float:
    """Linear warmup then cosine decay, both in tokens: with a growing sequence length, steps
    hold different numbers of tokens, so a schedule in steps would decay too early."""
    if tokens < warmup_tokens:
        return peak * (tokens + 1) / warmup_tokens
    progress = min(1.0, (tokens - warmup_tokens) / max(1, total_tokens - warmup_tokens))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(argv: Optional[List[str]] = None) -> List[float]:
    """Runs training; returns the loss of every step run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", help="Parquet token shards (default: a demo corpus)")
    parser.add_argument("--vocab-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=200, help="train until this step")
    parser.add_argument("--total", type=int, default=None, help="length of the run in steps (default: --steps)")
    parser.add_argument("--min-len", type=int, default=16)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--duration", type=float, default=0.3)
    parser.add_argument("--batch-rows", type=int, default=8)
    parser.add_argument("--mode", default="repack")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--checkpoint", help="save here at the end; resume from it if it exists")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    total = args.total or args.steps
    torch.manual_seed(args.seed)

    # The demo corpus's documents have no EOS: the loader appends id 1. Shards from `seqwarm
    # preprocess` end each document with the EOS their manifest names: nothing to append.
    eos_id = 1 if args.shards is None else None
    workdir = None
    shards = args.shards
    if shards is None:
        workdir = tempfile.TemporaryDirectory(prefix="seqwarm-demo-")
        demo_corpus(workdir.name, args.vocab_size, seed=args.seed)
        shards = workdir.name

    schedule = seqwarm.Schedule.linear(min=args.min_len, max=args.max_len, duration=args.duration, total=total, step=8)
    plan = seqwarm.plan(schedule, mode=args.mode, batch_rows=args.batch_rows)
    total_tokens = plan.tokens_at(total)
    loader = seqwarm.Loader(
        shards,
        schedule,
        mode=args.mode,
        batch_rows=args.batch_rows,
        eos_id=eos_id,
        seed=args.seed,
        epochs=0,  # as many epochs as the steps need
        max_steps=args.steps,
    )
    device = torch.device(args.device)
    model = GPT(args.vocab_size, args.max_len).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.1)
    step, tokens_seen = 0, 0
    if args.checkpoint and os.path.exists(args.checkpoint):
        checkpoint = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        loader.load_state_dict(checkpoint["loader"])
        torch.set_rng_state(checkpoint["rng"])
        step, tokens_seen = checkpoint["step"], checkpoint["tokens_seen"]
    else:
        # Reserve the largest shape's memory before the first, shortest step.
        report = seqwarm.torch.warm_pass(model, args.batch_rows, args.max_len, args.vocab_size)
        if not args.quiet:
            print(f"warm pass: {args.batch_rows} x {args.max_len} in {report.seconds:.2f} s; allocator after: {report.after}")

    losses: List[float] = []
    started = time.perf_counter()
    model.train()
    for batch in loader:
        ids = batch["input_ids"].to(device, dtype=torch.long, non_blocking=True)
        lr = learning_rate(tokens_seen, args.lr, total_tokens // 20, total_tokens)
        for group in optimizer.param_groups:
            group["lr"] = lr
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        tokens_seen += ids.numel()
        step = batch.step + 1
        losses.append(float(loss.detach()))
        if not args.quiet and (batch.step % 20 == 0 or step == args.steps):
            print(f"step {batch.step:5d}  len {batch.seq_len:4d}  tokens {tokens_seen:9d}  lr {lr:.2e}  loss {losses[-1]:.3f}")
    if not args.quiet:
        rate = sum(1 for _ in losses) / max(1e-9, time.perf_counter() - started)
        print(f"done: step {step}, {tokens_seen} tokens, {rate:.1f} steps/s")
    if args.checkpoint:
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "loader": loader.state_dict(),
                "rng": torch.get_rng_state(),
                "step": step,
                "tokens_seen": tokens_seen,
            },
            args.checkpoint + ".tmp",
        )
        os.replace(args.checkpoint + ".tmp", args.checkpoint)
    loader.close()
    if workdir is not None:
        workdir.cleanup()
    return losses


if __name__ == "__main__":
    train()
