"""datatrove pipeline steps that end in seqwarm shards (``pip install seqwarm[datatrove]``).

::

    from datatrove.executor import LocalPipelineExecutor  # or SlurmPipelineExecutor, RayPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from seqwarm.datatrove import SeqwarmTokenize, SeqwarmMergeManifests

    if __name__ == "__main__":  # the executor's workers import this file
        tokenize = LocalPipelineExecutor(
            [JsonlReader("crawl/"), SeqwarmTokenize("shards/", tokenizer="gpt2", threads=1)],
            tasks=64, workers=8, logging_dir="logs/tokenize",
        )
        merge = LocalPipelineExecutor(
            [SeqwarmMergeManifests("shards/")], tasks=1, logging_dir="logs/merge", depends=tokenize,
        )
        merge.run()  # runs tokenize first; then shards/manifest.json is what seqwarm.Loader reads

Task ``rank`` of ``world_size`` writes its documents as seqwarm worker ``rank`` of
``world_size`` (shards ``shard-wRRRRR-*.parquet`` and ``manifest-wRRRRR-of-NNNNN.json``). A task
that dies leaves its finished shards and no completion marker; datatrove's next launch reruns
it, and its ``SeqwarmTokenize`` keeps those shards and skips, without tokenizing, the documents
they hold. Completed tasks are not rerun. Datatrove's readers give task ``rank`` the files
``rank``, ``rank + world_size``, ..., as ``seqwarm preprocess --worker rank --workers world_size``
takes them, so the shards are the CLI's, byte for byte.

The output folder is a local (or mounted) directory: shards are renamed into place when
complete, which object stores do not offer; copy the finished folder to a bucket afterwards
(the loader streams it from there).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep

from seqwarm._json import path_text
from seqwarm.errors import ConfigError
from seqwarm.writer import ShardWriter, merge_manifests


def _local(folder: "str | os.PathLike[str]") -> str:
    text = path_text(folder, "output_folder")
    if "://" in text:
        error = ConfigError(
            f"output_folder: {text!r} is not a local directory; seqwarm writes shards by renaming "
            "complete files into place: write to a local or mounted directory and copy it to the "
            "bucket when done"
        )
        error.field = "output_folder"
        raise error
    return text


class SeqwarmTokenize(PipelineStep):
    """Tokenizes each task's documents into seqwarm shards in ``output_folder``.

    ``settings`` are :class:`seqwarm.ShardWriter`'s (``tokenizer``, ``shard_tokens``,
    ``threads``, ...; not ``worker``/``workers``, which are the task's). Documents pass on to
    the next step unchanged, so a pipeline can go on (a writer of its own, statistics).
    """

    name = "seqwarm shards"
    type = "🔢 - TOKENIZER"

    def __init__(self, output_folder: "str | os.PathLike[str]", **settings: Any) -> None:
        super().__init__()
        for taken in ("worker", "workers", "source"):
            if taken in settings:
                error = ConfigError(f"{taken}: set by datatrove's task (rank, world_size), not given")
                error.field = taken
                raise error
        self.output_folder = _local(output_folder)
        self.settings = settings

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        source = f"datatrove task {rank} of {world_size}"
        writer = ShardWriter(self.output_folder, source=source, worker=rank, workers=world_size, **self.settings)
        with writer:
            if writer.resume_at:
                self.stat_update("resumed_documents", value=writer.resume_at)
            for document in data or ():
                with self.track_time():
                    writer.write(document.text)
                self.stat_update("documents")
                yield document
        manifest = writer.close()
        self.stat_update("tokens", value=manifest.tokens, unit="task")
        self.stat_update("shards", value=len(manifest.shards), unit="task")


class SeqwarmMergeManifests(PipelineStep):
    """Joins the tasks' manifests in ``output_folder`` into ``manifest.json`` (run it with
    ``tasks=1`` after the tokenizing job: ``depends=``). Every task's manifest must be there,
    with the same settings."""

    name = "seqwarm merge manifests"
    type = "🔢 - TOKENIZER"

    def __init__(self, output_folder: "str | os.PathLike[str]", output: Optional[str] = None) -> None:
        super().__init__()
        self.output_folder = _local(output_folder)
        self.output = output or os.path.join(self.output_folder, "manifest.json")

    def run(self, data: DocumentsPipeline, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        if data:
            yield from data
        if rank == 0:
            manifest = merge_manifests([self.output_folder], self.output)
            self.stat_update("shards", value=len(manifest.shards), unit="dataset")
            self.stat_update("tokens", value=manifest.tokens, unit="dataset")
