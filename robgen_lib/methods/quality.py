"""Sample-quality scores computed offline with a classifier trained in the book.

These are *FID-style* and *IS-style* scores — the formulas of FID (Heusel et al. 2017)
and the Inception Score (Salimans et al. 2016) applied to the features and predictions
of the book's own classifier, not Inception-v3's.  Their values are not comparable with
published FID/IS numbers; they rank sets of samples of the same data.

* Fréchet distance between feature Gaussians:
  ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})
* IS-style score: exp( E_x KL( p(y|x) ‖ p(y) ) ), p(y) the mean prediction.

A *pixel scorer* (:class:`PixelScorer`) rates samples without any trained network: the
Fréchet distance on raw pixels and the IS-style score of a k-nearest-neighbour classifier's
class frequencies over the training images — an objective no generator optimised.

Two sample sets drawn from the **same seeds** are compared with a paired bootstrap
(:func:`score_difference`): the seeds are resampled, both sets' score is recomputed on the
same resample, and the percentile interval of the difference decides which set is better
(``scipy.stats.bootstrap`` on the seed indices: FID is not a mean of per-sample values, so
the statistic is recomputed per resample).

The real Inception Score and FID (Inception-v3 features) come from torch-fidelity
(:func:`fidelity_scores`), an optional install (``pip install -e ".[paper]"``) whose
Inception weights download at first use — a user's machine, not an offline one.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..core.data import Split, batch_slices
from ..core.models import eval_mode, last_linear, model_device
from ..core.stats import bootstrap
from ..core.versions import versioned

__all__ = ["penultimate_features", "PixelScorer", "scorer_view", "gaussian_fit", "frechet_distance", "is_style_score",
           "sample_quality", "rate", "score_difference", "quality_differences", "saturated",
           "fidelity_scores", "FidelityUnavailable"]


class FidelityUnavailable(RuntimeError):
    """torch-fidelity is not installed, or its Inception weights cannot be downloaded."""


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512):
    """(features entering the last linear layer, softmax probabilities) for ``x``, on the CPU."""
    head = last_linear(model)
    feats: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].flatten(1).float().cpu()))
    device = model_device(model)
    probs = []
    try:
        with eval_mode(model):
            for s in batch_slices(len(x), batch_size):
                probs.append(torch.softmax(model(x[s].to(device)).float(), 1).cpu())
    finally:
        hook.remove()
    return torch.cat(feats), torch.cat(probs)


@versioned(1)
class PixelScorer:
    """A network-free scorer: features are the pixels, average-pooled to at most
    ``feature_side`` × ``feature_side`` per channel (8×8 digits: the raw pixels; a 28×28
    image: 64 values, so that the Fréchet distance's covariances stay small), predictions
    the class frequencies among the ``k`` nearest training images in ℓ2 over the full
    pixels (``train_x``, ``train_y``, ``num_classes``)."""

    feature_side = 8

    def __init__(self, train_x: torch.Tensor, train_y: torch.Tensor, num_classes: int, k: int = 10):
        if k < 1 or k > len(train_x):
            raise ValueError(f"the pixel scorer needs 1 <= k <= {len(train_x)} training images, got k = {k}")
        self.train_x, self.train_y = train_x.flatten(1).float().cpu(), train_y.cpu()
        self.num_classes, self.k = num_classes, k
        self._train = Split(self.train_x, self.train_y)   # digests its bytes once, for spec()

    def spec(self) -> dict:
        """What the scorer is, for a cache key: its training images (their split's digest), k and pooling."""
        return {"scorer": "pixels", "train": self._train.fingerprint()["sha256"], "k": self.k,
                "num_classes": self.num_classes, "feature_side": self.feature_side}

    @torch.no_grad()
    def features_and_probs(self, x: torch.Tensor, batch_size: int = 512):
        pixels = x.detach().float().cpu()
        side = (min(pixels.shape[-2], self.feature_side), min(pixels.shape[-1], self.feature_side))
        feats = torch.nn.functional.adaptive_avg_pool2d(pixels, side).flatten(1)
        pixels = pixels.flatten(1)
        probs = []
        for s in batch_slices(len(pixels), batch_size):
            idx = torch.cdist(pixels[s], self.train_x).topk(self.k, largest=False).indices
            votes = torch.nn.functional.one_hot(self.train_y[idx], self.num_classes).float().mean(1)
            probs.append(votes)
        return feats, torch.cat(probs)


def scorer_view(scorer, x: torch.Tensor):
    """(features, class probabilities) of ``x`` as ``scorer`` sees them: a network's
    penultimate features and softmax, or a :class:`PixelScorer`'s pixels and votes."""
    if hasattr(scorer, "features_and_probs"):
        return scorer.features_and_probs(x)
    return penultimate_features(scorer, x)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def gaussian_fit(feats, *, root: bool = False) -> dict:
    """Mean, covariance and its trace of feature vectors (N, D); with ``root``, also the
    covariance's PSD square root — what :func:`frechet_distance` needs of the set it compares
    many others to, computed once."""
    f = np.asarray(feats, dtype=np.float64)
    cov = np.cov(f, rowvar=False)
    fit = {"mean": f.mean(0), "cov": cov, "trace": float(np.trace(cov))}
    if root:
        fit["root"] = _psd_sqrt(cov)
    return fit


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (either may be
    a :func:`gaussian_fit` already, ``feats_b`` with its root):

        ‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr((Σ_a Σ_b)^{1/2}),

    with tr((Σ_a Σ_b)^{1/2}) = Σ √eig(Σ_b^{1/2} Σ_a Σ_b^{1/2}) (the same eigenvalues as
    Σ_a Σ_b; a symmetric eigenproblem, stable for nearly singular covariances). A bootstrap
    that compares many resamples to one reference fits the reference once.

    When ``feats_a`` are raw features, n vectors of dimension D with n ≤ D, Σ_a = AᵀA with A
    the centred features over √(n − 1), and Σ_b^{1/2} Σ_a Σ_b^{1/2} = MᵀM with M = A Σ_b^{1/2}
    (n × D) has the non-zero eigenvalues of the n × n matrix MMᵀ: O(nD²) instead of O(D³),
    the same number (a Fréchet distance of 50 samples in 512 features costs a twentieth)."""
    b = feats_b if isinstance(feats_b, dict) else gaussian_fit(feats_b, root=True)
    if "root" not in b:
        b = {**b, "root": _psd_sqrt(b["cov"])}
    if not isinstance(feats_a, dict) and 1 < len(feats_a) <= np.shape(feats_a)[1]:
        f = np.asarray(feats_a, dtype=np.float64)
        mean = f.mean(0)
        centred = (f - mean) / np.sqrt(len(f) - 1)
        m = centred @ b["root"]
        trace, product = (centred ** 2).sum(), m @ m.T
    else:
        a = feats_a if isinstance(feats_a, dict) else gaussian_fit(feats_a)
        mean, trace, product = a["mean"], a["trace"], b["root"] @ a["cov"] @ b["root"]
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(product), 0.0, None)).sum()
    return float(((mean - b["mean"]) ** 2).sum() + trace + b["trace"] - 2 * cross)


def is_style_score(probs) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) from predicted class probabilities (N, K)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))


@versioned(1)
def sample_quality(scorer: nn.Module, samples: torch.Tensor, reference: torch.Tensor,
                   targets: torch.Tensor | None = None) -> dict:
    """The scorer's view of a set of samples.

    ``is_style``: IS-style score of the samples; ``fid_style``: Fréchet distance between
    the scorer's penultimate features of samples and ``reference`` (real images);
    ``agreement``: fraction of samples the scorer assigns to their target class (when
    ``targets`` are given).
    """
    f_s, p_s = scorer_view(scorer, samples)
    f_r, _ = scorer_view(scorer, reference)
    out = {"is_style": is_style_score(p_s.numpy()), "fid_style": frechet_distance(f_s.numpy(), f_r.numpy())}
    if targets is not None:
        out["agreement"] = float((p_s.argmax(1) == targets.cpu()).float().mean())
    return out


#: Score → True when higher is better.
HIGHER_IS_BETTER = {"is_style": True, "fid_style": False, "agreement": True, "IS": True, "FID": False}


def rate(scorers: dict, samples: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
    """:func:`sample_quality` under each scorer: scorer name → scores."""
    return {name: sample_quality(m, samples, reference, targets) for name, m in scorers.items()}


def score_difference(scorer, a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor, metric: str, *,
                     n_resamples: int = 400, seed: int = 0):
    """``metric`` (``"is_style"`` or ``"fid_style"``) of sample set ``a`` minus that of ``b``,
    where ``a[i]`` and ``b[i]`` grew from the same seed, with a paired percentile bootstrap
    interval over the seeds (a :class:`~robgen_lib.core.stats.Estimate`; the reference set is
    held fixed). Positive means ``a`` scores higher, whatever the metric's direction."""
    if len(a) != len(b):
        raise ValueError(f"a paired score difference needs sets grown from the same seeds, got {len(a)} and {len(b)}")
    (fa, pa), (fb, pb) = scorer_view(scorer, a), scorer_view(scorer, b)
    fa, pa, fb, pb = (t.numpy().astype(np.float64) for t in (fa, pa, fb, pb))
    if metric == "fid_style":
        fr = gaussian_fit(scorer_view(scorer, reference)[0].numpy(), root=True)   # fixed: fitted once

        def score(f, p, i):
            return frechet_distance(f[i], fr)
    elif metric == "is_style":
        def score(f, p, i):
            return is_style_score(p[i])
    else:
        raise ValueError(f"unknown metric {metric!r}; allowed: 'is_style', 'fid_style'")

    def statistic(idx):
        i = np.asarray(idx, dtype=int)
        return score(fa, pa, i) - score(fb, pb, i)

    return bootstrap(np.arange(len(a)), statistic, n_resamples=n_resamples, seed=seed, vectorized=False)


@versioned(1)
def quality_differences(scorers, a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor, *,
                        metrics: Sequence[str] = ("is_style", "fid_style"), seed: int = 0) -> dict:
    """The measurements a comparison of sample sets ``a`` and ``b`` (grown from the same seeds)
    rests on, per scorer (a mapping name → network or :class:`PixelScorer`) and metric: each
    set's score and :func:`score_difference` of ``a`` minus ``b`` (value, interval, n). Nothing
    is decided here; the book decides from these numbers each time it runs."""
    out = {}
    for sname, scorer in scorers.items():
        for metric in metrics:
            scores = [float(is_style_score(scorer_view(scorer, x)[1].numpy())) if metric == "is_style"
                      else float("nan") for x in (a, b)]
            d = score_difference(scorer, a, b, reference, metric, seed=seed)
            out[f"{sname}/{metric}"] = {"scorer": sname, "metric": metric, "a": scores[0], "b": scores[1],
                                        "value": float(d.value), "low": float(d.low), "high": float(d.high),
                                        "n": int(d.n)}
    return out


def saturated(values, num_classes: int, tolerance: float = 0.01) -> bool:
    """Whether IS-style scores sit at their ceiling K (every one within ``tolerance``·K of it):
    such a score cannot rank the sets it rates."""
    return all(v >= (1 - tolerance) * num_classes for v in values)


class _Uint8RGB(torch.utils.data.Dataset):
    """Images in [0, 1], (N, C, H, W), as torch-fidelity wants them: uint8 RGB tensors."""

    def __init__(self, x: torch.Tensor):
        x = x.detach().float().cpu().clamp(0.0, 1.0)
        self.x = (x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).mul(255).round().to(torch.uint8)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


def fidelity_scores(samples: torch.Tensor, reference: torch.Tensor, *, cuda: bool | None = None) -> dict:
    """Inception Score of ``samples`` and FID between ``samples`` and ``reference`` (torch-fidelity).

    Raises :class:`FidelityUnavailable` with the fix when torch-fidelity is missing or its
    Inception weights cannot be fetched (no network and no copy in the torch hub cache).
    """
    try:
        import torch_fidelity
    except ImportError as exc:
        raise FidelityUnavailable('real IS/FID need torch-fidelity: pip install -e ".[paper]" '
                                  "(it keeps the pinned torch)") from exc
    if len(samples) < 2 or len(reference) < 2:
        raise ValueError("IS/FID need at least 2 samples and 2 reference images")
    cuda = torch.cuda.is_available() if cuda is None else cuda
    try:
        out = torch_fidelity.calculate_metrics(input1=_Uint8RGB(samples), input2=_Uint8RGB(reference), isc=True,
                                               fid=True, cuda=cuda, verbose=False,
                                               isc_splits=min(10, len(samples)))
    except OSError as exc:  # urllib's URLError and friends: the weights could not be downloaded
        raise FidelityUnavailable(f"torch-fidelity could not fetch its Inception-v3 weights ({exc}); run once with "
                                  f"network access, or place them in the torch hub cache") from exc
    return {"IS": float(out["inception_score_mean"]), "IS_std": float(out["inception_score_std"]),
            "FID": float(out["frechet_inception_distance"])}
