"""Type stubs of the Rust extension ``seqwarm._seqwarm`` (internal: use the ``seqwarm``
package's names). ``python/tests/test_stubs.py`` checks them against the built extension: the
same names, and the same parameters in the same order with the same defaults."""

from typing import Any, Dict, List, Optional, Tuple

__version__: str

class TokenArray:
    """A batch field's tokens in Rust memory; ``numpy.asarray`` reads it without a copy."""

    @property
    def __array_interface__(self) -> Dict[str, Any]: ...
    @property
    def shape(self) -> List[int]: ...

class RawLoader:
    """The Rust loader on its own runtime (one per process that iterates)."""

    def __init__(
        self,
        shards: List[str],
        settings_json: str,
        state_json: Optional[str] = None,
        threads: Optional[int] = None,
        pad_cu_seqlens: bool = False,
    ) -> None: ...
    def next(
        self, stride: int = 1, offset: int = 0
    ) -> Optional[Tuple[Dict[str, TokenArray], int, int, int, int, Optional[int], Optional[int], float]]:
        """The next batch whose step is ``offset`` modulo ``stride``, as ``(fields, step,
        epoch, seq_len, tokens, max_seqlen, cu_seqlens_count)`` (the last two ``None`` unless
        the batch is packed), or ``None`` at the end."""
    def next_step(self) -> int: ...
    def state_json(self) -> str: ...
    def stats_json(self) -> str: ...
    def source_stats_json(self) -> Optional[str]: ...
    def steps_per_epoch(self) -> Optional[int]: ...
    def skipped(self) -> List[str]: ...
    def close(self) -> None: ...
    def abandon(self) -> None: ...
    @property
    def closed(self) -> bool: ...

class RawPlanLoader:
    """The plans over raw token files: ``mode="decompose"`` (dataset decomposition) and
    ``mode="chunk"`` (fixed-length rows under a batch-size schedule)."""

    def __init__(
        self, files: List[str], mode: str, settings_json: str, epochs: int, state_json: Optional[str] = None
    ) -> None: ...
    def next(
        self, stride: int = 1, offset: int = 0
    ) -> Optional[Tuple[Dict[str, TokenArray], int, int, int, int, Optional[int], Optional[int], float]]:
        """The next batch whose step is ``offset`` modulo ``stride``, shaped as
        ``RawLoader.next`` gives one (no packing fields, then the learning-rate factor), or
        ``None`` at the end."""
    def next_step(self) -> int: ...
    def state_json(self) -> str: ...
    def steps_per_epoch(self) -> Optional[int]: ...
    def plan_json(self) -> str:
        """The bucket table: per length the pieces and batches per epoch, and the totals (for
        ``chunk``: the instances, the length and the batch schedule)."""
    def close(self) -> None: ...
    def abandon(self) -> None: ...
    @property
    def closed(self) -> bool: ...

class RawShardWriter:
    """The library's document writer: documents in stream order, shards out."""

    def __init__(self, output: str, settings_json: str, source: str) -> None: ...
    def write_texts(self, texts: List[Optional[str]]) -> None: ...
    def write_ids(self, ids: List[int]) -> None: ...
    @property
    def position(self) -> int: ...
    @property
    def resume_at(self) -> int: ...
    @property
    def progress(self) -> Tuple[int, int, int]: ...
    def finish(self) -> Tuple[str, str]:
        """The manifest's path and its JSON."""
    def abandon(self) -> None: ...

def preprocess_files(inputs: List[str], output: str, settings_json: str) -> Tuple[str, str]:
    """``seqwarm preprocess`` over files: the manifest's path and its JSON."""

def merge_manifests(manifests: List[str], output: str) -> Tuple[str, str]:
    """``seqwarm merge-manifests``: the merged manifest's path and its JSON."""

def join_runs(runs: List[str], output: str, prefix: Optional[str] = None) -> Tuple[str, str]:
    """Finished single-worker runs joined in order into ``output`` (run k as worker k, shards
    named with ``prefix``, the runs' default when None): the merged manifest's path and its JSON."""

def shard_files(location: str) -> List[str]:
    """The ``.parquet`` shards at a local location, in the loader's order."""

def document_lengths(text: str) -> Optional[List[List[int]]]:
    """A flat shard footer's document lengths, one list per row group (None: not that encoding)."""

def default_settings() -> str:
    """Every loader setting with its default, as JSON text."""

def check_settings(settings_json: str, threads: Optional[int] = None, pad_cu_seqlens: bool = False) -> None:
    """Checks settings as the loader would, without reading a shard, with the runtime's
    ``threads`` and ``pad_cu_seqlens``."""

def check_plan_settings(mode: str, settings_json: str) -> None:
    """Checks the settings of a plan over raw token files (``"decompose"``, ``"chunk"``) as
    the loader would, without reading a file."""

def merge_states(states_json: List[str]) -> str:
    """Combines the loader states every rank took at one step into one (elastic resume)."""

def check_schedule(schedule_json: str) -> str:
    """Checks a schedule; its normalized config, range, unit and warnings as JSON text."""

def parse_shapes(text: str) -> str:
    """A shape policy in the command line's spelling, as its config value (JSON text)."""

def plan(schedule_json: str, settings_json: str) -> str:
    """A schedule's change points with the step shape at each, as JSON text."""

def read_table(path: str) -> str:
    """A TOML or JSON file's table, as JSON text."""

def run_cli(argv: List[str]) -> int:
    """Runs the ``seqwarm`` command line ``argv`` (the program's name first); its exit status."""
