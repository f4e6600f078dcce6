"""``seqwarm.Loader``: Parquet token shards in, warmup-scheduled batches out, as PyTorch
tensors (or NumPy arrays) that share the Rust loader's memory."""

from __future__ import annotations

import importlib.util
import inspect
import json
import operator
import os
import sys
import threading
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from seqwarm import _seqwarm
from seqwarm._defaults import default_settings
from seqwarm._json import path_text, to_json
from seqwarm.errors import ConfigError, StateError
from seqwarm.schedule import Schedule, schedule_table

__all__ = ["Loader", "Batch"]

PathLike = Union[str, "os.PathLike[str]"]

#: The state_dict key the checkpoint lives under.
_STATE_KEY = "seqwarm_loader_state"
#: The state_dict key of a DataLoader worker's first step (see ``_worker_base``).
_WORKER_BASE_KEY = "seqwarm_worker_base"


class Batch(dict):  # type: ignore[type-arg]
    """One batch: a dict of its fields (``input_ids``, and ``attention_mask``, ``labels``,
    ``position_ids``, ``segment_ids``, ``cu_seqlens`` where the mode makes them), so that
    ``model(**batch)`` works, with where it stands as attributes.

    Attributes:
        step: the optimizer step this batch is for (0-based, over the whole run).
        seq_len: the scheduled sequence length (every sequence field has this many columns).
        tokens: real (non-padding) tokens in the batch.
        epoch: the epoch being read.
        max_seqlen: in the pack modes, the longest run of ``cu_seqlens`` (what varlen
            attention kernels take); ``None`` otherwise, and when ``pack_fields`` leaves out
            ``segment_ids`` (``cu_seqlens`` is made from them). ``seq_len`` is a valid bound too,
            and one that changes only with the schedule (a compiled model specialises on it).
        cu_seqlens_count: in the pack modes, the real entries at the front of ``cu_seqlens``
            (the runs + 1; ``None`` without ``segment_ids``); with ``pad_cu_seqlens`` the rest
            repeat the last real entry.
        lr_multiplier: the factor to multiply the base learning rate by for this batch:
            ``sqrt(new / configured)`` batch size under ``mode="chunk"``'s ``batch_schedule``,
            as OLMo-core's ``BatchSizeSchedulerCallback`` scales it; ``1.0`` otherwise.

    The tensors share the loader's memory (no token is copied). Each batch owns its
    elements: editing them in place (``labels[labels == pad] = -100``) changes this batch
    alone, and the loader never reads them again.
    """

    step: int = -1
    seq_len: int = -1
    tokens: int = -1
    epoch: int = -1
    max_seqlen: Optional[int] = None
    cu_seqlens_count: Optional[int] = None
    lr_multiplier: float = 1.0

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items())
        return f"Batch(step={self.step}, seq_len={self.seq_len}, tokens={self.tokens}, epoch={self.epoch}, {{{shapes}}})"

    def __reduce__(self) -> Any:
        # Worker processes send batches back pickled: keep the attributes.
        return (
            _rebuild_batch,
            (
                dict(self),
                self.step,
                self.seq_len,
                self.tokens,
                self.epoch,
                self.max_seqlen,
                self.cu_seqlens_count,
                self.lr_multiplier,
            ),
        )


def _rebuild_batch(
    fields: Dict[str, Any],
    step: int,
    seq_len: int,
    tokens: int,
    epoch: int,
    max_seqlen: Optional[int] = None,
    cu_seqlens_count: Optional[int] = None,
    lr_multiplier: float = 1.0,
) -> Batch:
    batch = Batch(fields)
    batch.step, batch.seq_len, batch.tokens, batch.epoch = step, seq_len, tokens, epoch
    batch.max_seqlen, batch.cu_seqlens_count = max_seqlen, cu_seqlens_count
    batch.lr_multiplier = lr_multiplier
    return batch


def _distributed_rank() -> "tuple[int, int]":
    """``torch.distributed``'s rank and world size when it is initialized, else ``RANK`` and
    ``WORLD_SIZE`` from the environment (as ``torchrun`` sets them), else 0 of 1."""

    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return int(dist.get_rank()), int(dist.get_world_size())
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError as e:
        raise ConfigError(f"RANK / WORLD_SIZE in the environment are not integers: {e}") from None


def _in_worker() -> bool:
    """Whether this process is a PyTorch DataLoader worker."""

    data = sys.modules.get("torch.utils.data")
    return data is not None and data.get_worker_info() is not None


def _shared_flag() -> Any:
    """A byte in shared memory: set by a DataLoader worker, seen by the process that made the
    loader (forked workers share it; spawned ones get it through the spawn). ``None`` where
    shared memory cannot be had (no ``/dev/shm``): the check it serves is then skipped."""
    import multiprocessing

    try:
        return multiprocessing.RawValue("b", 0)
    except OSError:
        return None


def _worker() -> "tuple[int, int]":
    """This process's PyTorch DataLoader worker id and the number of workers (0 of 1 outside
    a worker)."""

    data = sys.modules.get("torch.utils.data")
    info = data.get_worker_info() if data is not None else None
    if info is None:
        return 0, 1
    return int(info.id), int(info.num_workers)


class Loader:
    """Parquet token shards through the sequence-length warmup stage, as an iterable of
    :class:`Batch` es of PyTorch tensors (a ``torch.utils.data.IterableDataset`` when PyTorch
    is installed).

    Every keyword is a setting of the Rust loader; ``None`` (the default) leaves the
    library's default, listed in ``seqwarm.default_settings()`` and below.

    Args:
        shards: files, directories, globs or object-store URLs (``s3://``, ``gs://``,
            ``az://``, ``http(s)://``, ``file://``), one or a list.
        schedule: a :class:`Schedule`, its dict, or a TOML/JSON file.
        mode: ``repack`` (lossless), ``truncate``, ``truncate-keep-eos``, ``reshape``,
            ``pack-greedy`` or ``pack-bestfit``; or ``decompose``: dataset decomposition over
            raw token files, batch for batch OLMo-core's ``NumpyVSLDataLoader``; or ``chunk``:
            raw token files cut into fixed-length rows, batch for batch OLMo-core's
            ``NumpyFSLDataLoader`` under its batch-size schedule (see below).
        batch_rows: rows per batch, or
        batch_tokens: a token budget per batch (rows = budget / length).
        eos_id: the EOS id appended after every document, if any; not needed on ``seqwarm
            preprocess`` output, whose documents already end with the EOS its manifest names
            (the same id is then not appended again, another is refused).
        pad_id: the padding id.
        seed: seed of the shard order and document shuffle.
        rank, world_size: this process's share of the data. ``None``: from
            ``torch.distributed`` when it is initialized, else ``RANK``/``WORLD_SIZE``, else 0
            of 1.
        epochs: passes over the data (``0``: until ``max_steps``/``max_tokens``).
        max_steps, max_tokens: stop after this many batches / tokens in all.
        format: ``"torch"`` (default) or ``"numpy"``.
        max_segments_per_row: in the pack modes, at most this many document segments per row
            (the rest of a full row is padding), so that ``cu_seqlens`` has a small fixed size.
        pack_fields: in the pack modes, the fields of each batch besides ``input_ids``
            (default all: ``attention_mask``, ``labels``, ``position_ids``, ``segment_ids``),
            a list of names or one comma-separated string. Each left out is one write of the
            batch less; ``cu_seqlens`` comes from ``segment_ids``.
        pad_cu_seqlens: pad ``cu_seqlens`` to a size fixed by the batch's shape
            (``rows x min(max_segments_per_row + 1, seq_len) + 1`` entries) with the batch's
            total token count, i.e. sequences of length zero, so that a compiled model sees one
            shape per scheduled length; ``Batch.cu_seqlens_count`` says how many are real.
        threads: worker threads of the loader's runtime: all cores when ``None``; ``0`` runs
            everything on the thread that iterates, inside each ``next`` (GIL released), with
            no reading ahead while Python runs: for one core per process (many DataLoader
            workers) or benchmarks.
        state: a ``state_dict()`` to resume from (or call :meth:`load_state_dict`).
        (the rest): see ``docs/python.md`` and ``docs/loader.md``.

    With ``mode="decompose"`` the locations are raw token files (headerless little-endian
    arrays or ``.npy``; directories are listed), documents end with ``eos_id`` (required), and
    each step is one length of OLMo-core's decomposition (``docs/decomposition.md``):

        token_dtype: ``"uint16"`` or ``"uint32"`` (required: raw files carry no width).
        curriculum: ``"natural"`` (default), ``"grow-p2"`` or ``"grow-linear"``.
        cycles: cycles of a grow curriculum (default 8); balanced: the same number of
            batches for every length.
        schedule: ``{"min": 256, "max": ...}``: the shortest and longest piece, powers of 2
            (``max`` required, ``min`` 256 by default, as OLMo-core), and nothing else.
        batch_tokens: tokens per step on each rank (required; a multiple of ``max``).
        seed, rank, world_size, epochs (default 1), vocab_size: as above.

    Every batch has one field, ``input_ids`` (``batch_tokens / seq_len`` rows of ``seq_len``);
    the other keywords do not apply and are refused. :meth:`decomposition` gives the bucket
    table.

    With ``mode="chunk"`` the locations are raw token files too, each cut into back-to-back
    rows of ``seq_len`` tokens across documents (a file's tail shorter than a row is dropped),
    shuffled per epoch, as OLMo-core's ``NumpyFSLDataset`` + ``NumpyFSLDataLoader``:

        token_dtype: as above (required); seq_len: the row length (required).
        batch_tokens: tokens per step on each rank as configured (the batch the learning
            rate was chosen for; default: the schedule's first size / world_size).
        batch_schedule: ``[(at, global_batch_tokens), ...]``, OLMo-core's
            ``BatchSizeSchedulerCallback``: the first at 0, each change an integer factor; an
            increase by ``r`` waits until the batches taken divide by ``r``. Every batch's
            ``lr_multiplier`` is the factor its learning rate needs (``sqrt(new / old)`` per
            change). batch_schedule_unit: what ``at`` counts: ``"steps"`` (default),
            ``"tokens"`` (all ranks) or ``"epochs"``.
        seed, rank, world_size, epochs (default 1), vocab_size: as above.

    Iterating runs the whole plan (every epoch) once; iterating again continues where it
    stopped (also after :meth:`close`). Row groups are read and decoded ahead on the loader's
    own threads, and each batch is cut with the GIL released, so ``DataLoader(loader,
    batch_size=None, num_workers=0)`` is the fast way to use it. With ``num_workers=N`` the
    DataLoader yields exactly the batches of ``num_workers=0``, in the same order: every
    worker runs the whole stream and hands over the steps ``w, w + N, w + 2N, ...`` (the others
    are made in Rust and never reach Python), so no batch is duplicated or lost and the
    schedule is that of one process.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> "Loader":
        # A torch.utils.data.IterableDataset when PyTorch is there (so that DataLoader treats
        # it as a stream), without making PyTorch a dependency of the NumPy path. Subclasses
        # get the same.
        if kwargs.get("format", "torch") == "torch" and not _is_torch_dataset(cls):
            return super().__new__(_torch_class(cls))
        return super().__new__(cls)

    def __init__(
        self,
        shards: Union[PathLike, Sequence[PathLike], None],
        schedule: Union[Schedule, Mapping[str, Any], PathLike, None] = None,
        *,
        mode: Optional[str] = None,
        batch_rows: Optional[int] = None,
        batch_tokens: Optional[int] = None,
        eos_id: Optional[int] = None,
        pad_id: Optional[int] = None,
        keep_last: Optional[Union[bool, str]] = None,
        mask_document_boundaries: Optional[bool] = None,
        pack_window: Optional[int] = None,
        max_segments_per_row: Optional[int] = None,
        pack_fields: Optional[Union[str, Sequence[str]]] = None,
        pad_cu_seqlens: bool = False,
        shuffle_buffer: Optional[int] = None,
        shuffle_seed: Optional[int] = None,
        seed: Optional[int] = None,
        shuffle_units: Optional[bool] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        epochs: Optional[int] = None,
        epoch_boundary: Optional[str] = None,
        max_steps: Optional[int] = None,
        max_tokens: Optional[int] = None,
        layout: Optional[Mapping[str, Any]] = None,
        prefetch_concurrency: Optional[int] = None,
        prefetch_queue: Optional[int] = None,
        remote_prefetch_concurrency: Optional[int] = None,
        remote_prefetch_bytes: Optional[int] = None,
        vocab_size: Optional[int] = None,
        on_error: Optional[str] = None,
        retry: Optional[Mapping[str, Any]] = None,
        dtype: Optional[str] = None,
        io_threads: Optional[int] = None,
        verify_checksums: Optional[bool] = None,
        memory_map: Optional[bool] = None,
        cache_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
        cache_limit: Optional[int] = None,
        sources: Optional[Sequence[Mapping[str, Any]]] = None,
        weight_changes: Optional[Sequence[Mapping[str, Any]]] = None,
        format: str = "torch",
        threads: Optional[int] = None,
        state: Optional[Mapping[str, Any]] = None,
        token_dtype: Optional[str] = None,
        curriculum: Optional[str] = None,
        cycles: Optional[int] = None,
        balanced: Optional[bool] = None,
        seq_len: Optional[int] = None,
        batch_schedule: Optional[Sequence[Tuple[int, int]]] = None,
        batch_schedule_unit: Optional[str] = None,
    ) -> None:
        if format not in ("torch", "numpy"):
            raise _config_error("format", f"format: expected 'torch' or 'numpy', not {format!r}")
        if format == "torch" and not _torch_installed():
            raise _config_error(
                "format",
                "format='torch' (the default) needs PyTorch, which is not installed: "
                "pip install 'seqwarm[torch]' (or torch), or pass format='numpy' for NumPy arrays",
            )
        if threads is not None:
            # NumPy integers are integers too (operator.index); bools are not thread counts.
            if isinstance(threads, (bool, np.bool_)) or not hasattr(threads, "__index__"):
                raise _config_error("threads", f"threads: expected an integer or None, not {threads!r}")
            threads = operator.index(threads)
        if shards is None:
            shards = []
        elif isinstance(shards, (str, bytes, os.PathLike)):
            shards = [shards]
        self._shards: List[str] = [path_text(s, "shards") for s in shards]
        if rank is None or world_size is None:
            found_rank, found_world = _distributed_rank()
            rank = found_rank if rank is None else rank
            world_size = found_world if world_size is None else world_size
        given = dict(
            mode=mode,
            batch_rows=batch_rows,
            batch_tokens=batch_tokens,
            eos_id=eos_id,
            pad_id=pad_id,
            keep_last=keep_last,
            mask_document_boundaries=mask_document_boundaries,
            pack_window=pack_window,
            max_segments_per_row=max_segments_per_row,
            pack_fields=_field_names(pack_fields),
            shuffle_buffer=shuffle_buffer,
            shuffle_seed=shuffle_seed,
            seed=seed,
            shuffle_units=shuffle_units,
            rank=rank,
            world_size=world_size,
            epochs=epochs,
            epoch_boundary=epoch_boundary,
            max_steps=max_steps,
            max_tokens=max_tokens,
            layout=layout,
            prefetch_concurrency=prefetch_concurrency,
            prefetch_queue=prefetch_queue,
            remote_prefetch_concurrency=remote_prefetch_concurrency,
            remote_prefetch_bytes=remote_prefetch_bytes,
            vocab_size=vocab_size,
            on_error=on_error,
            retry=retry,
            dtype=dtype,
            io_threads=io_threads,
            verify_checksums=verify_checksums,
            memory_map=memory_map,
            cache_dir=None if cache_dir is None else path_text(cache_dir, "cache_dir"),
            cache_limit=cache_limit,
            sources=None if sources is None else [_source_table(s) for s in sources],
            weight_changes=None if weight_changes is None else [dict(c) for c in weight_changes],
        )
        settings: Dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        decomposition = dict(token_dtype=token_dtype, curriculum=curriculum, cycles=cycles, balanced=balanced)
        chunking = dict(seq_len=seq_len, batch_schedule=batch_schedule, batch_schedule_unit=batch_schedule_unit)
        self._epochs = 1
        if mode in _PLANS:
            if pad_cu_seqlens:
                raise _config_error("pad_cu_seqlens", f"pad_cu_seqlens does not apply to mode={mode!r} (no packing)")
            if threads not in (None, 0):
                raise _config_error(
                    "threads", f"mode={mode!r} reads mapped files on the iterating thread: threads must be None or 0"
                )
            self._epochs = int(settings.get("epochs", 1))
            if self._epochs < 1:
                raise _config_error("epochs", f"mode={mode!r} runs whole epochs: epochs must be at least 1")
            if mode == "decompose":
                _refuse_given(chunking, "mode='chunk'", mode)
                table = _decompose_settings(settings, schedule, decomposition)
            else:
                _refuse_given({k: v for k, v in decomposition.items() if k != "token_dtype"}, "mode='decompose'", mode)
                table = _chunk_settings(settings, schedule, token_dtype, chunking)
            # Checked now, with the library's rules, so that a bad setting fails here and not
            # in a DataLoader worker.
            text = to_json(table)
            _seqwarm.check_plan_settings(mode, text)
        else:
            _refuse_given({"token_dtype": token_dtype}, "mode='decompose' and mode='chunk'", mode)
            _refuse_given(decomposition, "mode='decompose'", mode)
            _refuse_given(chunking, "mode='chunk'", mode)
            if schedule is not None:
                settings["schedule"] = schedule_table(schedule)
            # Checked now, with the library's rules, so that a bad setting fails here and not
            # in a DataLoader worker.
            text = to_json(settings)
            _seqwarm.check_settings(text, threads, bool(pad_cu_seqlens))
        # The plan over raw token files ("decompose", "chunk"), or None for the stage's modes.
        self._plan: Optional[str] = mode if mode in _PLANS else None
        self._settings = json.loads(text)
        self._format = format
        self._threads = threads
        self._pad_cu_seqlens = bool(pad_cu_seqlens)
        self._raw: Optional[Union[_seqwarm.RawLoader, _seqwarm.RawPlanLoader]] = None
        self._pid: Optional[int] = None
        self._pending: Optional[str] = None
        # In a DataLoader worker: the step the workers started from, so that worker w takes
        # the steps base + w, base + w + N, ... (kept in its checkpoints).
        self._worker_base: Optional[int] = None
        self._lock = threading.Lock()
        # Set once a DataLoader worker iterates this loader: the position is then in the
        # workers, and this process's state_dict() would restart at step 0 (see state_dict).
        self._fed_workers = _shared_flag()
        if state is not None:
            self.load_state_dict(state)

    # -- settings -----------------------------------------------------------------------

    @property
    def settings(self) -> Dict[str, Any]:
        """The settings given (the library's defaults fill in the rest)."""
        return json.loads(json.dumps(self._settings))

    @property
    def rank(self) -> int:
        """This process's rank."""
        return int(self._run_settings["rank"])

    @property
    def world_size(self) -> int:
        """The number of ranks."""
        return int(self._run_settings["world_size"])

    @property
    def _run_settings(self) -> Dict[str, Any]:
        return self._settings["run"] if self._plan else self._settings

    def decomposition(self) -> Dict[str, Any]:
        """With ``mode="decompose"``, the plan: per length (``lengths``) its ``pieces`` and
        ``batches`` per epoch, ``steps_per_epoch``, ``documents``, ``tokens``,
        ``tokens_dropped`` (under the minimum or after a file's last EOS) and
        ``tokens_unused_per_epoch``. Maps and scans the files if not yet iterated."""
        if self._plan != "decompose":
            raise _config_error("mode", "decomposition() needs mode='decompose'")
        raw: Any = self._running()
        return json.loads(raw.plan_json())  # type: ignore[no-any-return]

    # -- the Rust loader ----------------------------------------------------------------

    def _running(self) -> "Union[_seqwarm.RawLoader, _seqwarm.RawPlanLoader]":
        with self._lock:
            if self._raw is not None and self._pid != os.getpid():
                # Forked (a DataLoader worker, say): the threads stayed in the parent, the
                # position came along. Continue from it.
                self._pending = self._raw.state_json()
                self._raw.abandon()
                self._raw = None
            if self._raw is None and self._plan:
                self._raw = _seqwarm.RawPlanLoader(
                    self._shards, self._plan, json.dumps(self._settings), self._epochs, self._pending
                )
                self._pid = os.getpid()
                self._pending = None
            if self._raw is None:
                self._raw = _seqwarm.RawLoader(
                    self._shards, json.dumps(self._settings), self._pending, self._threads, self._pad_cu_seqlens
                )
                self._pid = os.getpid()
                self._pending = None
            return self._raw

    def __iter__(self) -> Iterator[Batch]:
        raw = self._running()
        if self._fed_workers is not None:
            # In a worker: the position moves on there. In this process: it is ours again.
            self._fed_workers.value = 1 if _in_worker() else 0
        worker, workers = _worker()
        turn = 0
        if workers > 1:
            if self._worker_base is None:
                self._worker_base = raw.next_step()
            turn = (self._worker_base + worker) % workers
        torch_format = self._format == "torch"
        if torch_format:
            import torch

            from_numpy = torch.from_numpy
        asarray = np.asarray
        while True:
            item = raw.next(workers, turn)
            if item is None:
                return
            fields, step, epoch, seq_len, tokens, max_seqlen, cu_seqlens_count, lr_multiplier = item
            if torch_format:
                batch = Batch({name: from_numpy(asarray(array)) for name, array in fields.items()})
            else:
                batch = Batch({name: asarray(array) for name, array in fields.items()})
            batch.step, batch.epoch, batch.seq_len, batch.tokens = step, epoch, seq_len, tokens
            batch.max_seqlen, batch.cu_seqlens_count = max_seqlen, cu_seqlens_count
            batch.lr_multiplier = lr_multiplier
            yield batch

    # -- checkpoints --------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """A checkpoint after the last batch yielded: a dict of plain values that
        ``torch.save`` and torchdata's ``StatefulDataLoader`` keep. Resuming from it yields
        byte-identical batches.

        With DataLoader workers (``num_workers > 0``) the position is in the workers, not in
        this object: take the checkpoint from torchdata's ``StatefulDataLoader``
        (``dataloader.state_dict()``, which asks each worker). Called here after workers
        iterated the loader, it raises :class:`seqwarm.StateError` instead of returning a
        checkpoint that would restart at step 0."""
        with self._lock:
            own = self._raw is not None and self._pid == os.getpid()
            if not _in_worker() and self._fed_workers is not None and self._fed_workers.value:
                raise StateError(
                    "this Loader was iterated by DataLoader workers (num_workers > 0), so its position is in the "
                    "workers and this state_dict() would restart at step 0: checkpoint the DataLoader instead, "
                    "with torchdata.stateful_dataloader.StatefulDataLoader (its state_dict() asks each worker), "
                    "or iterate with num_workers=0"
                )
            if own:
                text: Optional[str] = self._raw.state_json()  # type: ignore[union-attr]
            else:
                text = self._pending
        state: Dict[str, Any] = {_STATE_KEY: json.loads(text) if text is not None else None}
        if self._worker_base is not None:
            state[_WORKER_BASE_KEY] = self._worker_base
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from a checkpoint of :meth:`state_dict` at the next iteration. A
        checkpoint of other settings or data raises :class:`seqwarm.StateError` then."""
        if not isinstance(state_dict, Mapping) or _STATE_KEY not in state_dict:
            raise StateError(f"not a seqwarm.Loader state_dict (no {_STATE_KEY!r} key)")
        state = state_dict[_STATE_KEY]
        self.close()
        self._pending = json.dumps(state) if state is not None else None
        self._worker_base = state_dict.get(_WORKER_BASE_KEY)
        if self._fed_workers is not None and not _in_worker():
            # The position is this process's again: the one just loaded.
            self._fed_workers.value = 0

    # -- reports and lifetime ------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """Where every token went so far: documents, tokens in, out, cut, dropped, ... (ints);
        with ``cache_dir``, also what the shard cache did (``cache_hits``,
        ``cache_downloads``, ``cache_bytes_downloaded``, ``cache_refetched``,
        ``cache_evicted``, ``cache_bypassed``); for a mixture (``sources=``), ``sources``:
        each source's counts by name, as :meth:`source_stats` gives them."""
        if self._plan:
            raise _config_error(
                "mode",
                f"stats() counts the stage's tokens; mode={self._plan!r} uses every row it reads "
                "(mode='decompose' reports its plan with decomposition())",
            )
        if self._raw is None:
            return {}
        stats: Dict[str, Any] = json.loads(self._raw.stats_json())  # type: ignore[union-attr]
        per_source = self.source_stats()
        if per_source is not None:
            stats["sources"] = {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in per_source}
        return stats

    def source_stats(self) -> Optional[List[Dict[str, Any]]]:
        """For a mixture (``sources=``), what was drawn from each source so far: ``name``,
        ``documents``, ``tokens``, ``epoch`` (the source's own), ``units_skipped``; ``None``
        otherwise."""
        if self._raw is None or self._plan:
            return None
        text = self._raw.source_stats_json()  # type: ignore[union-attr]
        return None if text is None else json.loads(text)

    def skipped(self) -> List[str]:
        """Why each skipped shard or row group was skipped (``on_error="skip"``)."""
        return [] if self._raw is None or self._plan else list(self._raw.skipped())  # type: ignore[union-attr]

    def close(self) -> None:
        """Stop the loader's threads (and join them). The position is kept: iterating again
        continues where it stopped, and :meth:`state_dict` still gives it."""
        with self._lock:
            raw, self._raw = self._raw, None
            if raw is None:
                return
            if self._pid == os.getpid():
                self._pending = raw.state_json()
                raw.close()
            else:
                raw.abandon()

    def __enter__(self) -> "Loader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self) -> Any:
        # Pickled for a spawned DataLoader worker: the settings and the position (as a pending
        # state) travel, the threads and the lock do not.
        state = self.__dict__.copy()
        with self._lock:
            if self._raw is not None and self._pid == os.getpid():
                state["_pending"] = self._raw.state_json()
        del state["_lock"]
        from multiprocessing import context

        if context.get_spawning_popen() is None:
            # Pickled, copied or saved as an object (not for a process being spawned): after
            # DataLoader workers iterated it, its position is in them, and a copy would
            # silently start over from an old one.
            fed = self._fed_workers
            if fed is not None and fed.value and not _in_worker():
                raise StateError(
                    "this Loader was iterated by DataLoader workers (num_workers > 0), so its position is in the "
                    "workers: a copy of it would restart from an old one; checkpoint the DataLoader with "
                    "torchdata.stateful_dataloader.StatefulDataLoader instead"
                )
            # Shared memory travels only to a process being spawned; a copy gets its own.
            state["_fed_workers"] = None
        state["_raw"] = None
        state["_pid"] = None
        # The class the user named (the IterableDataset mixed in at construction has no name
        # of its own to pickle by).
        named = getattr(type(self), "_seqwarm_named", type(self))
        return (_unpickle_loader, (named, self._format, state))

    def __repr__(self) -> str:
        return f"seqwarm.Loader({len(self._shards)} location(s), rank {self.rank} of {self.world_size}, format={self._format!r})"


def _torch_installed() -> bool:
    return "torch" in sys.modules or importlib.util.find_spec("torch") is not None


def _config_error(field: str, message: str) -> ConfigError:
    error = ConfigError(message)
    error.field = field
    return error


def _unpickle_loader(cls: type, format: str, state: Dict[str, Any]) -> Loader:
    loader = Loader.__new__(cls, format=format)
    loader.__dict__.update(state)
    loader._lock = threading.Lock()
    if loader.__dict__.get("_fed_workers") is None:
        loader._fed_workers = _shared_flag()
    return loader


def _is_torch_dataset(cls: type) -> bool:
    return any(base.__module__ == "torch.utils.data.dataset" and base.__name__ == "IterableDataset" for base in cls.__mro__)


_TORCH_CLASSES: Dict[type, type] = {}


def _torch_class(cls: type) -> type:
    """``cls`` with ``torch.utils.data.IterableDataset`` mixed in, under ``cls``'s name."""
    if cls not in _TORCH_CLASSES:
        from torch.utils.data import IterableDataset

        mixed = type(
            cls.__name__,
            (cls, IterableDataset),
            {"__doc__": cls.__doc__, "__module__": cls.__module__, "_seqwarm_named": cls},
        )
        mixed.__qualname__ = cls.__qualname__
        _TORCH_CLASSES[cls] = mixed
    return _TORCH_CLASSES[cls]


def _document_defaults() -> None:
    defaults = default_settings()
    lines = ["", "    Defaults (from the Rust library):", ""]
    for key in sorted(defaults):
        if key == "schedule":
            continue
        lines.append(f"        {key} = {json.dumps(defaults[key])}")
    lines.append(f"        schedule = {json.dumps(defaults['schedule'])}")
    Loader.__doc__ = (Loader.__doc__ or "") + "\n".join(lines) + "\n"
    # The keywords in help() and inspect.signature(), not __new__'s (*args, **kwargs).
    signature = inspect.signature(Loader.__init__)
    Loader.__signature__ = signature.replace(parameters=list(signature.parameters.values())[1:])  # type: ignore[attr-defined]


_document_defaults()


#: The modes that are plans of their own over raw token files, not the stage's modes.
_PLANS = ("decompose", "chunk")

#: The keywords mode="decompose" takes (besides its own four); the others are refused.
_DECOMPOSE_KEYWORDS = {"mode", "batch_tokens", "eos_id", "seed", "rank", "world_size", "epochs", "vocab_size"}

#: The keywords mode="chunk" takes (besides its own); the others are refused.
_CHUNK_KEYWORDS = _DECOMPOSE_KEYWORDS - {"eos_id"}


def _field_names(fields: Optional[Union[str, Sequence[str]]]) -> Optional[List[str]]:
    """``pack_fields`` as a list of names (one string is comma-separated, as the CLI's flag)."""
    if fields is None:
        return None
    if isinstance(fields, str):
        return [name.strip() for name in fields.split(",") if name.strip()]
    names = list(fields)
    if not all(isinstance(name, str) for name in names):
        raise _config_error("pack_fields", f"pack_fields: expected field names, not {fields!r}")
    return names


def _refuse_given(keywords: Mapping[str, Any], owner: str, mode: Optional[str]) -> None:
    """Refuses the first of ``keywords`` given: they belong to ``owner``, not to ``mode``."""
    given = [k for k, v in keywords.items() if v is not None]
    if given:
        raise _config_error(given[0], f"{given[0]} belongs to {owner} (the mode is {mode or 'the default'})")


def _chunk_settings(
    settings: Mapping[str, Any],
    schedule: Any,
    token_dtype: Optional[str],
    chunking: Mapping[str, Any],
) -> Dict[str, Any]:
    """The Rust ``ChunkSettings`` table from the keywords of ``mode="chunk"``."""
    for key in settings:
        if key not in _CHUNK_KEYWORDS:
            raise _config_error(
                key,
                f"{key} does not apply to mode='chunk': every row is seq_len tokens cut from the files as they lie "
                "(see docs/decomposition.md)",
            )
    if schedule is not None:
        raise _config_error("schedule", "mode='chunk' has one length, seq_len, and no schedule of lengths")
    if token_dtype is None:
        raise _config_error("token_dtype", "mode='chunk' needs token_dtype ('uint16' or 'uint32')")
    if chunking.get("seq_len") is None:
        raise _config_error("seq_len", "mode='chunk' needs seq_len: the length of every row")
    world_size = int(settings["world_size"])
    points = chunking.get("batch_schedule")
    batch_schedule = None
    if points is not None:
        try:
            if any(isinstance(x, (bool, np.bool_)) for point in points for x in point):
                raise TypeError("a bool is not a step or a size")
            pairs = [(operator.index(at), operator.index(size)) for at, size in points]
        except (TypeError, ValueError):
            raise _config_error(
                "batch_schedule", f"batch_schedule: expected [(at, global_batch_tokens), ...] of integers, not {points!r}"
            ) from None
        unit = chunking.get("batch_schedule_unit") or "steps"
        if unit not in ("steps", "tokens", "epochs"):
            raise _config_error(
                "batch_schedule_unit", f"batch_schedule_unit: expected 'steps', 'tokens' or 'epochs', not {unit!r}"
            )
        batch_schedule = {"unit": unit, "points": pairs}
    elif chunking.get("batch_schedule_unit") is not None:
        raise _config_error("batch_schedule_unit", "batch_schedule_unit needs batch_schedule")
    batch_tokens = settings.get("batch_tokens")
    if batch_tokens is None:
        if batch_schedule is None or not batch_schedule["points"]:
            raise _config_error("batch_tokens", "mode='chunk' needs batch_tokens: tokens per step on each rank")
        # Without a configured batch, the schedule's first one is it (the rate's factor is 1).
        batch_tokens = batch_schedule["points"][0][1] // max(world_size, 1)
    return {
        "token_dtype": token_dtype,
        "vocab_size": settings.get("vocab_size"),
        "run": {
            "seq_len": chunking["seq_len"],
            "batch_tokens": batch_tokens,
            "seed": settings.get("seed", 0),
            "rank": settings["rank"],
            "world_size": world_size,
            "batch_schedule": batch_schedule,
        },
    }


def _decompose_settings(
    settings: Mapping[str, Any],
    schedule: Union[Schedule, Mapping[str, Any], PathLike, None],
    decomposition: Mapping[str, Any],
) -> Dict[str, Any]:
    """The Rust ``DecomposeSettings`` table from the keywords of ``mode="decompose"``."""
    for key in settings:
        if key not in _DECOMPOSE_KEYWORDS:
            raise _config_error(
                key,
                f"{key} does not apply to mode='decompose': its curriculum fixes every step's length and rows "
                "(see docs/decomposition.md)",
            )
    for key in ("token_dtype", "eos_id", "batch_tokens"):
        if decomposition.get(key, settings.get(key)) is None:
            raise _config_error(key, f"mode='decompose' needs {key}")
    if not isinstance(schedule, Mapping) or "max" not in schedule:
        raise _config_error(
            "schedule", "mode='decompose' needs schedule={'max': ...} (and 'min', 256 by default): the piece lengths"
        )
    extra = sorted(set(schedule) - {"min", "max"})
    if extra:
        raise _config_error("schedule", f"mode='decompose' takes only min and max from the schedule, not {extra}")
    name = decomposition.get("curriculum") or "natural"
    if name not in ("natural", "grow-p2", "grow-linear"):
        raise _config_error("curriculum", f"curriculum: expected 'natural', 'grow-p2' or 'grow-linear', not {name!r}")
    cycles, balanced = decomposition.get("cycles"), decomposition.get("balanced")
    if name == "natural":
        if cycles is not None or balanced is not None:
            raise _config_error("cycles", "cycles and balanced belong to the grow curricula (grow-p2, grow-linear), not natural")
        curriculum: Any = "natural"
    else:
        curriculum = {name: {"cycles": 8 if cycles is None else cycles, "balanced": bool(balanced)}}
    return {
        "token_dtype": decomposition["token_dtype"],
        "eos_id": settings["eos_id"],
        "min": schedule.get("min", 256),
        "max": schedule["max"],
        "vocab_size": settings.get("vocab_size"),
        "run": {
            "curriculum": curriculum,
            "batch_tokens": settings["batch_tokens"],
            "seed": settings.get("seed", 0),
            "rank": settings["rank"],
            "world_size": settings["world_size"],
        },
    }


def _source_table(source: Mapping[str, Any]) -> Dict[str, Any]:
    """A mixture source as the Rust table: its shard locations as a list of strings."""
    table = dict(source)
    shards = table.get("shards")
    if isinstance(shards, (str, bytes, os.PathLike)):
        table["shards"] = [path_text(shards, "sources")]
    elif shards is not None:
        table["shards"] = [path_text(s, "sources") for s in shards]
    return table


def merge_states(state_dicts: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Elastic resume: the :meth:`Loader.state_dict` of every rank, taken at the same step,
    combined into one state_dict that any number of ranks resumes from (``Loader(...,
    rank=r, world_size=n, state=merged)`` or ``load_state_dict``). Every token of the epoch is
    emitted once or counted as dropped across the change; what the old ranks held and the rest
    of the epoch are dealt to the new ranks by load (``docs/loader.md``, "Elastic resume"). Give
    each rank's state_dict once, in any order; states of different steps, settings or data raise
    :class:`seqwarm.StateError`."""
    texts = []
    bases = set()
    for i, state_dict in enumerate(state_dicts):
        if not isinstance(state_dict, Mapping) or state_dict.get(_STATE_KEY) is None:
            raise StateError(f"state_dict {i} holds no loader state (taken before the first batch?)")
        texts.append(json.dumps(state_dict[_STATE_KEY]))
        bases.add(state_dict.get(_WORKER_BASE_KEY))
    if len(bases) > 1:
        raise StateError(f"the state_dicts come from DataLoader workers that started at different steps: {sorted(map(str, bases))}")
    merged: Dict[str, Any] = {_STATE_KEY: json.loads(_seqwarm.merge_states(texts))}
    base = bases.pop() if bases else None
    if base is not None:
        merged[_WORKER_BASE_KEY] = base
    return merged
