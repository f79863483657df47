"""The claims of every chapter, each declared once: one table per chapter (a module of this
package named after the chapter, holding ``CLAIMS``, a tuple of
:class:`~robgen_lib.book.judge.Claim`).

A notebook cell measures the evidence and calls ``ch.judge(id, evidence, measured)``; the
rule of :mod:`robgen_lib.book.judge` decides. ``tests/test_claims.py`` checks that every
declared id is judged exactly once by its executed chapter and that every judged id is
declared.
"""
from __future__ import annotations

import importlib

from ..judge import Claim

__all__ = ["claims_of", "optional_of"]


def claims_of(chapter: str) -> dict[str, Claim]:
    """The claims table of ``chapter`` (e.g. ``"rdc"``), by id, in the order declared."""
    module = importlib.import_module(f"{__name__}.{chapter}")
    table = {c.id: c for c in module.CLAIMS}
    if len(table) != len(module.CLAIMS):
        raise ValueError(f"chapter {chapter}: a claim id is declared twice")
    for c in table.values():
        unknown = [n for n in c.needs if n not in table]
        if unknown:
            raise ValueError(f"claim {c.id} needs {unknown}, which chapter {chapter} does not declare")
    return table


def optional_of(chapter: str) -> tuple[str, ...]:
    """The ids of ``chapter``'s claims a run may leave unjudged: those that need what a
    profile may not have (a dataset, a package); the chapter module lists them in ``OPTIONAL``."""
    module = importlib.import_module(f"{__name__}.{chapter}")
    return tuple(getattr(module, "OPTIONAL", ()))
