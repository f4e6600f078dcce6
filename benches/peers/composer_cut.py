"""Composer's ``set_batch_sequence_length`` on a ``rows x max_len`` batch, as every Python peer
applies it: ``truncate`` keeps the first ``seq_len`` columns (a view, as seqwarm hands out);
``reshape`` re-flows the batch into rows of ``seq_len`` and drops the tail."""

import torch


def cut(x: torch.Tensor, seq_len: int, mode: str) -> torch.Tensor:
    if mode == "truncate":
        return x[:, :seq_len]
    if mode == "reshape":
        kept = (x.numel() // seq_len) * seq_len
        return x.reshape(-1)[:kept].view(-1, seq_len)
    raise ValueError(f"mode {mode!r}: the peers do Composer's truncate and reshape")
