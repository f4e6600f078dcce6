"""The Python loader against the CLI, and its iteration, checkpoints, ranks and formats."""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest
import torch

import seqwarm
from conftest import fields_of, linear

MODES = ["truncate", "truncate-keep-eos", "reshape", "repack", "pack-greedy", "pack-bestfit"]


def cli_batches(seqwarm_bin: str, shards: str, settings: dict, tmp_path: Path) -> list:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(settings))
    out = subprocess.run(
        [seqwarm_bin, "stream", shards, "--config", str(config), "--emit", "jsonl"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def kwargs_of(settings: dict) -> dict:
    kwargs = dict(settings)
    schedule = kwargs.pop("schedule")
    return {"schedule": schedule, **kwargs}


@pytest.mark.parametrize("mode", MODES)
def test_batches_equal_the_clis_jsonl_in_every_mode(mode: str, corpus: dict, seqwarm_bin: str, tmp_path: Path) -> None:
    settings = {"schedule": linear(), "mode": mode, "batch_rows": 4, "eos_id": 0, "seed": 3, "epochs": 2}
    expected = cli_batches(seqwarm_bin, corpus["dir"], settings, tmp_path)
    got = list(seqwarm.Loader(corpus["dir"], **kwargs_of(settings)))
    assert len(got) == len(expected) > 20
    for batch, want in zip(got, expected):
        assert (batch.step, batch.seq_len, batch.tokens) == (want["step"], want["seq_len"], want["tokens"])
        assert fields_of(batch) == want["fields"], f"step {batch.step}"
        assert all(isinstance(v, torch.Tensor) for v in batch.values())
    if mode.startswith("pack"):
        # cu_seqlens: the segment boundaries of the flattened batch, int32 for flash-attention.
        first = got[0]
        assert first["cu_seqlens"].dtype == torch.int32
        assert int(first["cu_seqlens"][-1]) == first["input_ids"].numel()


def test_numpy_format_gives_the_same_batches(corpus: dict) -> None:
    torch_batches = list(seqwarm.Loader(corpus["dir"], linear(), batch_rows=4))
    numpy_batches = list(seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, format="numpy"))
    assert len(torch_batches) == len(numpy_batches)
    for t, n in zip(torch_batches, numpy_batches):
        assert isinstance(n["input_ids"], np.ndarray)
        assert np.array_equal(t["input_ids"].numpy(), n["input_ids"])
    assert not isinstance(seqwarm.Loader(corpus["dir"], format="numpy"), torch.utils.data.IterableDataset)


def test_tokens_are_not_copied(corpus: dict) -> None:
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, format="torch")
    raw = loader._running()
    fields, *_ = raw.next()
    array = fields["input_ids"]
    address = array.__array_interface__["data"][0]
    tensor = torch.from_numpy(np.asarray(array))
    # The tensor's memory is the Rust buffer itself.
    assert tensor.data_ptr() == address
    # And it outlives the loader: the array keeps the buffer alive.
    copy = tensor.clone()
    loader.close()
    del loader, raw, fields, array
    import gc

    gc.collect()
    assert torch.equal(tensor, copy)


def test_truncated_batches_are_dense_as_composers_are(corpus: dict) -> None:
    # Composer's cut is `v[:, :seq_len].contiguous()`; the stage's a view with the full rows'
    # stride (128 here), made dense before it is handed over.
    batches = list(seqwarm.Loader(corpus["dir"], linear(), mode="truncate", batch_rows=4))
    assert batches[0]["input_ids"].shape == (4, 16)
    cut = [b for b in batches if b.seq_len < 128]
    assert cut and all(t.is_contiguous() for b in batches for t in b.values())
    for b in seqwarm.Loader(corpus["dir"], linear(), mode="truncate", batch_rows=4, format="numpy"):
        assert all(a.flags.c_contiguous for a in b.values())


def test_editing_a_batch_in_place_changes_that_batch_alone(corpus: dict) -> None:
    for mode in ("truncate", "repack", "pack-greedy"):
        reference = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), mode=mode, batch_rows=4, eos_id=0)]
        edited = []
        for batch in seqwarm.Loader(corpus["dir"], linear(), mode=mode, batch_rows=4, eos_id=0):
            edited.append(fields_of(batch))
            for tensor in batch.values():
                tensor.fill_(-7)
        assert edited == reference, mode


def test_resume_from_state_dict_is_byte_identical(corpus: dict) -> None:
    kwargs = dict(schedule=linear(), mode="repack", batch_tokens=512, eos_id=0, seed=5, epochs=2)
    reference = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], **kwargs)]
    first = seqwarm.Loader(corpus["dir"], **kwargs)
    taken = []
    for batch in first:
        taken.append(fields_of(batch))
        if len(taken) == 37:
            break
    # Through torch.save and back, as inside a model checkpoint.
    buffer = io.BytesIO()
    torch.save({"loader": first.state_dict()}, buffer)
    first.close()
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["loader"]
    resumed = seqwarm.Loader(corpus["dir"], **kwargs)
    resumed.load_state_dict(state)
    rest = [fields_of(b) for b in resumed]
    assert taken + rest == reference
    # A state of a finished run resumes to nothing.
    assert list(seqwarm.Loader(corpus["dir"], **kwargs, state=resumed.state_dict())) == []


def test_iterating_again_continues(corpus: dict) -> None:
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    steps = []
    for batch in loader:
        steps.append(batch.step)
        if len(steps) == 5:
            break
    steps += [b.step for b in loader]
    assert steps == list(range(len(steps)))


def test_ranks_read_disjoint_data_and_lose_only_the_ends(corpus: dict) -> None:
    seen = []
    dropped = 0
    for rank in range(3):
        loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, rank=rank, world_size=3, seed=1)
        tokens = np.concatenate([b["input_ids"].numpy().ravel() for b in loader])
        seen.append(set(tokens.tolist()))
        dropped += loader.stats()["tokens_dropped"]
        assert len(tokens) == len(seen[-1])
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])
    assert sum(len(s) for s in seen) + dropped == corpus["tokens"]


def test_rank_and_world_size_come_from_the_environment(corpus: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    loader = seqwarm.Loader(corpus["dir"], linear())
    assert (loader.rank, loader.world_size) == (1, 2)
    explicit = seqwarm.Loader(corpus["dir"], linear(), rank=0, world_size=1)
    assert (explicit.rank, explicit.world_size) == (0, 1)


def test_plan_counts_the_tokens_the_loader_emits(corpus: dict) -> None:
    schedule = seqwarm.Schedule.linear(min=16, max=128, step=16, duration=0.5, total=60)
    p = seqwarm.plan(schedule, mode="repack", batch_rows=4)
    batches = list(seqwarm.Loader(corpus["dir"], schedule, batch_rows=4, max_steps=60, epochs=0))
    assert len(batches) == 60
    assert sum(b["input_ids"].numel() for b in batches) == p.tokens_at(60)
    for b in batches:
        assert b.seq_len == p.seq_len_at(b.step)


def test_a_shape_policy_bounds_the_loaders_lengths(corpus: dict) -> None:
    ramp = dict(min=16, max=128, step=8, duration=0.5, total=60)
    plain = seqwarm.Schedule.linear(**ramp)
    for given, allowed in [
        (4, [16, 48, 88, 128]),
        ("even:4", [16, 48, 88, 128]),
        ("powers_of_two", [16, 32, 64, 128]),
        ([32, 64, 128], [32, 64, 128]),
    ]:
        schedule = seqwarm.Schedule.linear(**ramp, shapes=given)
        assert schedule.allowed_lengths == allowed
        assert plain.with_shapes(given) == schedule
        assert schedule.with_shapes(None) == plain and plain.allowed_lengths is None
        p = seqwarm.plan(schedule, mode="repack", batch_rows=4)
        assert p.shapes == [(4, length) for length in allowed]
        unsnapped = seqwarm.plan(plain, mode="repack", batch_rows=4)
        assert p.tokens_given_up == unsnapped.tokens_at(60) - p.tokens_at(60)
        batches = list(seqwarm.Loader(corpus["dir"], schedule, batch_rows=4, max_steps=60, epochs=0))
        assert {b.seq_len for b in batches} == set(allowed)
        for b in batches:
            assert b.seq_len == p.seq_len_at(b.step) <= plain_len(unsnapped, b.step, allowed)
    assert seqwarm.plan(plain, batch_rows=4).tokens_given_up is None
    with pytest.raises(seqwarm.ConfigError, match="even needs at least 2"):
        plain.with_shapes(1)
    with pytest.raises(seqwarm.ConfigError, match="must include the schedule's longest length 128"):
        plain.with_shapes([16, 64])


def plain_len(plan: "seqwarm.Plan", step: int, allowed: list) -> int:
    """The unsnapped length at `step`, or the shortest allowed where a list raises it."""
    return max(plan.seq_len_at(step), allowed[0])


def test_schedules_from_files_and_dicts(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('[schedule]\nkind = "composer"\nmin = 64\nmax = 512\nstep = 64\nduration = 0.3\ntotal = 1000\n')
    from_file = seqwarm.Schedule.from_file(path)
    assert from_file == seqwarm.Schedule.composer(min=64, max=512, step=64, duration=0.3, total=1000)
    assert from_file.max == 512 and from_file.unit == "steps"
    assert seqwarm.Schedule(from_file.to_dict()) == from_file
    assert "Schedule.composer(" in repr(from_file)


def test_batches_work_under_a_dataloader_without_workers(corpus: dict) -> None:
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    direct = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)]
    through = list(torch.utils.data.DataLoader(loader, batch_size=None, num_workers=0))
    assert [fields_of(b) for b in through] == direct
    assert [b.step for b in through] == list(range(len(direct)))


def test_close_keeps_the_position(corpus: dict) -> None:
    reference = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)]
    with seqwarm.Loader(corpus["dir"], linear(), batch_rows=4) as loader:
        iterator = iter(loader)
        head = [fields_of(next(iterator)) for _ in range(7)]
    assert loader.state_dict()["seqwarm_loader_state"] is not None
    assert head + [fields_of(b) for b in loader] == reference


def test_threads_sharing_a_loader_split_its_batches(corpus: dict) -> None:
    import threading

    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    steps: list = []

    def drain() -> None:
        steps.extend(b.step for b in loader)

    workers = [threading.Thread(target=drain) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    total = sum(1 for _ in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4))
    assert sorted(steps) == list(range(total))
    loader.close()


def test_numpy_values_and_paths_are_accepted(corpus: dict) -> None:
    from pathlib import Path

    schedule = seqwarm.Schedule.linear(min=np.int64(16), max=np.int32(128), duration=np.float32(0.5), total=np.int64(60), step=16)
    loader = seqwarm.Loader(Path(corpus["dir"]), schedule, batch_rows=np.int64(4), eos_id=np.int32(0), epochs=np.uint8(1))
    assert [fields_of(b) for b in loader] == [
        fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, eos_id=0)
    ]
    p = seqwarm.plan(schedule, batch_rows=np.int64(4))
    assert p.tokens_at(np.int64(10)) == p.tokens_at(10)


def test_a_subclass_is_still_a_dataset_and_help_shows_the_keywords(corpus: dict) -> None:
    import inspect

    class Mine(seqwarm.Loader):
        pass

    mine = Mine(corpus["dir"], linear(), batch_rows=4)
    assert isinstance(mine, Mine) and isinstance(mine, torch.utils.data.IterableDataset)
    assert len(list(torch.utils.data.DataLoader(mine, batch_size=None))) > 0
    parameters = inspect.signature(seqwarm.Loader).parameters
    assert "batch_tokens" in parameters and "shards" in parameters


@pytest.mark.parametrize("encoding", ["plain", "uint16"])
def test_batches_of_mapped_shards_own_their_tokens(encoding: str, seqwarm_bin: str, tmp_path: Path) -> None:
    # Local row groups are memory-mapped read-only by default: a batch must never be a view of
    # the map (a write to it would crash), in either encoding or dtype, and editing it must not
    # change what the loader reads next.
    text = tmp_path / "docs.jsonl"
    text.write_text("".join(json.dumps({"text": f"document {i} " + "word " * (i % 40)}) + "\n" for i in range(400)))
    shards = tmp_path / encoding
    subprocess.run(
        [seqwarm_bin, "preprocess", str(text), "-o", str(shards), "--tokenizer", "bytes", "--encoding", encoding,
         "--row-group-tokens", "2048"],
        check=True, capture_output=True,
    )  # fmt: skip
    for dtype in ("i32", "i64"):
        settings = dict(mode="truncate", batch_rows=4, dtype=dtype, epochs=2, shuffle_units=False)
        read = [fields_of(b) for b in seqwarm.Loader(str(shards), linear(), memory_map=False, **settings)]
        edited = []
        for batch in seqwarm.Loader(str(shards), linear(), **settings):
            edited.append(fields_of(batch))
            batch["input_ids"].fill_(-7)
        assert len(read) > 10 and edited == read, (encoding, dtype)


def corpus_on_s3(corpus: dict, name: str) -> Tuple[str, str, List[Path]]:
    """The corpus's shards uploaded to a new bucket of the S3 test server (scripts/test starts
    one; skipped without it, except under CI): the endpoint, the shards' URL and the files."""
    endpoint = os.environ.get("SEQWARM_S3_ENDPOINT")
    if not endpoint:
        assert "CI" not in os.environ, "CI must start the S3 test server (scripts/test)"
        pytest.skip("SEQWARM_S3_ENDPOINT unset: no S3 test server (scripts/test starts one)")
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    bucket = f"seqwarm-py-{name}-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    files = sorted(Path(corpus["dir"]).glob("*.parquet"))
    for f in files:
        s3.upload_file(str(f), bucket, f"shards/{f.name}")
    return endpoint, f"s3://{bucket}/shards/", files


def test_a_remote_run_with_a_cache_dir_downloads_each_shard_once(corpus: dict, tmp_path: Path) -> None:
    _, url, files = corpus_on_s3(corpus, "cache")
    settings = dict(batch_rows=4, epochs=2, shuffle_units=False)
    local = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], linear(), **settings)]
    cache = tmp_path / "cache"
    loader = seqwarm.Loader(url, linear(), cache_dir=cache, cache_limit=10**9, **settings)
    assert [fields_of(b) for b in loader] == local
    stats = loader.stats()
    assert stats["cache_downloads"] == len(files) and stats["cache_hits"] > 0, stats
    again = seqwarm.Loader(url, linear(), cache_dir=str(cache), **settings)
    assert [fields_of(b) for b in again] == local
    assert again.stats()["cache_downloads"] == 0
    plain = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    assert list(plain) and "cache_hits" not in plain.stats()
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], linear(), cache_limit=5)
    assert e.value.field == "cache_limit"


# One process of the test below: waits until all have started, reads the remote shards through
# the shared cache and prints a digest of its batches and its cache counters.
CACHED_READER = """
import hashlib, json, os, sys, time
from pathlib import Path
import seqwarm
url, cache, ready, count = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
schedule = {"kind": "linear", "min": 16, "max": 128, "step": 16, "duration": 0.5, "total": 60}
loader = seqwarm.Loader(url, schedule, batch_rows=4, epochs=2, shuffle_units=False, cache_dir=cache, format="numpy")
(ready / str(os.getpid())).touch()
while len(list(ready.iterdir())) < count:
    time.sleep(0.005)
digest = hashlib.sha256()
for batch in loader:
    digest.update(batch["input_ids"].tobytes())
stats = loader.stats()
print(json.dumps({"digest": digest.hexdigest(), "downloads": stats["cache_downloads"], "hits": stats["cache_hits"]}))
"""


def test_processes_sharing_a_cache_dir_download_each_shard_once(corpus: dict, tmp_path: Path) -> None:
    import hashlib
    import sys

    endpoint, url, files = corpus_on_s3(corpus, "procs")
    schedule = linear()
    local = hashlib.sha256()
    for batch in seqwarm.Loader(corpus["dir"], schedule, batch_rows=4, epochs=2, shuffle_units=False, format="numpy"):
        local.update(batch["input_ids"].tobytes())
    env = dict(os.environ, AWS_ENDPOINT=endpoint, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")  # fmt: skip
    cache = tmp_path / "cache"

    def run(count: int) -> list:
        ready = tmp_path / f"ready-{count}-{len(list(tmp_path.iterdir()))}"
        ready.mkdir()
        procs = [subprocess.Popen([sys.executable, "-c", CACHED_READER, url, str(cache), str(ready), str(count)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
                 for _ in range(count)]
        try:
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=300)
                assert proc.returncode == 0, err
                results.append(json.loads(out.strip().splitlines()[-1]))
            return results
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()

    # Four processes at once on an empty cache: every one reads exactly the local batches, and
    # among them each shard is downloaded once (the others wait on its lock, then read it).
    results = run(4)
    assert all(r["digest"] == local.hexdigest() for r in results), results
    assert sum(r["downloads"] for r in results) == len(files), results
    # No partial download is left: one entry per shard (its data and its record; lock files).
    def entries() -> list:
        names = sorted(p.name for p in cache.iterdir())
        assert not [n for n in names if n.endswith(".partial")], names
        return [n for n in names if n.endswith(".parquet")]

    assert len(entries()) == len(files), entries()
    # A process killed in the middle of a download (as soon as a partial file appears; at once
    # if its downloads are too quick to catch), then four more: still exact, the shard whose
    # download was cut is downloaded again, and no partial file is left.
    import signal

    ready = tmp_path / "ready-killed"
    ready.mkdir()
    for entry in cache.iterdir():
        entry.unlink()
    victim = subprocess.Popen([sys.executable, "-c", CACHED_READER, url, str(cache), str(ready), "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)  # fmt: skip
    torn = []
    deadline = time.monotonic() + 60
    while victim.poll() is None and time.monotonic() < deadline:
        torn = [p.name for p in cache.iterdir()] if cache.exists() else []
        torn = [n for n in torn if n.endswith(".partial")]
        if torn:
            break
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    # What the killed process committed; a torn download is at most a partial file.
    committed = len([p for p in cache.iterdir() if p.name.endswith(".parquet")])
    torn = [p.name for p in cache.iterdir() if p.name.endswith(".partial")]
    print(f"killed with {committed} of {len(files)} shards committed, partial files {torn}")
    results = run(4)
    assert all(r["digest"] == local.hexdigest() for r in results), results
    # Every shard not committed by the killed process (the torn one included) is downloaded
    # once more, and none that was.
    assert sum(r["downloads"] for r in results) == len(files) - committed, (results, torn)
    assert len(entries()) == len(files), entries()


def test_merged_states_resume_on_another_number_of_ranks(corpus: dict) -> None:
    settings = dict(batch_rows=4, keep_last=True, seed=2, mode="repack")

    def real(batch) -> list:  # type: ignore[no-untyped-def]
        # Repacked rows are filled in order: a last batch's padding follows its real tokens.
        return batch["input_ids"].numpy().ravel()[: batch.tokens].tolist()

    whole = sorted(t for b in seqwarm.Loader(corpus["dir"], linear(), rank=0, world_size=1, **settings) for t in real(b))
    before, states = [], []
    for rank in range(4):
        loader = seqwarm.Loader(corpus["dir"], linear(), rank=rank, world_size=4, **settings)
        for _, batch in zip(range(3), loader):
            before.extend(real(batch))
        states.append(loader.state_dict())
    merged = seqwarm.merge_states(list(reversed(states)))
    after = []
    for rank in range(1):
        after.extend(t for b in seqwarm.Loader(corpus["dir"], linear(), rank=rank, world_size=1, state=merged, **settings) for t in real(b))
    assert sorted(before + after) == whole
    counts = [len(list(seqwarm.Loader(corpus["dir"], linear(), rank=r, world_size=3, state=merged, **settings))) for r in range(3)]
    assert len(set(counts)) == 1 and counts[0] > 0, counts
    with pytest.raises(seqwarm.StateError, match="merge"):
        list(seqwarm.Loader(corpus["dir"], linear(), rank=0, world_size=2, state=states[0], **settings))
    with pytest.raises(seqwarm.StateError, match="two states of rank 0"):
        seqwarm.merge_states([states[0], states[0], states[1], states[2]])


def test_a_mixture_draws_from_its_sources_by_weight(corpus: dict, tmp_path: Path) -> None:
    import shutil

    second = tmp_path / "second"
    shutil.copytree(corpus["dir"], second)
    sources = [
        {"name": "first", "shards": corpus["dir"], "weight": 0.8},
        {"name": "second", "shards": [second], "weight": 0.2},
    ]
    loader = seqwarm.Loader(None, linear(), batch_rows=4, max_steps=40, sources=sources)
    batches = list(loader)
    assert len(batches) == 40
    stats = loader.source_stats()
    assert [s["name"] for s in stats] == ["first", "second"]
    share = stats[0]["tokens"] / (stats[0]["tokens"] + stats[1]["tokens"])
    assert abs(share - 0.8) < 0.05, stats
    # The same counts in stats(), by name, beside the loader's own.
    by_name = loader.stats()["sources"]
    assert by_name == {s["name"]: {k: v for k, v in s.items() if k != "name"} for s in stats}
    assert sum(s["tokens"] for s in by_name.values()) >= loader.stats()["tokens_out"] > 0
    # Resumes byte for byte from its state_dict.
    first = seqwarm.Loader(None, linear(), batch_rows=4, max_steps=40, sources=sources)
    head = [fields_of(b) for _, b in zip(range(15), first)]
    rest = [fields_of(b) for b in seqwarm.Loader(None, linear(), batch_rows=4, max_steps=40, sources=sources, state=first.state_dict())]
    assert head + rest == [fields_of(b) for b in batches]
    changes = [{"step": 20, "weights": {"first": 0.0, "second": 1.0}}]
    changed = seqwarm.Loader(None, linear(), batch_rows=4, max_steps=40, sources=sources, weight_changes=changes)
    list(changed)
    assert changed.source_stats()[1]["tokens"] > stats[1]["tokens"]
    assert seqwarm.Loader(corpus["dir"], linear(), batch_rows=4).source_stats() is None
    with pytest.raises(seqwarm.ConfigError, match="max_steps or max_tokens"):
        list(seqwarm.Loader(None, linear(), batch_rows=4, sources=sources))


def test_pack_fields_write_only_the_fields_asked_for(corpus: dict, seqwarm_bin: str, tmp_path: Path) -> None:
    for mode in ("pack-greedy", "pack-bestfit"):
        settings = {"schedule": linear(), "mode": mode, "batch_rows": 4, "seed": 3, "keep_last": True}
        lean_settings = {**settings, "pack_fields": ["input_ids", "segment_ids"]}
        expected = cli_batches(seqwarm_bin, corpus["dir"], lean_settings, tmp_path)
        full = list(seqwarm.Loader(corpus["dir"], **kwargs_of(settings)))
        lean = list(seqwarm.Loader(corpus["dir"], **kwargs_of({**settings, "pack_fields": "input_ids,segment_ids"})))
        assert len(full) == len(lean) == len(expected) > 10
        for a, b, want in zip(full, lean, expected):
            assert set(b.keys()) == {"input_ids", "segment_ids", "cu_seqlens"}, mode
            for name in b.keys():
                assert torch.equal(a[name], b[name]), (mode, name, b.step)
            # Real tokens counted without a mask: padding is not counted.
            assert a.tokens == b.tokens == want["tokens"] == int(a["attention_mask"].sum())
            assert fields_of(b) == want["fields"]
    # Greedy rows without an EOS to append are views of the decoded tokens: editing one batch
    # in place still changes that batch alone.
    kwargs = dict(schedule=linear(), mode="pack-greedy", batch_rows=4, pack_fields=["position_ids"])
    reference = [fields_of(b) for b in seqwarm.Loader(corpus["dir"], **kwargs)]
    edited = []
    for batch in seqwarm.Loader(corpus["dir"], **kwargs):
        edited.append(fields_of(batch))
        batch["input_ids"].fill_(-7)
    assert edited == reference
    with pytest.raises(seqwarm.ConfigError, match="segment_ids") as bad:
        seqwarm.Loader(corpus["dir"], linear(), mode="pack-greedy", pack_fields=["labels"], pad_cu_seqlens=True)
    assert bad.value.field == "pad_cu_seqlens"
    with pytest.raises(seqwarm.ConfigError, match="unknown field `cu_seqlens`") as bad:
        seqwarm.Loader(corpus["dir"], linear(), mode="pack-greedy", pack_fields=["cu_seqlens"])
    with pytest.raises(seqwarm.ConfigError, match="does not pack"):
        seqwarm.Loader(corpus["dir"], linear(), mode="repack", pack_fields=["labels"])
