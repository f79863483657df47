"""Chapter 1 (the energy inside a classifier): how PGD moves the marginal energy
E(x) = −log Σ_k exp f(x)[k], and how well a threshold on it detects attacked points."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import stats

from ...core.stats import Estimate, bootstrap, difference, proportion
from ...methods.evaluate import first_crossing, histogram_overlap
from ..report import fmt_budget, table

__all__ = ["path_table", "shift_estimate", "largest", "smallest", "energy_shift", "detector_table", "by_budget",
           "heldout_aurocs", "working_budget", "operating_points", "conditions", "auroc_of", "auroc_estimate",
           "overlap_estimate", "seed_table", "seed_spread"]


def path_table(paths: Mapping[str, dict]):
    """Accuracy and mean E(x) after each recorded PGD step count, one column per model."""
    steps = next(iter(paths.values()))["steps"]
    return table({"clean" if k < 0 else k: {f"{n}: accuracy / mean E(x)": f"{100 * p['accuracy'][i]:.1f} % / "
                                                                            f"{p['mean_energy'][i]:.2f}"
                                            for n, p in paths.items()}
                  for i, k in enumerate(steps)}, "PGD steps")


def shift_estimate(clean, attacked, *, seed: int = 0) -> Estimate:
    """The mean per-image change of the energy, mean(E(x′) − E(x)) over the same images, with
    a percentile bootstrap interval (the images resampled)."""
    d = np.asarray(attacked, dtype=np.float64).ravel() - np.asarray(clean, dtype=np.float64).ravel()
    return bootstrap(d, seed=seed)


def largest(estimates: Sequence[Estimate]) -> Estimate:
    """The largest of several quantities: max value, with [max of the lows, max of the highs]
    — where each interval holds its quantity, the largest quantity lies in this one."""
    return Estimate(max(e.value for e in estimates), max(e.low for e in estimates),
                    max(e.high for e in estimates), min(e.n for e in estimates), estimates[0].percent)


def smallest(estimates: Sequence[Estimate]) -> Estimate:
    """The smallest of several quantities: min value, with [min of the lows, min of the highs]."""
    return Estimate(min(e.value for e in estimates), min(e.low for e in estimates),
                    min(e.high for e in estimates), min(e.n for e in estimates), estimates[0].percent)


def energy_shift(path: dict, sweep: dict, *, steps: int, hist_steps: int, eps: float) -> dict:
    """Where PGD leaves the energy, over every attack setting of one model: each gradient-step
    count of ``path`` (at ε = ``eps``) and each ε > 0 of ``sweep`` (at ``steps`` steps).

    Each setting's mean per-image change E(x′) − E(x) with its bootstrap interval
    (:func:`shift_estimate`): ``by_step`` and ``by_eps``; ``largest`` of them all
    (:func:`largest`: every setting lowers the energy exactly when it lies below 0) and the
    setting of the largest value, ``largest_at`` ("5 steps", "ε = 0.1"). A setting
    is counted *lower* (``n_lower``) when its whole interval lies below 0 and *higher*
    (``n_higher``) when it lies above, of ``n`` settings. ``only_when``: from which step
    count and which ε on every setting is lower (None unless both exist). Also the clean and
    fully attacked mean energies, and after ``hist_steps`` steps the change ``hist_shift``,
    the histogram ``overlap`` of clean and attacked energies and its bootstrap interval
    ``overlap_ci``; ``shift_ci``: the change after ``steps`` steps.
    """
    clean = path["energy"][0]
    att = [i for i, k in enumerate(path["steps"]) if k > 0]      # gradient steps (not clean, not the random start)
    nz = [j for j, e in enumerate(sweep["eps"]) if e > 0]
    by_step = {path["steps"][i]: shift_estimate(clean, path["energy"][i]) for i in att}
    by_eps = {sweep["eps"][j]: shift_estimate(clean, sweep["energy"][j]) for j in nz}
    every = {**{f"{k} steps": e for k, e in by_step.items()},
             **{f"ε = {fmt_budget(k)}": e for k, e in by_eps.items()}}
    step_cross = first_crossing(list(by_step), [e.high < 0 for e in by_step.values()])
    eps_cross = first_crossing(list(by_eps), [e.high < 0 for e in by_eps.values()])
    when = None
    if step_cross is not None and eps_cross is not None:
        when = (f"the attack is strong enough: >= {step_cross} steps at ε = {fmt_budget(eps)}, "
                f"or ε >= {fmt_budget(eps_cross)} at {steps} steps")
    h = path["steps"].index(hist_steps)
    return {"clean": path["mean_energy"][0], "attacked": path["mean_energy"][path["steps"].index(steps)],
            "by_step": by_step, "by_eps": by_eps, "largest": largest(list(every.values())),
            "largest_at": max(every, key=lambda k: every[k].value), "n": len(every),
            "n_lower": sum(e.high < 0 for e in every.values()), "n_higher": sum(e.low > 0 for e in every.values()),
            "overlap": histogram_overlap(clean, path["energy"][h]),
            "overlap_ci": overlap_estimate(clean, path["energy"][h]),
            "hist_shift": shift_estimate(clean, path["energy"][h]),
            "shift_ci": shift_estimate(clean, path["energy"][path["steps"].index(steps)]), "only_when": when}


def detector_table(studies: Mapping[str, dict], temperatures: Sequence[float]):
    """TPR / FPR / AUROC of the energy detector at each temperature, one column per model."""
    return table({f"{t:g}": {f"{n}: TPR / FPR / AUROC": f"{st['tpr'][j]:.3f} / {st['fpr'][j]:.3f} / {st['auroc'][j]:.3f}"
                             for n, st in studies.items()}
                  for j, t in enumerate(temperatures)}, "T")


def by_budget(sweep: dict) -> dict[str, list[float]]:
    """The detector's TPR, FPR, AUROC and the accuracy under attack at each ε > 0 of a sweep."""
    keep = [j for j, e in enumerate(sweep["eps"]) if e > 0]
    return {"eps": [sweep["eps"][j] for j in keep], "TPR": [sweep["tpr"][j] for j in keep],
            "FPR": [sweep["fpr"][j] for j in keep], "AUROC": [sweep["auroc"][j] for j in keep],
            "accuracy under attack": [sweep["accuracy"][j] for j in keep]}


def heldout_aurocs(sweep: dict) -> dict[str, list[float]]:
    """The energy detector's AUROC, P(E(x′) < E(x)) + ½ P(equal) over clean and attacked
    energies, at each ε > 0 of an ε sweep run on held-out images (its ε = 0 row: the clean
    energies)."""
    clean = sweep["energy"][list(sweep["eps"]).index(0.0)]
    keep = [j for j, e in enumerate(sweep["eps"]) if e > 0]
    return {"eps": [sweep["eps"][j] for j in keep],
            "AUROC": [float(auroc_of(-np.asarray(clean), -np.asarray(sweep["energy"][j]))) for j in keep]}


def working_budget(budgets: dict) -> float:
    """The ε of a sweep (``eps`` and ``AUROC`` lists, e.g. :func:`heldout_aurocs`) at which the
    detector works best (highest AUROC; ties: the smaller ε)."""
    best = max(range(len(budgets["eps"])), key=lambda j: (budgets["AUROC"][j], -budgets["eps"][j]))
    return budgets["eps"][best]


def _rates(tpr: float, fpr: float, n: int) -> dict[str, Estimate]:
    return {"TPR": proportion(round(tpr * n), n), "FPR": proportion(round(fpr * n), n)}


def operating_points(study: dict, budgets: dict, temperatures: Sequence[float], n: int) -> dict:
    """The detector's operating points on ``n`` attacked and ``n`` clean test images, as
    Wilson estimates {"TPR", "FPR"}: at T = 1 (``tpr``, ``fpr``, with its ``auroc``), at each
    temperature (``by_temperature``) and at each ε of the sweep (``by_eps``); and the best
    AUROC over the sweep."""
    i1 = list(temperatures).index(1.0) if 1.0 in temperatures else 0
    at_one = _rates(study["tpr"][i1], study["fpr"][i1], n)
    return {"index": i1, "tpr": at_one["TPR"], "fpr": at_one["FPR"], "auroc": study["auroc"][i1],
            "by_temperature": {t: _rates(study["tpr"][j], study["fpr"][j], n) for j, t in enumerate(temperatures)},
            "by_eps": {e: _rates(tpr, fpr, n) for e, tpr, fpr in zip(budgets["eps"], budgets["TPR"], budgets["FPR"])},
            "best_auroc": max(budgets["AUROC"])}


def conditions(points: dict, passes: Callable[[dict], bool]) -> str | None:
    """Where an operating point of :func:`operating_points` passes (``passes``: the claim's
    test on one {"TPR", "FPR"}): "T is in {…}" and "ε >= …" (from the smallest passing ε),
    joined by "or"; None where none passes."""
    good_t = [f"{t:g}" for t, ev in points["by_temperature"].items() if passes(ev)]
    good_e = [e for e, ev in points["by_eps"].items() if passes(ev)]
    found = ([f"T is in {{{', '.join(good_t)}}}"] if good_t else []) + \
            ([f"ε >= {fmt_budget(min(good_e))}"] if good_e else [])
    return " or ".join(found) or None


def auroc_of(negative, positive, axis: int = -1):
    """AUROC, P(positive score > negative score) + ½ P(equal), by the Mann–Whitney rank sum:
    (Σ ranks of the positives − n₊(n₊ + 1)/2) / (n₊ n₋), ranks of the pooled scores with ties
    averaged; along ``axis`` (vectorised, for the bootstrap)."""
    neg, pos = np.asarray(negative, dtype=np.float64), np.asarray(positive, dtype=np.float64)
    n0, n1 = neg.shape[axis], pos.shape[axis]
    ranks = stats.rankdata(np.concatenate([neg, pos], axis=axis), axis=axis)
    pos_ranks = np.take(ranks, np.arange(n0, n0 + n1), axis=axis)
    return (pos_ranks.sum(axis=axis) - n1 * (n1 + 1) / 2) / (n0 * n1)


def auroc_estimate(clean_scores, attacked_scores, *, seed: int = 0) -> Estimate:
    """The AUROC of a detector score (higher = flagged) on clean against attacked versions of
    the same images, with a paired bootstrap interval (the images resampled)."""
    return bootstrap((np.asarray(clean_scores, dtype=np.float64).ravel(),
                      np.asarray(attacked_scores, dtype=np.float64).ravel()), auroc_of, seed=seed)


def overlap_estimate(clean, attacked, *, seed: int = 0):
    """The histogram overlap coefficient of clean and attacked energies (the same images)
    with a paired bootstrap interval (widened to contain the overlap: resampling biases it down)."""
    return bootstrap((np.asarray(clean), np.asarray(attacked)), histogram_overlap, vectorized=False, seed=seed)


def seed_table(models: Mapping[int, object], studies: Mapping[int, dict]):
    """Test accuracy and the detector's T = 1 operating point for each training seed."""
    return table({s: {"test accuracy": f"{models[s].test_accuracy:.3f}", "TPR": f"{r['tpr'][0]:.3f}",
                      "FPR": f"{r['fpr'][0]:.3f}", "AUROC": f"{r['auroc'][0]:.3f}"} for s, r in studies.items()}, "seed")


def seed_spread(studies: Mapping[int, dict], n_images: int) -> dict:
    """Over the training seeds' detector studies (T = 1): mean ± standard deviation of TPR,
    FPR and AUROC (``text``), the TPR's range (``spread``), the highest and the lowest seed's
    TPR (Wilson, over ``n_images`` attacked images) and their difference ``gap`` (Newcombe's
    interval); and the lowest AUROC over the seeds (:func:`smallest` of each seed's
    :func:`auroc_estimate` on its test energies, low energy = flagged): ``lowest_auroc``."""
    tpr, fpr, auc = (np.array([r[k][0] for r in studies.values()]) for k in ("tpr", "fpr", "auroc"))
    hi, lo = (proportion(round(float(v) * n_images), n_images) for v in (tpr.max(), tpr.min()))
    aurocs = [auroc_estimate(-np.asarray(r["test_clean_energy"]), -np.asarray(r["test_adv_energy"]))
              for r in studies.values()]
    return {"n": len(tpr), "spread": float(tpr.max() - tpr.min()), "highest": hi, "lowest": lo,
            "gap": difference(hi, lo), "lowest_auroc": smallest(aurocs),
            "text": f"TPR {tpr.mean():.2f} ± {tpr.std():.2f}, FPR {fpr.mean():.2f} ± {fpr.std():.2f}, "
                    f"AUROC {auc.mean():.2f} ± {auc.std():.2f}"}
