"""Ray Data into and out of seqwarm shards (``pip install seqwarm[ray]``).

::

    import ray
    from seqwarm.ray import ShardDatasink, read_shards

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    ds = ray.data.read_json("crawl/").map_batches(clean)
    ds.write_datasink(ShardDatasink("shards/", tokenizer="gpt2"))
    # shards/manifest.json: what seqwarm.Loader("shards/", ...) reads

    read_shards("shards/").take(3)  # rows of shard, document, input_ids: for inspection

Each write task writes its blocks' ``column`` (``text`` by default), in order, as a run of its
own in ``output/_seqwarm_runs/JOB/task-NNNNNN`` (a task Ray retries keeps that run's finished
shards and skips the documents they hold; ``JOB`` is the sink's own, so a later job never
resumes another's runs unless ``resume=True`` says its tasks get the same blocks). When every task is done, the runs are
joined in task order into ``output``: task ``k`` of ``n`` becomes worker ``k`` of ``n``, as if
``seqwarm preprocess --worker k --workers n`` had written it, and ``manifest.json`` is the
merged manifest. The documents are the dataset's, in its order when Ray preserves it
(``preserve_order``; without it, the tasks take blocks as they come).

``output`` is a local (or mounted, shared by every node) directory, empty but for an
interrupted job's runs: shards are renamed into place when complete, which object stores do
not offer; copy the finished folder to a bucket afterwards.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any, Dict, Iterable, List, Optional

import ray
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from seqwarm import _seqwarm
from seqwarm._json import path_text
from seqwarm.errors import ConfigError
from seqwarm.shards import read_documents, shard_files
from seqwarm.writer import Manifest, ShardWriter

#: Where the write tasks' runs wait for the join, inside ``output`` (the loader does not read
#: subdirectories).
RUNS = "_seqwarm_runs"


def _config_error(field: str, reason: str) -> ConfigError:
    error = ConfigError(f"{field}: {reason}")
    error.field = field
    return error


class ShardDatasink(Datasink):
    """A Ray Data sink that ends ``ds.write_datasink(...)`` in seqwarm shards in ``output``.

    ``settings`` are :class:`seqwarm.ShardWriter`'s (``tokenizer``, ``shard_tokens``, ...; not
    ``worker``/``workers``/``source``, which are the task's). ``threads`` defaults to 1, one per
    write task as Ray schedules them (a task's ``num_cpus``: give ``threads=k`` with
    ``ray_remote_args={"num_cpus": k}``). After the write, :attr:`manifest` is the merged one.

    ``resume=True`` continues the runs a failed job with ``resume=True`` left: its tasks keep
    their finished shards and skip the documents those hold, which is right only when each task
    gets the same blocks as before (``preserve_order``, the same input and partitioning; only the
    number of documents is checked). Without it, a job's runs are its own.
    """

    def __init__(self, output: "str | os.PathLike[str]", column: str = "text", *, resume: bool = False, **settings: Any) -> None:
        for taken in ("worker", "workers", "source"):
            if taken in settings:
                raise _config_error(taken, "set by the write task (its index), not given")
        self.output = path_text(output, "output")
        if "://" in self.output:
            raise _config_error("output", f"{self.output!r} is not a local directory; write to a local or mounted one and copy it to the bucket when done")
        self.column = column
        self.settings: Dict[str, Any] = dict(settings)
        self.settings.setdefault("threads", 1)
        self.resume = resume
        self.job = os.path.join(self.output, RUNS, "resumable" if resume else uuid.uuid4().hex)
        self.manifest: Optional[Manifest] = None

    def _check_output(self) -> None:
        """A finished data set in ``output`` is refused (a resumed job may find its own shards
        there, from a join that stopped half-way: the join replaces only its own)."""
        if self.resume or not os.path.isdir(self.output):
            return
        found = sorted(n for n in os.listdir(self.output) if n.lower().endswith(".parquet") or n.startswith("manifest"))
        if found:
            raise _config_error("output", f"{self.output} already holds a data set ({found[0]}, ...): write into an empty directory")

    def on_write_start(self, schema: Any = None) -> None:
        if schema is not None and self.column not in schema.names:
            raise _config_error("column", f"no column {self.column!r} in the dataset (columns: {schema.names})")
        self._check_output()
        os.makedirs(self.job, exist_ok=True)

    def write(self, blocks: Iterable[Any], ctx: Any) -> Dict[str, Any]:
        task = ctx.task_idx
        run = os.path.join(self.job, f"task-{task:06d}")
        writer = ShardWriter(run, source=f"ray write task {task}", **self.settings)
        with writer:
            for block in blocks:
                writer.write_table(BlockAccessor.for_block(block).to_arrow(), self.column)
        manifest = writer.close()
        return {"task": task, "run": run, "documents": manifest.documents, "tokens": manifest.tokens}

    def on_write_complete(self, write_result: Any) -> None:
        # Ray calls on_write_start only when a first block arrives: not for an empty dataset.
        self._check_output()
        runs = sorted(write_result.write_returns, key=lambda r: r["task"])
        if not runs:  # an empty dataset: one empty run, so that the output is a data set
            run = os.path.join(self.job, "task-000000")
            ShardWriter(run, source="ray write task 0", **self.settings).close()
            runs = [{"run": run}]
        path, text = _seqwarm.join_runs([r["run"] for r in runs], self.output, self.settings.get("prefix"))
        self.manifest = Manifest._from(path, text)
        shutil.rmtree(self.job)
        if not os.listdir(os.path.join(self.output, RUNS)):
            os.rmdir(os.path.join(self.output, RUNS))


def read_shards(location: "str | os.PathLike[str]", *, override_num_blocks: Optional[int] = None) -> "ray.data.Dataset":
    """The documents of the shards at ``location`` (a local or mounted directory, glob or
    file) as a Ray dataset, in the loader's order: rows of ``shard`` (its file name),
    ``document`` (its index in the shard) and ``input_ids`` (``list<int32>``). For inspection
    and statistics; ``seqwarm.Loader`` is the way to train on them. One read per shard."""
    files: List[str] = shard_files(location)

    def read(batch: Dict[str, Any]) -> Any:
        import pyarrow as pa

        tables = []
        for path in batch["path"].to_pylist():
            table = read_documents(path)
            name = pa.array([os.path.basename(path)] * table.num_rows, type=pa.string())
            tables.append(table.add_column(0, "shard", name))
        return pa.concat_tables(tables)

    blocks = override_num_blocks or len(files)
    return ray.data.from_items([{"path": p} for p in files], override_num_blocks=blocks).map_batches(read, batch_size=1, batch_format="pyarrow")
