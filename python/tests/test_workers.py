"""DataLoader workers as sub-ranks, and torchdata's StatefulDataLoader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import seqwarm
from conftest import fields_of, linear


def emulated_workers(corpus: dict, workers: int, monkeypatch: pytest.MonkeyPatch) -> "tuple[list, list]":
    """Each worker's batches and stats, run in this process as worker w of `workers`."""
    from seqwarm import loader as loader_module

    batches, stats = [], []
    for w in range(workers):
        monkeypatch.setattr(loader_module, "_worker", lambda w=w: (w, workers))
        loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, eos_id=0, seed=2)
        batches.append([(b.step, fields_of(b)) for b in loader])
        stats.append(loader.stats())
    monkeypatch.undo()
    return batches, stats


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_follow_one_schedule_and_neither_duplicate_nor_lose_data(
    corpus: dict, context: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = 3
    plan = seqwarm.plan(linear(), mode="repack", batch_rows=4)
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, eos_id=0, seed=2)
    batches = list(DataLoader(loader, batch_size=None, num_workers=workers, multiprocessing_context=context))
    # The DataLoader takes batches from the workers in turn; the steps are those of one stream.
    assert [b.step for b in batches] == list(range(len(batches)))
    assert all(b.seq_len == plan.seq_len_at(b.step) for b in batches)
    ids = np.concatenate([b["input_ids"].numpy().ravel() for b in batches])
    real = ids[ids != 0]
    assert len(np.unique(real)) == len(real), "a token was emitted twice"
    # Worker w's batches are those of sub-rank w, whose tokens are all accounted for.
    per_worker, stats = emulated_workers(corpus, workers, monkeypatch)
    by_step = {b.step: fields_of(b) for b in batches}
    for w, own in enumerate(per_worker):
        assert [step for step, _ in own] == [k * workers + w for k in range(len(own))]
        assert all(by_step[step] == fields for step, fields in own)
    assert sum(len(own) for own in per_worker) == len(batches)
    assert sum(s["tokens_in"] for s in stats) == corpus["tokens"] + sum(s["documents"] for s in stats)
    for s in stats:
        assert s["tokens_out"] + s["tokens_dropped"] + s["tokens_cut"] == s["tokens_in"]


def test_a_loader_pickles_with_its_settings_and_position(corpus: dict) -> None:
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    iterator = iter(loader)
    head = [fields_of(next(iterator)) for _ in range(3)]
    copy = pickle.loads(pickle.dumps(loader))
    assert isinstance(copy, torch.utils.data.IterableDataset)
    rest = [fields_of(b) for b in copy]
    reference = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)]
    assert head + rest == reference


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(corpus: dict, workers: int) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    def make() -> StatefulDataLoader:
        loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, eos_id=0, seed=9, epochs=2)
        return StatefulDataLoader(loader, batch_size=None, num_workers=workers)

    reference = [fields_of(b) for b in make()]
    first = make()
    taken = []
    for batch in first:
        taken.append(fields_of(batch))
        if len(taken) == 23:
            break
    state = first.state_dict()
    del first
    resumed = make()
    resumed.load_state_dict(state)
    rest = [fields_of(b) for b in resumed]
    assert taken + rest == reference
