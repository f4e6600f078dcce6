"""The package's surface: every Rust loader setting is a keyword, every public name is
documented, the stubs name what the extension has, and help() shows the defaults."""

from __future__ import annotations

import ast
import inspect
import pydoc
from pathlib import Path

import seqwarm
from seqwarm import _seqwarm

PACKAGE = Path(seqwarm.__file__).parent


def test_every_rust_setting_is_a_keyword_argument() -> None:
    keywords = {
        name
        for name, p in inspect.signature(seqwarm.Loader.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    settings = set(seqwarm.default_settings())
    # batch_size is spelled batch_rows / batch_tokens; the schedule is positional.
    expected = (settings - {"batch_size", "schedule"}) | {"batch_rows", "batch_tokens"}
    python_only = {"format", "threads", "state", "pad_cu_seqlens"}
    # The settings of mode="decompose" and mode="chunk" (the Rust DecomposeSettings and
    # ChunkSettings), refused in other modes.
    plan_only = {"token_dtype", "curriculum", "cycles", "balanced", "seq_len", "batch_schedule", "batch_schedule_unit"}
    assert keywords - python_only - plan_only == expected


def test_every_public_name_has_a_docstring() -> None:
    for name in seqwarm.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(seqwarm, name)
        if callable(obj):
            assert inspect.getdoc(obj), name
    for cls in (seqwarm.Loader, seqwarm.Schedule, seqwarm.Plan):
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and callable(member):
                assert inspect.getdoc(member), f"{cls.__name__}.{attr}"
    import seqwarm.torch as st

    for name in st.__all__:
        assert inspect.getdoc(getattr(st, name)), name


def test_help_of_the_loader_lists_the_defaults() -> None:
    text = pydoc.render_doc(seqwarm.Loader, renderer=pydoc.plaintext)
    assert "Defaults (from the Rust library)" in text
    assert 'mode = "repack"' in text
    assert "verify_checksums = true" in text


def test_the_stub_names_what_the_extension_has() -> None:
    tree = ast.parse((PACKAGE / "_seqwarm.pyi").read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    actual = {name for name in dir(_seqwarm) if not name.startswith("_")}
    assert stubbed == actual
    assert (PACKAGE / "py.typed").exists()
