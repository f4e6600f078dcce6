"""The `seqwarm` console script the wheel installs: the same Rust command line as the cargo-built
binary, so the same output byte for byte, the same exit statuses, and `python -m seqwarm`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from seqwarm.__main__ import main


def console_script() -> List[str]:
    found = Path(sys.executable).with_name("seqwarm")
    if found.exists():
        return [str(found)]
    on_path = shutil.which("seqwarm")
    if on_path is None:
        pytest.skip("the package is not installed with its console script")
    return [on_path]


def run(command: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_console_script_streams_what_the_binary_streams(seqwarm_bin, tmp_path):
    args = ["stream", "--max-steps", "4", "--emit", "jsonl"]
    binary = run([seqwarm_bin, *args], tmp_path)
    script = run([*console_script(), *args], tmp_path)
    assert binary.returncode == 0, binary.stderr
    assert script.returncode == 0, script.stderr
    assert script.stdout == binary.stdout
    assert script.stdout.count("\n") >= 4


def test_python_m_seqwarm_plans_as_the_binary_does(seqwarm_bin, tmp_path):
    args = ["plan", "--kind", "linear", "--min", "64", "--max", "512", "--step", "64", "--total", "100"]
    binary = run([seqwarm_bin, *args, "--svg", str(tmp_path / "a.svg")], tmp_path)
    module = run([sys.executable, "-m", "seqwarm", *args, "--svg", str(tmp_path / "b.svg")], tmp_path)
    assert module.returncode == binary.returncode == 0, module.stderr
    assert module.stdout == binary.stdout
    assert (tmp_path / "b.svg").read_bytes() == (tmp_path / "a.svg").read_bytes()


def test_exit_statuses_are_the_binarys(seqwarm_bin, tmp_path):
    for args, status in ((["--version"], 0), (["stream", "--no-such-flag"], 2), (["plan", "--total", "0"], 1)):
        binary = run([seqwarm_bin, *args], tmp_path)
        script = run([*console_script(), *args], tmp_path)
        assert binary.returncode == script.returncode == status, (args, script.stderr)
        assert script.stderr == binary.stderr


def test_main_returns_the_status_without_ending_the_process(capfd):
    assert main(["--version"]) == 0
    assert main(["no-such-command"]) == 2
    assert "seqwarm" in capfd.readouterr().out
