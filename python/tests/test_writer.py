"""seqwarm.ShardWriter, seqwarm.preprocess and seqwarm.preprocess_files against the CLI's
`seqwarm preprocess`: the same bytes for the same documents and settings; crash and resume;
the GIL released while tokenizing; errors that name the document."""

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Dict, List

import pyarrow as pa
import pytest

import seqwarm

SETTINGS = dict(shard_tokens=3000, row_group_tokens=700)
CLI_FLAGS = ["--shard-tokens", "3000", "--row-group-tokens", "700"]


def documents(n: int = 400) -> List[str]:
    words = ["the", "warmup", "sequence", "length", "model", "token", "shard", "naïve", "日本語", "🙂"]
    return [" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(5 + (i * 13) % 90)) for i in range(n)]


def files_of(directory: Path) -> Dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def cli(seqwarm_bin: str, inputs: List[str], out: Path, *flags: str) -> None:
    subprocess.run([seqwarm_bin, "preprocess", *inputs, "-o", str(out), *CLI_FLAGS, *flags], check=True, capture_output=True)


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("writer") / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in documents()))
    return path


def test_a_writer_of_a_files_documents_writes_the_clis_bytes(jsonl: Path, seqwarm_bin: str, tmp_path: Path) -> None:
    cli(seqwarm_bin, [str(jsonl)], tmp_path / "cli")
    with seqwarm.ShardWriter(tmp_path / "py", source=str(jsonl), **SETTINGS) as writer:
        for text in documents():
            writer.write(text)
    manifest = writer.close()
    assert manifest.documents == 400 and len(manifest.shards) >= 3
    parquet = lambda d: {k: v for k, v in files_of(d).items() if k.endswith(".parquet")}  # noqa: E731
    assert parquet(tmp_path / "py") == parquet(tmp_path / "cli")
    # The manifest lists the same shards; each `end` counts the stream's documents where the
    # CLI's counts files (the last shard ends at document 400 of the stream, at file 1 there).
    cli_manifest = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    py_manifest = json.loads((tmp_path / "py" / "manifest.json").read_text())
    strip = lambda m: [{k: v for k, v in s.items() if k != "end"} for s in m["shards"]]  # noqa: E731
    assert strip(py_manifest) == strip(cli_manifest)
    assert py_manifest["settings"] == cli_manifest["settings"]
    assert py_manifest["shards"][-1]["end"] == {"file": 0, "document": 400}


def test_preprocess_takes_tables_batches_and_ids(tmp_path: Path) -> None:
    docs = documents()
    reference = seqwarm.preprocess(docs, tmp_path / "strings", tokenizer="bytes", **SETTINGS)
    table = pa.table({"id": list(range(len(docs))), "content": docs})
    seqwarm.preprocess(table, tmp_path / "table", tokenizer="bytes", text_column="content", **SETTINGS)
    seqwarm.preprocess(table.to_batches(max_chunksize=37), tmp_path / "batches", tokenizer="bytes", text_column="content", **SETTINGS)
    ids = [list(d.encode("utf-8")) for d in docs]
    seqwarm.preprocess(ids, tmp_path / "ids", tokenizer="bytes", **SETTINGS)
    expected = files_of(tmp_path / "strings")
    for name in ["table", "batches", "ids"]:
        assert files_of(tmp_path / name) == expected, name
    assert reference.tokens == sum(len(d.encode("utf-8")) + 1 for d in docs)
    assert reference.eos_id == 256


def test_a_hugging_face_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    docs = documents(50)
    ds = datasets.Dataset.from_dict({"text": docs})
    seqwarm.preprocess(ds, tmp_path / "ds", **SETTINGS)
    seqwarm.preprocess(docs, tmp_path / "list", **SETTINGS)
    assert files_of(tmp_path / "ds") == files_of(tmp_path / "list")


def test_preprocess_files_is_the_cli(jsonl: Path, seqwarm_bin: str, tmp_path: Path) -> None:
    text = tmp_path / "book.txt"
    text.write_text("\n\n".join(documents(120)))
    cli(seqwarm_bin, [str(jsonl), str(text)], tmp_path / "cli", "--separator", "\\n\\n", "--tokenizer", "cl100k_base")
    manifest = seqwarm.preprocess_files([jsonl, text], tmp_path / "py", separator="\\n\\n", tokenizer="cl100k_base", **SETTINGS)
    assert files_of(tmp_path / "py") == files_of(tmp_path / "cli")
    assert manifest.documents == 400 + 120 and manifest.eos_id == 100257


KILLED = """
import os, sys, seqwarm
sys.path.insert(0, {tests!r})
from test_writer import documents
# 12 MB of text: tokenizing waits for 4 MiB and writing for the next 4, so shards are finished
# (and more are in flight) when the process dies.
writer = seqwarm.ShardWriter({out!r}, tokenizer="bytes", threads=2, shard_tokens=200_000)
print(writer.resume_at, flush=True)
for i, text in enumerate(documents(3000) * 12):
    writer.write(text)
    if {kill} and i % 100 == 0 and writer.shards >= 5:
        os._exit(9)  # as kill -9 would: no close, no manifest
writer.close()
"""


def test_a_killed_writer_is_finished_by_running_the_same_code_again(tmp_path: Path) -> None:
    def run(out: Path, kill: bool) -> str:
        script = KILLED.format(tests=str(Path(__file__).parent), out=str(out), kill=kill)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        assert done.returncode == (9 if kill else 0), done.stderr
        return done.stdout.strip()

    run(tmp_path / "whole", kill=False)
    out = tmp_path / "killed"
    assert run(out, kill=True) == "0"
    assert not (out / "manifest.json").exists()
    resumed_at = int(run(out, kill=False))
    assert resumed_at > 0
    assert files_of(out) == files_of(tmp_path / "whole")
    # Run again after the end: nothing to do, the same files.
    assert run(out, kill=False) == str(3000 * 12)
    assert files_of(out) == files_of(tmp_path / "whole")


def test_an_exception_in_the_with_block_writes_no_manifest(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        with seqwarm.ShardWriter(tmp_path, tokenizer="bytes", **SETTINGS) as writer:
            writer.write_batch(documents(100))
            raise RuntimeError("the reader failed")
    assert not (tmp_path / "manifest.json").exists()


def test_the_gil_is_released_while_tokenizing(tmp_path: Path) -> None:
    # A long batch written on one thread while this one counts: with the GIL held for the
    # whole call, the count could not move until it returned.
    texts = documents(4000) * 4
    writer = seqwarm.ShardWriter(tmp_path, threads=1)
    started, done = threading.Event(), threading.Event()
    counted_during = []

    def write() -> None:
        started.set()
        writer._raw.write_texts(texts)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    started.wait()
    count = 0
    while not done.is_set():
        count += 1
        if count % 1000 == 0:
            counted_during.append(count)
    thread.join()
    assert len(counted_during) > 10, counted_during
    assert writer.close().documents == len(texts)


def test_bad_documents_and_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(seqwarm.DataError, match="my-stream document 2: no text"):
        with seqwarm.ShardWriter(tmp_path / "a", source="my-stream") as writer:
            writer.write_batch(["fine", None, "fine"])
    skipped = seqwarm.preprocess(["fine", None, "fine"], tmp_path / "b", on_error="skip")
    assert (skipped.documents, skipped.skipped_documents) == (2, 1)
    with pytest.raises(seqwarm.DataError, match="offset 1 is not in 0..50257"):
        seqwarm.preprocess([[1, 2], [3, 50257]], tmp_path / "c")
    with pytest.raises(TypeError, match="shard_token"):
        seqwarm.ShardWriter(tmp_path / "d", shard_token=5)  # type: ignore[call-arg]
    with pytest.raises(seqwarm.ConfigError, match="unknown field `shard_token`"):
        seqwarm.preprocess_files([str(tmp_path)], tmp_path / "d", shard_token=5)
    with pytest.raises(seqwarm.ConfigError, match="neither a built-in tokenizer"):
        seqwarm.ShardWriter(tmp_path / "e", tokenizer="gpt-5")
    with pytest.raises(seqwarm.ConfigError, match="text_column: no column 'text'"):
        seqwarm.preprocess(pa.table({"body": ["x"]}), tmp_path / "f")
    seqwarm.preprocess(["x"], tmp_path / "g", tokenizer="bytes")
    with pytest.raises(seqwarm.ConfigError, match="other settings"):
        seqwarm.preprocess(["x"], tmp_path / "g", tokenizer="gpt2")
    closed = seqwarm.ShardWriter(tmp_path / "h")
    closed.close()
    with pytest.raises(seqwarm.StateError, match="closed"):
        closed.write_ids([1])


def test_what_the_writer_wrote_streams(tmp_path: Path) -> None:
    manifest = seqwarm.preprocess(documents(), tmp_path, **SETTINGS)
    loader = seqwarm.Loader(tmp_path, seqwarm.Schedule.constant(256), mode="pack-greedy", batch_rows=4, dtype="i64")
    batches = list(loader)
    assert all(b["input_ids"].shape == (4, 256) for b in batches)
    # One epoch: every token once, in rows of 256 (the last partial row dropped).
    assert 0 <= manifest.tokens - len(batches) * 4 * 256 < 4 * 256 + 1000


def test_a_finished_directory_takes_the_same_documents_more_appended_fewer_refused(tmp_path: Path) -> None:
    first = seqwarm.preprocess(["a b c"] * 10, tmp_path, tokenizer="bytes")
    again = seqwarm.preprocess(["a b c"] * 10, tmp_path, tokenizer="bytes")
    assert again == first
    more = seqwarm.preprocess(["a b c"] * 10 + ["new one"], tmp_path, tokenizer="bytes")
    assert more.documents == 11 and more.tokens == first.tokens + len("new one") + 1
    with pytest.raises(seqwarm.ConfigError, match="these inputs end before that"):
        seqwarm.preprocess(["a b c"] * 5, tmp_path, tokenizer="bytes")


def test_an_error_stops_the_writer_and_later_calls_say_so(tmp_path: Path) -> None:
    writer = seqwarm.ShardWriter(tmp_path / "a", tokenizer="bytes")
    with pytest.raises(seqwarm.DataError, match="document 2: no text"):
        writer.write_batch(["a", None, "b"])
    for call in (lambda: writer.write("c"), lambda: writer.write_ids([1]), writer.close):
        with pytest.raises(seqwarm.StateError, match="stopped at an error"):
            call()
    writer = seqwarm.ShardWriter(tmp_path / "b", tokenizer="bytes")
    writer.write("good")
    with pytest.raises(TypeError, match="document 2: expected str"):
        writer.write(b"x")  # type: ignore[arg-type]
    with pytest.raises(seqwarm.StateError):
        writer.close()
    closed = seqwarm.ShardWriter(tmp_path / "c", tokenizer="bytes")
    closed.write("one")
    closed.close()
    with pytest.raises(seqwarm.StateError, match="is closed"):
        closed.write("more")


def test_ids_that_are_not_token_ids_are_named(tmp_path: Path) -> None:
    np = pytest.importorskip("numpy")
    for i, bad in enumerate([np.array([5, 2**31 + 5]), np.array([1.5]), np.array([[1, 2]]), np.array([True])]):
        writer = seqwarm.ShardWriter(tmp_path / str(i), source="ids")
        with pytest.raises(seqwarm.DataError, match="ids document 1: not token ids"):
            writer.write_ids(bad)


def test_other_inputs_are_read_or_refused(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    docs = documents(30)
    seqwarm.preprocess(pd.DataFrame({"text": docs}), tmp_path / "frame")
    seqwarm.preprocess(docs, tmp_path / "list")
    assert files_of(tmp_path / "frame") == files_of(tmp_path / "list")
    for wrong in ("one string", {"text": docs}):
        with pytest.raises(TypeError, match="not a collection of documents"):
            seqwarm.preprocess(wrong, tmp_path / "wrong")
    with pytest.raises(TypeError, match="bytes"):
        seqwarm.preprocess([b"hi"], tmp_path / "bytes")
    with pytest.raises(seqwarm.ConfigError, match="holds int64, not text"):
        seqwarm.preprocess(pa.table({"text": [1, 2]}), tmp_path / "ints")
    with pytest.raises(seqwarm.ConfigError) as error:
        seqwarm.ShardWriter(tmp_path / "layout", layout="bogus")
    assert error.value.field == "layout" and "unknown variant `bogus`" in str(error.value)


def test_progress_reads_while_another_thread_writes(tmp_path: Path) -> None:
    writer = seqwarm.ShardWriter(tmp_path, threads=1)
    done = threading.Event()
    seen = []

    def write() -> None:
        writer.write_batch(documents(4000) * 4)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    while not done.is_set():
        seen.append((writer.documents, writer.resume_at))
    thread.join()
    assert seen and writer.close().documents == 16000


@pytest.mark.parametrize("layout,encoding", [("flat", "uint16"), ("flat", "zstd"), ("rows", "zstd")])
def test_shards_read_back_as_their_documents(tmp_path: Path, layout: str, encoding: str) -> None:
    ids = [[(d * 37 + i * 11) % 50_000 for i in range(1 + d % 23)] for d in range(300)]
    manifest = seqwarm.preprocess(ids, tmp_path, layout=layout, encoding=encoding, eos=False, shard_tokens=700, row_group_tokens=150)
    assert len(manifest.shards) > 2
    read = [row for shard in manifest.shards for row in seqwarm.read_documents(tmp_path / shard).column("input_ids").to_pylist()]
    assert read == ids
    first = seqwarm.read_documents(tmp_path / manifest.shards[0])
    assert first.column("document").to_pylist() == list(range(first.num_rows))


def test_a_parquet_file_that_is_no_shard_is_named(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a", "b"]}), tmp_path / "plain.parquet")
    with pytest.raises(seqwarm.DataError, match="plain.parquet: not a seqwarm shard") as caught:
        seqwarm.read_documents(tmp_path / "plain.parquet")
    assert caught.value.file == str(tmp_path / "plain.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(seqwarm.DataError, match="junk.parquet: not readable as Parquet"):
        seqwarm.read_documents(tmp_path / "junk.parquet")
