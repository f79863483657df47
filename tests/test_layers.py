"""The library's imports point down: core ← methods ← book ← the command line.

Builds the import graph of robgen_lib from the source (ast, every import, also those inside
functions) and fails on a cycle or on a module importing from a higher layer.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "robgen_lib")
#: Layer of each sub-package; modules directly in robgen_lib/ (the command line) sit on top.
LAYERS = {"core": 0, "methods": 1, "book": 2}
TOP = 3
#: The command lines directly in robgen_lib/ (on top of every layer).
COMMANDS = {"sharded", "cache"}
#: What belongs to a paper's method, and so to methods/ (never to core/, never written in book/).
METHOD_WORDS = ("HighEnergyLoss", "EnergyMatchingLoss", "torchattacks", "class Denoiser", "likelihood_maximisation")


def modules() -> dict[str, str]:
    """dotted module name → file path, for every module of robgen_lib."""
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].split(os.sep)
                out[".".join(rel[:-1] if rel[-1] == "__init__" else rel)] = os.path.join(folder, f)
    return out


def imports(name: str, path: str, known: set[str]) -> set[str]:
    """The robgen_lib modules that ``name`` imports (relative imports resolved)."""
    package = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:   # `from pkg import module` imports the module
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != name}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else \
        (-1 if name == "robgen_lib" else TOP)


@pytest.fixture(scope="module")
def graph():
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_every_module_sits_in_a_layer(graph):
    loose = [m for m in graph if m.count(".") == 1 and m.split(".")[1] not in set(LAYERS) | COMMANDS]
    assert not loose, f"modules outside core/methods/book and the command lines: {loose}"


def test_imports_only_point_down(graph):
    upward = [f"{a} ({layer(a)}) imports {b} ({layer(b)})" for a, deps in graph.items() for b in deps
              if layer(b) > layer(a)]
    assert not upward, "\n".join(upward)


def test_no_import_cycle(graph):
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_checker_sees_a_cycle_and_an_upward_import():
    g = {"robgen_lib.core.a": {"robgen_lib.book.b"}, "robgen_lib.book.b": {"robgen_lib.core.a"}}
    with pytest.raises(AssertionError, match="cycle"):
        test_no_import_cycle(g)
    with pytest.raises(AssertionError, match="imports robgen_lib.book.b"):
        test_imports_only_point_down(g)


def test_the_core_holds_no_papers_method_and_the_book_no_attack():
    """The core knows attacks, energies and training, not HE-PGD, the diffusion models or the
    independent attacks; the book layer uses those from methods/ and writes none of them."""
    mods = modules()
    found = [f"{name}: {word}" for name, path in mods.items() if layer(name) in (0, 2)
             for word in METHOD_WORDS if word in open(path).read()]
    assert not found, "\n".join(found)


def test_the_diffusion_model_is_split_where_a_reader_looks():
    mods = modules()
    for part in ("denoiser", "weights", "classifier", "rdc", "recipes"):
        assert f"robgen_lib.methods.diffusion.{part}" in mods
    assert all(sum(1 for _ in open(p)) < 300 for n, p in mods.items() if n.startswith("robgen_lib.methods.diffusion"))
