"""What several chapters' analyses share: the paired gap between two models' robust
accuracies, and a model's worst case over every attack run on it."""
from __future__ import annotations

from typing import Mapping

from ...core.stats import paired, proportion

__all__ = ["robust_gap", "worst_case"]


def robust_gap(results: Mapping[tuple, dict], a, b, threat, *, key: str = "robust") -> dict:
    """How much more robust ``a`` is than ``b`` under ``threat``. ``results`` maps (model,
    threat) to a dict holding per-image robust flags under ``key``. The paired difference
    a − b on the images both were attacked on (the first ones: a model attacked on more
    images is compared on the first images the other saw), with Newcombe's interval and
    McNemar's p (``gap``), and each model's own rate over all its images (``a``, ``b``)."""
    ra, rb = results[(a, threat)][key], results[(b, threat)][key]
    n = min(len(ra), len(rb))
    return {"a": proportion(ra), "b": proportion(rb), "gap": paired(ra[:n], rb[:n])}


def worst_case(own: Mapping[tuple, dict], *others: Mapping[tuple, dict], key: str = "robust",
               other_key: str = "robust") -> dict[tuple, dict]:
    """Per (model, threat) of ``own`` that every one of ``others`` also attacked: an image is
    robust only if it survives the book's attack (``own[...][key]``) *and* every other attack
    (``other[...][other_key]``), on the images all of them ran on (the first ones). Returns
    ``robust`` (the per-image worst-case flags), ``own_robust`` (the book's attack alone, on
    the same images), ``clean`` (per-image clean correctness where ``own`` has it) and ``n``."""
    out = {}
    for k, o in own.items():
        if not all(k in other for other in others):
            continue
        flags = [o[key]] + [other[k][other_key] for other in others]
        n = min(len(f) for f in flags)
        worst = flags[0][:n].clone()
        for f in flags[1:]:
            worst &= f[:n]
        out[k] = {"robust": worst, "own_robust": o[key][:n], "n": n,
                  **({"clean": o["clean"][:n]} if "clean" in o else {})}
    return out
