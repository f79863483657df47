"""Sample-quality scores computed offline with a classifier trained in the book.

These are *FID-style* and *IS-style* scores — the formulas of FID (Heusel et al. 2017)
and the Inception Score (Salimans et al. 2016) applied to the features and predictions
of the book's own classifier, not Inception-v3's.  Their values are not comparable with
published FID/IS numbers; they rank sets of samples of the same data.

* Fréchet distance between feature Gaussians:
  ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})
* IS-style score: exp( E_x KL( p(y|x) ‖ p(y) ) ), p(y) the mean prediction.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .data import batch_slices
from .models import eval_mode, model_device

__all__ = ["penultimate_features", "frechet_distance", "is_style_score"]


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the feature extractor needs a model whose last layer is nn.Linear")
    return linears[-1]


@torch.no_grad()
def penultimate_features(model: nn.Module, x: torch.Tensor, batch_size: int = 512):
    """(features entering the last linear layer, softmax probabilities) for ``x``, on the CPU."""
    head = _last_linear(model)
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


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors.

    tr((Σ_a Σ_b)^{1/2}) is computed as Σ √eig(Σ_a^{1/2} Σ_b Σ_a^{1/2}), which is stable for
    (nearly) singular covariances.
    """
    a = np.asarray(feats_a, dtype=np.float64)
    b = np.asarray(feats_b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0.0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def is_style_score(probs) -> float:
    """exp(E_x KL(p(y|x) ‖ p(y))) from predicted class probabilities (N, K)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    marginal = p.mean(0, keepdims=True)
    return float(np.exp((p * (np.log(p) - np.log(marginal))).sum(1).mean()))
