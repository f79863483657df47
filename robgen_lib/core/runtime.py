"""Where the run happens: cache and data roots, the device, the seed."""
from __future__ import annotations

import os
import random

import numpy as np
import torch

from .errors import ConfigError
from .validate import integer

__all__ = ["DEVICES", "cache_root", "data_root", "pick_device", "seed_everything"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def _user_cache() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def cache_root() -> str:
    """Where trained models and results are cached (``ROBGEN_CACHE``)."""
    return os.environ.get("ROBGEN_CACHE") or os.path.join(_user_cache(), "robgen", "artifacts")


def data_root() -> str:
    """Where downloadable datasets live (``ROBGEN_DATA``)."""
    return os.environ.get("ROBGEN_DATA") or os.path.join(_user_cache(), "robgen", "data")


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
