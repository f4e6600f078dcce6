"""``seqwarm.Loader(mode="chunk", batch_schedule=...)`` against OLMo-core's own
``NumpyFSLDataLoader`` under its ``BatchSizeSchedulerCallback``: the vectors
``scripts/olmo-core-fsl-vectors`` wrote from OLMo-core 3.0.0 (``tests/conformance/
olmo_core_fsl.json``), on the corpus ``scripts/olmo-core-vectors`` generates, batch for batch on
both ranks over two epochs, with each batch's ``lr_multiplier``; resume from a ``state_dict``
across batch-size changes; DataLoader workers; and the keywords that do not apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

import seqwarm
from conftest import REPO, rows_sha256
from seqwarm.errors import ConfigError, StateError


@pytest.fixture(scope="module")
def vectors() -> Dict[str, Any]:
    return json.loads((REPO / "tests" / "conformance" / "olmo_core_fsl.json").read_text())


def loader(directory: Path, run: Dict[str, Any], rank: int, format: str = "numpy", **extra: Any) -> seqwarm.Loader:
    schedule = [tuple(p) for p in run["schedule"]] or None
    return seqwarm.Loader(
        directory,
        mode="chunk",
        token_dtype="uint16",
        seq_len=run["seq_len"],
        batch_tokens=run["batch_tokens"],
        batch_schedule=schedule,
        batch_schedule_unit=run["unit"] if schedule else None,
        seed=run["seed"],
        rank=rank,
        world_size=run["world_size"],
        epochs=2,
        format=format,
        **extra,
    )


def expected_steps(run: Dict[str, Any], rank: int) -> List[Dict[str, Any]]:
    return [step for epoch in run["ranks"][rank] for step in epoch]


def test_every_rank_yields_olmo_cores_batches_and_rate_factors(token_files: Path, vectors: Dict[str, Any]) -> None:
    compared = 0
    for run in vectors["configs"]:
        if "error" in run:
            continue
        for rank in range(run["world_size"]):
            want = expected_steps(run, rank)
            got = list(loader(token_files, run, rank))
            assert len(got) == len(want), run["schedule"]
            for step, (batch, expected) in enumerate(zip(got, want)):
                assert batch.step == step
                assert batch.seq_len == run["seq_len"]
                rows = expected["global_batch_tokens"] // run["seq_len"] // run["world_size"]
                assert batch["input_ids"].shape == (rows, run["seq_len"])
                assert rows_sha256(batch["input_ids"]) == expected["rows_sha256"], (run["schedule"], step)
                assert batch.lr_multiplier == expected["lr_multiplier"], (run["schedule"], step)
                compared += 1
    assert compared > 4000


def test_what_olmo_core_fails_on_is_refused(token_files: Path, vectors: Dict[str, Any]) -> None:
    failing = [run for run in vectors["configs"] if "error" in run]
    assert failing
    for run in failing:
        with pytest.raises(ConfigError, match="assertion"):
            list(loader(token_files, run, 0))


def test_a_state_dict_resumes_byte_for_byte_across_batch_size_changes(
    token_files: Path, vectors: Dict[str, Any]
) -> None:
    run = vectors["configs"][2]
    assert run["world_size"] == 2 and len(run["schedule"]) == 3
    want = expected_steps(run, 1)
    for stop in (0, 7, 8, 31, len(want) // 2 + 1, len(want)):
        first = loader(token_files, run, 1)
        it = iter(first)
        for _ in range(stop):
            next(it)
        state = first.state_dict()
        resumed = list(loader(token_files, run, 1, state=state))
        assert [b.step for b in resumed] == list(range(stop, len(want)))
        assert [rows_sha256(b["input_ids"]) for b in resumed] == [s["rows_sha256"] for s in want[stop:]]
        assert [b.lr_multiplier for b in resumed] == [s["lr_multiplier"] for s in want[stop:]]
    first = loader(token_files, run, 1)
    next(iter(first))
    other = dict(run, schedule=[[0, 4096], [9, 16384]])
    with pytest.raises(StateError, match="other settings"):
        list(loader(token_files, other, 1, state=first.state_dict()))


def test_dataloader_workers_yield_the_same_batches(token_files: Path, vectors: Dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    run = vectors["configs"][1]
    want = expected_steps(run, 0)
    source = loader(token_files, run, 0, format="torch")
    batches = list(torch.utils.data.DataLoader(source, batch_size=None, num_workers=2))
    assert [b.step for b in batches] == list(range(len(want)))
    assert [rows_sha256(b["input_ids"].numpy()) for b in batches] == [s["rows_sha256"] for s in want]
    assert [b.lr_multiplier for b in batches] == [s["lr_multiplier"] for s in want]


@pytest.mark.parametrize(
    "keywords, field",
    [
        (dict(eos_id=50256), "eos_id"),
        (dict(batch_rows=4), "batch_rows"),
        (dict(curriculum="grow-p2"), "curriculum"),
        (dict(seq_len=None), "seq_len"),
        (dict(token_dtype=None), "token_dtype"),
        (dict(batch_tokens=1000), "batch_schedule"),
        (dict(batch_schedule=[(5, 2048)]), "batch_schedule"),
        (dict(batch_schedule=[(0, 2048), (10, 3072)]), "batch_schedule"),
        (dict(batch_schedule=[(0, 2048)], batch_schedule_unit="minutes"), "batch_schedule_unit"),
        (dict(batch_schedule=[(0, "x")]), "batch_schedule"),
        (dict(batch_schedule=[(0, 2048), (True, 4096)]), "batch_schedule"),
        (dict(seq_len=1, batch_tokens=2**62, world_size=4, batch_schedule=None), "batch_tokens"),
        (dict(batch_schedule=None, batch_schedule_unit="steps"), "batch_schedule_unit"),
        (dict(epochs=0), "epochs"),
    ],
)
def test_keywords_that_do_not_apply_are_refused(token_files: Path, keywords: Dict[str, Any], field: str) -> None:
    given: Dict[str, Any] = dict(
        mode="chunk",
        token_dtype="uint16",
        seq_len=256,
        batch_tokens=2048,
        batch_schedule=[(0, 2048), (10, 4096)],
        format="numpy",
    )
    given.update(keywords)
    with pytest.raises(ConfigError) as raised:
        seqwarm.Loader(token_files, **given)
    if field != "batch_schedule":
        assert raised.value.field == field, raised.value


def test_chunk_keywords_need_the_mode(token_files: Path) -> None:
    with pytest.raises(ConfigError, match="belongs to mode='chunk'"):
        seqwarm.Loader(token_files, batch_schedule=[(0, 1024)], format="numpy")
