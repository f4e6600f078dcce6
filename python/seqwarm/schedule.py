"""Sequence-length schedules: how the length grows with training progress."""

from __future__ import annotations

import json
import operator
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from seqwarm import _seqwarm
from seqwarm._json import to_json

__all__ = ["Schedule"]


def _drop_none(**values: Any) -> Dict[str, Any]:
    # A keyword left at None takes the library's default: the key is not sent at all.
    return {k: v for k, v in values.items() if v is not None}


#: A shape policy as the constructors take it: ``8`` (at most 8 evenly spaced lengths),
#: ``"powers_of_two"``, ``"even:8"``, or a list of lengths.
Shapes = Union[int, str, Sequence[int], None]


def _shapes(shapes: Shapes) -> Any:
    """A shape policy as its config value (``{"even": 8}``, ``"powers_of_two"``,
    ``{"lengths": [...]}``); ``None`` stays ``None`` (no policy). Takes the command line's
    spellings too: ``"even:8"``, ``"pow2"``, ``"256,512,1024"``."""
    if shapes is None or isinstance(shapes, Mapping):
        return shapes
    if isinstance(shapes, bool):
        raise TypeError('shapes: expected a count, "powers_of_two", "even:K" or a list of lengths, not a bool')
    if isinstance(shapes, str):
        # The command line's spellings, parsed by the library's one parser of them.
        return json.loads(_seqwarm.parse_shapes(shapes))
    try:
        return {"even": operator.index(shapes)}
    except TypeError:
        pass
    return {"lengths": [operator.index(length) for length in shapes]}


def _ramp(
    kind: str, min: int, max: int, duration: float, total: int, step: Optional[int], unit: Optional[str], shapes: Shapes
) -> Dict[str, Any]:
    """The table of a ramp kind (``linear`` and ``composer`` share their fields)."""
    return _drop_none(kind=kind, min=min, max=max, duration=duration, total=total, step=step, unit=unit, shapes=_shapes(shapes))


class Schedule:
    """A checked sequence-length schedule.

    Build one with a constructor per kind (the fields and defaults are those of seqwarm's
    config files, ``docs/schedules.md``), from a dict, or from a TOML or JSON file::

        Schedule.linear(min=64, max=1024, duration=0.3, total=20_000, step=64)
        Schedule.composer(min=64, max=1024, duration=0.3, total=20_000, step=64)
        Schedule.fixed_root(min=64, max=1024, total_curriculum_step=5_000, root_degree=2)
        Schedule.from_dict({"kind": "constant", "max": 1024})
        Schedule.from_file("schedule.toml")

    It is checked by the same code the loader runs; an invalid one raises
    :class:`seqwarm.ConfigError` naming the field.
    """

    __slots__ = ("_config", "_info")

    def __init__(self, config: Mapping[str, Any]) -> None:
        """A schedule from its config table (``{"kind": "linear", "min": 8, ...}``)."""
        if not isinstance(config, Mapping):
            raise TypeError(f"a schedule's config is a mapping, not {type(config).__name__}")
        info = json.loads(_seqwarm.check_schedule(to_json(dict(config), "schedule")))
        self._config: Dict[str, Any] = info["config"]
        self._info: Dict[str, Any] = info

    @classmethod
    def linear(
        cls,
        min: int,
        max: int,
        duration: float,
        total: int,
        *,
        step: Optional[int] = None,
        unit: Optional[str] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """seqwarm's linear ramp from ``min`` to ``max`` over the first ``duration`` fraction
        of ``total`` (steps, or ``unit`` = ``"samples"``/``"tokens"``), in multiples of ``step``
        (default 8)."""
        return cls(_ramp("linear", min, max, duration, total, step, unit, shapes))

    @classmethod
    def composer(
        cls,
        min: int,
        max: int,
        duration: float,
        total: int,
        *,
        step: Optional[int] = None,
        unit: Optional[str] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """Composer's ``SeqLengthWarmup`` schedule, step for step (``min_seq_length``,
        ``max_seq_length``, ``step_size``, ``duration`` of ``max_duration`` = ``total``)."""
        return cls(_ramp("composer", min, max, duration, total, step, unit, shapes))

    @classmethod
    def fixed_linear(
        cls,
        min: int,
        max: int,
        total_curriculum_step: int,
        *,
        step: Optional[int] = None,
        total: Optional[int] = None,
        unit: Optional[str] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """DeepSpeed's ``fixed_linear`` curriculum (``min_difficulty``, ``max_difficulty``,
        ``difficulty_step``, ``total_curriculum_step``)."""
        return cls(
            _drop_none(
                kind="fixed_linear",
                min=min,
                max=max,
                total_curriculum_step=total_curriculum_step,
                step=step,
                total=total,
                unit=unit,
                shapes=_shapes(shapes),
            )
        )

    @classmethod
    def fixed_root(
        cls,
        min: int,
        max: int,
        total_curriculum_step: int,
        *,
        root_degree: Optional[int] = None,
        step: Optional[int] = None,
        total: Optional[int] = None,
        unit: Optional[str] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """DeepSpeed's ``fixed_root`` curriculum (``root_degree`` 2 is a square-root ramp)."""
        return cls(
            _drop_none(
                kind="fixed_root",
                min=min,
                max=max,
                total_curriculum_step=total_curriculum_step,
                root_degree=root_degree,
                step=step,
                total=total,
                unit=unit,
                shapes=_shapes(shapes),
            )
        )

    @classmethod
    def fixed_discrete(
        cls,
        difficulty: Sequence[int],
        max_step: Sequence[int],
        *,
        total: Optional[int] = None,
        unit: Optional[str] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """DeepSpeed's ``fixed_discrete`` curriculum: ``difficulty[i]`` until ``max_step[i]``,
        the last difficulty after."""
        return cls(
            _drop_none(
                kind="fixed_discrete",
                difficulty=list(difficulty),
                max_step=list(max_step),
                total=total,
                unit=unit,
                shapes=_shapes(shapes),
            )
        )

    @classmethod
    def constant(
        cls, max: int, *, total: Optional[int] = None, unit: Optional[str] = None, shapes: Shapes = None
    ) -> "Schedule":
        """One length throughout (the baseline without warmup); ``shapes`` is accepted as by
        every kind, and allows that one length."""
        return cls(_drop_none(kind="constant", max=max, total=total, unit=unit, shapes=_shapes(shapes)))

    @classmethod
    def olmo_split(
        cls,
        max: int,
        *,
        min: Optional[int] = None,
        warmup_steps: Optional[int] = None,
        total: Optional[int] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """OLMo-core's ``SequenceLengthSchedulerCallback(truncate=False)``: ``min`` (its
        ``min_sequence_length``, default 128) times a power of two toward ``max`` (the dataset's
        ``sequence_length``) over ``warmup_steps`` (default 2000); use with ``mode="reshape"``,
        which splits each row as its ``melt_batch`` does."""
        return cls(
            _drop_none(
                kind="olmo_split", min=min, max=max, warmup_steps=warmup_steps, total=total, shapes=_shapes(shapes)
            )
        )

    @classmethod
    def olmo_truncate(
        cls,
        max: int,
        *,
        min: Optional[int] = None,
        warmup_steps: Optional[int] = None,
        keep_multiple_of: Optional[int] = None,
        total: Optional[int] = None,
        shapes: Shapes = None,
    ) -> "Schedule":
        """OLMo-core's ``SequenceLengthSchedulerCallback(truncate=True)``: lengths multiples of
        ``keep_multiple_of`` (default 128); use with ``mode="truncate"``."""
        return cls(
            _drop_none(
                kind="olmo_truncate",
                min=min,
                max=max,
                warmup_steps=warmup_steps,
                keep_multiple_of=keep_multiple_of,
                total=total,
                shapes=_shapes(shapes),
            )
        )

    def with_shapes(self, shapes: Shapes) -> "Schedule":
        """This schedule with a shape policy (``None`` removes it): at most a few lengths, each
        position's length snapped down to an allowed one, so that a compiled model sees few
        shapes (``docs/schedules.md``, "Shape policies"). ``shapes`` is a count of evenly
        spaced lengths (``8``), ``"powers_of_two"``, or a list of lengths that includes
        ``max``."""
        table = self.to_dict()
        table.pop("shapes", None)
        return Schedule(_drop_none(**table, shapes=_shapes(shapes)))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "Schedule":
        """A schedule from a config table, as in a ``[schedule]`` table of a config file."""
        return cls(config)

    @classmethod
    def from_file(cls, path: Union[str, "os.PathLike[str]"]) -> "Schedule":
        """A schedule from a TOML or JSON file: either the schedule's table itself, or a
        config file with a ``schedule`` table."""
        table = json.loads(_seqwarm.read_table(os.fspath(path)))
        if "schedule" in table and "kind" not in table:
            table = table["schedule"]
        return cls(table)

    def to_dict(self) -> Dict[str, Any]:
        """The config table, every default filled in."""
        return json.loads(json.dumps(self._config))

    @property
    def kind(self) -> str:
        """``linear``, ``composer``, ``fixed_linear``, ``fixed_root``, ``fixed_discrete``,
        ``constant``, ``olmo_split`` or ``olmo_truncate``."""
        return str(self._config["kind"])

    @property
    def min(self) -> int:
        """The shortest length."""
        return int(self._info["min"])

    @property
    def max(self) -> int:
        """The longest length (the warm pass's)."""
        return int(self._info["max"])

    @property
    def unit(self) -> str:
        """What progress is counted in: ``steps``, ``samples`` or ``tokens``."""
        return str(self._info["unit"])

    @property
    def total(self) -> Optional[int]:
        """Length of training in ``unit``, if the schedule has one."""
        return self._info["total"]

    @property
    def allowed_lengths(self) -> Optional[List[int]]:
        """The lengths the shape policy allows, ascending; ``None`` without a policy."""
        allowed = self._info.get("allowed_lengths")
        return None if allowed is None else [int(length) for length in allowed]

    @property
    def warmup_end(self) -> int:
        """The progress from which the length stays at ``max``."""
        return int(self._info["warmup_end"])

    @property
    def warnings(self) -> List[str]:
        """What the schedule's checks let through but flag as probably not meant."""
        return list(self._info["warnings"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self._config == other._config

    def __hash__(self) -> int:
        return hash(json.dumps(self._config, sort_keys=True))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._config.items() if k != "kind")
        return f"Schedule.{self.kind}({fields})"

    def __reduce__(self) -> Any:
        return (Schedule, (self._config,))


def schedule_table(schedule: Union[Schedule, Mapping[str, Any], str, "os.PathLike[str]"]) -> Dict[str, Any]:
    """Any way of giving a schedule, as its config table."""
    if isinstance(schedule, Schedule):
        return schedule.to_dict()
    if isinstance(schedule, Mapping):
        return Schedule(schedule).to_dict()
    if isinstance(schedule, (str, os.PathLike)):
        return Schedule.from_file(schedule).to_dict()
    raise TypeError(f"schedule: expected a seqwarm.Schedule, a dict or a file path, not {type(schedule).__name__}")
