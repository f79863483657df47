"""Evaluations the chapters share: accuracy and energy along an attack, sweeps over ε,
histogram overlap, and the energy-detector study.  Results are plain dicts of tensors
and numbers so that they can be cached in the artifact store (``Chapter.result``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..core.attacks import (attack_path, boundary_attack, ce_loss, check_eot, dlr_loss, predict_logits,
                            robust_correct)
from ..core.data import Split
from ..core.energy import EnergyDetector, ce_decomposition, marginal_energy, roc_curve
from ..core.models import model_device
from ..core.parallel import sharded_map
from ..core.versions import versioned
from .generative import latent_descent_attack

__all__ = [
    "accuracy_of", "identity_gap", "clean_and_attacked", "energy_path", "eps_sweep", "histogram_overlap",
    "detector_study", "first_crossing", "paired_shift", "significantly_lower",
    "ks_statistic", "attack_energies", "robust_accuracy", "LOSSES", "decision_distances", "robust_at",
    "knn_labels", "pareto",
]


def accuracy_of(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


@versioned(1)
def clean_accuracy(model: nn.Module, split: Split, *, batch_size: int = 256) -> float:
    """Fraction of ``split`` the model classifies correctly."""
    return accuracy_of(predict_logits(model, split.x, batch_size), split.y)


@versioned(1)
def identity_gap(model: nn.Module, split: Split) -> dict:
    """max |CE - (E(x,y) - E(x))| over ``split`` and the three means."""
    logits = predict_logits(model, split.x)
    ce, exy, ex = ce_decomposition(logits.double(), split.y)
    return {"max_abs_gap": float((ce - (exy - ex)).abs().max()), "mean_ce": float(ce.mean()),
            "mean_joint": float(exy.mean()), "mean_marginal": float(ex.mean()), "n": len(split)}


@versioned(1)
def clean_and_attacked(model: nn.Module, split: Split, *, steps: int, eps: float, step_size: float,
                       norm: str = "linf", loss=ce_loss, seed: int = 0, eot: int = 1, batch_size: int = 512,
                       progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of ``split`` clean and after ``steps`` PGD steps (one run; ``eot`` gradient
    passes per step for a stochastic model), on the CPU."""
    clean = predict_logits(model, split.x)
    adv = attack_path(model, split.x, split.y, [steps], eps=eps, step_size=step_size, norm=norm, loss=loss,
                      seed=seed, batch_size=batch_size, progress=progress, eot=eot)[steps]
    return clean, adv


@versioned(1)
def energy_path(model: nn.Module, split: Split, record: Sequence[int], *, eps: float, step_size: float,
                norm: str = "linf", loss=ce_loss, seed: int = 0, batch_size: int = 512,
                progress: bool = True) -> dict:
    """Accuracy and marginal energy after each of ``record`` PGD steps (plus the clean data).

    Returns ``steps``, ``accuracy``, ``mean_energy`` (lists, clean first as step -1)
    and ``energy`` (a tensor of shape (len(record) + 1, N)).
    """
    clean = predict_logits(model, split.x)
    path = attack_path(model, split.x, split.y, record, eps=eps, step_size=step_size, norm=norm, loss=loss,
                       seed=seed, batch_size=batch_size, progress=progress)
    ks = sorted(path)
    logits = [clean] + [path[k] for k in ks]
    energies = torch.stack([marginal_energy(lg) for lg in logits])
    return {"steps": [-1] + ks, "accuracy": [accuracy_of(lg, split.y) for lg in logits],
            "mean_energy": energies.mean(1).tolist(), "energy": energies}


@versioned(1)
def eps_sweep(model: nn.Module, split: Split, eps_grid: Sequence[float], *, steps: int, step_ratio: float,
              heldout: Split | None = None, temperature: float = 1.0, norm: str = "linf", loss=ce_loss,
              seed: int = 0, batch_size: int = 512, progress: bool = True) -> dict:
    """Accuracy and energy after ``steps`` PGD steps of size ``step_ratio·ε``, for each ε of the grid.

    With ``heldout`` given, the energy detector (temperature ``temperature``) is also fitted
    on held-out clean vs attacked images at each ε and tested on ``split``: ``tpr``,
    ``fpr``, ``auroc`` per ε (NaN at ε = 0).  ``energy`` has one row per ε.
    """
    out = {"eps": [], "accuracy": [], "mean_energy": [], "tpr": [], "fpr": [], "auroc": []}
    energies = []
    for eps in eps_grid:
        if eps == 0:
            logits = predict_logits(model, split.x)
            tpr = fpr = auc = float("nan")
        elif heldout is None:
            logits = attack_path(model, split.x, split.y, [steps], eps=eps, step_size=step_ratio * eps, norm=norm,
                                 loss=loss, seed=seed + 1, batch_size=batch_size, progress=progress)[steps]
            tpr = fpr = auc = float("nan")
        else:
            st = detector_study(model, heldout, split, temperatures=[temperature], eps=eps, step_size=step_ratio * eps,
                                steps=steps, norm=norm, loss=loss, seed=seed, batch_size=batch_size,
                                progress=progress)
            logits, tpr, fpr, auc = st["test_adv_logits"], st["tpr"][0], st["fpr"][0], st["auroc"][0]
        e = marginal_energy(logits)
        for k, v in (("eps", float(eps)), ("accuracy", accuracy_of(logits, split.y)), ("mean_energy", float(e.mean())),
                     ("tpr", tpr), ("fpr", fpr), ("auroc", auc)):
            out[k].append(v)
        energies.append(e)
    return {**out, "energy": torch.stack(energies)}


def histogram_overlap(a, b, bins: int = 60) -> float:
    """Overlap coefficient of two samples' histograms on shared bins: Σ min(p_i, q_i) ∈ [0, 1].

    1 = identical distributions, 0 = disjoint supports.
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    if hi <= lo:
        return 1.0
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(a, edges)[0] / len(a)
    q = np.histogram(b, edges)[0] / len(b)
    return float(np.minimum(p, q).sum())


def ks_statistic(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs."""
    from scipy.stats import ks_2samp

    return float(ks_2samp(np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()).statistic)


@versioned(1)
def attack_energies(model: nn.Module, split: Split, *, steps: int, eps: float, step_size: float, loss=ce_loss,
                    seed: int = 0, eot: int = 1, batch_size: int = 512, progress: bool = True) -> dict:
    """Clean and attacked marginal energies and the attack's accuracy on ``split`` (one PGD
    run, ``eot`` gradient passes per step)."""
    clean, adv = clean_and_attacked(model, split, steps=steps, eps=eps, step_size=step_size, loss=loss, seed=seed,
                                    eot=eot, batch_size=batch_size, progress=progress)
    return {"clean_energy": marginal_energy(clean), "adv_energy": marginal_energy(adv),
            "accuracy": accuracy_of(adv, split.y), "clean_accuracy": accuracy_of(clean, split.y)}


def paired_shift(clean, attacked) -> tuple[float, float]:
    """Mean and standard error of the per-image change E(x') - E(x)."""
    d = np.asarray(attacked, dtype=np.float64).ravel() - np.asarray(clean, dtype=np.float64).ravel()
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def significantly_lower(clean, attacked, z: float = 2.0) -> bool:
    """True when attacked energies are lower than clean ones by more than ``z`` standard errors."""
    mean, se = paired_shift(clean, attacked)
    return mean + z * se < 0


def first_crossing(xs: Sequence[float], holds: Sequence[bool]) -> float | None:
    """The first x from which ``holds`` is true up to the end of the sweep (None if never)."""
    for i in range(len(xs)):
        if all(holds[i:]):
            return xs[i]
    return None


@versioned(1)
def detector_study(model: nn.Module, heldout: Split, test: Split, *, temperatures: Sequence[float], eps: float,
                   step_size: float, steps: int, norm: str = "linf", loss=ce_loss, seed: int = 0,
                   batch_size: int = 512, progress: bool = True) -> dict:
    """Fit the energy detector on held-out clean vs attacked images, test it on the test split.

    For each temperature T: the threshold (max TPR - FPR on held-out), test TPR, FPR and
    AUROC.  Also the test ROC curve at T = 1, the attack's test accuracy, and the attacked
    test logits.  Held-out images are attacked with ``seed``, test images with ``seed + 1``.
    """
    attack = dict(steps=steps, eps=eps, step_size=step_size, norm=norm, loss=loss, batch_size=batch_size,
                  progress=progress)
    h_clean, h_adv = clean_and_attacked(model, heldout, seed=seed, **attack)
    t_clean, t_adv = clean_and_attacked(model, test, seed=seed + 1, **attack)
    rows = {"temperature": [], "threshold": [], "tpr": [], "fpr": [], "auroc": []}
    for t in temperatures:
        det = EnergyDetector(t).fit(marginal_energy(h_clean, t), marginal_energy(h_adv, t))
        rep = det.evaluate(marginal_energy(t_clean, t), marginal_energy(t_adv, t))
        for k, v in (("temperature", t), ("threshold", rep.threshold), ("tpr", rep.tpr), ("fpr", rep.fpr),
                     ("auroc", rep.auroc)):
            rows[k].append(float(v))
    fpr, tpr, _ = roc_curve(-marginal_energy(t_clean).numpy(), -marginal_energy(t_adv).numpy())
    return {**rows, "roc_fpr": torch.tensor(fpr), "roc_tpr": torch.tensor(tpr),
            "attack_accuracy": accuracy_of(t_adv, test.y), "clean_accuracy": accuracy_of(t_clean, test.y),
            "test_clean_energy": marginal_energy(t_clean), "test_adv_energy": marginal_energy(t_adv),
            "test_adv_logits": t_adv}


#: Attack losses by name, so evaluations can be cached under plain-data keys.
LOSSES = {"ce": ce_loss, "dlr": dlr_loss}


@versioned(1)
def robust_accuracy(model: nn.Module, split: Split, *, norm: str, eps: float, steps: int, restarts: int = 1,
                    losses: Sequence[str] = ("ce", "dlr"), step_size: float | None = None, seed: int = 0,
                    best_iterate: bool = True, eot: int = 1, batch_size: int = 64, progress: bool = True) -> dict:
    """Per-image clean and robust correctness under the worst of PGD restarts × losses
    (:func:`~robgen_lib.core.attacks.robust_correct`).

    Step size defaults to 2.5·ε/steps. ``best_iterate``: each PGD run returns, per image,
    the first iterate it saw misclassified (else the one of highest loss) instead of the
    last; ``eot``: gradient passes averaged per step (for a stochastic model). Runs through
    :func:`~robgen_lib.core.parallel.sharded_map`: one process by default, a shard per
    process under torchrun, identical results.
    """

    unknown = [name for name in losses if name not in LOSSES]
    if unknown:
        raise ValueError(f"unknown attack loss(es) {unknown}; allowed: {sorted(LOSSES)}")
    check_eot(eot)
    alpha = 2.5 * eps / steps if step_size is None else step_size
    device = model_device(model)

    def fn(xb, yb, gen):
        xb, yb = xb.to(device), yb.to(device)
        clean = predict_logits(model, xb, len(xb)).argmax(1) == yb.cpu()
        robust = robust_correct(model, xb, yb, restarts=restarts, losses=[LOSSES[n] for n in losses],
                                generator=gen, best_iterate=best_iterate, eot=eot, norm=norm, eps=eps,
                                step_size=alpha, steps=steps)
        return {"clean": clean, "robust": robust}

    out = sharded_map(fn, split.x, split.y, batch_size=batch_size, seed=seed,
                      desc=f"robust accuracy ({norm}, ε={eps:.3g})", progress=progress)
    return {**out, "clean_accuracy": float(out["clean"].float().mean()),
            "robust_accuracy": float(out["robust"].float().mean())}


@versioned(1)
def latent_descent_robustness(model: nn.Module, split: Split, *, norm: str, eps: float, steps: int = 10,
                              step: float = 0.25, seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """Per image: ``clean`` correctness and ``robust`` (still correct after
    :func:`~robgen_lib.methods.generative.latent_descent_attack`), over ``split``, sharded."""
    device = model_device(model)

    def fn(xb, yb, gen):
        xb, yb = xb.to(device), yb.to(device)
        clean = predict_logits(model, xb, len(xb)).argmax(1) == yb.cpu()
        adv = latent_descent_attack(model, xb, yb, norm=norm, eps=eps, steps=steps, step=step)
        return {"clean": clean, "robust": clean & (predict_logits(model, adv, len(adv)).argmax(1) == yb.cpu())}

    return sharded_map(fn, split.x, split.y, batch_size=batch_size, seed=seed,
                       desc=f"latent descent ({norm}, ε={eps:.3g})", progress=progress)


@versioned(1)
def decision_distances(model: nn.Module, split: Split, pool: torch.Tensor, *, norm: str, candidates: int = 10,
                       iters: int = 100, seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """Per image: clean correctness and the ``norm`` distance of the closest adversarial the
    decision-based :func:`~robgen_lib.core.attacks.boundary_attack` finds (starting from ``pool``).

    An image is robust at ε under this attack iff it is classified correctly and its
    distance exceeds ε (:func:`robust_at`). Sharded like :func:`robust_accuracy`.
    """

    device = model_device(model)

    def fn(xb, yb, gen):
        xb, yb = xb.to(device), yb.to(device)
        clean = predict_logits(model, xb, len(xb)).argmax(1) == yb.cpu()
        adv, dist = boundary_attack(model, xb, yb, pool, norm=norm, candidates=candidates, iters=iters,
                                    generator=gen)
        return {"clean": clean, "dist": dist, "adv": adv}

    return sharded_map(fn, split.x, split.y, batch_size=batch_size, seed=seed,
                       desc=f"decision-based attack ({norm})", progress=progress)


def robust_at(result: dict, eps: float) -> torch.Tensor:
    """Per image: correct and no adversarial within ε, for a :func:`decision_distances` result."""
    return result["clean"] & (result["dist"] > eps)


def knn_labels(x: torch.Tensor, pool_x: torch.Tensor, pool_y: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The majority label of each image's ``k`` nearest pool images in pixel ℓ2 distance —
    a judge of what an image *looks like* that no classifier of the book can fool."""
    d = torch.cdist(x.flatten(1).float().cpu(), pool_x.flatten(1).float().cpu())
    near = pool_y.cpu()[d.topk(k, dim=1, largest=False).indices]
    return torch.mode(near, dim=1).values


def pareto(points: Mapping[str, tuple]) -> list[str]:
    """Labels on the frontier of ``points`` (label → (cost, robustness, ...)): no other point is
    at most as costly and strictly more robust, or strictly cheaper and at least as robust."""
    out = []
    for k, p in points.items():
        dominated = any((q[0] <= p[0] and q[1] > p[1]) or (q[0] < p[0] and q[1] >= p[1])
                        for j, q in points.items() if j != k)
        if not dominated:
            out.append(k)
    return out
