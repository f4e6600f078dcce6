"""Bad input through Python: typed exceptions that say where, and never a Rust panic."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import seqwarm
from conftest import linear, write_corpus


def drain(loader: seqwarm.Loader) -> int:
    return sum(1 for _ in loader)


def test_the_exception_hierarchy() -> None:
    assert issubclass(seqwarm.ConfigError, seqwarm.SeqwarmError) and issubclass(seqwarm.ConfigError, ValueError)
    assert issubclass(seqwarm.StateError, seqwarm.SeqwarmError) and issubclass(seqwarm.StateError, ValueError)
    assert issubclass(seqwarm.DataError, seqwarm.SeqwarmError)


def test_a_bad_setting_names_its_field(corpus: dict) -> None:
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], linear(), batch_tokens=64)
    assert e.value.field == "batch_size" and "64" in str(e.value)
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], linear(), mode="squash")
    assert "squash" in str(e.value)
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], linear(), eos_id=7, vocab_size=5)
    assert e.value.field == "eos_id"
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], {"kind": "linear", "min": 64, "max": 32, "duration": 0.5, "total": 10})
    assert e.value.field == "schedule.max"
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], {"kind": "linear", "min": 8, "max": 32, "duration": 0.5, "totl": 10})
    assert "totl" in str(e.value)
    with pytest.raises(TypeError):
        seqwarm.Loader(corpus["dir"], batch_tokenz=5)  # type: ignore[call-arg]
    # Every refusal names its keyword, and is made when the loader is, not in a worker.
    for kwargs, field in [
        ({"mode": "foo"}, "mode"),
        ({"batch_rows": True}, "batch_size"),
        ({"dtype": "f32"}, "dtype"),
        ({"on_error": "ignore"}, "on_error"),
        ({"layout": {"colour": "red"}}, "layout"),
        ({"retry": 5}, "retry"),
        ({"rank": 5, "world_size": 2}, "rank"),
        ({"world_size": 0}, "rank"),
        ({"threads": -1}, "threads"),
        ({"threads": True}, "threads"),
        ({"batch_rows": 4, "batch_tokens": 512}, "batch_size"),
        ({"format": "jax"}, "format"),
    ]:
        with pytest.raises(seqwarm.ConfigError) as e:
            seqwarm.Loader(corpus["dir"], linear(), **kwargs)
        assert e.value.field == field, (kwargs, e.value.field, str(e.value))
    with pytest.raises(seqwarm.ConfigError):
        seqwarm.Schedule.linear(min=16, max=64, duration=float("nan"), total=10)
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.plan(linear(), batch_rows=0)
    assert e.value.field == "batch_size"
    with pytest.raises(seqwarm.ConfigError):
        seqwarm.plan(linear(), batch_tokens=10)


def test_a_missing_location_is_a_data_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(seqwarm.DataError) as e:
        drain(seqwarm.Loader(str(tmp_path / "nowhere"), linear()))
    assert e.value.file == str(tmp_path / "nowhere")


def test_a_corrupt_shard_names_file_and_row_group(tmp_path: Path) -> None:
    # Page CRCs on (pyarrow writes none by default; seqwarm's preprocess records its own).
    docs = [np.arange(1 + 50 * i, 51 + 50 * i, dtype=np.int32) for i in range(400)]
    victim = tmp_path / "crc.parquet"
    pq.write_table(
        pa.table({"input_ids": pa.array(docs, type=pa.list_(pa.int32()))}),
        victim,
        row_group_size=100,
        compression="none",
        write_page_checksum=True,
    )
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(seqwarm.DataError) as e:
        drain(seqwarm.Loader(str(victim), linear(), batch_rows=4))
    assert e.value.file == str(victim)
    assert e.value.row_group is not None and "checksum" in str(e.value)


def test_a_missing_column_names_it(tmp_path: Path) -> None:
    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "t.parquet")
    with pytest.raises(seqwarm.DataError) as e:
        drain(seqwarm.Loader(str(tmp_path / "t.parquet"), linear(), layout={"kind": "rows"}))
    assert e.value.column == "input_ids"


def test_a_token_outside_the_vocabulary_names_its_row(tmp_path: Path) -> None:
    docs = [np.arange(1, 40, dtype=np.int32) for _ in range(30)]
    docs[17] = docs[17].copy()
    docs[17][3] = 900
    pq.write_table(pa.table({"input_ids": pa.array(docs, type=pa.list_(pa.int32()))}), tmp_path / "v.parquet", row_group_size=10)
    with pytest.raises(seqwarm.DataError) as e:
        drain(seqwarm.Loader(str(tmp_path / "v.parquet"), linear(), vocab_size=100, batch_rows=1))
    assert (e.value.row_group, e.value.row, e.value.column) == (1, 7, "input_ids")


def test_a_state_of_another_loader_or_version_is_a_state_error(corpus: dict, tmp_path: Path) -> None:
    loader = seqwarm.Loader(corpus["dir"], linear(), batch_rows=4)
    next(iter(loader))
    state = loader.state_dict()
    with pytest.raises(seqwarm.StateError):
        drain(seqwarm.Loader(corpus["dir"], linear(), batch_rows=8, state=state))
    other = tmp_path / "other"
    write_corpus(other, files=2, seed=4)
    with pytest.raises(seqwarm.StateError):
        drain(seqwarm.Loader(str(other), linear(), batch_rows=4, state=state))
    edited = json.loads(json.dumps(state))
    edited["seqwarm_loader_state"]["version"] = 99
    with pytest.raises(seqwarm.StateError) as e:
        drain(seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, state=edited))
    assert "version 99" in str(e.value)
    with pytest.raises(seqwarm.StateError):
        loader.load_state_dict({"something": "else"})
    # An in-range edit (the checkpoint's step moved by one) fails the state's checksum.
    edited = json.loads(json.dumps(state))
    edited["seqwarm_loader_state"]["plan"]["step_in_epoch"] += 1
    with pytest.raises(seqwarm.StateError) as e:
        drain(seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, state=edited))
    assert "checksum" in str(e.value)


@pytest.mark.parametrize("seed", range(12))
def test_mangled_shards_raise_typed_errors_and_never_panic(corpus: dict, tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    shutil.copytree(corpus["dir"], tmp_path / "m")
    victim = tmp_path / "m" / f"shard-{seed % 3}.parquet"
    data = bytearray(victim.read_bytes())
    action = seed % 3
    if action == 0:  # flip bytes anywhere, footer included
        for _ in range(8):
            data[int(rng.integers(len(data)))] ^= int(rng.integers(1, 256))
    elif action == 1:  # truncate
        data = data[: int(rng.integers(len(data)))]
    else:  # overwrite a run with random bytes
        start = int(rng.integers(len(data) - 64))
        data[start : start + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    victim.write_bytes(bytes(data))
    for on_error in ("fail", "skip"):
        try:
            drain(seqwarm.Loader(str(tmp_path / "m"), linear(), batch_rows=4, eos_id=0, on_error=on_error))
        except seqwarm.SeqwarmError:
            pass  # a typed error; a Rust panic would be pyo3's PanicException, a BaseException


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_rows": 2**62},
        {"batch_tokens": 2**63},
        {"prefetch_concurrency": 0},
        {"prefetch_queue": 10**9},
        {"remote_prefetch_bytes": 0},
        {"remote_prefetch_bytes": 2**70},
        {"io_threads": 0},
        {"world_size": 0},
        {"rank": 5, "world_size": 2},
        {"pack_window": 0},
        {"pad_id": -1},
        {"epochs": 2**64 - 1, "max_steps": 3},
        {"max_tokens": 0},
        {"threads": 0},
        {"layout": {"kind": "flat", "tokens": ""}},
        {"retry": {"max_retries": -1}},
    ],
)
def test_hostile_settings_are_refused_or_run(corpus: dict, settings: dict) -> None:
    try:
        drain(seqwarm.Loader(corpus["dir"], linear(), **settings))
    except (seqwarm.SeqwarmError, OverflowError, TypeError):
        pass


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), np.float64("nan")])
def test_a_non_finite_number_names_its_keyword(corpus: dict, value: float) -> None:
    for kwargs, field in [
        ({"cache_limit": value, "cache_dir": "/tmp"}, "cache_limit"),
        ({"retry": {"max_retries": 3, "initial_backoff_ms": value}}, "retry.initial_backoff_ms"),
        ({"sources": [{"name": "a", "shards": [corpus["dir"]], "weight": value}]}, "sources[0].weight"),
    ]:
        with pytest.raises(seqwarm.ConfigError) as e:
            seqwarm.Loader(None if "sources" in kwargs else corpus["dir"], linear(), **kwargs)  # type: ignore[arg-type]
        assert e.value.field == field and "finite" in str(e.value), (kwargs, str(e.value))
    schedule = {"kind": "linear", "min": 16, "max": 128, "duration": value, "total": 10}
    with pytest.raises(seqwarm.ConfigError) as e:
        seqwarm.Loader(corpus["dir"], schedule)
    assert e.value.field == "schedule.duration", str(e.value)


def test_numpy_integers_are_thread_counts(corpus: dict) -> None:
    for threads in [np.int64(1), np.int32(0), np.uint8(2)]:
        assert sum(1 for _ in seqwarm.Loader(corpus["dir"], linear(), batch_rows=4, threads=threads)) > 0
    for threads in [np.bool_(True), np.float64(1.0)]:
        with pytest.raises(seqwarm.ConfigError) as e:
            seqwarm.Loader(corpus["dir"], linear(), threads=threads)  # type: ignore[arg-type]
        assert e.value.field == "threads"


def test_a_path_that_is_not_utf8_is_a_config_error_naming_it() -> None:
    for kwargs, field in [({}, "shards"), ({"cache_dir": b"/tmp/\xff"}, "cache_dir")]:
        shards = b"/tmp/\xffshards" if field == "shards" else "/tmp"
        with pytest.raises(seqwarm.ConfigError) as e:
            seqwarm.Loader(shards, linear(), **kwargs)  # type: ignore[arg-type]
        assert e.value.field == field and "UTF-8" in str(e.value), str(e.value)


def test_a_torch_loader_without_torch_says_which_extra_to_install(monkeypatch, corpus):
    import seqwarm.loader

    monkeypatch.setattr(seqwarm.loader, "_torch_installed", lambda: False)
    with pytest.raises(seqwarm.ConfigError, match=r"seqwarm\[torch\]") as raised:
        seqwarm.Loader(corpus["dir"], batch_rows=4)
    assert raised.value.field == "format"
    assert seqwarm.Loader(corpus["dir"], batch_rows=4, format="numpy") is not None
