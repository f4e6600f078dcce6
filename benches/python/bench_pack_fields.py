"""The pack modes against the raw read, with every field and with only some (``--pack-fields``).

Each round runs ``seqwarm bench`` once per field set (each run measures its own raw decode,
so every ratio is against a baseline of the same run), rounds alternating the sets so that
the machine's drift touches them alike; prints each ratio's range and median over the rounds.

    python3 benches/python/bench_pack_fields.py SHARDS [--binary target/release/seqwarm]
        [--rounds 5] [--fields segment_ids --fields labels,position_ids]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Optional


def bench(binary: str, shards: str, fields: Optional[str], repeat: int) -> Dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        extra = ["--pack-fields", fields] if fields else []
        subprocess.run(
            [binary, "bench", shards, "--modes", "repack,pack-greedy,pack-bestfit", "--repeat", str(repeat),
             "--json", str(out), *extra],
            check=True, capture_output=True,
        )  # fmt: skip
        rows = json.loads(out.read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    return {row["what"].split(" (")[0]: row["ratio_to_raw"] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("--binary", default="target/release/seqwarm")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement in each round (the best counts)")
    parser.add_argument("--fields", action="append", default=None, help="a --pack-fields value (repeatable)")
    args = parser.parse_args()
    sets: List[Optional[str]] = [None, *(args.fields or ["segment_ids", "labels,position_ids"])]
    ratios: Dict[str, Dict[str, List[float]]] = {str(s): {} for s in sets}
    for _ in range(args.rounds):
        for fields in sets:
            for what, ratio in bench(args.binary, args.shards, fields, args.repeat).items():
                ratios[str(fields)].setdefault(what, []).append(ratio)
    print(f"{'fields':22s} {'what':22s} ratio to the raw decode (min-max, median of {args.rounds})")
    for fields, table in ratios.items():
        for what, values in table.items():
            if what.startswith("raw"):
                continue
            name = "all" if fields == "None" else fields
            print(f"{name:22s} {what:22s} {min(values):.2f}-{max(values):.2f}, median {statistics.median(values):.2f}")


if __name__ == "__main__":
    main()
