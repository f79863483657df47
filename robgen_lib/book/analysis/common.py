"""What several chapters' analyses share: the paired gap between two models' robust accuracies."""
from __future__ import annotations

from typing import Mapping

from ...core.stats import decide, paired, proportion

__all__ = ["robust_gap"]


def robust_gap(results: Mapping[tuple, dict], a, b, threat, bar: float = 0.0, *, key: str = "robust") -> dict:
    """Is ``a`` more robust than ``b`` by more than ``bar`` under ``threat``? ``results`` maps
    (model, threat) to a dict holding per-image robust flags under ``key``. The paired
    difference a − b on the images both were attacked on (the first ones: a model attacked on
    more images is compared on the first images the other saw), with Newcombe's interval and
    McNemar's p (``gap``); each model's own rate over all its images (``a``, ``b``); and
    ``holds`` (:func:`~robgen_lib.core.stats.decide`: None when the gap's interval straddles ``bar``)."""
    ra, rb = results[(a, threat)][key], results[(b, threat)][key]
    n = min(len(ra), len(rb))
    gap = paired(ra[:n], rb[:n])
    return {"a": proportion(ra), "b": proportion(rb), "gap": gap, "holds": decide(gap, bar)}
