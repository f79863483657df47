"""Chapter 2 (HE-PGD): where PGD and High-Energy PGD leave the marginal energy E(x), and
what an energy threshold — one-sided (flag low E) or two-sided (flag E far from the data's
in either direction) — catches of each attack."""
from __future__ import annotations

from typing import Mapping, Sequence

from ...core.energy import EnergyDetector, TwoSidedEnergyDetector, roc_curve
from ...methods.evaluate import histogram_overlap, ks_statistic
from ..report import table

__all__ = ["SIDES", "energy_shape", "shape_table", "fit_detectors", "detection", "detection_table", "roc_of",
           "lambda_sweep", "lambda_table", "closest_to_data", "highest_tpr"]

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
