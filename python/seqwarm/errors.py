"""The exceptions seqwarm raises.

Every error is a :class:`SeqwarmError`; the class says what to fix, the attributes say where:

- :class:`ConfigError`: a setting or schedule (``field`` names it, ``schedule.max`` say).
- :class:`DataError`: a shard (``file``, and ``row_group``, ``row``, ``column`` where known).
- :class:`StateError`: a checkpoint that does not fit this loader or cannot be read.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["SeqwarmError", "ConfigError", "DataError", "StateError"]


class SeqwarmError(Exception):
    """Base class of every seqwarm error.

    Attributes (``None`` where the error does not name one):
        file: the shard (path or URL).
        row_group: the row group within it.
        row: the row within the row group.
        column: the column.
        field: the setting (``batch_size``, ``schedule.min``, ...).
    """

    file: Optional[str] = None
    row_group: Optional[int] = None
    row: Optional[int] = None
    column: Optional[str] = None
    field: Optional[str] = None


class ConfigError(SeqwarmError, ValueError):
    """An invalid setting or schedule, or settings that contradict each other."""


class DataError(SeqwarmError):
    """A shard that cannot be read as tokens: missing, corrupt, of the wrong layout or type."""


class StateError(SeqwarmError, ValueError):
    """A checkpoint (``load_state_dict``) of another loader, data set or version."""
