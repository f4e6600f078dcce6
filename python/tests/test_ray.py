"""seqwarm.ray on a local Ray cluster (2 CPUs): a dataset written through ShardDatasink is the
CLI's data set (the same documents, in order, and the same batches from the loader); a job
that fails mid-way is finished by the next, whose tasks keep the finished shards; read_shards
gives the documents back."""

import json
from pathlib import Path
from typing import List

import pytest

ray = pytest.importorskip("ray")

import seqwarm  # noqa: E402
from seqwarm.ray import RUNS, ShardDatasink, read_shards  # noqa: E402
from seqwarm.shards import shard_files  # noqa: E402

SETTINGS = dict(shard_tokens=6_000, row_group_tokens=2_000)


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> List[str]:
    folder = tmp_path_factory.mktemp("ray") / "in"
    folder.mkdir()
    words = ["ray", "data", "sink", "token", "naïve", "日本", "🙂", "the", "of"]
    files = []
    for f in range(3):
        rows = []
        for d in range(400):
            text = " ".join(words[(f + d * 5 + i * 7) % len(words)] for i in range(10 + (f * 97 + d * 13) % 150))
            rows.append(json.dumps({"id": f"{f}-{d}", "text": text}))
        path = folder / f"part-{f}.jsonl"
        path.write_text("\n".join(rows) + "\n")
        files.append(str(path))
    return files


def documents(folder: Path) -> List[List[int]]:
    return [ids for path in shard_files(folder) for ids in seqwarm.read_documents(path).column("input_ids").to_pylist()]


def batches(folder: Path) -> List[List[List[int]]]:
    loader = seqwarm.Loader(folder, seqwarm.Schedule.constant(96), mode="repack", batch_rows=8, dtype="i64", shuffle_units=False)
    return [b["input_ids"].tolist() for b in loader]


def test_a_dataset_written_through_the_sink_is_the_clis_data_set(cluster, inputs: List[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ray"
    sink = ShardDatasink(out, **SETTINGS)
    ray.data.read_json(inputs).repartition(4).write_datasink(sink)
    cli = seqwarm.preprocess_files(inputs, tmp_path / "cli", **SETTINGS)
    assert sink.manifest is not None and sink.manifest.settings["workers"] == 4
    assert (sink.manifest.documents, sink.manifest.tokens) == (cli.documents, cli.tokens) == (1200, cli.tokens)
    assert documents(out) == documents(tmp_path / "cli")
    assert batches(out) == batches(tmp_path / "cli")
    assert not (out / RUNS).exists()
    rows = read_shards(out).take_all()
    assert [r["input_ids"].tolist() if hasattr(r["input_ids"], "tolist") else r["input_ids"] for r in rows] == documents(out)
    assert rows[0]["shard"] == "shard-w00000-00000.parquet" and rows[0]["document"] == 0


def test_a_failed_job_is_finished_by_the_next(cluster, inputs: List[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "ray"
    marker = tmp_path / "failed-once"

    def fail_once(batch):  # type: ignore[no-untyped-def]
        if "1-350" in list(batch["id"]) and not marker.exists():
            marker.write_text("")
            raise RuntimeError("killed mid-way")
        return batch

    def job() -> ShardDatasink:
        sink = ShardDatasink(out, resume=True, **SETTINGS)
        ray.data.read_json(inputs).repartition(3).map_batches(fail_once, batch_size=50).write_datasink(sink)
        return sink

    with pytest.raises(Exception, match="killed mid-way"):
        job()
    kept = sorted((out / RUNS).glob("*/*/*.parquet"))
    assert kept, "the failed job left no finished shards to keep"
    before = {p: p.stat().st_mtime_ns for p in kept}
    sink = job()
    assert sink.manifest is not None and sink.manifest.documents == 1200
    assert documents(out) == documents(Path(seqwarm.preprocess_files(inputs, tmp_path / "cli", **SETTINGS).path).parent)
    # The shards the failed job finished were kept (linked into place), not written again.
    joined = {p.stat().st_ino: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    assert all(mtime in joined.values() for mtime in before.values())


def test_bad_settings_and_a_used_directory_are_refused(cluster, inputs: List[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(seqwarm.ConfigError, match="worker"):
        ShardDatasink(tmp_path / "x", worker=1)
    with pytest.raises(seqwarm.ConfigError, match="no column 'body'"):
        ray.data.read_json(inputs).write_datasink(ShardDatasink(tmp_path / "x", column="body"))
    used = tmp_path / "used"
    seqwarm.preprocess(["a document"], used)
    with pytest.raises(seqwarm.ConfigError, match="already holds a data set"):
        ray.data.read_json(inputs).write_datasink(ShardDatasink(used))
    # An empty dataset too (Ray starts no write task, and calls no on_write_start).
    with pytest.raises(seqwarm.ConfigError, match="already holds a data set"):
        ray.data.read_json(inputs).filter(lambda row: False).write_datasink(ShardDatasink(used))
    assert json.loads((used / "manifest.json").read_text())["documents"] == 1
    # A later job does not resume another job's runs unless asked to.
    fresh = tmp_path / "fresh"
    (fresh / RUNS / "resumable" / "task-000000").mkdir(parents=True)
    seqwarm.preprocess(["stale"] * 50, fresh / RUNS / "resumable" / "task-000000", source="ray write task 0", threads=1)
    sink = ShardDatasink(fresh, **SETTINGS)
    ray.data.read_json(inputs).write_datasink(sink)
    assert sink.manifest is not None and sink.manifest.documents == 1200
