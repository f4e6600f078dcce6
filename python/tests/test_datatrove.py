"""seqwarm.datatrove under datatrove's own LocalPipelineExecutor (several tasks, 2 workers):
the merged output equals the CLI's for the same documents; a launch whose task dies is finished
by the next launch, which reruns only that task, and the result is still equal."""

import json
import os
import subprocess
from pathlib import Path
from typing import Dict, List

import pytest

pytest.importorskip("datatrove")

from datatrove.executor import LocalPipelineExecutor  # noqa: E402
from datatrove.pipeline.base import PipelineStep  # noqa: E402
from datatrove.pipeline.readers import JsonlReader  # noqa: E402

import seqwarm  # noqa: E402
from seqwarm.datatrove import SeqwarmMergeManifests, SeqwarmTokenize  # noqa: E402


TASKS = 3
SETTINGS = dict(shard_tokens=40_000, row_group_tokens=10_000, threads=1)
CLI_FLAGS = ["--shard-tokens", "40000", "--row-group-tokens", "10000", "--threads", "1"]


def write_inputs(folder: Path, files: int = 7, docs: int = 300) -> None:
    folder.mkdir(parents=True)
    words = ["data", "trove", "token", "warmup", "corpus", "naïve", "日本", "🙂", "the", "of"]
    for f in range(files):
        lines = []
        for d in range(docs):
            n = 20 + (f * 131 + d * 17) % 400
            text = " ".join(words[(f + d * 3 + i * 7) % len(words)] for i in range(n))
            lines.append(json.dumps({"id": f"{f}-{d}", "text": text}))
        (folder / f"part-{f:02d}.jsonl").write_text("\n".join(lines) + "\n")


def shards_of(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def shard_entries(manifest: Path) -> List[dict]:
    shards = json.loads(manifest.read_text())["shards"]
    # `end` is a position in the inputs: files for the CLI, the task's document stream here.
    return [{k: v for k, v in s.items() if k != "end"} for s in shards]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("datatrove") / "in"
    write_inputs(folder)
    return folder


@pytest.fixture(scope="module")
def cli_output(inputs: Path, seqwarm_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "shards"
    for worker in range(TASKS):
        subprocess.run(
            [seqwarm_bin, "preprocess", str(inputs), "-o", str(out), *CLI_FLAGS, "--worker", str(worker), "--workers", str(TASKS)],
            check=True,
            capture_output=True,
        )
    subprocess.run([seqwarm_bin, "merge-manifests", str(out), "-o", str(out / "manifest.json")], check=True, capture_output=True)
    return out


def executors(inputs: Path, out: Path, logs: Path, *extra: PipelineStep) -> LocalPipelineExecutor:
    tokenize = LocalPipelineExecutor(
        [JsonlReader(str(inputs)), *extra, SeqwarmTokenize(out, **SETTINGS)],
        tasks=TASKS,
        workers=2,
        logging_dir=str(logs / "tokenize"),
    )
    return LocalPipelineExecutor(
        [SeqwarmMergeManifests(out)], tasks=1, workers=1, logging_dir=str(logs / "merge"), depends=tokenize
    )


def test_a_datatrove_pipeline_writes_the_clis_shards(inputs: Path, cli_output: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    executors(inputs, out, tmp_path / "logs").run()
    assert shards_of(out) == shards_of(cli_output)
    assert shard_entries(out / "manifest.json") == shard_entries(cli_output / "manifest.json")
    loader = seqwarm.Loader(out, seqwarm.Schedule.constant(128), mode="truncate", batch_rows=8)
    assert sum(b.tokens for b in loader) > 0


class DieOnce(PipelineStep):
    """Passes documents on; on the first launch, task ``rank`` dies after ``after`` documents
    (the marker file says it did)."""

    name = "die once"
    type = "test"

    def __init__(self, marker: str, rank: int, after: int) -> None:
        super().__init__()
        self.marker, self.rank, self.after = marker, rank, after

    def run(self, data, rank: int = 0, world_size: int = 1):  # type: ignore[no-untyped-def]
        for i, document in enumerate(data):
            if rank == self.rank and i == self.after and not os.path.exists(self.marker):
                Path(self.marker).write_text("died")
                raise RuntimeError(f"task {rank} dies at document {i}")
            yield document


def test_a_task_that_dies_is_rerun_alone_and_the_result_is_unchanged(inputs: Path, cli_output: Path, tmp_path: Path) -> None:
    out, logs = tmp_path / "shards", tmp_path / "logs"
    # Task 1 reads files 1 and 4 (600 documents); it dies in its second file.
    die = DieOnce(str(tmp_path / "died"), rank=1, after=450)
    tokenize_logs = logs / "tokenize"
    first = LocalPipelineExecutor(
        [JsonlReader(str(inputs)), die, SeqwarmTokenize(out, **SETTINGS)], tasks=TASKS, workers=1, logging_dir=str(tokenize_logs)
    )
    with pytest.raises(Exception):
        first.run()
    completed = sorted(p.name for p in (tokenize_logs / "completions").iterdir())
    assert "00001" not in completed
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("shard-w*.parquet")}
    assert any(name.startswith("shard-w00001") for name in kept), "the dead task left no finished shard"
    assert not (out / "manifest-w00001-of-00003.json").exists()
    # The next launch: the same pipeline (the step no longer dies), then the merge.
    executors(inputs, out, logs, die).run()
    assert shards_of(out) == shards_of(cli_output)
    assert shard_entries(out / "manifest.json") == shard_entries(cli_output / "manifest.json")
    # Shards finished before the failure, of every task, were not rewritten.
    for name, mtime in kept.items():
        assert (out / name).stat().st_mtime_ns == mtime, name


def test_a_bucket_output_folder_is_refused_with_the_way_out() -> None:
    with pytest.raises(seqwarm.ConfigError, match="local or mounted directory"):
        SeqwarmTokenize("s3://bucket/shards")
    with pytest.raises(seqwarm.ConfigError, match="set by datatrove's task"):
        SeqwarmTokenize("shards", worker=3)
