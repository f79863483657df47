import glob
import hashlib
import io
import json
import os
import pickle

import pytest
import torch

from robgen_lib.core.store import CACHE_VERSION, ArtifactStore, spec_key


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
