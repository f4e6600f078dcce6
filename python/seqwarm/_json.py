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


def to_json(value: Any) -> str:
    """``value`` as JSON text; a value JSON cannot hold (NaN, an object) is a ConfigError."""
    try:
        return json.dumps(value, default=_plain, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"settings: {e}") from None
