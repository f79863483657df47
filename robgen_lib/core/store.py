"""A content-addressed artifact cache for trained models and results.

* **Key** = SHA-256 of the canonical JSON of the *spec* that produced the artifact
  (the data's SHA-256, architecture, objective, hyper-parameters, seed, the parts of an
  assembled model, the code ids of the code that computed it — see
  :mod:`robgen_lib.core.versions` — and :data:`CACHE_VERSION`, the store's format), so chapters
  that ask for the same model share it.
* **One file per entry**, ``<root>/<kind>/<key[:2]>/<key>.artifact``: a JSON header line
  (format, cache version, kind, canonical spec, SHA-256 and byte count of the payload),
  then the ``torch.save`` bytes of the payload.
* **One atomic publish**: the entry is written to a temporary file in its own folder
  (``.tmp-<pid>-<host>-<random>``), flushed, fsynced and renamed into place with one
  ``os.replace``.  A reader sees the whole entry or none; an interrupted write leaves no
  entry, and its temporary file is swept by the next write in that folder once its writer
  is dead (or it is a day old).  Files are created with mode ``0o666`` less the umask, so a
  cache shared by a group is readable by it.
* **One build per key**: :meth:`ArtifactStore.get_or_build` first reads without a lock; if
  the entry is absent it takes the key's lock (``fcntl.flock`` on ``<key>.lock`` next to the
  entry), reads again, and only then builds and publishes.  Two runs sharing a cache build
  each entry once, and the second returns the entry the first published.
* **Loads are verified**: the header's SHA-256 and size must match the payload; the payload
  is read with ``torch.load(weights_only=True)`` (never arbitrary pickle) and must hold only
  tensors, numbers, strings, lists and dicts; a caller's ``check`` may demand a structure.
* **A bad entry** (truncated, modified, foreign, of the wrong structure) is never removed by
  a reader that merely failed to read it: the key's lock is taken, the entry read again, and
  only if it is still bad is it reported (a warning, also written to the terminal when
  ``sys.stderr`` is a notebook's), removed and rebuilt.
* **An unwritable cache is found up front**: :meth:`ArtifactStore.check_writable` (called
  by a run before it trains) raises :class:`~robgen_lib.core.errors.ConfigError` naming the
  folder and the fix; a write that fails later raises the same kind of error.

The root comes from ``ROBGEN_CACHE`` (default ``~/.cache/robgen/artifacts``).  Locks work
between processes on one machine (and on network file systems whose ``flock`` is honoured).
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import io
import json
import math
import os
import secrets
import socket
import sys
import time
import warnings
from typing import Any, Callable, Iterator

import torch

from .errors import ConfigError
from .runtime import cache_root, folder_error, require_writable_folder

__all__ = ["CACHE_VERSION", "ArtifactStore", "CorruptArtifact", "Entry", "read_header", "spec_key", "file_digest",
           "require_writable", "tell_terminal"]

#: Bump when the layout of an entry or of a key changes. A change of the code that computes a
#: result is a new version of that code (:mod:`robgen_lib.core.versions`), not of the store.
CACHE_VERSION = 4

_FORMAT = "robgen-artifact"
_SUFFIX = ".artifact"
_TEMP_PREFIX = ".tmp-"
#: A temporary file this old is stale whoever wrote it.
STALE_TEMP_SECONDS = 24 * 3600
#: A temporary file of a dead writer is swept once it has not changed for this long.
_DEAD_WRITER_GRACE_SECONDS = 60
#: What :meth:`ArtifactStore.check_writable` wants free by default (a large trained model).
MIN_FREE_BYTES = 64 << 20


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


# ----------------------------------------------------------------------- the entry format


def _header_spec(spec: dict) -> Any:
    """The spec as the header stores it (and as it reads back from JSON)."""
    return json.loads(json.dumps(_canonical(spec)))


def _encode(kind: str, spec: dict, payload: dict) -> bytes:
    _check_plain(payload)
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    header = {"format": _FORMAT, "cache_version": CACHE_VERSION, "kind": kind, "spec": _header_spec(spec),
              "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # ensure_ascii: the header is one line whatever the spec's strings hold
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode() + b"\n" + data


def _decode(blob: bytes, kind: str, spec: dict, check: Callable[[dict], Any] | None) -> dict:
    end = blob.find(b"\n")
    try:
        header = json.loads(blob[:end]) if end >= 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise CorruptArtifact("no robgen header (truncated, or not an entry of this cache)")
    data = blob[end + 1:]
    if len(data) != header.get("bytes") or hashlib.sha256(data).hexdigest() != header.get("sha256"):
        raise CorruptArtifact("checksum mismatch (truncated or modified file)")
    if header.get("kind") != kind or header.get("spec") != _header_spec(spec):
        raise CorruptArtifact("the entry was made for another spec")
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError for foreign objects, RuntimeError for bad zips
        raise CorruptArtifact(f"refused by torch.load(weights_only=True): {type(err).__name__}") from None
    if not isinstance(payload, dict):
        raise CorruptArtifact(f"payload is a {type(payload).__name__}, not a dict")
    _check_plain(payload)
    if check is not None:
        try:
            check(payload)
        except Exception as err:
            raise CorruptArtifact(f"wrong structure ({type(err).__name__}: {err})") from None
    return payload


# ----------------------------------------------------------------------- messages


def tell_terminal(text: str) -> None:
    """Write ``text`` to the terminal that started this process, if ``sys.stderr`` goes elsewhere.

    A warning is printed on ``sys.stderr``.  In a Jupyter kernel (one run by papermill, say)
    that is the kernel's stream into the notebook: ipykernel (7.4, seen under papermill) replaces ``sys.stderr`` with an
    object that sends what it is given to the notebook only (the kernel is quiet), and points
    the OS descriptor 2 at a pipe whose reader thread copies what arrives both to the
    notebook and to the descriptor 2 the kernel was started with.  So neither
    ``sys.__stderr__`` (which writes to that pipe) nor ``os.write(2, ...)`` reach the
    terminal alone: both would also show the text in the notebook a second time.  The
    kernel's stream answers ``fileno()`` with its copy of the original descriptor 2, and the
    text is written there: on the terminal once, in the notebook once (as the warning).
    Where ``sys.stderr`` is redirected some other way and has no descriptor, the text goes
    to descriptor 2; where ``sys.stderr`` is the process's own stderr, the warning is
    already on the terminal and nothing is written.
    """
    stream = sys.stderr
    if stream is None or stream is sys.__stderr__:
        return
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):   # io.UnsupportedOperation is an OSError and a ValueError
        fd = 2
    else:
        if fd == 2:     # a wrapper of the process's stderr: the warning went there already
            return
    data = (text.rstrip("\n") + "\n").encode(errors="replace")
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


def _warn(text: str) -> None:
    warnings.warn(text, RuntimeWarning, stacklevel=4)
    tell_terminal(f"RuntimeWarning: {text}")


_WHAT, _FIX = "the cache folder", "set ROBGEN_CACHE to a folder you can write"


def _cache_error(root: str, err: OSError, doing: str = "") -> ConfigError:
    """One message for a cache that cannot be written: the folder, why, and the fix."""
    return folder_error(root, err, what=_WHAT, fix=_FIX, doing=doing)


def require_writable(root: str, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
    """Sweep stale temporary files in ``root``, then :func:`~robgen_lib.core.runtime.require_writable_folder`
    (a probe file written and removed, ``min_free_bytes`` free), with the cache's fix in the message."""
    with contextlib.suppress(OSError):
        if os.path.isdir(root):
            _sweep_temps(root)
    require_writable_folder(root, what=_WHAT, fix=_FIX, min_free_bytes=min_free_bytes)


# ----------------------------------------------------------------------- temporary files

_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _create_temp(folder: str) -> tuple[str, int]:
    """A new temporary file ``.tmp-<pid>-<host>-<random>`` in ``folder`` (mode 0o666 less the umask)."""
    while True:
        path = os.path.join(folder, f"{_TEMP_PREFIX}{os.getpid()}-{_HOST}-{secrets.token_hex(6)}")
        try:
            return path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:   # EPERM: it exists, and belongs to someone else
        return True
    return True


def _stale(name: str, mtime: float, now: float) -> bool:
    age = now - mtime
    if age > STALE_TEMP_SECONDS:
        return True
    pid, _, rest = name[len(_TEMP_PREFIX):].partition("-")
    host = rest.split("-", 1)[0]
    # a writer on another machine (a shared cache) cannot be asked whether it is alive
    return (pid.isdigit() and host == _HOST and age > _DEAD_WRITER_GRACE_SECONDS
            and not _writer_alive(int(pid)))


def _sweep_temps(folder: str) -> None:
    """Remove the stale temporary files of ``folder`` (dead writer, or a day old)."""
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_TEMP_PREFIX):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and _stale(entry.name, entry.stat(follow_symlinks=False).st_mtime,
                                                               now):
                os.remove(entry.path)
        except OSError:   # gone already (another sweeper), or not ours to remove
            pass


def _publish(path: str, blob: bytes) -> None:
    """Write ``blob`` to ``path`` with one atomic rename (temporary file in the same folder)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    _sweep_temps(folder)
    tmp, fd = _create_temp(folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):   # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ----------------------------------------------------------------------- the store


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (own.st_dev, own.st_ino) == (st.st_dev, st.st_ino)


@dataclasses.dataclass(frozen=True)
class Entry:
    """A published entry as :meth:`ArtifactStore.entries` finds it: its kind, key, file, size in
    bytes, modification time and header (format, cache version, kind, spec; ``None`` if unreadable)."""

    kind: str
    key: str
    path: str
    size: int
    mtime: float
    header: dict | None


def read_header(path: str) -> dict | None:
    """The JSON header line of an entry file, or ``None`` if it has none (raises
    :class:`FileNotFoundError` if the file is gone)."""
    with open(path, "rb") as f:
        line = f.readline(1 << 22)
    try:
        header = json.loads(line)
    except ValueError:
        return None
    return header if isinstance(header, dict) and header.get("format") == _FORMAT else None


def _writing(kind: str, path: str) -> str:
    return f"writing the {kind} entry {os.path.basename(path)}"


class ArtifactStore:
    """Get-or-build cache of ``dict`` payloads (state dicts, result tensors, metrics)."""

    def __init__(self, root: str | None = None):
        self.root = os.path.expanduser(root or cache_root())

    def path(self, kind: str, spec: dict) -> str:
        """The file of the entry for ``spec`` (it may not exist)."""
        key = spec_key(spec)
        return os.path.join(self.root, kind, key[:2], key + _SUFFIX)

    def check_writable(self, *, min_free_bytes: int = MIN_FREE_BYTES) -> None:
        """Raise :class:`ConfigError` now, before anything is trained, if the cache cannot be written
        (see :func:`require_writable`)."""
        require_writable(self.root, min_free_bytes=min_free_bytes)

    @contextlib.contextmanager
    def _locked(self, path: str, doing: str) -> Iterator[None]:
        """Hold the key's lock (``<key>.lock`` next to its entry) against other processes and threads."""
        lock = path[: -len(_SUFFIX)] + ".lock"
        try:
            os.makedirs(os.path.dirname(lock), exist_ok=True)
            # flock needs no write access: a lock file made by another user of a shared cache will do
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as err:
            raise _cache_error(self.root, err, doing) from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a pruner removes a lock file while it holds it: a lock taken on a removed file
            # guards nothing, so take the one now at the path instead
            while not _same_file(fd, lock):
                os.close(fd)
                fd = os.open(lock, os.O_RDONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)   # releases the lock

    def _read(self, path: str, kind: str, spec: dict, check) -> dict | None:
        """The entry's payload, ``None`` if there is none; :class:`CorruptArtifact` if it is bad."""
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise CorruptArtifact(f"unreadable entry ({err.strerror or err})") from None
        return _decode(blob, kind, spec, check)

    def _read_or_discard(self, path: str, kind: str, spec: dict, check) -> dict | None:
        """Under the key's lock: the payload, or ``None`` after removing a bad entry with a warning."""
        try:
            return self._read(path, kind, spec, check)
        except CorruptArtifact as err:
            _warn(f"robgen cache: discarding {kind} entry {os.path.basename(path)}: {err}; it will be rebuilt")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            return None

    def save(self, kind: str, spec: dict, payload: dict) -> None:
        """Publish ``payload`` as the entry for ``spec`` (replacing any)."""
        blob = _encode(kind, spec, payload)
        path = self.path(kind, spec)
        with self._locked(path, _writing(kind, path)):
            self._write(path, blob, kind)

    def _write(self, path: str, blob: bytes, kind: str) -> None:
        try:
            _publish(path, blob)
        except OSError as err:
            raise _cache_error(self.root, err, _writing(kind, path)) from err

    def load(self, kind: str, spec: dict, check: Callable[[dict], Any] | None = None) -> dict | None:
        """The cached payload, or ``None`` if absent.

        The read takes no lock. If the entry is bad, it is read again under the key's lock
        and, if still bad, removed with a warning.
        """
        path = self.path(kind, spec)
        try:
            return self._read(path, kind, spec, check)
        except CorruptArtifact:
            pass
        with self._locked(path, f"removing the bad {kind} entry {os.path.basename(path)}"):
            return self._read_or_discard(path, kind, spec, check)

    def get_or_build(self, kind: str, spec: dict, build: Callable[[], dict],
                     check: Callable[[dict], Any] | None = None) -> dict:
        """Load the entry for ``spec`` or run ``build()`` and store what it returns.

        ``check(payload)``, if given, raises for a payload of the wrong structure; a stored
        entry it rejects is treated as corrupt (warned, removed, rebuilt), a built one is
        not stored and its error is raised. While one process builds, others asking for
        the same key wait for it and then load its entry. The payload returned after a
        build is decoded from the bytes that were stored, so the first run returns exactly
        what later (cached) runs will load: the same dtypes, the same CPU tensors.
        """
        path = self.path(kind, spec)
        try:
            payload = self._read(path, kind, spec, check)
            if payload is not None:
                return payload
        except CorruptArtifact:
            pass   # looked at again under the lock
        with self._locked(path, _writing(kind, path)):
            payload = self._read_or_discard(path, kind, spec, check)
            if payload is not None:
                return payload   # built meanwhile by another process
            blob = _encode(kind, spec, build())
            try:
                payload = _decode(blob, kind, spec, check)
            except CorruptArtifact as err:
                raise CorruptArtifact(f"build() of the {kind} entry made a bad payload: {err}") from None
            self._write(path, blob, kind)
            return payload

    # -- managing the cache (python -m robgen_lib.cache) -------------------------------

    def entries(self) -> Iterator["Entry"]:
        """Every published entry (temporary files and locks are not entries), with its header
        (``None`` when it cannot be read); an entry removed meanwhile is skipped."""
        if not os.path.isdir(self.root):
            return
        for kind in sorted(os.listdir(self.root)):
            top = os.path.join(self.root, kind)
            if not os.path.isdir(top):
                continue
            for folder, _, files in os.walk(top):
                for name in sorted(files):
                    if not name.endswith(_SUFFIX) or name.startswith(_TEMP_PREFIX):
                        continue
                    path = os.path.join(folder, name)
                    try:
                        st = os.stat(path)
                        header = read_header(path)
                    except FileNotFoundError:
                        continue
                    yield Entry(kind, name[: -len(_SUFFIX)], path, st.st_size, st.st_mtime, header)

    def remove(self, entry: "Entry", still: Callable[["Entry"], bool]) -> bool:
        """Remove ``entry`` under its key's lock, if ``still(entry)`` holds for it as it is then
        (read again under the lock: a run may have just rebuilt it); its lock file goes too.
        Returns whether it was removed."""
        lock = entry.path[: -len(_SUFFIX)] + ".lock"
        with self._locked(entry.path, f"removing the {entry.kind} entry {os.path.basename(entry.path)}"):
            try:
                st = os.stat(entry.path)
                now = Entry(entry.kind, entry.key, entry.path, st.st_size, st.st_mtime, read_header(entry.path))
            except FileNotFoundError:
                now = None
            removed = False
            if now is not None and still(now):
                os.remove(entry.path)
                removed = True
            if now is None or removed:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(lock)   # waiters re-open the path (see _locked)
            return removed

    def __contains__(self, item: tuple[str, dict]) -> bool:
        kind, spec = item
        return os.path.exists(self.path(kind, spec))
