import errno
import glob
import hashlib
import io
import json
import os
import pickle
import re
import sys
import time
import warnings

import pytest
import torch

from robgen_lib.core.store import CACHE_VERSION, ArtifactStore, spec_key
from robgen_lib.core.versions import versioned


def test_round_trip(store):
    payload = {"w": torch.arange(6.0).view(2, 3), "meta": {"acc": 0.5, "name": "x", "hist": [1.0, 2.0]}}
    store.save("model", {"a": 1}, payload)
    back = store.load("model", {"a": 1})
    assert torch.equal(back["w"], payload["w"]) and back["meta"] == payload["meta"]
    assert store.load("model", {"a": 2}) is None


def test_key_is_canonical():
    assert spec_key({"a": 1, "b": [1, 2.0]}) == spec_key({"b": (1, 2.0), "a": 1})
    assert spec_key({"a": 1}) != spec_key({"a": 2})


def test_get_or_build_builds_once(store):
    calls = []

    def build():
        calls.append(1)
        return {"t": torch.ones(3)}

    store.get_or_build("r", {"k": 1}, build)
    store.get_or_build("r", {"k": 1}, build)
    assert len(calls) == 1


def _files(store):
    """Every file of the store but its lock files (which are kept: removing one would race)."""
    return [f for f in glob.glob(os.path.join(store.root, "**", "*"), recursive=True)
            + glob.glob(os.path.join(store.root, "**", ".*"), recursive=True)
            if os.path.isfile(f) and not f.endswith(".lock")]


def test_interrupted_write_leaves_nothing(store, monkeypatch):
    def boom(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        store.save("model", {"a": 1}, {"t": torch.ones(2)})
    monkeypatch.undo()
    assert store.load("model", {"a": 1}) is None
    assert _files(store) == []


def test_truncated_entry_is_rebuilt_with_a_warning(store):
    store.save("model", {"a": 1}, {"t": torch.arange(1000.0)})
    path = store.path("model", {"a": 1})
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="rebuilt"):
        out = store.get_or_build("model", {"a": 1}, lambda: {"t": torch.zeros(2)})
    assert torch.equal(out["t"], torch.zeros(2))
    assert torch.equal(store.load("model", {"a": 1})["t"], torch.zeros(2))


class Payload:
    """Unpickling this runs code: a checkpoint must never be loaded that way."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/robgen-pwned",))


def test_checkpoint_with_arbitrary_objects_is_refused(store):
    if os.path.exists("/tmp/robgen-pwned"):
        os.remove("/tmp/robgen-pwned")
    spec = {"a": 1}
    path = store.path("model", spec)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    buf = io.BytesIO()
    torch.save({"t": torch.ones(1), "evil": Payload()}, buf)
    data = buf.getvalue()
    header = {"format": "robgen-artifact", "cache_version": CACHE_VERSION, "kind": "model", "spec": spec,
              "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    open(path, "wb").write(json.dumps(header).encode() + b"\n" + data)   # a valid checksum
    with pytest.warns(RuntimeWarning, match="weights_only"):
        assert store.load("model", spec) is None
    assert not os.path.exists("/tmp/robgen-pwned")
    assert not os.path.exists(path)


def test_payload_must_be_plain_data(store):
    from robgen_lib.core.store import CorruptArtifact

    with pytest.raises(CorruptArtifact):
        store.save("model", {"a": 1}, {"f": pickle})


def test_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBGEN_CACHE", str(tmp_path / "here"))
    assert ArtifactStore().root == str(tmp_path / "here")


@versioned(1)
def _count_and_scale(model, split, *, scale: float = 1.0, progress: bool = True):
    _count_and_scale.calls += 1
    return float(scale * len(split)), model(split.x[:1]).shape[1]


_count_and_scale.calls = 0


def test_a_cached_call_derives_its_key_from_the_call(trained, digits, store):
    from robgen_lib.core.cached import cached_call, call_key

    split = digits.test.head(10)
    first = cached_call(store, _count_and_scale, trained, split, scale=2.0)
    again = cached_call(store, _count_and_scale, trained, split, scale=2.0, progress=False)   # progress: not in key
    assert first == again == (20.0, 10) and _count_and_scale.calls == 1
    cached_call(store, _count_and_scale, trained, digits.test.head(11), scale=2.0)            # other data
    cached_call(store, _count_and_scale, trained, split)                                     # the default
    assert _count_and_scale.calls == 3
    key = call_key(_count_and_scale, trained, split, scale=2.0)
    assert key["arguments"]["model"] == {"model": trained.spec} and key["arguments"]["split"]["data"]["n"] == 10


def test_a_cached_call_refuses_what_it_cannot_name(trained, digits, store):
    from robgen_lib.core.cached import cached_call

    with pytest.raises(TypeError, match="argument 'model' .* a network without a spec"):
        cached_call(store, _count_and_scale, trained.model, digits.test)
    with pytest.raises(TypeError, match="module-level function"):
        cached_call(store, lambda m: 1, trained)
    with pytest.raises(TypeError, match="argument 'scale' .* a Generator"):
        cached_call(store, _count_and_scale, trained, digits.test, scale=torch.Generator())


# ----------------------------------------------------------------------- reliability


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_temporary_file_is_swept_by_the_next_write_there(store):
    from robgen_lib.core import store as store_module

    spec = {"a": 1}
    folder = os.path.dirname(store.path("model", spec))
    os.makedirs(folder)
    host = store_module._HOST
    dead = os.path.join(folder, f".tmp-{_dead_pid()}-{host}-0123abcd")        # its writer was killed
    old = os.path.join(folder, f".tmp-1-otherhost-0123abcd")                  # a day old, from anywhere
    live = os.path.join(folder, f".tmp-{os.getpid()}-{host}-0123abcd")        # being written now
    fresh_dead = os.path.join(folder, f".tmp-{_dead_pid()}-{host}-fresh000")  # its writer just ended
    for path, age in ((dead, 120), (old, 25 * 3600), (live, 0), (fresh_dead, 0)):
        open(path, "wb").write(b"half")
        os.utime(path, (time.time() - age,) * 2)
    store.save("model", spec, {"t": torch.ones(2)})
    assert not os.path.exists(dead) and not os.path.exists(old)
    assert os.path.exists(live) and os.path.exists(fresh_dead)
    assert torch.equal(store.load("model", spec)["t"], torch.ones(2))


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_entries_follow_the_umask(store, umask, mode):
    old = os.umask(umask)
    try:
        store.save("model", {"a": 1}, {"t": torch.ones(2)})
    finally:
        os.umask(old)
    assert os.stat(store.path("model", {"a": 1})).st_mode & 0o777 == mode


def test_a_payload_of_the_wrong_structure_is_rebuilt_with_a_warning(store):
    from robgen_lib.core.fit import _check_model_entry

    spec = {"a": 1}
    store.save("model", spec, {"state_dict": {"w": torch.ones(1)}})          # a valid checksum, no history
    good = {"state_dict": {"w": torch.zeros(1)}, "history": {"loss": torch.ones(2)}, "extras": {}}
    with pytest.warns(RuntimeWarning, match="wrong structure.*history.*rebuilt"):
        out = store.get_or_build("model", spec, lambda: good, check=_check_model_entry)
    assert torch.equal(out["state_dict"]["w"], torch.zeros(1))
    assert set(store.load("model", spec, check=_check_model_entry)) == {"state_dict", "history", "extras"}

    def needs_x(payload):
        return payload["x"]                                                   # KeyError

    with pytest.warns(RuntimeWarning, match="KeyError"):
        assert store.get_or_build("model", spec, lambda: {"x": torch.ones(1)}, check=needs_x)["x"] == 1


def test_a_built_payload_of_the_wrong_structure_is_not_stored(store):
    from robgen_lib.core.store import CorruptArtifact

    def needs_x(payload):
        return payload["x"]

    with pytest.raises(CorruptArtifact, match="build.*KeyError"):
        store.get_or_build("model", {"a": 1}, lambda: {"y": torch.ones(1)}, check=needs_x)
    assert ("model", {"a": 1}) not in store


def test_a_reader_never_deletes_what_it_merely_failed_to_read(store, monkeypatch):
    spec = {"a": 1}
    folder = os.path.dirname(store.path("model", spec))
    os.makedirs(folder)
    half = os.path.join(folder, f".tmp-{os.getpid()}-host-half0000")         # another writer, half way
    open(half, "wb").write(b'{"format": "robgen-artifact"')
    assert store.load("model", spec) is None and ("model", spec) not in store
    assert os.path.exists(half)

    # a read that fails once (say, while another process replaced the entry) is retried under the lock
    store.save("model", spec, {"t": torch.ones(2)})
    real, calls = ArtifactStore._read, []

    def flaky(self, *args):
        calls.append(1)
        if len(calls) == 1:
            from robgen_lib.core.store import CorruptArtifact
            raise CorruptArtifact("checksum mismatch (truncated or modified file)")
        return real(self, *args)

    monkeypatch.setattr(ArtifactStore, "_read", flaky)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(store.load("model", spec)["t"], torch.ones(2))
        assert torch.equal(store.get_or_build("model", spec, lambda: {"t": torch.zeros(2)})["t"], torch.ones(2))
    assert len(calls) == 3 and ("model", spec) in store and os.path.exists(half)


def test_an_entry_of_another_spec_is_refused(store):
    store.save("model", {"a": 1}, {"t": torch.ones(2)})
    moved = store.path("model", {"a": 2})
    os.makedirs(os.path.dirname(moved), exist_ok=True)
    os.replace(store.path("model", {"a": 1}), moved)
    with pytest.warns(RuntimeWarning, match="another spec"):
        assert store.load("model", {"a": 2}) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_check_writable_names_a_read_only_folder(tmp_path):
    from robgen_lib.core.errors import ConfigError

    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=f"{re.escape(str(folder))} is not writable .*; set ROBGEN_CACHE"):
            ArtifactStore(str(folder)).check_writable(min_free_bytes=0)
        with pytest.raises(ConfigError, match=f"writing the model entry .* failed: the cache folder "
                                              f"{re.escape(str(folder / 'sub'))} is not writable"):
            ArtifactStore(str(folder / "sub")).save("model", {"a": 1}, {"t": torch.ones(1)})
    finally:
        folder.chmod(0o755)


def test_check_writable_names_a_cache_that_is_a_file(tmp_path, monkeypatch):
    from robgen_lib.core.errors import ConfigError

    file = tmp_path / "file"
    file.write_text("x")
    monkeypatch.setenv("ROBGEN_CACHE", str(file))
    path, sub = re.escape(str(file)), re.escape(str(file / "sub"))
    with pytest.raises(ConfigError, match=f"^the cache folder {path} is not a folder: it is a file; "
                                          f"set ROBGEN_CACHE to a folder you can write$"):
        ArtifactStore().check_writable(min_free_bytes=0)
    with pytest.raises(ConfigError, match=f"{sub} is not a folder: it lies under {path}, which is a file"):
        ArtifactStore(str(file / "sub")).check_writable(min_free_bytes=0)
    with pytest.raises(ConfigError, match=f"^writing the model entry .* failed: the cache folder {path} is not"):
        ArtifactStore(str(file)).save("model", {"a": 1}, {"t": torch.ones(1)})
    built = []
    with pytest.raises(ConfigError, match=f"the cache folder {path} is not a folder"):   # found before building
        ArtifactStore(str(file)).get_or_build("model", {"a": 1}, lambda: built.append(1) or {"t": torch.ones(1)})
    assert built == []
    assert file.read_text() == "x"


def test_check_writable_reports_a_full_disk(store, monkeypatch):
    from robgen_lib.core.errors import ConfigError

    store.check_writable(min_free_bytes=0)
    assert os.listdir(store.root) == []                                       # the probe is gone
    with pytest.raises(ConfigError, match=f"{re.escape(store.root)} has only .* free.*disk with room"):
        store.check_writable(min_free_bytes=1 << 60)
    real = os.write

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    root = re.escape(store.root)
    with pytest.raises(ConfigError, match=f"^no space left for the cache folder {root}: .* free; free some space"):
        store.check_writable(min_free_bytes=0)
    monkeypatch.setattr(os, "write", real)
    assert [f for f in os.listdir(store.root)] == []


def test_a_discarded_entry_is_told_to_the_terminal_when_stderr_is_a_notebook(store, monkeypatch):
    from robgen_lib.core.store import tell_terminal

    read, write = os.pipe()

    class KernelStream(io.StringIO):
        """Like ipykernel's stream: text goes to the notebook; fileno() is the original fd 2."""

        def fileno(self):
            return write

    notebook = KernelStream()
    monkeypatch.setattr(sys, "stderr", notebook)
    store.save("model", {"a": 1}, {"t": torch.ones(2)})
    open(store.path("model", {"a": 1}), "ab").write(b"junk")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load("model", {"a": 1}) is None
    os.close(write)
    terminal = os.read(read, 1 << 16).decode()
    os.close(read)
    assert [str(w.message) for w in caught] == [terminal.removeprefix("RuntimeWarning: ").rstrip("\n")]
    assert "discarding model entry" in terminal and terminal.count("\n") == 1
    assert notebook.getvalue() == ""            # the warning itself is printed by the warnings machinery

    monkeypatch.setattr(sys, "stderr", sys.__stderr__)                       # a terminal: the warning suffices
    monkeypatch.setattr(os, "write", lambda fd, data: pytest.fail("wrote to the terminal twice"))
    tell_terminal("x")
