"""DataLoader workers: the same batches as without them; torchdata's StatefulDataLoader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import seqwarm
from conftest import fields_of, linear


def make(corpus: dict, **kwargs: object) -> seqwarm.Loader:
    settings = dict(batch_rows=4, eos_id=0, seed=2)
    settings.update(kwargs)
    return seqwarm.Loader(corpus["dir"], linear(), **settings)


def run(loader: seqwarm.Loader, workers: int, **kwargs: object) -> list:
    return [(b.step, fields_of(b)) for b in DataLoader(loader, batch_size=None, num_workers=workers, **kwargs)]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_workers_give_exactly_the_batches_of_one_process(corpus: dict, context: str) -> None:
    reference = [(b.step, fields_of(b)) for b in make(corpus)]
    got = run(make(corpus), 3, multiprocessing_context=context)
    # The same batches in the same order: steps 0, 1, 2, ... at the schedule's lengths, no
    # batch duplicated, none lost.
    assert got == reference
    ids = np.concatenate([np.asarray(f["input_ids"]).ravel() for _, f in got])
    real = ids[ids != 0]
    assert len(np.unique(real)) == len(real)


def test_limits_count_for_the_whole_stream_not_per_worker(corpus: dict) -> None:
    got = run(make(corpus, max_steps=10, epochs=0), 3)
    assert [step for step, _ in got] == list(range(10))
    tokens = sum(np.asarray(f["input_ids"]).size for _, f in run(make(corpus, max_tokens=5000), 2))
    alone = sum(np.asarray(f["input_ids"]).size for _, f in run(make(corpus, max_tokens=5000), 0))
    assert tokens == alone


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_loader_resumed_or_started_in_the_parent_continues_in_its_workers(corpus: dict, context: str) -> None:
    reference = [(b.step, fields_of(b)) for b in make(corpus)]
    started = make(corpus)
    iterator = iter(started)
    for _ in range(5):
        next(iterator)
    assert run(started, 2, multiprocessing_context=context) == reference[5:]
    resumed = make(corpus, state=started.state_dict())
    assert run(resumed, 2, multiprocessing_context=context) == reference[5:]


def test_a_loader_pickles_with_its_settings_and_position(corpus: dict) -> None:
    loader = make(corpus)
    iterator = iter(loader)
    head = [fields_of(next(iterator)) for _ in range(3)]
    copy = pickle.loads(pickle.dumps(loader))
    assert isinstance(copy, torch.utils.data.IterableDataset)
    assert head + [fields_of(b) for b in copy] == [fields_of(b) for b in make(corpus)]


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_resumes_exactly(corpus: dict, workers: int) -> None:
    from torchdata.stateful_dataloader import StatefulDataLoader

    def loader() -> StatefulDataLoader:
        return StatefulDataLoader(make(corpus, seed=9, epochs=2), batch_size=None, num_workers=workers)

    reference = [fields_of(b) for b in loader()]
    first = loader()
    taken = []
    for batch in first:
        taken.append(fields_of(batch))
        if len(taken) == 23:
            break
    state = first.state_dict()
    del first
    resumed = loader()
    resumed.load_state_dict(state)
    assert taken + [fields_of(b) for b in resumed] == reference
