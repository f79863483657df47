"""`python -m robgen_lib.cache`: list, du and prune, also on a cache a run is writing."""
import io
import json
import os
import subprocess
import sys
import time

import torch

from robgen_lib.cache import main, why_stale
from robgen_lib.core.attacks import ce_loss
from robgen_lib.core.store import ArtifactStore
from robgen_lib.core.versions import code_id

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _cli(*argv) -> str:
    out = io.StringIO()
    assert main(list(argv), out=out) == 0
    return out.getvalue()


def _fill(root: str) -> ArtifactStore:
    store = ArtifactStore(root)
    store.save("probe", {"code": code_id(ce_loss), "i": 1}, {"t": torch.zeros(10)})         # current
    store.save("probe", {"code": "robgen_lib.core.attacks.ce_loss@0", "i": 2}, {"t": torch.zeros(10)})   # older code
    store.save("model", {"code": "robgen_lib.gone.Recipe@3"}, {"t": torch.zeros(1000)})       # code that is gone
    return store


def test_list_du_and_prune_tell_current_from_stale_entries(tmp_path):
    root = str(tmp_path / "cache")
    store = _fill(root)
    listing = _cli("--cache", root, "list")
    assert "probe" in listing and "model" in listing
    row = next(line for line in listing.splitlines() if line.startswith("probe"))
    assert row.split()[1] == "2" and row.split()[-1] == "1"                                  # 2 entries, 1 stale
    entries = _cli("--cache", root, "list", "--entries")
    assert "stale: older code: robgen_lib.core.attacks.ce_loss@0" in entries and "current" in entries
    assert "in all" in _cli("--cache", root, "du")
    assert "would remove" in _cli("--cache", root, "prune", "--dry-run") and len(list(store.entries())) == 3
    out = _cli("--cache", root, "prune")
    assert "freed" in out and "in 2 entries" in out
    (left,) = list(store.entries())
    assert why_stale(left) is None and store.load("probe", {"code": code_id(ce_loss), "i": 1}) is not None
    os.utime(left.path, (time.time() - 10 * 86_400,) * 2)
    assert "in 0 entries" in _cli("--cache", root, "prune", "--older-than", "30")
    assert "in 1 entry" in _cli("--cache", root, "prune", "--older-than", "5")
    assert "no entries" in _cli("--cache", root, "list")


def test_an_entry_of_an_older_store_format_or_without_header_is_stale(tmp_path):
    store = _fill(str(tmp_path / "cache"))
    entry = next(e for e in store.entries() if e.kind == "probe" and why_stale(e) is None)
    with open(entry.path, "r+b") as f:
        f.write(b"garbage!")
    assert why_stale(next(e for e in store.entries() if e.key == entry.key)) == "no readable header"


def test_prune_and_list_beside_a_run_writing_the_same_cache(tmp_path):
    """A writer builds and reads back entries for a few seconds while list and prune run in
    other processes: nobody fails, no current entry is lost, and every stale one goes."""
    root, result = str(tmp_path / "cache"), str(tmp_path / "writer.json")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
    writer = subprocess.Popen([sys.executable, os.path.join(HERE, "cache_writer.py"), root, "8", result], env=env)
    runs = 0
    while writer.poll() is None:
        for command in (["list"], ["prune"]):
            done = subprocess.run([sys.executable, "-m", "robgen_lib.cache", "--cache", root, *command], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stderr
            runs += 1
    assert writer.returncode == 0 and runs >= 2
    with open(result) as f:
        report = json.load(f)
    assert report["errors"] == [] and report["ops"] > 20
    main(["--cache", root, "prune"], out=io.StringIO())
    store = ArtifactStore(root)
    left = list(store.entries())
    assert left and all(why_stale(e) is None for e in left)
    for spec in report["current"]:
        assert store.load("probe", spec) is not None
