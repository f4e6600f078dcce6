"""Fixtures: shards written with pyarrow (an independent Parquet writer) whose every token id
is unique, so that a test can tell which tokens were emitted, lost or duplicated; the seqwarm
CLI for comparisons; and the raw token files of OLMo-core's conformance vectors."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]


def write_corpus(directory: Path, files: int = 3, docs_per_file: int = 160, seed: int = 0, row_group_docs: int = 40) -> int:
    """List-layout shards (`input_ids: list<int32>`) of documents of 5 to 300 tokens; ids run
    1, 2, 3, ... over the whole corpus (0 stays free for EOS and padding). Returns the tokens."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    next_id = 1
    for f in range(files):
        docs: List[np.ndarray] = []
        for _ in range(docs_per_file):
            n = int(rng.integers(5, 300))
            docs.append(np.arange(next_id, next_id + n, dtype=np.int32))
            next_id += n
        table = pa.table({"input_ids": pa.array(docs, type=pa.list_(pa.int32()))})
        pq.write_table(table, directory / f"shard-{f}.parquet", row_group_size=row_group_docs)
    return next_id - 1


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, object]:
    directory = tmp_path_factory.mktemp("corpus")
    tokens = write_corpus(directory)
    return {"dir": str(directory), "tokens": tokens, "vocab": tokens + 1}


@pytest.fixture(scope="session")
def seqwarm_bin() -> str:
    """The CLI: $SEQWARM_BIN, else the workspace's debug build (built if missing)."""
    given = os.environ.get("SEQWARM_BIN")
    if given:
        return given
    binary = REPO / "target" / "debug" / "seqwarm"
    if not binary.exists():
        cargo = shutil.which("cargo") or "cargo"
        subprocess.run([cargo, "build", "--quiet", "--bin", "seqwarm"], cwd=REPO, check=True)
    return str(binary)


def linear(total: int = 60) -> Dict[str, object]:
    """A short ramp 16 -> 128 in steps of 16 over half of `total` steps."""
    return {"kind": "linear", "min": 16, "max": 128, "step": 16, "duration": 0.5, "total": total}


def fields_of(batch) -> Dict[str, list]:  # type: ignore[no-untyped-def]
    """A batch's sequence fields as nested lists (cu_seqlens is Python-only)."""
    return {k: v.tolist() for k, v in batch.items() if k != "cu_seqlens"}


EOS = 50256
MASK = (1 << 64) - 1


def splitmix64(seed: int):  # type: ignore[no-untyped-def]
    state = seed & MASK
    while True:
        state = (state + 0x9E3779B97F4A7C15) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        yield z ^ (z >> 31)


@pytest.fixture(scope="session")
def token_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``scripts/olmo-core-vectors``' corpus: 3 raw uint16 files of 400 documents (lengths
    1 + SplitMix64(2024) % 2500), token p of file f = (p * 40503 + f * 7) % 50000, EOS closing
    each document, 37 tokens without an EOS at the end of the last file."""
    directory = tmp_path_factory.mktemp("olmo-core-corpus")
    rng = splitmix64(2024)
    for f in range(3):
        lengths = [1 + next(rng) % 2500 for _ in range(400)]
        total = sum(lengths) + (37 if f == 2 else 0)
        tokens = ((np.arange(total, dtype=np.uint64) * 40503 + f * 7) % 50000).astype(np.uint16)
        tokens[np.cumsum(lengths) - 1] = EOS
        tokens.tofile(directory / f"part-{f}.npy")
    return directory


def rows_sha256(input_ids: np.ndarray) -> str:
    """The digest OLMo-core's vectors keep of a batch's rows: ids as little-endian u32."""
    return hashlib.sha256(np.ascontiguousarray(input_ids, dtype="<u4").tobytes()).hexdigest()
