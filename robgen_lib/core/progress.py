"""Progress bars for long loops: tqdm, quiet under ``TQDM_DISABLE=1`` or ``enabled=False``."""
from __future__ import annotations

import os
import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def quiet() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() in {"1", "true", "yes"}


def progress_bar(iterable: Iterable[T] | None, *, desc: str = "", total: int | None = None,
                 enabled: bool = True, leave: bool = False) -> Iterable[T]:
    """A tqdm bar on stderr (plain text, so it reads the same in a terminal and a notebook).

    With ``iterable=None`` it is a manual bar: call ``.update(n)`` and ``.close()``.
    """
    return tqdm(iterable, desc=desc, total=total, disable=(not enabled) or quiet(), leave=leave,
                file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
