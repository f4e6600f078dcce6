"""The simplest loader a user writes (nanoGPT's): every token of the corpus in one raw
``uint16`` file, read through ``np.memmap``; each step takes the next ``rows x max_len``
tokens, widens them to ``int64`` for PyTorch, and applies Composer's
``set_batch_sequence_length`` at the scheduled length (``truncate``: the first ``seq_len``
columns, as a view; ``reshape``: the batch re-flowed into rows of ``seq_len``, the tail
dropped).

``benches/python/bench_peers.py`` imports :func:`batches` (the loop it times) and runs
:func:`main` in a fresh interpreter for the whole-process figure.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Iterator, List

import numpy as np
import torch
from composer_cut import cut


def batches(path: str, lengths: List[int], rows: int, max_len: int, mode: str) -> Iterator[torch.Tensor]:
    """The batches of ``len(lengths)`` steps; ``lengths[step]`` is the scheduled length of each.
    An epoch is every whole step of ``rows x max_len`` tokens (the remainder is dropped); the
    steps go on through as many epochs as they need."""
    data = np.memmap(path, dtype=np.uint16, mode="r")
    per_step = rows * max_len
    epoch_steps = len(data) // per_step
    for step, seq_len in enumerate(lengths):
        at = (step % epoch_steps) * per_step
        window = data[at : at + per_step]
        yield cut(torch.from_numpy(window.astype(np.int64)).view(rows, max_len), seq_len, mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True, help="raw uint16 tokens")
    parser.add_argument("--lengths", required=True, help="JSON list: the length of every step")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--max-len", type=int, required=True)
    parser.add_argument("--mode", required=True)
    args = parser.parse_args()
    with open(args.lengths) as f:
        lengths = json.load(f)
    started = time.perf_counter()
    tokens = sum(b.numel() for b in batches(args.data, lengths, args.rows, args.max_len, args.mode))
    print(json.dumps({"tokens": tokens, "loop_s": time.perf_counter() - started}))


if __name__ == "__main__":
    main()
