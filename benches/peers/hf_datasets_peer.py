"""Hugging Face ``datasets``, the way a Transformers user feeds Composer's SLW: the corpus as a
dataset of ``max_len``-token rows (what ``group_texts`` produces, saved with ``save_to_disk``:
memory-mapped Arrow), read with ``with_format("torch")`` ``rows`` at a time, then Composer's
cut at the scheduled length. Built once from the raw ``uint16`` tokens (not timed)."""

from __future__ import annotations

import os
from typing import Iterator, List

import numpy as np
import torch
from composer_cut import cut


def prepare(raw: str, out: str, max_len: int) -> str:
    import datasets

    if not os.path.exists(os.path.join(out, "dataset_info.json")):
        data = np.fromfile(raw, dtype="<u2")
        n = len(data) // max_len
        rows = data[: n * max_len].reshape(n, max_len).astype(np.int32)
        datasets.Dataset.from_dict({"input_ids": rows}).save_to_disk(out)
    return out


def batches(path: str, lengths: List[int], rows: int, max_len: int, mode: str) -> Iterator[torch.Tensor]:
    import datasets

    ds = datasets.load_from_disk(path).with_format("torch")
    epoch_steps = len(ds) // rows
    for step, seq_len in enumerate(lengths):
        at = (step % epoch_steps) * rows
        yield cut(ds[at : at + rows]["input_ids"], seq_len, mode)
