"""Code versions in cache keys, and the table that says when one is due.

A cached result depends on the code that computed it. Every piece of code whose result is
cached — a cached function, a recipe kind, an objective, a loss, a scorer, the training loop —
declares a version, and every key that depends on it holds its *code id*
``"<module>.<qualname>@<version>"``:

    @versioned(2)
    def energy_path(model, split, ...): ...

    @versioned(1)
    @dataclass(frozen=True)
    class ClassifierRecipe(TrainingRecipe): ...

A new version is a new key, so results of older code are never read again (and
``python -m robgen_lib.cache prune`` removes them).

**What says a version is due.** :data:`TABLE` (``robgen_lib/code_versions.json``, committed)
records for each versioned thing its version and a fingerprint of its code: the SHA-256 of
the syntax trees (docstrings dropped, so comments, docstrings and layout never count) of its
own source and of every function and class of ``robgen_lib`` it reaches by name, transitively
(a function it calls, a class it builds, a name read from a module of the library). Error
classes and progress bars are left out: they cannot change a result. :func:`stale` compares
the two; ``tests/test_versions.py`` fails when a fingerprint changed while its version did
not, and names what to bump. A change that cannot alter any result (a rename, a refactor) is
recorded at the same versions with ``python -m robgen_lib.cache versions --record``.

The reach by name is a conservative approximation: code reached only through an argument's
attribute (``model.forward`` of a network passed in) is not followed, which is why trained
models and assembled models carry their own recipe's version in their spec.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import json
import os
import pkgutil
import textwrap
import types
from typing import Any, Callable

__all__ = ["versioned", "code_id", "version_of", "REGISTRY", "TABLE", "fingerprint", "current_table", "stale",
           "record", "import_library", "stale_ids"]

#: Every versioned function and class, by qualified name.
REGISTRY: dict[str, Any] = {}

#: The committed table of versions and code fingerprints.
TABLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "code_versions.json")

_LIBRARY = __name__.split(".")[0]
#: Modules whose code cannot change a cached result.
_NEUTRAL_MODULES = frozenset({f"{_LIBRARY}.core.errors", f"{_LIBRARY}.core.progress", f"{_LIBRARY}.core.versions"})


def _name(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


def versioned(version: int) -> Callable:
    """Declare the version of a function or class whose results are cached (see the module docstring)."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TypeError(f"a code version is a positive integer, got {version!r}")

    def mark(obj):
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or "<" in obj.__qualname__:
            raise TypeError(f"only module-level functions and classes carry a code version, got {obj!r}")
        obj.__code_version__ = version
        if obj.__module__ == _LIBRARY or obj.__module__.startswith(_LIBRARY + "."):
            REGISTRY[_name(obj)] = obj   # the table covers the library (tests version their own helpers)
        return obj

    return mark


def version_of(obj) -> int | None:
    """The version ``obj`` itself declares (a class's is never inherited), or None."""
    if inspect.isclass(obj):
        return obj.__dict__.get("__code_version__")
    return getattr(obj, "__code_version__", None)


def code_id(obj) -> str:
    """``"<module>.<qualname>@<version>"`` of a versioned function or class (or of an instance's
    class); a :class:`TypeError` names what lacks a version."""
    target = obj if (inspect.isfunction(obj) or inspect.isclass(obj)) else type(obj)
    version = version_of(target)
    if version is None:
        raise TypeError(f"{_name(target)} has no code version, so a cached result of it could outlive an edit of "
                        f"its code; decorate it with @versioned(1) (robgen_lib.core.versions) and record it with "
                        f"`python -m robgen_lib.cache versions --record`")
    return f"{_name(target)}@{version}"


# ----------------------------------------------------------------------- fingerprints


def _ours(obj) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return ((module == _LIBRARY or module.startswith(_LIBRARY + ".")) and module not in _NEUTRAL_MODULES
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and not (inspect.isclass(obj) and issubclass(obj, BaseException)))


def _unwrap(obj):
    return getattr(obj, "__wrapped__", obj)


def _functions(obj) -> list[types.FunctionType]:
    """A function itself, or every method of a class."""
    obj = _unwrap(obj)
    if inspect.isfunction(obj):
        return [obj]
    out = []
    for value in vars(obj).values():
        for fn in (value, getattr(value, "__func__", None), getattr(value, "fget", None)):
            fn = _unwrap(fn) if fn is not None else None
            if inspect.isfunction(fn):
                out.append(fn)
    return out


def _names(code: types.CodeType) -> set[str]:
    found = set(code.co_names) | set(code.co_freevars)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _names(const)
    return found


def _reached(obj) -> list:
    """The library's functions and classes that ``obj``'s code names directly (and its bases)."""
    found = []
    for fn in _functions(obj):
        names, scope = _names(fn.__code__), fn.__globals__
        for name in names:
            value = scope.get(name)
            if isinstance(value, types.ModuleType) and value.__name__.startswith(_LIBRARY + "."):
                found.extend(getattr(value, other) for other in names if hasattr(value, other))
            elif value is not None:
                found.append(value)
    if inspect.isclass(obj):
        found.extend(obj.__mro__[1:])
    return [v for v in found if _ours(_unwrap(v))]


@functools.lru_cache(maxsize=None)
def _tree(obj) -> str:
    """The syntax tree of ``obj``'s source without docstrings, as text."""
    source = textwrap.dedent(inspect.getsource(_unwrap(obj)))
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and body
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def fingerprint(obj) -> str:
    """SHA-256 (16 hex digits) of the code of ``obj`` and of everything of the library it reaches."""
    seen, todo = {}, [obj]
    while todo:
        item = _unwrap(todo.pop())
        key = _name(item)
        if key in seen:
            continue
        seen[key] = _tree(item)
        todo.extend(_reached(item))
    digest = hashlib.sha256()
    for key in sorted(seen):
        digest.update(f"{key}\n{seen[key]}\n".encode())
    return digest.hexdigest()[:16]


# ----------------------------------------------------------------------- the table


def import_library() -> None:
    """Import every module of the library, so that :data:`REGISTRY` holds every versioned thing."""
    package = importlib.import_module(_LIBRARY)
    for info in pkgutil.walk_packages(package.__path__, _LIBRARY + "."):
        if info.name.rsplit(".", 1)[-1] != "__main__":
            importlib.import_module(info.name)


def current_table(registry: dict[str, Any] | None = None) -> dict[str, dict]:
    """``{name: {"version": v, "code": fingerprint}}`` of every versioned thing now."""
    registry = REGISTRY if registry is None else registry
    return {name: {"version": version_of(obj), "code": fingerprint(obj)} for name, obj in sorted(registry.items())}


def _read(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def _where(obj) -> str:
    obj = _unwrap(obj)
    try:
        path = os.path.relpath(inspect.getsourcefile(obj))
        line = inspect.getsourcelines(obj)[1]
        return f"{path}:{line}"
    except (OSError, TypeError):
        return obj.__module__


def stale(registry: dict[str, Any] | None = None, path: str = TABLE) -> list[str]:
    """One message per versioned thing whose code changed while its version did not (and per
    table entry out of date); empty when the table and the code agree."""
    registry = REGISTRY if registry is None else registry
    recorded, now = _read(path), current_table(registry)
    record_hint = "`python -m robgen_lib.cache versions --record`"
    out = []
    for name, entry in now.items():
        old = recorded.get(name)
        obj = registry[name]
        if old is None:
            out.append(f"{name} ({_where(obj)}) is not in {os.path.basename(path)}: record it with {record_hint}")
        elif entry["code"] != old.get("code") and entry["version"] == old.get("version"):
            out.append(f"{name} ({_where(obj)}) changed, or code it calls did, since version {entry['version']} was "
                       f"recorded: bump it to @versioned({entry['version'] + 1}) so that no cached result of the old "
                       f"code is read, then {record_hint}; if no result can change (a rename, a refactor), "
                       f"{record_hint} alone")
        elif entry["version"] != old.get("version"):
            out.append(f"{name} is at version {entry['version']}, {os.path.basename(path)} says "
                       f"{old.get('version')}: record it with {record_hint}")
    out.extend(f"{name} is in {os.path.basename(path)} but no longer versioned in the library: {record_hint}"
               for name in sorted(set(recorded) - set(now)))
    return out


def record(registry: dict[str, Any] | None = None, path: str = TABLE) -> dict[str, dict]:
    """Write the current versions and fingerprints to the table; returns it."""
    table = current_table(registry)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return table


def stale_ids(spec: Any, registry: dict[str, Any] | None = None) -> list[str]:
    """The code ids in a cache spec (values of its ``"code"`` fields, at any depth) that are not
    the current version of what they name: an entry holding one was made by older code."""
    registry = REGISTRY if registry is None else registry
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("code", "loop") and isinstance(value, str) and "@" in value:
                    name, _, version = value.rpartition("@")
                    obj = registry.get(name)
                    if obj is None or str(version_of(obj)) != version:
                        found.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    return found
