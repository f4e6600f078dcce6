"""seqwarm: Sequence Length Warmup as a streaming data loader.

Parquet token shards in; batches out, already cut, repacked or packed to the length a warmup
schedule gives for each step, as PyTorch tensors that share the Rust loader's memory::

    import seqwarm

    schedule = seqwarm.Schedule.linear(min=64, max=1024, duration=0.3, total=20_000, step=64)
    loader = seqwarm.Loader("data/shards", schedule, mode="repack", batch_tokens=65_536, dtype="i64")
    for batch in loader:
        ids = batch["input_ids"]  # [rows, batch.seq_len], sharing the loader's memory
        loss = model(input_ids=ids, labels=ids).loss

See ``docs/python.md``.
"""

from seqwarm._seqwarm import __version__
from seqwarm._defaults import default_settings
from seqwarm.errors import ConfigError, DataError, SeqwarmError, StateError
from seqwarm.loader import Batch, Loader, merge_states
from seqwarm.plan import ChangePoint, Plan, plan
from seqwarm.schedule import Schedule
from seqwarm.shards import read_documents
from seqwarm.writer import Manifest, ShardWriter, merge_manifests, preprocess, preprocess_files

__all__ = [
    "Batch",
    "ChangePoint",
    "ConfigError",
    "DataError",
    "Loader",
    "Manifest",
    "Plan",
    "Schedule",
    "SeqwarmError",
    "ShardWriter",
    "StateError",
    "__version__",
    "default_settings",
    "merge_manifests",
    "merge_states",
    "plan",
    "preprocess",
    "preprocess_files",
    "read_documents",
]
