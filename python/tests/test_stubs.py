"""The hand-written stubs of the Rust extension (`_seqwarm.pyi`) against the extension itself:
every name in one is in the other, and every function and method takes the same parameters,
in the same order, with the same defaults. A change on the Rust side that the stubs miss fails
here, not in a user's type checker."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Dict, List, Tuple

import seqwarm._seqwarm as ext

STUBS = Path(ext.__file__).with_name("_seqwarm.pyi")
if not STUBS.exists():  # an installed wheel keeps the stubs beside the package's source
    STUBS = Path(__file__).resolve().parents[1] / "seqwarm" / "_seqwarm.pyi"

Params = List[Tuple[str, str]]


def stub_params(node: ast.FunctionDef) -> Params:
    args = node.args
    plain = args.posonlyargs + args.args
    defaults = [None] * (len(plain) - len(args.defaults)) + list(args.defaults)
    out = [(a.arg, "" if d is None else ast.unparse(d)) for a, d in zip(plain, defaults)]
    return [p for p in out if p[0] != "self"]


def runtime_params(function: object) -> Params:
    signature = inspect.signature(function)  # from pyo3's __text_signature__
    out = []
    for p in signature.parameters.values():
        if p.name in ("self", "$self"):
            continue
        default = "" if p.default is inspect.Parameter.empty else repr(p.default)
        out.append((p.name, default))
    return out


def stub_tree() -> Dict[str, ast.AST]:
    tree = ast.parse(STUBS.read_text())
    return {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def test_the_stubs_name_what_the_extension_has():
    stubs = stub_tree()
    runtime = {name for name in dir(ext) if not name.startswith("_")}
    assert set(stubs) == runtime


def test_every_function_takes_the_parameters_its_stub_says():
    for name, node in stub_tree().items():
        if isinstance(node, ast.FunctionDef):
            assert stub_params(node) == runtime_params(getattr(ext, name)), name


def test_every_method_takes_the_parameters_its_stub_says():
    for name, node in stub_tree().items():
        if not isinstance(node, ast.ClassDef):
            continue
        cls = getattr(ext, name)
        methods = {m.name: m for m in node.body if isinstance(m, ast.FunctionDef)}
        runtime = {m for m in vars(cls) if not m.startswith("_")} | ({"__init__"} if "__init__" in methods else set())
        assert set(methods) - {"__array_interface__"} == runtime - {"__array_interface__"}, name
        for method, m in methods.items():
            is_property = any(isinstance(d, ast.Name) and d.id == "property" for d in m.decorator_list)
            if is_property:
                assert inspect.isdatadescriptor(inspect.getattr_static(cls, method)), f"{name}.{method}"
                continue
            target = cls if method == "__init__" else getattr(cls, method)
            assert stub_params(m) == runtime_params(target), f"{name}.{method}"
