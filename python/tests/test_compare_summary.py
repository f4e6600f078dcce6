"""scripts/compare-summary: per-repeat speed-ups against the same repeat's baseline, their median
and range, the exact tokens-to-target ratio, and the check that repeats are bit-identical."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List

from conftest import REPO


def write_run(directory: Path, lengths: List[int], seconds_per_token: float, losses: List[float]) -> None:
    """A metrics.jsonl of one step per length, 4 096 tokens a step, an eval every 5 steps."""
    directory.mkdir(parents=True)
    elapsed, tokens = 0.0, 0
    with open(directory / "metrics.jsonl", "w") as f:
        for step, length in enumerate(lengths):
            step_time = 4096 * seconds_per_token * (0.4 + 0.6 * length / 256)
            elapsed += step_time
            tokens += 4096
            eval_loss = losses[step // 5] if step % 5 == 4 else None
            f.write(json.dumps(dict(step=step, tokens=tokens, seq_len=length, rows=4096 // length, step_time_s=step_time, elapsed_s=elapsed, eval_loss=eval_loss)) + "\n")


def summary(out: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compare-summary"), str(out), "test"], check=True, capture_output=True, text=True
    )
    return done.stdout


def test_repeats_give_a_median_and_range_and_an_exact_token_ratio(tmp_path: Path) -> None:
    base_losses = [3.0, 2.8, 2.6, 2.5]
    slw_losses = [2.9, 2.6, 2.45, 2.4]
    for r, (base_speed, slw_speed) in enumerate([(1.0, 0.8), (1.1, 0.8), (1.0, 0.9)], start=1):
        write_run(tmp_path / f"baseline-r{r}", [256] * 20, base_speed * 1e-5, base_losses)
        write_run(tmp_path / f"slw-0.3-r{r}", [32] * 4 + [64] * 4 + [256] * 12, slw_speed * 1e-5, slw_losses)
    text = summary(tmp_path)
    # The summary table comes after the per-run one.
    line = [l for l in text.splitlines() if l.startswith("| slw-0.3 | 3 |")][-1]
    cells = [c.strip() for c in line.split("|")[1:-1]]
    # Identical losses over the repeats; SLW reaches 2.5 at its 3rd eval (15 steps), the
    # baseline at its 4th (20 steps): 81 920 / 61 440 tokens, exactly.
    assert cells[2] == "yes"
    assert cells[3] == "1.33x (exact)"
    # Time to target per repeat, against the same repeat's baseline: 2.25x, 2.48x, 2.00x.
    assert cells[4] == "2.25x (2.00-2.48)"
    assert cells[5] == "1.55x (1.38-1.71)"
    # The length-dependent share: 1 - (0.4 + 0.6 * 32/256) / 1 = 52.5% at every repeat.
    assert cells[6].startswith("52%") or cells[6].startswith("53%")
    assert (tmp_path / "summary.md").read_text() == text


def test_repeats_that_differ_are_reported(tmp_path: Path) -> None:
    write_run(tmp_path / "baseline-r1", [256] * 10, 1e-5, [3.0, 2.5])
    write_run(tmp_path / "baseline-r2", [256] * 10, 1e-5, [3.0, 2.5])
    write_run(tmp_path / "slw-0.6-r1", [32] * 5 + [256] * 5, 1e-5, [2.9, 2.4])
    write_run(tmp_path / "slw-0.6-r2", [32] * 5 + [256] * 5, 1e-5, [2.9, 2.45])
    line = [l for l in summary(tmp_path).splitlines() if l.startswith("| slw-0.6 | 2 |")][-1]
    assert "no (2 different)" in line
