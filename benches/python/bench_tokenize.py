"""``seqwarm preprocess`` against Python ``tiktoken`` doing the same job on one core: GPT-2
tokens of the same texts, an end-of-text id after each, written as flat ``uint16`` shards
(pyarrow, one ``fixed_size_binary[2]`` column, row groups of about 1 Mi tokens, uncompressed);
the token ids are compared, then both are timed.

    cargo build --release && .venv/bin/pip install tiktoken
    .venv/bin/python benches/python/bench_tokenize.py --repeat 3

``tiktoken`` downloads its tables at run time, which this project may not do: the peer builds
its ``Encoding`` from the same ``r50k_base.tiktoken`` file that the ``tiktoken-rs`` crate ships
(found in cargo's registry), with tiktoken's own GPT-2 pattern. The corpus: the CPython
standard library's sources (one document per file, as ``bench_peers.py``), files that are not
UTF-8 left out of both.
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benches" / "python"))
from bench_peers import stdlib_sources  # noqa: E402

# tiktoken's own r50k_base (GPT-2) pattern, as in tiktoken_ext/openai_public.py.
R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
EOS = 50256
ROW_GROUP_TOKENS = 1 << 20


def ranks_file() -> str:
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry", "src", "*", "tiktoken-rs-*", "assets", "r50k_base.tiktoken")))
    if not found:
        raise SystemExit("no r50k_base.tiktoken in cargo's registry (build seqwarm first)")
    return found[-1]


def encoding():
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    return tiktoken.Encoding(name="r50k_base", pat_str=R50K_PATTERN, mergeable_ranks=load_tiktoken_bpe(ranks_file()), special_tokens={"<|endoftext|>": EOS})


def python_preprocess(files: list, out: str, enc) -> np.ndarray:
    """Reads, tokenizes (one thread) and writes the shards; returns every token id."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Bytes decoded as they are (text mode would turn \r\n into \n); empty documents skipped
    # (no end-of-text either), as seqwarm preprocess does.
    texts = [t for t in (Path(f).read_bytes().decode("utf-8") for f in files) if t]
    ids = enc.encode_ordinary_batch(texts, num_threads=1)
    tokens = np.concatenate([np.append(np.asarray(d, dtype=np.uint16), np.uint16(EOS)) for d in ids])
    os.makedirs(out, exist_ok=True)
    column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(2), len(tokens), [None, pa.py_buffer(tokens.tobytes())])
    table = pa.table({"tokens": column})
    pq.write_table(table, os.path.join(out, "shard-00000.parquet"), row_group_size=ROW_GROUP_TOKENS, compression="none", use_dictionary=False, write_statistics=False)
    return tokens


def seqwarm_tokens(out: str) -> np.ndarray:
    import pyarrow.parquet as pq

    parts = []
    for path in sorted(Path(out).glob("*.parquet")):
        column = pq.read_table(path, columns=["tokens"]).column(0).combine_chunks()
        parts.append(np.frombuffer(column.buffers()[1], dtype="<u2", count=len(column), offset=column.offset * 2))
    return np.concatenate(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    args = parser.parse_args()
    files = []
    for f in stdlib_sources():
        try:
            Path(f).read_bytes().decode("utf-8")
            files.append(f)
        except (UnicodeDecodeError, OSError):
            pass
    size = sum(os.path.getsize(f) for f in files)
    enc = encoding()
    one_cpu = {min(os.sched_getaffinity(0))}
    everything = os.sched_getaffinity(0)
    scratch = tempfile.mkdtemp(prefix="seqwarm-tokenize-")
    best_rust, best_python = float("inf"), float("inf")
    for _ in range(args.repeat):
        out = os.path.join(scratch, "rust")
        subprocess.run(["rm", "-rf", out], check=True)
        started = time.perf_counter()
        subprocess.run(
            [args.seqwarm, "preprocess", *files, "-o", out, "--tokenizer", "gpt2", "--encoding", "uint16", "--threads", "1", "--shard-tokens", str(1 << 30)],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
        )  # fmt: skip
        best_rust = min(best_rust, time.perf_counter() - started)
        os.sched_setaffinity(0, one_cpu)
        started = time.perf_counter()
        python_ids = python_preprocess(files, os.path.join(scratch, "python"), enc)
        best_python = min(best_python, time.perf_counter() - started)
        os.sched_setaffinity(0, everything)
    rust_ids = seqwarm_tokens(os.path.join(scratch, "rust"))
    same = np.array_equal(rust_ids, python_ids)
    print(f"{len(files)} files, {size / 1e6:.1f} MB, {len(rust_ids):,} tokens; token ids identical: {same}")
    print(f"one core, best of {args.repeat}: seqwarm preprocess {best_rust:.2f} s (whole process), tiktoken + pyarrow {best_python:.2f} s (loop only)")
    print(f"seqwarm / tiktoken: {best_python / best_rust:.2f}x")
    subprocess.run(["rm", "-rf", scratch], check=True)
    if not same:
        raise SystemExit("the token ids differ")


if __name__ == "__main__":
    main()
