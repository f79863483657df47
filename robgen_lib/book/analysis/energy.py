"""Chapter 1 (the energy inside a classifier): how PGD moves the marginal energy
E(x) = −log Σ_k exp f(x)[k], and how well a threshold on it detects attacked points."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...core.stats import all_of, bootstrap, decide, difference, proportion
from ...methods.evaluate import first_crossing, histogram_overlap, significantly_lower
from ..report import fmt_budget, table

__all__ = ["path_table", "energy_shift", "detector_table", "by_budget", "operating_points", "seed_table",
           "seed_spread", "detects", "overlap_estimate", "working_budget"]


def path_table(paths: Mapping[str, dict]):
    """Accuracy and mean E(x) after each recorded PGD step count, one column per model."""
    steps = next(iter(paths.values()))["steps"]
    return table({"clean" if k < 0 else k: {f"{n}: accuracy / mean E(x)": f"{100 * p['accuracy'][i]:.1f} % / "
                                                                            f"{p['mean_energy'][i]:.2f}"
                                            for n, p in paths.items()}
                  for i, k in enumerate(steps)}, "PGD steps")


def energy_shift(path: dict, sweep: dict, *, steps: int, hist_steps: int, eps: float) -> dict:
    """Where PGD leaves the energy, over every attack setting of one model: each gradient-step
    count of ``path`` (at ε = ``eps``) and each ε > 0 of ``sweep`` (at ``steps`` steps).

    A setting moves the energy *down* (or *up*) when the mean per-image change is more than
    two standard errors below (above) zero. Returns the clean and fully attacked mean
    energies, the counts ``n_lower`` / ``n_higher`` of ``n`` settings, ``all_lower``, the
    histogram ``overlap`` of clean and PGD-``hist_steps`` energies with ``hist_lower``
    (significantly lower there) and its bootstrap interval ``overlap_ci``, the per-image
    shift at ``steps`` with its interval ``shift_ci``, and ``only_when``: from which step
    count and which ε on every setting is lower (None unless both exist).
    """
    clean = path["energy"][0]
    att = [i for i, k in enumerate(path["steps"]) if k > 0]      # gradient steps (not clean, not the random start)
    nz = [j for j, e in enumerate(sweep["eps"]) if e > 0]
    by_step = [significantly_lower(clean, path["energy"][i]) for i in att]
    by_eps = [significantly_lower(clean, sweep["energy"][j]) for j in nz]
    higher = [significantly_lower(path["energy"][i], clean) for i in att] + \
             [significantly_lower(sweep["energy"][j], clean) for j in nz]
    h = path["steps"].index(hist_steps)
    step_cross = first_crossing([path["steps"][i] for i in att], by_step)
    eps_cross = first_crossing([sweep["eps"][j] for j in nz], by_eps)
    when = None
    if step_cross is not None and eps_cross is not None:
        when = (f"the attack is strong enough: >= {step_cross} steps at ε = {fmt_budget(eps)}, "
                f"or ε >= {fmt_budget(eps_cross)} at {steps} steps")
    lower = by_step + by_eps
    return {"clean": path["mean_energy"][0], "attacked": path["mean_energy"][path["steps"].index(steps)],
            "n": len(lower), "n_lower": sum(lower), "n_higher": sum(higher), "all_lower": all(lower),
            "overlap": histogram_overlap(clean, path["energy"][h]),
            "overlap_ci": overlap_estimate(clean, path["energy"][h]),
            "shift_ci": bootstrap(np.asarray(path["energy"][path["steps"].index(steps)]) - np.asarray(clean)),
            "hist_lower": significantly_lower(clean, path["energy"][h]), "only_when": when}


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


def working_budget(budgets: dict) -> float:
    """The ε of a :func:`by_budget` sweep at which the detector works best (highest AUROC;
    ties: the smaller ε) — where its stability across training runs is worth testing."""
    best = max(range(len(budgets["eps"])), key=lambda j: (budgets["AUROC"][j], -budgets["eps"][j]))
    return budgets["eps"][best]


def detects(tpr: float, fpr: float, n: int) -> bool | None:
    """The book's bar for "the detector catches the attack": TPR ≥ 0.9 at FPR ≤ 0.05, each
    decided on its Wilson interval over ``n`` attacked / clean test images (``None`` when an
    interval straddles its bar)."""
    t, f = proportion(round(tpr * n), n), proportion(round(fpr * n), n)
    return all_of(decide(t, 0.9), decide(f, 0.05, above=False))


def operating_points(study: dict, budgets: dict, temperatures: Sequence[float], n: int) -> dict:
    """Where the detector clears the bar on ``n`` test images: at T = 1 (``passes``, with its
    ``tpr``/``fpr`` as Wilson estimates and ``auroc``), at which temperatures and from which
    ε of the sweep it clears it for certain (``only_when``), and the best AUROC over the sweep."""
    i1 = list(temperatures).index(1.0) if 1.0 in temperatures else 0
    good_t = [f"{t:g}" for j, t in enumerate(temperatures) if detects(study["tpr"][j], study["fpr"][j], n)]
    good_e = [e for e, tpr, fpr in zip(budgets["eps"], budgets["TPR"], budgets["FPR"]) if detects(tpr, fpr, n)]
    conditions = ([f"T is in {{{', '.join(good_t)}}}"] if good_t else []) + \
                 ([f"ε >= {fmt_budget(min(good_e))}"] if good_e else [])
    return {"index": i1, "tpr": proportion(round(study["tpr"][i1] * n), n),
            "fpr": proportion(round(study["fpr"][i1] * n), n), "auroc": study["auroc"][i1],
            "passes": detects(study["tpr"][i1], study["fpr"][i1], n), "best_auroc": max(budgets["AUROC"]),
            "only_when": " or ".join(conditions) or None}


def overlap_estimate(clean, attacked, *, seed: int = 0):
    """The histogram overlap coefficient of clean and attacked energies (the same images)
    with a paired bootstrap interval (widened to contain the overlap: resampling biases it down)."""
    return bootstrap((np.asarray(clean), np.asarray(attacked)), histogram_overlap, vectorized=False, seed=seed)


def seed_table(models: Mapping[int, object], studies: Mapping[int, dict]):
    """Test accuracy and the detector's T = 1 operating point for each training seed."""
    return table({s: {"test accuracy": f"{models[s].test_accuracy:.3f}", "TPR": f"{r['tpr'][0]:.3f}",
                      "FPR": f"{r['fpr'][0]:.3f}", "AUROC": f"{r['auroc'][0]:.3f}"} for s, r in studies.items()}, "seed")


def seed_spread(studies: Mapping[int, dict], n_images: int, *, works_at: float = 0.8) -> dict:
    """Mean ± standard deviation of TPR, FPR and AUROC over seeds, the TPR's range
    (``spread``), and whether the TPR really moves between runs: the difference of the
    highest and the lowest seed's TPR (each over ``n_images`` attacked images, Newcombe's
    interval) above 0 (``moves``; ``None`` if the interval reaches 0). The question is only
    worth asking of a detector that works: ``works`` when every seed's AUROC is at least
    ``works_at`` — the scatter of a detector near chance says nothing about its stability."""
    tpr, fpr, auc = (np.array([r[k][0] for r in studies.values()]) for k in ("tpr", "fpr", "auroc"))
    hi, lo = (proportion(round(float(v) * n_images), n_images) for v in (tpr.max(), tpr.min()))
    gap = difference(hi, lo)
    return {"n": len(tpr), "spread": float(tpr.max() - tpr.min()), "highest": hi, "lowest": lo, "gap": gap,
            "moves": decide(gap, 0.0), "min_auroc": float(auc.min()), "works": bool(auc.min() >= works_at),
            "text": f"TPR {tpr.mean():.2f} ± {tpr.std():.2f}, FPR {fpr.mean():.2f} ± {fpr.std():.2f}, "
                    f"AUROC {auc.mean():.2f} ± {auc.std():.2f}"}
