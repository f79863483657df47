"""Chapter 2 (HE-PGD): where PGD and High-Energy PGD leave the marginal energy E(x), and
what an energy threshold — one-sided (flag low E) or two-sided (flag E far from the data's
in either direction) — catches of each attack."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...core.energy import EnergyDetector, TwoSidedEnergyDetector, auroc, roc_curve
from ...core.stats import all_of, bootstrap, decide, difference, proportion
from ...methods.evaluate import histogram_overlap, ks_statistic
from ..report import table

__all__ = ["catches_again", "evades_better", "SIDES", "energy_shape", "shape_table", "fit_detectors", "detection", "detection_table", "roc_of",
           "lambda_sweep", "lambda_table", "closest_to_data", "highest_tpr", "fools_as_well", "closer_to_data",
           "evades_detector"]

#: The two detectors, by the side(s) of the data's energy they flag.
SIDES = ("one-sided", "two-sided")


def energy_shape(path: dict, step: int) -> dict:
    """How far the energies after ``step`` PGD steps sit from the clean ones: histogram
    ``overlap`` coefficient, Kolmogorov–Smirnov statistic ``ks`` and the mean ``shift``
    E(x′) − E(x)."""
    h = path["steps"].index(step)
    clean, attacked = path["energy"][0], path["energy"][h]
    return {"overlap": histogram_overlap(clean, attacked), "ks": ks_statistic(clean, attacked),
            "shift": path["mean_energy"][h] - path["mean_energy"][0]}


def shape_table(shapes: Mapping[tuple, dict]):
    """Overlap, KS statistic and mean shift for each (model, attack)."""
    return table({f"{name}, {attack}": {"overlap with clean": f"{s['overlap']:.2f}", "KS statistic": f"{s['ks']:.2f}",
                                        "mean E shift": f"{s['shift']:+.2f}"}
                  for (name, attack), s in shapes.items()}, "model, attack")


def fit_detectors(heldout: dict) -> dict:
    """Both detectors fitted on held-out clean and PGD-attacked energies (threshold(s)
    maximising TPR − FPR there)."""
    clean, adv = heldout["clean_energy"], heldout["adv_energy"]
    return {"one-sided": EnergyDetector().fit(clean, adv), "two-sided": TwoSidedEnergyDetector().fit(clean, adv)}


def detection(detectors: Mapping[str, dict], attacked: Mapping[tuple, dict]) -> dict:
    """{(model, attack, side): the detector's report (tpr, fpr, auroc)} on each attack's test energies."""
    return {(name, a, side): detectors[name][side].evaluate(r["clean_energy"], r["adv_energy"])
            for (name, a), r in attacked.items() for side in SIDES}


def detection_table(attacked: Mapping[tuple, dict], reports: Mapping[tuple, object]):
    """Accuracy under each attack and both detectors' TPR / FPR / AUROC, per (model, attack)."""
    return table({f"{name}, {a}": {"accuracy under attack": f"{100 * r['accuracy']:.1f} %",
                                   **{f"{side}: TPR / FPR / AUROC": f"{reports[(name, a, side)].tpr:.2f} / "
                                      f"{reports[(name, a, side)].fpr:.2f} / {reports[(name, a, side)].auroc:.2f}"
                                      for side in SIDES}}
                  for (name, a), r in attacked.items()}, "model, attack")


def roc_of(result: dict, auroc: float) -> tuple:
    """(FPR, TPR, AUROC) of the one-sided detector's ROC curve (low energy = attacked)."""
    fpr, tpr, _ = roc_curve(-result["clean_energy"].numpy(), -result["adv_energy"].numpy())
    return fpr, tpr, auroc


def lambda_sweep(results: Mapping[float, dict]) -> list[tuple]:
    """(mean energy shift E(x′) − E(x), fooling rate, label) for each λ of a sweep."""
    return [(float(r["adv_energy"].mean() - r["clean_energy"].mean()), 1 - r["accuracy"], f"λ={lam:g}")
            for lam, r in results.items()]


def lambda_table(sweep: Mapping[str, list], grid: Sequence[float]):
    """The λ sweep as a table: shift / fooling rate per model."""
    return table({f"{lam:g}": {f"{name}: shift / fooling rate": f"{pts[i][0]:+.2f} / {pts[i][1]:.2f}"
                               for name, pts in sweep.items()} for i, lam in enumerate(grid)}, "λ")


def closest_to_data(points: list[tuple]) -> tuple:
    """The sweep point whose mean energy shift is smallest in magnitude."""
    return min(points, key=lambda p: abs(p[0]))


def highest_tpr(reports: Mapping[tuple, object], name: str, attack: str) -> float:
    """The better of the two detectors' TPR against ``attack`` on model ``name``."""
    return max(reports[(name, attack, side)].tpr for side in SIDES)


# -- the claims, decided on intervals ----------------------------------------------------

def catches_again(one_sided, two_sided, n: int, works_at: float = 0.8) -> dict:
    """Does the two-sided detector catch an attack the one-sided one misses? Its TPR minus
    the one-sided TPR on the same ``n`` attacked images (Newcombe's interval, ``gain``) must
    lie above 0, and its AUROC must reach ``works_at``. ``holds``: both (None when the gain's
    interval straddles 0)."""
    t1, t2 = (proportion(round(r.tpr * n), n) for r in (one_sided, two_sided))
    gain = difference(t2, t1)
    return {"one": t1, "two": t2, "gain": gain, "holds": all_of(decide(gain, 0.0), two_sided.auroc >= works_at)}


def evades_better(tpr_match: float, tpr_he: float, fooled: float, n: int, fools_at: float = 0.9) -> dict:
    """Does energy matching evade the detectors better than HE-PGD while fooling the model?
    The highest TPR against each (Wilson), their difference HE − matching (Newcombe's
    interval, ``margin``) above 0, and the fooling rate's interval above ``fools_at``."""
    tm, th, f = (proportion(round(v * n), n) for v in (tpr_match, tpr_he, fooled))
    margin = difference(th, tm)
    return {"matching": tm, "he": th, "fooled": f, "margin": margin,
            "holds": all_of(decide(margin, 0.0), decide(f, fools_at))}


def fools_as_well(acc_pgd: float, acc_he: float, n: int, tolerance: float = 0.02) -> dict:
    """Does HE-PGD leave at most ``tolerance`` more accuracy than PGD (both on ``n`` images)?
    Both accuracies with Wilson intervals, their difference HE − PGD with Newcombe's
    interval, ``holds`` when that interval lies below ``tolerance``."""
    pgd, he = (proportion(round(a * n), n) for a in (acc_pgd, acc_he))
    d = difference(he, pgd)
    return {"pgd": pgd, "he": he, "difference": d, "holds": decide(d, tolerance, above=False)}


def _abs_shift_gap(clean, pgd, he):
    return abs(np.mean(he - clean)) - abs(np.mean(pgd - clean))


def _overlap_gap(clean, pgd, he):
    return histogram_overlap(clean, he) - histogram_overlap(clean, pgd)


def closer_to_data(clean, pgd, he) -> dict:
    """Do HE-PGD's energies stay closer to the data's than PGD's (the same images)? Paired
    bootstrap intervals of |mean shift HE| − |mean shift PGD| (below 0) and of overlap HE −
    overlap PGD with the clean histogram (above 0); ``holds`` joins both."""
    data = tuple(np.asarray(v, dtype=float) for v in (clean, pgd, he))
    shift = bootstrap(data, _abs_shift_gap, vectorized=False)
    overlap = bootstrap(data, _overlap_gap, vectorized=False)
    return {"shift_gap": shift, "overlap_gap": overlap,
            "holds": all_of(decide(shift, 0.0, above=False), decide(overlap, 0.0))}


def _auroc_gap(clean, pgd, he):
    return auroc(-clean, -pgd) - auroc(-clean, -he)


def evades_detector(pgd: dict, he: dict, report_pgd, report_he, *, tpr_drop: float = 0.1,
                    works_at: float = 0.8) -> dict:
    """Does HE-PGD pass the detector that catches PGD? ``pgd`` / ``he``: the two attacks'
    ``attack_energies`` on the same images, ``report_*``: the detector's reports. The TPR
    drop PGD − HE (Newcombe) above ``tpr_drop`` and the paired-bootstrap AUROC drop above 0
    (``holds``); ``informative`` only if the detector catches PGD at all (its AUROC against
    PGD at least ``works_at``) — evading a detector that catches nothing tests nothing."""
    n = len(pgd["adv_energy"])
    t_pgd, t_he = proportion(round(report_pgd.tpr * n), n), proportion(round(report_he.tpr * n), n)
    drop = difference(t_pgd, t_he)
    data = tuple(np.asarray(v, dtype=float) for v in (pgd["clean_energy"], pgd["adv_energy"], he["adv_energy"]))
    auc = bootstrap(data, _auroc_gap, vectorized=False)
    return {"tpr_pgd": t_pgd, "tpr_he": t_he, "tpr_drop": drop, "auroc_drop": auc,
            "holds": all_of(decide(drop, tpr_drop), decide(auc, 0.0)), "informative": report_pgd.auroc >= works_at}
