"""``seqwarm preprocess`` against Python ``tiktoken`` doing the same job on one core, for GPT-2
(``r50k_base``), ``cl100k_base`` and ``o200k_base``: tokens of the same texts, an end-of-text id
after each, written as flat shards (``uint16`` for GPT-2, ``int32`` otherwise; pyarrow, one
column, row groups of about 1 Mi tokens, uncompressed); every token id is compared, then both
are timed, whole (seqwarm's process against tiktoken's loop plus pyarrow) and the tokenizer
alone (``encode_ordinary_batch(num_threads=1)`` against seqwarm's ``tokenize_throughput``
example, both in memory).

    cargo build --release && cargo build --release -p seqwarm-preprocess --example tokenize_throughput
    .venv/bin/pip install tiktoken && .venv/bin/python benches/python/bench_tokenize.py --repeat 3

``tiktoken`` downloads its tables at run time, which this project may not do: the peer builds
each ``Encoding`` from the ``.tiktoken`` file that the ``tiktoken-rs`` crate ships (found in
cargo's registry), with tiktoken's own pattern. The corpus: the CPython standard library's
sources (one document per file, as ``bench_peers.py``), and with ``--corpus more`` also the
installed ``transformers`` package's (30 M+ GPT-2 tokens); files that are not UTF-8 left out of
both.
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

# tiktoken's own patterns, as in tiktoken_ext/openai_public.py, and each encoding's EOS.
PATTERNS = {
    "r50k_base": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
}
EOS = {"r50k_base": 50256, "cl100k_base": 100257, "o200k_base": 199999}
#: seqwarm's name for each.
SEQWARM_NAME = {"r50k_base": "gpt2", "cl100k_base": "cl100k_base", "o200k_base": "o200k_base"}
ROW_GROUP_TOKENS = 1 << 20


def ranks_file(name: str) -> str:
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry", "src", "*", "tiktoken-rs-*", "assets", f"{name}.tiktoken")))
    if not found:
        raise SystemExit(f"no {name}.tiktoken in cargo's registry (build seqwarm first)")
    return found[-1]


def encoding(name: str):
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    return tiktoken.Encoding(name=name, pat_str=PATTERNS[name], mergeable_ranks=load_tiktoken_bpe(ranks_file(name)), special_tokens={"<|endoftext|>": EOS[name]})


def python_preprocess(files: list, out: str, enc, name: str) -> "tuple[np.ndarray, float]":
    """Reads, tokenizes (one thread) and writes the shards; returns every token id and the time
    ``encode_ordinary_batch`` took."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    # Bytes decoded as they are (text mode would turn \r\n into \n); empty documents skipped
    # (no end-of-text either), as seqwarm preprocess does.
    texts = [t for t in (Path(f).read_bytes().decode("utf-8") for f in files) if t]
    started = time.perf_counter()
    ids = enc.encode_ordinary_batch(texts, num_threads=1)
    encoding_time = time.perf_counter() - started
    dtype = np.uint16 if name == "r50k_base" else np.int32
    tokens = np.concatenate([np.append(np.asarray(d, dtype=dtype), dtype(EOS[name])) for d in ids])
    os.makedirs(out, exist_ok=True)
    if dtype is np.uint16:
        column = pa.FixedSizeBinaryArray.from_buffers(pa.binary(2), len(tokens), [None, pa.py_buffer(tokens.tobytes())])
    else:
        column = pa.array(tokens)
    table = pa.table({"tokens": column})
    pq.write_table(table, os.path.join(out, "shard-00000.parquet"), row_group_size=ROW_GROUP_TOKENS, compression="none", use_dictionary=False, write_statistics=False)
    return tokens, encoding_time


def seqwarm_tokens(out: str) -> np.ndarray:
    import pyarrow.parquet as pq

    parts = []
    for path in sorted(Path(out).glob("*.parquet")):
        column = pq.read_table(path, columns=["tokens"]).column(0).combine_chunks()
        if column.type.byte_width == 2 and str(column.type).startswith("fixed_size_binary"):
            parts.append(np.frombuffer(column.buffers()[1], dtype="<u2", count=len(column), offset=column.offset * 2).astype(np.int64))
        else:
            parts.append(column.to_numpy().astype(np.int64))
    return np.concatenate(parts)


def seqwarm_tokenizer_time(example: str, files: list, name: str, repeat: int, cpu: set) -> "tuple[float, float]":
    """seqwarm's tokenizer alone, in memory: the ``tokenize_throughput`` example's best time, and
    its first run's (tables built, no piece remembered yet)."""
    done = subprocess.run(
        [example, *files], check=True, capture_output=True, text=True,
        env=dict(os.environ, TOKENIZERS=SEQWARM_NAME[name], REPEAT=str(repeat)), preexec_fn=lambda: os.sched_setaffinity(0, cpu),
    )  # fmt: skip
    line = next(line for line in done.stdout.splitlines() if line.startswith(SEQWARM_NAME[name] + " "))
    words = line.split()
    return float(words[3]), float(words[words.index("(first") + 2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    parser.add_argument("--example", default=str(REPO / "target" / "release" / "examples" / "tokenize_throughput"))
    parser.add_argument("--encodings", default="r50k_base,cl100k_base,o200k_base")
    parser.add_argument("--corpus", choices=["stdlib", "more"], default="stdlib")
    args = parser.parse_args()
    sources = stdlib_sources()
    if args.corpus == "more":
        import transformers

        sources += sorted(str(p) for p in Path(transformers.__file__).parent.rglob("*.py"))
    files = []
    for f in sources:
        try:
            Path(f).read_bytes().decode("utf-8")
            files.append(f)
        except (UnicodeDecodeError, OSError):
            pass
    size = sum(os.path.getsize(f) for f in files)
    one_cpu = {min(os.sched_getaffinity(0))}
    everything = os.sched_getaffinity(0)
    scratch = tempfile.mkdtemp(prefix="seqwarm-tokenize-")
    print(f"{len(files)} files, {size / 1e6:.1f} MB; one core, best of {args.repeat}")
    differ = []
    for name in args.encodings.split(","):
        enc = encoding(name)
        best_rust, best_python, best_encode = float("inf"), float("inf"), float("inf")
        shard_encoding = "uint16" if name == "r50k_base" else "plain"
        for _ in range(args.repeat):
            out = os.path.join(scratch, "rust")
            subprocess.run(["rm", "-rf", out], check=True)
            started = time.perf_counter()
            subprocess.run(
                [args.seqwarm, "preprocess", *files, "-o", out, "--tokenizer", SEQWARM_NAME[name], "--encoding", shard_encoding, "--threads", "1", "--shard-tokens", str(1 << 30)],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
            )  # fmt: skip
            best_rust = min(best_rust, time.perf_counter() - started)
            os.sched_setaffinity(0, one_cpu)
            started = time.perf_counter()
            python_ids, encode_time = python_preprocess(files, os.path.join(scratch, "python"), enc, name)
            best_python = min(best_python, time.perf_counter() - started)
            best_encode = min(best_encode, encode_time)
            os.sched_setaffinity(0, everything)
        rust_ids = seqwarm_tokens(os.path.join(scratch, "rust"))
        same = np.array_equal(rust_ids, python_ids.astype(np.int64))
        tokenizer, cold = seqwarm_tokenizer_time(args.example, files, name, args.repeat, one_cpu)
        print(f"{name}: {len(rust_ids):,} tokens, ids identical: {same}")
        print(f"  tokenizer alone: tiktoken encode_ordinary_batch {best_encode:.2f} s, seqwarm {tokenizer:.3f} s: {best_encode / tokenizer:.2f}x"
              f" (seqwarm's first run, tables built and no piece remembered: {cold:.3f} s, {best_encode / cold:.2f}x)")
        print(f"  whole job: tiktoken + pyarrow {best_python:.2f} s (loop only), seqwarm preprocess {best_rust:.2f} s (whole process): {best_python / best_rust:.2f}x")
        if not same:
            differ.append(name)
        subprocess.run(["rm", "-rf", os.path.join(scratch, "rust"), os.path.join(scratch, "python")], check=True)
    subprocess.run(["rm", "-rf", scratch], check=True)
    if differ:
        raise SystemExit(f"the token ids differ: {differ}")


if __name__ == "__main__":
    main()
