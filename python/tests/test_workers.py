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
    at_five = started.state_dict()
    assert run(started, 2, multiprocessing_context=context) == reference[5:]
    resumed = make(corpus, state=at_five)
    assert run(resumed, 2, multiprocessing_context=context) == reference[5:]


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_a_plain_dataloader_with_workers_never_gives_a_checkpoint_that_restarts_at_step_0(corpus: dict, context: str) -> None:
    """Family: resume restarting from sample 0 (MosaicML Streaming #437, #880). After a plain
    DataLoader's workers iterated the loader, its state_dict() returned ``None`` for the state,
    and loading that started again at step 0 without a word. It now raises, naming the fix."""
    loader = make(corpus)
    batches = iter(DataLoader(loader, batch_size=None, num_workers=2, multiprocessing_context=context))
    for _ in range(4):
        next(batches)
    with pytest.raises(seqwarm.StateError, match="StatefulDataLoader"):
        loader.state_dict()
    with pytest.raises(seqwarm.StateError, match="StatefulDataLoader"):
        pickle.dumps(loader)  # torch.save(loader), copy.deepcopy(loader): a stale position
    del batches
    # Iterated here again, the position is this process's own: checkpoints work as before.
    again = iter(loader)
    next(again)
    assert loader.state_dict()["seqwarm_loader_state"] is not None
    # So it is after a checkpoint is loaded here.
    fed = make(corpus)
    next(iter(DataLoader(fed, batch_size=None, num_workers=2, multiprocessing_context=context)))
    fed.load_state_dict(loader.state_dict())
    assert fed.state_dict()["seqwarm_loader_state"] is not None


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


@pytest.fixture(scope="module")
def uint16_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Flat ``uint16`` shards (the default of ``seqwarm preprocess``) of varied documents, a
    few row groups each: the input a worker hands over as placeholders where only other
    workers' steps take it."""
    out = tmp_path_factory.mktemp("uint16")
    rng = np.random.default_rng(5)
    with seqwarm.ShardWriter(out, tokenizer="bytes", shard_tokens=40_000, row_group_tokens=9_000) as writer:
        for i in range(600):
            writer.write_ids(rng.integers(1, 250, size=int(rng.integers(1, 300))).tolist())
    return str(out)


@pytest.mark.parametrize("mode", ["repack", "truncate", "reshape", "pack-greedy"])
def test_workers_on_uint16_shards_give_the_batches_of_one_process(uint16_shards: str, mode: str) -> None:
    # Each worker drops the other workers' steps by count and never widens the tokens only
    # they take (Loader::set_kept_steps): what it hands over must not change.
    def loader() -> seqwarm.Loader:
        return seqwarm.Loader(uint16_shards, linear(), mode=mode, batch_rows=4, seed=3, epochs=2, threads=0)

    reference = [(b.step, fields_of(b)) for b in loader()]
    assert len(reference) > 30
    for workers in (2, 3):
        assert run(loader(), workers) == reference, f"{workers} workers"
