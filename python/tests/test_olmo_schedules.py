"""OLMo-core's sequence-length scheduler as schedule kinds (``olmo_split``, ``olmo_truncate``)
through the Python package: each step's shape against OLMo-core's own length functions
(``tests/conformance/olmo_core_schedules.json``), split by ``reshape`` (OLMo-core's
``melt_batch``: the same tokens in more, shorter rows) and cut by ``truncate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

import pytest

import seqwarm

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("truncate, warmup_steps", [(False, 3), (True, 7)])
def test_each_steps_shape_follows_olmo_core(corpus: Dict[str, Any], truncate: bool, warmup_steps: int) -> None:
    vectors = json.loads((REPO / "tests" / "conformance" / "olmo_core_schedules.json").read_text())
    want = next(s for s in vectors["schedules"] if s["truncate"] == truncate and s["warmup_steps"] == warmup_steps)
    if truncate:
        schedule = seqwarm.Schedule.olmo_truncate(
            want["max"], min=want["min"], warmup_steps=warmup_steps, keep_multiple_of=want["keep_multiple_of"]
        )
    else:
        schedule = seqwarm.Schedule.olmo_split(want["max"], min=want["min"], warmup_steps=warmup_steps)
    rows = 4
    loader = seqwarm.Loader(
        corpus["dir"],
        schedule,
        mode="truncate" if truncate else "reshape",
        batch_rows=rows,
        eos_id=0,
        max_steps=warmup_steps + 3,
        format="numpy",
    )
    steps = 0
    for batch in loader:
        # OLMo-core's trainer counts steps from 1.
        length = [n for start, n in want["changes"] if start <= batch.step + 1][-1]
        assert batch.seq_len == length, batch.step
        if truncate:
            assert batch["input_ids"].shape == (rows, length)
        else:
            # melt_batch: rows x max re-flowed into rows of the step's length.
            assert batch["input_ids"].shape == (rows * want["max"] // length, length)
        steps += 1
    assert steps == warmup_steps + 3
    assert len({n for _, n in want["changes"]}) >= 3
