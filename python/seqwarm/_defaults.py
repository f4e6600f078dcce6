"""The library's defaults, read from the Rust side (their one home) once per process."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Dict

from seqwarm import _seqwarm


@lru_cache(maxsize=None)
def _settings_json() -> str:
    return _seqwarm.default_settings()


def default_settings() -> Dict[str, Any]:
    """Every loader setting with its default (a fresh copy)."""
    return json.loads(_settings_json())
