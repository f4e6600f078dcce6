"""Settings as JSON for the Rust side, accepting what Python users pass: NumPy scalars and
arrays, paths, tuples."""

from __future__ import annotations

import json
import os
from typing import Any

from seqwarm.errors import ConfigError


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    tolist = getattr(value, "tolist", None)  # NumPy scalars and arrays
    if callable(tolist):
        return tolist()
    if hasattr(value, "__index__"):
        return value.__index__()
    if hasattr(value, "__float__"):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not a setting value")


def _culprit(value: Any, path: str = "") -> "tuple[str, str] | None":
    """The key path (``schedule.min``, ``sources[0].weight``) of the first value JSON cannot
    hold, and why; ``None`` when every value is fine."""
    if isinstance(value, dict):
        for key, item in value.items():
            found = _culprit(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _culprit(item, f"{path}[{i}]")
            if found is not None:
                return found
        return None
    try:
        json.dumps(value, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as e:
        if isinstance(value, float) or hasattr(value, "__float__"):
            return path, f"{value!r} is not a finite number"
        return path, str(e)
    return None


def to_json(value: Any, prefix: str = "") -> str:
    """``value`` as JSON text; a value JSON cannot hold (NaN, infinity, an object) is a
    ConfigError whose ``field`` names the keyword (``schedule.min`` for a nested one; the keys
    of ``value`` are under ``prefix`` when given)."""
    try:
        return json.dumps(value, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as e:
        found = _culprit(value, prefix)
        field, reason = found if found is not None else (None, str(e))
        error = ConfigError(f"{field}: {reason}" if field else f"settings: {reason}")
        error.field = field
        raise error from None


def path_text(path: Any, field: str) -> str:
    """A path as the Rust side's UTF-8 text; a path that is not UTF-8 (bytes from a non-UTF-8
    file system) is a ConfigError naming ``field``, not a ``UnicodeEncodeError``."""
    text = os.fsdecode(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        error = ConfigError(f"{field}: the path {path!r} is not valid UTF-8, which seqwarm's locations must be")
        error.field = field
        raise error from None
    return text
