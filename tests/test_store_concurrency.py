"""Two processes sharing one cache: no errors, each key built once, one payload per key.

Both processes run tests/store_worker.py once, for both modes: ``same`` (both build equal
payloads) and ``differ`` (each builds its own; the first published must win everywhere).
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest
import torch

from robgen_lib.core.store import ArtifactStore

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
N_KEYS, OPS, MODES = 100, 300, ("same", "differ")


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """Run the two workers on one cache; the cache root and the folder of their records."""
    tmp = tmp_path_factory.mktemp("shared")
    root, workdir = str(tmp / "cache"), str(tmp / "work")
    for mode in MODES:
        os.makedirs(os.path.join(workdir, mode, "builds"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "store_worker.py"), root, workdir, str(i),
                               str(N_KEYS), str(OPS), *MODES], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
    return root, workdir


def _digest(payload: dict) -> str:
    return hashlib.sha256(json.dumps({"t": payload["t"].tolist(), "who": payload.get("who")}).encode()).hexdigest()


@pytest.mark.parametrize("mode", MODES)
def test_two_processes_share_a_cache(shared, mode):
    root, workdir = shared
    folder = os.path.join(workdir, mode)
    results = []
    for i in range(2):
        with open(os.path.join(folder, f"result-{i}.json")) as f:
            results.append(json.load(f))
    for r in results:
        assert r["errors"] == [], r["errors"][0]
    builds = os.path.join(folder, "builds")
    builders = {int(name): open(os.path.join(builds, name)).read().split() for name in os.listdir(builds)}
    assert sorted(builders) == list(range(N_KEYS))
    assert {k: v for k, v in builders.items() if len(v) != 1} == {}           # each key built exactly once
    store = ArtifactStore(root)
    for k in range(N_KEYS):
        payload = store.load(mode, {"k": k, "n": N_KEYS})
        assert payload is not None and torch.equal(payload["t"], torch.full((32,), float(k)))
        if mode == "differ":                                                   # the published one is the builder's
            assert payload["who"] == int(builders[k][0])
        for r in results:                                                      # and every process got just that one
            assert set(r["seen"].get(str(k), [_digest(payload)])) == {_digest(payload)}
