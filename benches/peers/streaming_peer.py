"""MosaicML Streaming, as Composer's own examples feed SLW: the corpus written once as MDS
shards (``MDSWriter``, one ``max_len``-token ``uint16`` sample each, uncompressed), read back
through ``StreamingDataset(local=..., shuffle=False)`` and a ``DataLoader`` of ``rows`` samples
that stacks them into an ``int64`` batch; then Composer's cut at the scheduled length. Built
once from the raw ``uint16`` tokens (not timed)."""

from __future__ import annotations

import os
from typing import Iterator, List

import numpy as np
import torch
from composer_cut import cut


def prepare(raw: str, out: str, max_len: int) -> str:
    from streaming import MDSWriter

    if not os.path.exists(os.path.join(out, "index.json")):
        data = np.fromfile(raw, dtype="<u2")
        n = len(data) // max_len
        with MDSWriter(out=out, columns={"input_ids": "ndarray:uint16"}, compression=None) as writer:
            for row in data[: n * max_len].reshape(n, max_len):
                writer.write({"input_ids": row})
    return out


def _stack(samples: list) -> torch.Tensor:
    return torch.from_numpy(np.stack([s["input_ids"] for s in samples]).astype(np.int64))


def batches(path: str, lengths: List[int], rows: int, max_len: int, mode: str) -> Iterator[torch.Tensor]:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    clean_stale_shared_memory()
    dataset = StreamingDataset(local=path, batch_size=rows, shuffle=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=rows, num_workers=0, collate_fn=_stack, drop_last=True)
    step = 0
    try:
        while step < len(lengths):
            for x in loader:
                if step == len(lengths):
                    break
                yield cut(x, lengths[step], mode)
                step += 1
    finally:
        del loader, dataset
