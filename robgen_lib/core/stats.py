"""How sure a measured number is, and whether it decides a claim.

* :func:`proportion` — a rate k/n (accuracy, robust accuracy, TPR, FPR, agreement) with
  its 95 % Wilson score interval, from ``scipy.stats.binomtest(k, n).proportion_ci``:

      p̂ ± …  =  (p̂ + z²/2n ± z·sqrt(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)

* :func:`bootstrap` — any score of one sample (a mean energy, an AUROC, an overlap) with a
  percentile bootstrap interval from ``scipy.stats.bootstrap`` (resampling the images).
* :func:`paired` — two models on the *same* images: the difference of their accuracies
  p_A − p_B with Newcombe's interval for paired proportions (his method 10, 1998), built
  from the two Wilson intervals and the correlation φ of the 2×2 table (a: both right,
  b: only A, c: only B, d: neither):
  [D − sqrt(ℓ_A² − 2φ ℓ_A u_B + u_B²), D + sqrt(u_A² − 2φ u_A ℓ_B + ℓ_B²)], with ℓ, u the
  distances from each rate to its Wilson bounds and φ = (ad − bc) / sqrt((a+b)(c+d)(a+c)(b+d));
  and McNemar's exact test, a two-sided binomial test of b against c (``scipy.stats.binomtest``).
  scipy.stats offers neither interval; a bootstrap of the few discordant images is too
  narrow (one image that differs gave [−9.4, 0] points on 32 images).
* :func:`difference` — two rates measured on *different* images (e.g. the fraction of each
  model's own adversarials a judge accepts): p₁ − p₂ with Newcombe's hybrid score interval,
  built from the two Wilson intervals [l₁, u₁], [l₂, u₂]:
  [d − sqrt((p₁−l₁)² + (u₂−p₂)²), d + sqrt((u₁−p₁)² + (p₂−l₂)²)]. scipy.stats has no
  two-sample interval for a difference of proportions, hence these lines.

How an estimate decides a claim is not this module's business: the book's one rule is
:mod:`robgen_lib.book.judge`.

Every result is an :class:`Estimate`, which prints as ``45.3 % [40.1, 50.6], n = 359`` (a
paired difference as ``+12.5 points [+3.1, +21.9], n = 64, McNemar p = 0.012``).
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

__all__ = ["Estimate", "proportion", "bootstrap", "paired", "difference", "LEVEL"]

#: Confidence level of every interval in the book.
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A measured value with its interval [low, high] at :data:`LEVEL` and its sample size."""

    value: float
    low: float
    high: float
    n: int
    percent: bool = True   # printed as a percentage (rates) or as a plain number (scores)
    p_value: float | None = None   # of a paired test, where one was made
    points: bool = False   # a difference of two rates, printed in signed points

    def __str__(self) -> str:
        if self.points or self.p_value is not None:
            test = "" if self.p_value is None else f", McNemar p = {self.p_value:.2g}"
            return f"{100 * self.value:+.1f} points [{100 * self.low:+.1f}, {100 * self.high:+.1f}], n = {self.n}{test}"
        if self.percent:
            text = f"{100 * self.value:.1f} % [{100 * self.low:.1f}, {100 * self.high:.1f}]"
        else:
            text = f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"
        return text + f", n = {self.n}"

    @property
    def width(self) -> float:
        return self.high - self.low


def proportion(k: int | Sequence[bool] | np.ndarray, n: int | None = None) -> Estimate:
    """A rate with its Wilson interval: ``proportion(13, 32)``, or ``proportion(correct)``
    for a boolean vector (one entry per image)."""
    if n is None:
        flags = np.asarray(k, dtype=bool).ravel()
        k, n = int(flags.sum()), int(flags.size)
    k, n = int(k), int(n)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"a proportion needs 0 <= k <= n and n > 0, got k = {k}, n = {n}")
    ci = stats.binomtest(k, n).proportion_ci(LEVEL, method="wilson")
    return Estimate(k / n, float(ci.low), float(ci.high), n)


def bootstrap(values, statistic: Callable = np.mean, *, n_resamples: int = 2000, seed: int = 0,
              percent: bool = False, vectorized: bool = True) -> Estimate:
    """``statistic`` of one sample (or of a tuple of paired samples, resampled together)
    with a percentile bootstrap interval; ``statistic`` takes the sample(s) and ``axis``
    (``vectorized=False``: the sample(s) only, called once per resample).

    The interval is widened, where needed, to contain the measured value: a statistic that
    resampling biases (a histogram overlap shrinks when images repeat) can have a percentile
    interval beside its own value, and a decision must not lean on that bias. (BCa, which
    corrects bias in principle, collapsed to a point beside the value on such overlaps.)
    """
    data = tuple(np.asarray(v, dtype=float) for v in values) if isinstance(values, tuple) \
        else (np.asarray(values, dtype=float),)
    n = len(data[0])
    point = float(statistic(*data, axis=-1) if vectorized else statistic(*data))
    if n < 2:
        return Estimate(point, point, point, n, percent)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")   # scipy warns of a degenerate sample; handled below
        res = stats.bootstrap(data, statistic, paired=len(data) > 1, vectorized=vectorized, n_resamples=n_resamples,
                              confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):   # every resample equal: a point
        low = high = point
    return Estimate(point, min(low, point), max(high, point), n, percent)


def paired(correct_a, correct_b) -> Estimate:
    """Accuracy of A minus accuracy of B on the same images, with Newcombe's interval for
    paired proportions (module docstring) and McNemar's exact p-value (``p_value``)."""
    a = np.asarray(correct_a, dtype=bool).ravel()
    b = np.asarray(correct_b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a paired comparison needs the same images, got {a.size} and {b.size}")
    n = a.size
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p = 1.0 if only_a + only_b == 0 else float(stats.binomtest(only_a, only_a + only_b, 0.5).pvalue)
    ea, eb = proportion(both + only_a, n), proportion(both + only_b, n)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    d = ea.value - eb.value
    below = math.sqrt(max(0.0, (ea.value - ea.low) ** 2 - 2 * phi * (ea.value - ea.low) * (eb.high - eb.value)
                          + (eb.high - eb.value) ** 2))
    above = math.sqrt(max(0.0, (ea.high - ea.value) ** 2 - 2 * phi * (ea.high - ea.value) * (eb.value - eb.low)
                          + (eb.value - eb.low) ** 2))
    return Estimate(d, d - below, d + above, n, True, p, points=True)


def difference(a: Estimate, b: Estimate) -> Estimate:
    """a − b for two rates on different images, with Newcombe's interval (module docstring)."""
    d = a.value - b.value
    low = d - math.sqrt((a.value - a.low) ** 2 + (b.high - b.value) ** 2)
    high = d + math.sqrt((a.high - a.value) ** 2 + (b.value - b.low) ** 2)
    return Estimate(d, low, high, min(a.n, b.n), points=True)
