"""``seqwarm.Loader(mode="decompose")`` against OLMo-core's own ``NumpyVSLDataLoader``: the
vectors ``scripts/olmo-core-vectors`` wrote from OLMo-core 3.0.0 (``tests/conformance/
olmo_core.json``), on the corpus that script generates (rebuilt here by the same rule), batch
for batch on both ranks over two epochs; resume from a ``state_dict``; DataLoader workers; and
the keywords that do not apply."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest

import seqwarm
from conftest import EOS, rows_sha256
from seqwarm.errors import ConfigError, DataError, StateError

REPO = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def vectors() -> Dict[str, Any]:
    return json.loads((REPO / "tests" / "conformance" / "olmo_core.json").read_text())


def contract_run(vectors: Dict[str, Any]) -> Dict[str, Any]:
    run = vectors["runs"][0]
    assert (run["curriculum"], run["cycles"], run["balanced"], run["world_size"]) == ("grow-p2", 4, True, 2)
    return run


def loader(directory: Path, run: Dict[str, Any], rank: int, **extra: Any) -> seqwarm.Loader:
    grow = run["curriculum"] != "natural"
    return seqwarm.Loader(
        directory,
        {"min": run["min"], "max": run["max"]},
        mode="decompose",
        token_dtype="uint16",
        eos_id=EOS,
        curriculum=run["curriculum"],
        cycles=run["cycles"] if grow else None,
        balanced=run["balanced"] if grow else None,
        batch_tokens=run["batch_tokens"],
        seed=run["seed"],
        rank=rank,
        world_size=run["world_size"],
        epochs=2,
        format="numpy",
        **extra,
    )


def expected_steps(run: Dict[str, Any], rank: int) -> List[Dict[str, Any]]:
    return [step for epoch in run["ranks"][rank] for step in epoch]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_every_rank_yields_olmo_cores_batches(token_files: Path, vectors: Dict[str, Any], which: int) -> None:
    # The contract's run, and two-rank Grow-Linear and natural runs.
    two_rank = [r for r in vectors["runs"] if r["world_size"] == 2]
    run = [two_rank[0]] + [r for r in two_rank if r["curriculum"] != "grow-p2"][:2]
    run = run[which]
    for rank in range(run["world_size"]):
        want = expected_steps(run, rank)
        got = list(loader(token_files, run, rank))
        assert len(got) == len(want)
        for step, (batch, expected) in enumerate(zip(got, want)):
            assert batch.step == step
            assert batch.seq_len == expected["length"], step
            assert batch["input_ids"].shape == (len(expected["instances"]), expected["length"])
            assert batch.tokens == batch["input_ids"].size
            assert rows_sha256(batch["input_ids"]) == expected["rows_sha256"], step


def test_a_state_dict_resumes_byte_for_byte(token_files: Path, vectors: Dict[str, Any]) -> None:
    run = contract_run(vectors)
    want = expected_steps(run, 1)
    for stop in (0, 7, len(want) // 2 + 1, len(want)):
        first = loader(token_files, run, 1)
        it = iter(first)
        for _ in range(stop):
            next(it)
        state = first.state_dict()
        resumed = list(loader(token_files, run, 1, state=state))
        assert [b.step for b in resumed] == list(range(stop, len(want)))
        assert [rows_sha256(b["input_ids"]) for b in resumed] == [s["rows_sha256"] for s in want[stop:]]


def test_a_state_of_other_settings_is_refused(token_files: Path, vectors: Dict[str, Any]) -> None:
    run = contract_run(vectors)
    first = loader(token_files, run, 0)
    next(iter(first))
    other = dict(run, seed=run["seed"] + 1)
    with pytest.raises(StateError, match="other settings"):
        list(loader(token_files, other, 0, state=first.state_dict()))


def test_dataloader_workers_yield_the_same_batches(token_files: Path, vectors: Dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    run = contract_run(vectors)
    want = expected_steps(run, 0)
    source = seqwarm.Loader(
        token_files,
        {"min": run["min"], "max": run["max"]},
        mode="decompose",
        token_dtype="uint16",
        eos_id=EOS,
        curriculum="grow-p2",
        cycles=4,
        balanced=True,
        batch_tokens=run["batch_tokens"],
        rank=0,
        world_size=2,
        epochs=2,
    )
    batches = list(torch.utils.data.DataLoader(source, batch_size=None, num_workers=2))
    assert [b.step for b in batches] == list(range(len(want)))
    assert [rows_sha256(b["input_ids"].numpy()) for b in batches] == [s["rows_sha256"] for s in want]


def test_the_plan_is_the_bucket_table(token_files: Path, vectors: Dict[str, Any]) -> None:
    run = contract_run(vectors)
    plan = loader(token_files, run, 0).decomposition()
    assert [[x["length"], x["pieces"]] for x in plan["lengths"]] == run["instances_per_bucket"]
    assert plan["steps_per_epoch"] == len(run["ranks"][0][0])
    assert plan["steps_per_epoch"] == sum(x["batches"] for x in plan["lengths"])


@pytest.mark.parametrize(
    "keywords, field",
    [
        (dict(batch_rows=4), "batch_rows"),
        (dict(pad_id=0), "pad_id"),
        (dict(shuffle_buffer=16), "shuffle_buffer"),
        (dict(token_dtype=None), "token_dtype"),
        (dict(curriculum="grow-cubic"), "curriculum"),
        (dict(batch_tokens=3000), "batch_tokens"),
        (dict(epochs=0), "epochs"),
    ],
)
def test_keywords_that_do_not_apply_are_refused(token_files: Path, keywords: Dict[str, Any], field: str) -> None:
    given: Dict[str, Any] = dict(
        mode="decompose", token_dtype="uint16", eos_id=EOS, batch_tokens=4096, format="numpy"
    )
    given.update(keywords)
    with pytest.raises(ConfigError) as raised:
        seqwarm.Loader(token_files, {"min": 64, "max": 2048}, **given)
    assert raised.value.field == field, raised.value


def test_decomposition_keywords_need_the_mode(token_files: Path) -> None:
    with pytest.raises(ConfigError, match="belongs to mode='decompose'"):
        seqwarm.Loader(token_files, curriculum="grow-p2", format="numpy")


def test_a_truncated_uint32_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.bin").write_bytes(b"\x01\x00\x00\x00\x02\x00")
    source = seqwarm.Loader(
        tmp_path / "bad.bin",
        {"min": 64, "max": 128},
        mode="decompose",
        token_dtype="uint32",
        eos_id=0,
        batch_tokens=128,
        format="numpy",
    )
    with pytest.raises(DataError) as raised:
        list(source)
    assert "bad.bin" in str(raised.value)
