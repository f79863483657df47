"""A content-addressed artifact cache for trained models and results.

* **Key** = SHA-256 of the canonical JSON of the *spec* that produced the artifact
  (dataset fingerprint, architecture, objective, hyper-parameters, seed, and
  :data:`CACHE_VERSION`), so chapters that ask for the same model share it.
* **Writes are atomic**: payload and sidecar go to temporary files in the same
  folder, are flushed, then renamed into place.  An interrupted run leaves no entry.
* **Loads are verified**: the sidecar holds the payload's SHA-256; the payload is read
  with ``torch.load(weights_only=True)`` (never arbitrary pickle) and must hold only
  tensors, numbers, strings, lists and dicts.  A corrupt, truncated or foreign entry is
  reported with a warning, removed, and rebuilt.

Layout: ``<root>/<kind>/<key[:2]>/<key>.pt`` and ``<key>.json``; root from
``ROBGEN_CACHE`` (default ``~/.cache/robgen/artifacts``).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
import tempfile
import warnings
from typing import Any, Callable

import torch

from .runtime import cache_root

__all__ = ["CACHE_VERSION", "ArtifactStore", "CorruptArtifact", "spec_key", "file_digest"]

#: Bump when a change of code changes what a spec produces.
CACHE_VERSION = 2


class CorruptArtifact(RuntimeError):
    """An entry could not be verified or read."""


def _canonical(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return repr(obj)
        return float(f"{obj:.12g}")
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.device):
        return obj.type
    raise TypeError(f"spec values must be plain data, got {type(obj).__name__}")


def spec_key(spec: dict) -> str:
    text = json.dumps({"v": CACHE_VERSION, "spec": _canonical(spec)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


_ALLOWED_LEAVES = (torch.Tensor, str, int, float, bool, type(None))


def file_digest(path: str) -> str:
    """sha256 of a file's bytes (identifies user-supplied weights in cache specs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_plain(obj: Any, where: str = "payload") -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise CorruptArtifact(f"{where} has a key of type {type(k).__name__}")
            _check_plain(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
    elif not isinstance(obj, _ALLOWED_LEAVES):
        raise CorruptArtifact(f"{where} holds a {type(obj).__name__}; only tensors and plain data are accepted")


def _atomic_write(path: str, data: bytes) -> None:
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class ArtifactStore:
    """Get-or-build cache of ``dict`` payloads (state dicts, result tensors, metrics)."""

    def __init__(self, root: str | None = None):
        self.root = os.path.expanduser(root or cache_root())

    def paths(self, kind: str, spec: dict) -> tuple[str, str]:
        key = spec_key(spec)
        base = os.path.join(self.root, kind, key[:2], key)
        return base + ".pt", base + ".json"

    def save(self, kind: str, spec: dict, payload: dict) -> None:
        _check_plain(payload)
        buf = io.BytesIO()
        torch.save(payload, buf)
        data = buf.getvalue()
        pt, meta = self.paths(kind, spec)
        _atomic_write(pt, data)
        sidecar = {"kind": kind, "spec": _canonical(spec), "sha256": hashlib.sha256(data).hexdigest(),
                   "bytes": len(data), "cache_version": CACHE_VERSION}
        _atomic_write(meta, json.dumps(sidecar, indent=1, sort_keys=True).encode())

    def _read(self, pt: str, meta: str) -> dict:
        try:
            with open(meta) as f:
                sidecar = json.load(f)
            with open(pt, "rb") as f:
                data = f.read()
        except (OSError, ValueError) as err:
            raise CorruptArtifact(f"unreadable entry ({err})") from None
        if len(data) != sidecar.get("bytes") or hashlib.sha256(data).hexdigest() != sidecar.get("sha256"):
            raise CorruptArtifact("checksum mismatch (truncated or modified file)")
        try:
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError for foreign objects, RuntimeError for bad zips
            raise CorruptArtifact(f"refused by torch.load(weights_only=True): {type(err).__name__}") from None
        if not isinstance(payload, dict):
            raise CorruptArtifact(f"payload is a {type(payload).__name__}, not a dict")
        _check_plain(payload)
        return payload

    def load(self, kind: str, spec: dict) -> dict | None:
        """The cached payload, or ``None`` if absent.  Bad entries are removed with a warning."""
        pt, meta = self.paths(kind, spec)
        if not (os.path.exists(pt) or os.path.exists(meta)):
            return None
        try:
            return self._read(pt, meta)
        except CorruptArtifact as err:
            warnings.warn(f"robgen cache: discarding {kind} entry {os.path.basename(pt)}: {err}; it will be rebuilt",
                          RuntimeWarning, stacklevel=2)
            for p in (pt, meta):
                if os.path.exists(p):
                    os.remove(p)
            return None

    def get_or_build(self, kind: str, spec: dict, build: Callable[[], dict]) -> dict:
        """Load the entry for ``spec`` or run ``build()`` and store what it returns.

        A fresh entry is read back from disk, so the first run returns exactly what later
        (cached) runs will load: the same dtypes, the same CPU tensors.
        """
        payload = self.load(kind, spec)
        if payload is None:
            payload = build()
            self.save(kind, spec, payload)
            payload = self._read(*self.paths(kind, spec))
        return payload

    def __contains__(self, item: tuple[str, dict]) -> bool:
        kind, spec = item
        return os.path.exists(self.paths(kind, spec)[1])
