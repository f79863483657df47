"""Chapter 2 (HE-PGD): where PGD and High-Energy PGD leave the marginal energy E(x), and
what an energy threshold — one-sided (flag low E) or two-sided (flag E far from the data's
in either direction) — catches of each attack."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ...core.energy import EnergyDetector, TwoSidedEnergyDetector, roc_curve
from ...core.stats import Estimate, bootstrap, difference, proportion
from ...methods.evaluate import histogram_overlap, ks_statistic
from ..report import table
from .energy import auroc_estimate, auroc_of

__all__ = ["SIDES", "energy_shape", "shape_table", "fit_detectors", "detection", "detection_table", "roc_of",
           "lambda_sweep", "lambda_table", "closest_to_data", "highest_tpr", "rate", "fools_as_well", "closer_to_data",
           "catches_pgd", "operating_fprs", "evades_detector", "catches_again", "evades_better"]

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


# -- the evidence of the claims: estimates with their intervals --------------------------

def rate(value: float, n: int) -> Estimate:
    """A rate measured on ``n`` images (a detector's TPR or FPR, an accuracy) with its Wilson interval."""
    return proportion(round(value * n), n)


def fools_as_well(acc_pgd: float, acc_he: float, n: int) -> dict:
    """Accuracy under PGD and under HE-PGD on the same ``n`` images (Wilson intervals) and
    their difference HE − PGD (Newcombe's interval): ``pgd``, ``he``, ``difference``."""
    pgd, he = rate(acc_pgd, n), rate(acc_he, n)
    return {"pgd": pgd, "he": he, "difference": difference(he, pgd)}


def _abs_shift_gap(clean, pgd, he, axis=-1):
    return np.abs(np.mean(he - clean, axis=axis)) - np.abs(np.mean(pgd - clean, axis=axis))


def _overlap_gap(clean, pgd, he):
    return histogram_overlap(clean, he) - histogram_overlap(clean, pgd)


def closer_to_data(clean, pgd, he) -> dict:
    """How much closer HE-PGD's energies stay to the data's than PGD's (the same images), with
    paired bootstrap intervals: ``shift_gap`` = |mean(E_HE − E)| − |mean(E_PGD − E)| (negative:
    HE-PGD closer) and ``overlap_gap`` = overlap(clean, HE) − overlap(clean, PGD) of the
    histograms (positive: HE-PGD closer)."""
    data = tuple(np.asarray(v, dtype=float) for v in (clean, pgd, he))
    return {"shift_gap": bootstrap(data, _abs_shift_gap),
            "overlap_gap": bootstrap(data, _overlap_gap, vectorized=False)}


def catches_pgd(detector, result: dict, report) -> dict:
    """How well a fitted detector separates an attack's test energies (``result``: clean and
    attacked energies of the same images) from the clean ones: its ``AUROC`` on its own score
    (paired bootstrap), and the ``TPR`` and ``FPR`` of ``report`` at its held-out threshold (Wilson)."""
    n = len(result["adv_energy"])
    return {"AUROC": auroc_estimate(detector.score(result["clean_energy"]), detector.score(result["adv_energy"])),
            "TPR": rate(report.tpr, n), "FPR": rate(report.fpr, n)}


def operating_fprs(reports: Mapping[tuple, object], name: str, attack: str, n: int) -> dict:
    """The FPR of each detector on model ``name``'s ``n`` clean test images at its held-out
    threshold (Wilson): {"one-sided FPR", "two-sided FPR"}."""
    return {f"{side} FPR": rate(reports[(name, attack, side)].fpr, n) for side in SIDES}


def _auroc_gap(clean, pgd, he, axis=-1):
    return auroc_of(-clean, -pgd, axis=axis) - auroc_of(-clean, -he, axis=axis)


def evades_detector(pgd: dict, he: dict, report_pgd, report_he) -> dict:
    """How much less the one-sided detector (flag low E) catches HE-PGD than PGD. ``pgd`` /
    ``he``: the two attacks' ``attack_energies`` on the same images; ``report_*``: the
    detector's reports. The TPRs (Wilson), the ``TPR drop`` PGD − HE (Newcombe) and the
    ``AUROC drop`` AUROC(PGD) − AUROC(HE) (paired bootstrap over the images)."""
    n = len(pgd["adv_energy"])
    t_pgd, t_he = rate(report_pgd.tpr, n), rate(report_he.tpr, n)
    data = tuple(np.asarray(v, dtype=float) for v in (pgd["clean_energy"], pgd["adv_energy"], he["adv_energy"]))
    return {"tpr_pgd": t_pgd, "tpr_he": t_he, "TPR drop": difference(t_pgd, t_he),
            "AUROC drop": bootstrap(data, _auroc_gap)}


def catches_again(one_sided, two_sided, detector, result: dict) -> dict:
    """How much more the two-sided detector catches of an attack than the one-sided one, on
    the same attacked images (``result``: their clean and attacked energies): both TPRs
    (Wilson, ``one`` and ``two``), the ``TPR gain`` two − one (Newcombe) and the two-sided
    ``AUROC`` (its score |E − median clean|, paired bootstrap)."""
    n = len(result["adv_energy"])
    t1, t2 = rate(one_sided.tpr, n), rate(two_sided.tpr, n)
    return {"one": t1, "two": t2, "TPR gain": difference(t2, t1),
            "AUROC": auroc_estimate(detector.score(result["clean_energy"]), detector.score(result["adv_energy"]))}


def evades_better(tpr_match: float, tpr_he: float, fooled: float, n: int) -> dict:
    """How much better energy matching evades the detectors than HE-PGD, and how often it
    fools the model: the highest TPR against each (Wilson, ``matching`` and ``he``), their
    difference HE − matching (Newcombe, ``TPR margin``) and matching's fooling rate
    (1 − accuracy under it, Wilson, ``fooling``), all over ``n`` images."""
    tm, th = rate(tpr_match, n), rate(tpr_he, n)
    return {"matching": tm, "he": th, "TPR margin": difference(th, tm), "fooling": rate(fooled, n)}
