"""One of the processes of tests/test_store_concurrency.py (run as a script).

    python store_worker.py ROOT WORKDIR INDEX N_KEYS OPS MODE [MODE ...]

For each MODE (the kind of its entries): waits until every worker is ready, then mixes
``get_or_build`` and ``load`` on the same keys as the others.  Each build appends this
worker's index to ``WORKDIR/<MODE>/builds/<key>`` (O_APPEND, so concurrent lines never
interleave).  The payload of each key as this worker saw it, and any exception, go to
``WORKDIR/<MODE>/result-<INDEX>.json``.  In mode ``differ`` each worker builds a payload of
its own, so the test can tell whose was published; in mode ``same`` they are equal.
"""
import hashlib
import json
import os
import random
import sys
import time
import traceback

N_WORKERS = 2


def main(root: str, workdir: str, index: int, n_keys: int, ops: int, modes: list[str]) -> None:
    for mode in modes:
        run(root, os.path.join(workdir, mode), index, n_keys, ops, mode)


def run(root: str, workdir: str, index: int, n_keys: int, ops: int, mode: str) -> None:
    import torch

    from robgen_lib.core.store import ArtifactStore

    store = ArtifactStore(root)
    rng = random.Random(index)
    seen: dict[str, list[str]] = {}
    errors: list[str] = []

    def digest(payload: dict) -> str:
        return hashlib.sha256(json.dumps({"t": payload["t"].tolist(), "who": payload.get("who")}).encode()).hexdigest()

    def build_for(k: int):
        def build() -> dict:
            fd = os.open(os.path.join(workdir, "builds", str(k)), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
            try:
                os.write(fd, f"{index}\n".encode())
            finally:
                os.close(fd)
            time.sleep(rng.random() * 0.002)
            payload = {"t": torch.full((32,), float(k))}
            if mode == "differ":
                payload["who"] = index
            return payload
        return build

    # the first pass walks the keys in the same order in every worker (the most contention);
    # later ones at random, a quarter of them lock-free loads
    order = list(range(n_keys)) + [rng.randrange(n_keys) for _ in range(max(0, ops - n_keys))]
    open(os.path.join(workdir, f"ready-{index}"), "w").close()
    while not all(os.path.exists(os.path.join(workdir, f"ready-{i}")) for i in range(N_WORKERS)):
        time.sleep(0.002)
    for i, k in enumerate(order):
        spec = {"k": k, "n": n_keys}
        try:
            if i >= n_keys and rng.random() < 0.25:
                payload = store.load(mode, spec)
                if payload is None:
                    continue
            else:
                payload = store.get_or_build(mode, spec, build_for(k))
            seen.setdefault(str(k), []).append(digest(payload))
        except Exception:
            errors.append(traceback.format_exc())
    with open(os.path.join(workdir, f"result-{index}.json"), "w") as f:
        json.dump({"seen": seen, "errors": errors}, f)


if __name__ == "__main__":
    root, workdir, index, n_keys, ops, *modes = sys.argv[1:]
    main(root, workdir, int(index), int(n_keys), int(ops), modes)
