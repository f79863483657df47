"""Energies hidden in a classifier's logits, and the energy detector.

With logits f(x) ∈ R^K (Grathwohl et al. 2020):

* joint energy      E(x, y) = -f(x)[y]
* marginal energy   E(x)    = -logsumexp_k f(x)[k]         (p(x) ∝ exp(-E(x)))
* tempered          E_T(x)  = -T · logsumexp_k f(x)[k] / T
* cross-entropy     CE(x, y) = -log p(y|x) = E(x, y) - E(x)   (an exact identity)

The energy detector flags an input as adversarial when E_T(x) <= threshold; the
threshold maximises TPR - FPR (Youden's J) on a held-out set of clean and attacked
images, and is then applied unchanged to the test set.  The two-sided detector flags
|E_T(x) - median clean energy| >= threshold, so it also catches points pushed *up*.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics

__all__ = [
    "joint_energy", "marginal_energy", "ce_decomposition",
    "roc_curve", "auroc", "EnergyDetector", "TwoSidedEnergyDetector",
]


def joint_energy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """E(x, y) = -f(x)[y], per sample."""
    return -logits.gather(1, y.view(-1, 1)).squeeze(1)


def marginal_energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """E_T(x) = -T · logsumexp(f(x) / T), per sample (T = 1: the marginal energy E(x))."""
    return -temperature * torch.logsumexp(logits / temperature, dim=1)


def ce_decomposition(logits: torch.Tensor, y: torch.Tensor):
    """Per-sample (CE, E(x,y), E(x)); CE equals E(x,y) - E(x) up to rounding."""
    ce = F.cross_entropy(logits, y, reduction="none")
    return ce, joint_energy(logits, y), marginal_energy(logits)


# -------------------------------------------------------------------------- ROC


def _np(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64).ravel()


def _labelled(neg_scores, pos_scores) -> tuple[np.ndarray, np.ndarray]:
    neg, pos = _np(neg_scores), _np(pos_scores)
    if len(neg) == 0 or len(pos) == 0:
        raise ValueError("an ROC needs at least one negative and one positive score")
    return np.r_[np.zeros(len(neg)), np.ones(len(pos))], np.r_[neg, pos]


def roc_curve(neg_scores, pos_scores):
    """ROC of "score ≥ t ⇒ positive": (fpr, tpr, thresholds), thresholds descending, every
    distinct score one threshold (ties handled exactly), the first point (0, 0) at +inf —
    scikit-learn's :func:`sklearn.metrics.roc_curve` with no point dropped."""
    labels, scores = _labelled(neg_scores, pos_scores)
    fpr, tpr, thr = metrics.roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, thr


def auroc(neg_scores, pos_scores) -> float:
    """Area under the ROC curve, P(pos score > neg score) + ½ P(equal):
    :func:`sklearn.metrics.roc_auc_score`."""
    labels, scores = _labelled(neg_scores, pos_scores)
    return float(metrics.roc_auc_score(labels, scores))


# --------------------------------------------------------------------- detector


@dataclass
class DetectorReport:
    threshold: float
    tpr: float
    fpr: float
    auroc: float


class _ScoreDetector:
    """Flag an input when its score reaches a threshold that maximises TPR - FPR on held-out data."""

    def __init__(self, temperature: float = 1.0):
        self.temperature = float(temperature)
        self.score_threshold: float | None = None

    def energy(self, logits: torch.Tensor) -> torch.Tensor:
        return marginal_energy(logits, self.temperature)

    def _prepare(self, clean_energy: np.ndarray) -> None:
        """Set any statistics of the clean data the score needs."""

    def score(self, energy) -> np.ndarray:
        raise NotImplementedError

    def fit(self, clean_energy, adv_energy):
        self._prepare(_np(clean_energy))
        fpr, tpr, thr = roc_curve(self.score(clean_energy), self.score(adv_energy))
        best = int(np.argmax(tpr - fpr))  # the first (= strictest) threshold reaching the maximum
        self.score_threshold = float(thr[best])
        return self

    def flags(self, energy) -> np.ndarray:
        if self.score_threshold is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called before flags/evaluate")
        return self.score(energy) >= self.score_threshold

    def evaluate(self, clean_energy, adv_energy) -> DetectorReport:
        return DetectorReport(
            threshold=float(self.threshold),
            tpr=float(self.flags(adv_energy).mean()),
            fpr=float(self.flags(clean_energy).mean()),
            auroc=auroc(self.score(clean_energy), self.score(adv_energy)),
        )


class EnergyDetector(_ScoreDetector):
    """Flag x as adversarial when E_T(x) <= threshold (adversarial points sit low).

    ``fit`` picks the threshold maximising TPR - FPR on held-out energies;
    ``evaluate`` reports TPR, FPR at that threshold and the threshold-free AUROC.
    Energies are given, not logits, so the detector works with any model.
    """

    def score(self, energy) -> np.ndarray:
        return -_np(energy)

    @property
    def threshold(self) -> float:
        """Energies at or below this are flagged."""
        if self.score_threshold is None:
            return float("nan")
        return -self.score_threshold


class TwoSidedEnergyDetector(_ScoreDetector):
    """Flag x when E_T(x) is unusually low *or* unusually high: |E_T(x) - m| >= threshold,
    m the median clean held-out energy (this book's adaptive detector, beyond the paper)."""

    center: float = float("nan")

    def _prepare(self, clean_energy: np.ndarray) -> None:
        self.center = float(np.median(clean_energy))

    def score(self, energy) -> np.ndarray:
        return np.abs(_np(energy) - self.center)

    @property
    def threshold(self) -> float:
        """Distance from the clean median at or beyond which inputs are flagged."""
        return float("nan") if self.score_threshold is None else self.score_threshold
