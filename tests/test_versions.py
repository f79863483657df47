"""Every piece of code whose results are cached declares a version, and the committed table
(robgen_lib/code_versions.json) says when one is due: an edit without a bump fails here."""
import importlib.util
import sys
import textwrap

import pytest

from robgen_lib.core import versions


def test_every_code_version_is_recorded_and_current():
    versions.import_library()
    due = versions.stale()
    assert not due, "\n".join(due)


def _load(tmp_path, source: str, name: str = "robgen_lib._version_probe"):
    """A module of the library's namespace written from ``source`` (a fresh file and module each time)."""
    path = tmp_path / f"probe_{len(list(tmp_path.glob('probe_*.py')))}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    versions.REGISTRY.pop(f"{name}.measure", None)   # keep the library's registry to the library
    return module


PROBE = '''
from robgen_lib.core.versions import versioned


def helper(x):
    return x + 1


@versioned({version})
def measure(x):
    """Doubles what the helper gives."""
    return 2 * helper(x)
'''


def test_an_edit_without_a_bump_fails_and_names_what_to_bump(tmp_path):
    table = str(tmp_path / "table.json")
    m = _load(tmp_path, PROBE.format(version=1))
    versions.record({"p.measure": m.measure}, table)
    assert versions.stale({"p.measure": m.measure}, table) == []

    # a docstring or a comment is not code
    m = _load(tmp_path, PROBE.format(version=1).replace('"""Doubles what', '# a note\n    """Twice what'))
    assert versions.stale({"p.measure": m.measure}, table) == []

    # the function's own code, or a helper it calls, changed: the version is due
    for edited in (PROBE.replace("2 * helper", "3 * helper"), PROBE.replace("x + 1", "x + 2")):
        m = _load(tmp_path, edited.format(version=1))
        (message,) = versions.stale({"p.measure": m.measure}, table)
        assert message.startswith("p.measure (") and "bump it to @versioned(2)" in message
        assert "--record" in message

    # bumped: the table must learn the new version; recorded: all is well
    m = _load(tmp_path, PROBE.replace("x + 1", "x + 2").format(version=2))
    (message,) = versions.stale({"p.measure": m.measure}, table)
    assert "is at version 2" in message and "record it" in message
    versions.record({"p.measure": m.measure}, table)
    assert versions.stale({"p.measure": m.measure}, table) == []


def test_new_and_vanished_entries_are_reported(tmp_path):
    table = str(tmp_path / "table.json")
    m = _load(tmp_path, PROBE.format(version=1))
    assert "is not in table.json" in versions.stale({"p.measure": m.measure}, table)[0]
    versions.record({"p.measure": m.measure}, table)
    assert "no longer versioned" in versions.stale({}, table)[0]


def test_a_code_id_names_the_version_and_stale_ids_finds_older_ones():
    from robgen_lib.core.attacks import ce_loss

    assert versions.code_id(ce_loss) == f"robgen_lib.core.attacks.ce_loss@{ce_loss.__code_version__}"
    spec = {"code": versions.code_id(ce_loss), "arguments": {"loss": {"code": "robgen_lib.core.attacks.ce_loss@0"},
                                                              "gone": {"code": "robgen_lib.nowhere.f@1"}}}
    assert versions.stale_ids(spec) == ["robgen_lib.core.attacks.ce_loss@0", "robgen_lib.nowhere.f@1"]


def test_a_version_is_a_positive_integer_on_a_named_function():
    with pytest.raises(TypeError, match="positive integer"):
        versions.versioned(0)
    with pytest.raises(TypeError, match="module-level"):
        versions.versioned(1)(lambda x: x)
