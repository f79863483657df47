"""Sample-quality scores computed offline with a classifier trained in the book.

These are *FID-style* and *IS-style* scores — the formulas of FID (Heusel et al. 2017)
and the Inception Score (Salimans et al. 2016) applied to the features and predictions
of the book's own classifier, not Inception-v3's.  Their values are not comparable with
published FID/IS numbers; they rank sets of samples of the same data.

* Fréchet distance between feature Gaussians:
  ‖μ_a − μ_b‖² + tr(Σ_a + Σ_b − 2 (Σ_a Σ_b)^{1/2})
* IS-style score: exp( E_x KL( p(y|x) ‖ p(y) ) ), p(y) the mean prediction.

The real Inception Score and FID (Inception-v3 features) come from torch-fidelity
(:func:`fidelity_scores`), an optional install (``pip install -e ".[paper]"``) whose
Inception weights download at first use — a user's machine, not an offline one.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.data import batch_slices
from ..core.models import eval_mode, last_linear, model_device

__all__ = ["penultimate_features", "frechet_distance", "is_style_score", "sample_quality", "rate", "better_on",
           "compare", "first_as_good", "fidelity_scores", "FidelityUnavailable"]


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


def sample_quality(scorer: nn.Module, samples: torch.Tensor, reference: torch.Tensor,
                   targets: torch.Tensor | None = None) -> dict:
    """The scorer's view of a set of samples.

    ``is_style``: IS-style score of the samples; ``fid_style``: Fréchet distance between
    the scorer's penultimate features of samples and ``reference`` (real images);
    ``agreement``: fraction of samples the scorer assigns to their target class (when
    ``targets`` are given).
    """
    f_s, p_s = penultimate_features(scorer, samples)
    f_r, _ = penultimate_features(scorer, reference)
    out = {"is_style": is_style_score(p_s.numpy()), "fid_style": frechet_distance(f_s.numpy(), f_r.numpy())}
    if targets is not None:
        out["agreement"] = float((p_s.argmax(1) == targets.cpu()).float().mean())
    return out


#: Score → True when higher is better.
HIGHER_IS_BETTER = {"is_style": True, "fid_style": False, "agreement": True, "IS": True, "FID": False}


def better_on(a: dict, b: dict, metrics=("is_style", "fid_style")) -> list[tuple[str, str]]:
    """The (scorer, metric) pairs on which sample set ``a`` scores strictly better than ``b``.

    ``a`` and ``b`` map scorer name → :func:`sample_quality` result.
    """
    out = []
    for scorer in a:
        for m in metrics:
            va, vb = a[scorer][m], b[scorer][m]
            if (va > vb) if HIGHER_IS_BETTER[m] else (va < vb):
                out.append((scorer, m))
    return out


def rate(scorers: dict, samples: torch.Tensor, reference: torch.Tensor, targets: torch.Tensor | None = None) -> dict:
    """:func:`sample_quality` under each scorer: scorer name → scores."""
    return {name: sample_quality(m, samples, reference, targets) for name, m in scorers.items()}


def _names(pairs) -> str:
    return ", ".join(f"{m.replace('_', '-')} ({s})" for s, m in pairs)


def compare(a: dict, b: dict, a_name: str, metrics=("is_style", "fid_style")) -> dict:
    """How sample set ``a`` fares against ``b`` on every (scorer, metric) pair.

    Returns ``wins`` / ``losses`` (pairs), ``all`` (``a`` better on every pair), a sentence
    ``text`` for a verdict, and ``only_when`` ("judged by …" the winning pairs, or None).
    """
    wins, losses = better_on(a, b, metrics), better_on(b, a, metrics)
    total = len(a) * len(metrics)
    text = f"{a_name} better on {len(wins)} of {total} scores" + (f": {_names(wins)}" if wins else "")
    text += f"; worse on {_names(losses)}" if losses else ""
    return {"wins": wins, "losses": losses, "all": len(wins) == total, "text": text,
            "only_when": f"judged by {_names(wins)}" if wins else None}


def first_as_good(xs, scores, reference: float, metric: str):
    """The smallest x whose score is at least as good as ``reference`` (direction by ``metric``), or None."""
    ok = [x for x, v in zip(xs, scores) if ((v >= reference) if HIGHER_IS_BETTER[metric] else (v <= reference))]
    return min(ok) if ok else None


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
