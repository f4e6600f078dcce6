"""The Ray Data recipe of docs/scale-out.md on a local Ray cluster (2 CPUs): one
seqwarm.preprocess per part of a split dataset, then seqwarm.merge_manifests; each worker's
shards equal those of a ShardWriter given that part's documents in order."""

import json
from pathlib import Path
from typing import Dict

import pytest

ray = pytest.importorskip("ray")

import seqwarm  # noqa: E402


def files_of(folder: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    yield
    ray.shutdown()


def test_a_split_dataset_ends_in_one_manifest(cluster, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    docs = [f"document {i}: " + "tokens and words " * (i % 40) for i in range(3000)]
    ds = ray.data.from_items([{"id": i, "text": d} for i, d in enumerate(docs)])
    out = tmp_path / "ray"

    @ray.remote(num_cpus=1)
    def tokenize(rank: int, world_size: int, shard) -> str:  # type: ignore[no-untyped-def]
        batches = shard.iter_batches(batch_format="pyarrow")
        manifest = seqwarm.preprocess(batches, str(out), worker=rank, workers=world_size, source=f"part {rank}", threads=1, shard_tokens=8000)
        return manifest.path

    parts = ds.map_batches(lambda batch: batch).split(2, equal=False)
    ray.get([tokenize.remote(i, 2, part) for i, part in enumerate(parts)])
    merged = seqwarm.merge_manifests([out], out / "manifest.json")
    assert merged.documents == len(docs)
    # Each part's shards are those of a ShardWriter given the part's documents in order.
    for rank, part in enumerate(parts):
        texts = [row["text"] for row in part.take_all()]
        seqwarm.preprocess(texts, tmp_path / "direct", worker=rank, workers=2, source=f"part {rank}", shard_tokens=8000)
    assert files_of(out) == files_of(tmp_path / "direct")
    assert json.loads((out / "manifest.json").read_text())["tokens"] == merged.tokens
