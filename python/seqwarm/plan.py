"""``seqwarm.plan``: where a schedule changes length, and what each step then holds."""

from __future__ import annotations

import bisect
import json
import operator
import os
from dataclasses import dataclass
from typing import Any, Iterator, List, Mapping, Optional, Tuple, Union

from seqwarm import _seqwarm
from seqwarm._json import to_json
from seqwarm.errors import ConfigError
from seqwarm.schedule import Schedule, schedule_table

__all__ = ["plan", "Plan", "ChangePoint"]


@dataclass(frozen=True)
class ChangePoint:
    """The schedule from ``position`` (in its unit) until the next change point."""

    position: int
    """Progress from which this length applies."""
    seq_len: int
    """The sequence length."""
    rows: int
    """Rows per batch at this length (by the mode and batch size)."""
    tokens_per_step: int
    """Positions per batch (``rows * seq_len``)."""
    tokens_before: Optional[int]
    """Positions emitted before ``position`` (``None`` unless the schedule counts steps)."""


class Plan:
    """A schedule's change points with the shape of a step at each: for a learning-rate
    schedule in tokens, or for sizing a run. Made by :func:`plan`."""

    def __init__(
        self, unit: str, total: Optional[int], points: List[ChangePoint], tokens_given_up: Optional[int] = None
    ) -> None:
        self.unit = unit
        """What positions count: ``steps``, ``samples`` or ``tokens``."""
        self.total = total
        """Length of training in ``unit``, if the schedule has one."""
        self.points = points
        """The change points, in order."""
        self.tokens_given_up = tokens_given_up
        """Positions the schedule's shape policy gives up over training (the schedule without
        the policy minus with it; negative where a list snaps short lengths up). ``None``
        without a policy, or unless the schedule counts steps and has a ``total``."""
        self._positions = [p.position for p in points]

    @property
    def shapes(self) -> List[Tuple[int, int]]:
        """The distinct batch shapes ``(rows, seq_len)`` the run emits, in order (one per
        change point, since the length changes at each): what a compiled model compiles for.
        :func:`seqwarm.torch.precompile` runs each once."""
        return [(p.rows, p.seq_len) for p in self.points]

    def point_at(self, position: int) -> ChangePoint:
        """The change point in force at ``position``."""
        i = bisect.bisect_right(self._positions, position) - 1
        return self.points[max(i, 0)]

    def seq_len_at(self, position: int) -> int:
        """The length at ``position``."""
        return self.point_at(position).seq_len

    def tokens_at(self, step: int) -> int:
        """Positions emitted by the first ``step`` steps (schedules in steps only): the
        x-axis of a learning-rate schedule in tokens."""
        step = operator.index(step)
        if step < 0:
            raise ValueError(f"tokens_at: step {step} is negative")
        point = self.point_at(step)
        if point.tokens_before is None:
            raise ValueError(f"tokens_at needs a schedule in steps; this one counts {self.unit}")
        return point.tokens_before + (step - point.position) * point.tokens_per_step

    def __iter__(self) -> Iterator[ChangePoint]:
        return iter(self.points)

    def __len__(self) -> int:
        return len(self.points)

    def __repr__(self) -> str:
        return f"Plan({len(self.points)} change points, unit={self.unit!r}, total={self.total})"


def plan(
    schedule: Union[Schedule, Mapping[str, Any], str, "os.PathLike[str]"],
    *,
    mode: Optional[str] = None,
    batch_rows: Optional[int] = None,
    batch_tokens: Optional[int] = None,
) -> Plan:
    """The change points of ``schedule`` and the step shape at each, under ``mode`` (the
    loader's default when ``None``) and a batch of ``batch_rows`` rows or ``batch_tokens``
    tokens (the loader's default when neither is given), by the loader's own shape rule.

    >>> import seqwarm
    >>> p = seqwarm.plan(seqwarm.Schedule.linear(min=8, max=64, duration=0.5, total=100), batch_rows=4)
    >>> p.points[0].seq_len, p.points[-1].seq_len
    (8, 64)
    >>> p.tokens_at(100) > p.tokens_at(50)
    True
    """
    table = schedule_table(schedule)
    given = dict(mode=mode, batch_rows=batch_rows, batch_tokens=batch_tokens)
    text = _seqwarm.plan(to_json(table), to_json({k: v for k, v in given.items() if v is not None}))
    result = json.loads(text)
    points = [ChangePoint(**p) for p in result["points"]]
    return Plan(result["unit"], result["total"], points, result["tokens_given_up"])


