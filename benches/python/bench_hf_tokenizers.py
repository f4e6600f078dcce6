"""``seqwarm preprocess --tokenizer tokenizer.json`` against the Python ``tokenizers`` package's
``encode_batch`` on one core, on the same texts and the same ``tokenizer.json``: by default
the real one that the ``anthropic`` package 0.30.0 ships on PyPI (a byte-level BPE of 65 000
ids with an NFKC normalizer; ``scripts/python-env`` installs the wheel without its
dependencies), or with ``--tokenizer trained`` a byte-level BPE of 32 000 ids (GPT-2's kind)
trained here on the corpus. The ids are compared first (document by document, with the BOS
and end-of-text ids seqwarm adds), then both are timed: the
peer's ``encode_batch`` alone (parallelism off, loop only), seqwarm's whole process (reading
JSON Lines, tokenizing, writing flat ``uint16`` shards, ``--threads 1``).

    cargo build --release
    .venv/bin/python benches/python/bench_hf_tokenizers.py --repeat 3

The corpus: the CPython standard library's sources, one document per file (``bench_peers.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benches" / "python"))
from bench_peers import stdlib_sources  # noqa: E402

EOS = "<|endoftext|>"


def anthropic_tokenizer_json() -> Path:
    from importlib import metadata

    return Path(str(metadata.distribution("anthropic").locate_file("anthropic/tokenizer.json")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seqwarm", default=str(REPO / "target" / "release" / "seqwarm"))
    parser.add_argument("--tokenizer", choices=["anthropic", "trained"], default="anthropic")
    args = parser.parse_args()
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    one_cpu = {sorted(os.sched_getaffinity(0))[-1]}
    os.sched_setaffinity(0, one_cpu)
    import pyarrow.parquet as pq
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = []
    for path in stdlib_sources():
        try:
            texts.append(Path(path).read_bytes().decode("utf-8"))
        except UnicodeDecodeError:
            continue
    texts = [t for t in texts if t]
    with tempfile.TemporaryDirectory() as scratch:
        docs = Path(scratch) / "docs.jsonl"
        docs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
        if args.tokenizer == "anthropic":
            tok_path = anthropic_tokenizer_json()
            tok = Tokenizer.from_file(str(tok_path))
            bos, eos_token = "<SOS>", "<EOT>"
        else:
            tok = Tokenizer(models.BPE())
            tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
            tok.decoder = decoders.ByteLevel()
            trainer = trainers.BpeTrainer(vocab_size=32_000, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
            tok.train_from_iterator(texts, trainer)
            tok_path = Path(scratch) / "tokenizer.json"
            tok.save(str(tok_path))
            bos, eos_token = None, EOS
        out = Path(scratch) / "shards"
        command = [args.seqwarm, "preprocess", str(docs), "-o", str(out), "--tokenizer", str(tok_path), "--eos-token", eos_token, "--threads", "1"]
        if bos:
            command += ["--bos-token", bos]

        def seqwarm_run() -> float:
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, preexec_fn=lambda: os.sched_setaffinity(0, one_cpu))
            return time.perf_counter() - started

        seqwarm_run()
        eos = tok.token_to_id(eos_token)
        first = [tok.token_to_id(bos)] if bos else []
        expected = [first + e.ids + [eos] for e in tok.encode_batch(texts)]
        flat = []
        for shard in sorted(out.glob("*.parquet")):
            # A flat uint16 shard: one fixed_size_binary[2] column of little-endian ids.
            column = pq.read_table(shard, columns=["tokens"]).column(0).combine_chunks()
            flat.extend(np.frombuffer(column.buffers()[1], dtype="<u2", count=len(column), offset=column.offset * 2).tolist())
        assert flat == [t for ids in expected for t in ids], "token ids differ from the Python package's"
        peer = seqwarm = float("inf")
        for _ in range(args.repeat):
            started = time.perf_counter()
            tok.encode_batch(texts)
            peer = min(peer, time.perf_counter() - started)
            seqwarm = min(seqwarm, seqwarm_run())
        mb = sum(len(t.encode()) for t in texts) / 1e6
        print(f"{tok_path.name} ({args.tokenizer}, {tok.get_vocab_size():,} ids): {len(texts)} documents, {mb:.1f} MB, {len(flat):,} tokens; ids identical; one core, best of {args.repeat}")
        print(f"  python tokenizers encode_batch (loop only)  {peer:6.2f} s  {mb / peer:6.1f} MB/s")
        print(f"  seqwarm preprocess --threads 1 (whole)      {seqwarm:6.2f} s  {mb / seqwarm:6.1f} MB/s  {peer / seqwarm:.2f}x")


if __name__ == "__main__":
    main()
