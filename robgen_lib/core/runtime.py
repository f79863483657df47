"""Where the run happens: cache and data roots, the device, the seed."""
from __future__ import annotations

import contextlib
import errno
import os
import random
import shutil
import tempfile

import numpy as np
import torch

from .errors import ConfigError
from .validate import integer

__all__ = ["DEVICES", "THREAD_SHARE", "ROOT_VARIABLES", "absolute_roots", "cache_root", "data_root",
           "require_writable_folder", "folder_error", "pick_device", "follow_thread_share", "seed_everything"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def _user_cache() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


#: The variables that move the cache and the data; a relative value is a path from the folder
#: the run started in (see :func:`absolute_roots`).
ROOT_VARIABLES = ("ROBGEN_CACHE", "ROBGEN_DATA")


def _from_variable(name: str) -> str | None:
    value = os.environ.get(name)
    return os.path.abspath(os.path.expanduser(value)) if value else None


def absolute_roots() -> dict[str, str]:
    """The root variables that are set, each as an absolute path resolved against the current
    folder: a runner exports these to its children (which may run in other folders), so that
    one relative ``ROBGEN_CACHE`` names one cache."""
    return {name: path for name in ROOT_VARIABLES if (path := _from_variable(name))}


def cache_root() -> str:
    """Where trained models and results are cached (``ROBGEN_CACHE``, made absolute)."""
    return _from_variable("ROBGEN_CACHE") or os.path.join(_user_cache(), "robgen", "artifacts")


def data_root() -> str:
    """Where downloadable datasets live (``ROBGEN_DATA``, made absolute)."""
    return _from_variable("ROBGEN_DATA") or os.path.join(_user_cache(), "robgen", "data")


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def folder_error(folder: str, err: OSError, *, what: str, fix: str, doing: str = "",
                 error: type[ConfigError] = ConfigError) -> ConfigError:
    """One message for a folder that cannot be written: ``what`` it is, its path, why, and ``fix``."""
    doing = f"{doing} failed: " if doing else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = _size(shutil.disk_usage(_existing_ancestor(folder)).free)
        except OSError:
            free = "unknown"
        return error(f"{doing}no space left for {what} {folder}: {free} free; free some space there, or {fix} "
                     f"on a disk with room")
    blocker = _existing_ancestor(folder)
    if err.errno in (errno.EEXIST, errno.ENOTDIR) or not os.path.isdir(blocker):
        where = "is a file" if blocker == os.path.abspath(folder) else f"lies under {blocker}, which is a file"
        return error(f"{doing}{what} {folder} is not a folder: it {where}; {fix}")
    return error(f"{doing}{what} {folder} is not writable ({err.strerror or err}); {fix}")


def require_writable_folder(folder: str, *, what: str, fix: str, min_free_bytes: int = 0,
                            error: type[ConfigError] = ConfigError) -> None:
    """Create ``folder`` if needed, write, fsync and remove a probe file there, and see that
    ``min_free_bytes`` are free: a run calls this before any work, so that a read-only
    folder, a path that is a file or a full disk stop it with one message (``error``)
    naming the folder and ``fix`` — not an OSError after hours of training."""
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.path.isdir(folder):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), folder)
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.remove(probe)
        free = shutil.disk_usage(folder).free
    except OSError as err:
        raise folder_error(folder, err, what=what, fix=fix, error=error) from None
    if free < min_free_bytes:
        raise error(f"{what} {folder} has only {_size(free)} free, and the run may need {_size(min_free_bytes)}; "
                    f"free some space there, or {fix} on a disk with room")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit request must be available."""
    if isinstance(device, torch.device):
        device = device.type
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; allowed: {', '.join(map(repr, DEVICES))}")
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was requested but CUDA is not available here; use device='auto' or 'cpu'")
    if device == "mps" and not has_mps:
        raise ConfigError("device='mps' was requested but MPS is not available here; use device='auto' or 'cpu'")
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    Returns a CPU ``torch.Generator`` seeded with ``seed`` for code that wants its own.
    """
    seed = integer(0, 2**31 - 1)("seed", seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)


#: The variable naming a file that holds this process's share of the CPU threads: a runner of
#: several processes (the book's executor) raises it once cores fall idle.
THREAD_SHARE = "ROBGEN_THREAD_SHARE"


def follow_thread_share() -> None:
    """Set torch's intra-op threads to the share written in the file ``$ROBGEN_THREAD_SHARE``
    (nothing without the variable, or with an unreadable file)."""
    path = os.environ.get(THREAD_SHARE)
    if not path:
        return
    try:
        with open(path) as f:
            threads = int(f.read().strip())
    except (OSError, ValueError):
        return
    if threads >= 1 and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
