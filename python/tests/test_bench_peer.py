"""`seqwarm bench --peer python` on the default shards of `seqwarm preprocess`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_the_python_peer_reads_the_default_uint16_shards(seqwarm_bin: str, tmp_path: Path) -> None:
    """It crashed on them: it read their `fixed_size_binary[2]` column as integers."""
    text = tmp_path / "in.txt"
    text.write_text("\n".join(f"document {i}: " + "the warmup of sequence length " * (3 + i % 40) for i in range(300)))
    shards = tmp_path / "shards"
    subprocess.run([seqwarm_bin, "preprocess", str(text), "-o", str(shards), "--separator", "\\n"], check=True, capture_output=True)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["settings"]["encoding"] == "uint16"
    report = tmp_path / "bench.json"
    done = subprocess.run(
        [seqwarm_bin, "bench", str(shards), "--repeat", "1", "--modes", "truncate", "--batch-tokens", "2048",
         "--max-len", "256", "--peer", "python", "--python", sys.executable, "--json", str(report)],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    peers = json.loads(report.read_text())["peer"]
    assert {p["what"] for p in peers} >= {"raw", "truncate"}
    assert all(p["tokens_per_s"] > 0 for p in peers)
