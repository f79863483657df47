"""Chapter 6 (one yardstick): every model of the book under the book's PGD and under the
independent attacks (APGD-CE → APGD-DLR → Square), what a prediction costs, whether the
energy gives the attack away, and the accuracy–robustness–cost frontier.

Robust accuracies are fractions in [0, 1]; a model's results are keyed ``(model, threat)``
with the threats of :func:`robgen_lib.book.studies.threats` (``"linf"``, ``"l2"``).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch

from ...core.energy import auroc
from ...core.stats import Estimate, paired
from ..report import fmt_budget, pct, table
from . import common
from ...methods.independent import ATTACKS, is_stochastic, prediction_cost

__all__ = ["NORM_SYMBOLS", "threat_label", "threat_labels", "contestants_table", "side_by_side", "attack_tables",
           "own_vs_independent", "drops", "masking_text", "grid_threats", "curve_panels", "prediction_costs", "cost_table",
           "pgd_step_size", "energy_auroc", "detector_aurocs", "detection_table", "aurocs_by_attack",
           "frontier_points", "versus_baseline", "most_robust", "top_agreement", "overview_table"]

#: How the book writes each norm.
NORM_SYMBOLS = {"linf": "ℓ∞", "l2": "ℓ2"}
#: The columns of :func:`side_by_side` that :func:`attack_tables` shows, with their headers.
_SHOWN = {"apgd-ce": "APGD-CE", "apgd-dlr": "+ APGD-DLR", "square": "+ Square", "worst": "worst"}


def threat_label(threat: Mapping) -> str:
    """A threat model as the book writes it: ``{"norm": "linf", "eps": 0.1}`` → ``"ℓ∞ ε = 0.1"``."""
    return f"{NORM_SYMBOLS[threat['norm']]} ε = {fmt_budget(threat['eps'])}"


def threat_labels(threats: Mapping[str, Mapping]) -> dict[str, str]:
    """:func:`threat_label` of each threat, by its name."""
    return {name: threat_label(t) for name, t in threats.items()}


def contestants_table(book: Mapping[str, tuple], eot: int, strength: Mapping[str, dict], images: Mapping[str, int]):
    """One row per model of ``book`` (name → (family, trained model)): its family, number of
    parameters, whether its output is random (then APGD averages ``eot`` gradients), the
    independent attacks' budget (``strength``: APGD steps × restarts, Square queries), the
    test images it is attacked on (``images``) and whether it was read from the cache."""
    return table({name: {"family": family, "parameters": f"{sum(p.numel() for p in m.model.parameters()):,}",
                         "output": f"stochastic: EOT over {eot}" if is_stochastic(m.model) else "deterministic",
                         "APGD / Square": f"{strength[name]['steps']} it. × {strength[name]['restarts']} / "
                                          f"{strength[name]['queries']:,} queries",
                         "images": images[name],
                         "from the cache": "yes" if m.from_cache else "no (trained now)"}
                  for name, (family, m) in book.items()}, "model")


def side_by_side(own: Mapping[tuple, dict], independent: Mapping[tuple, dict]) -> dict[tuple, dict[str, float]]:
    """Per (model, threat): the book's PGD (``own``: a ``robust_accuracy`` result) next to the
    independent attacks (an ``independent_robust_accuracy`` result).

    Fractions of the same test images: ``clean`` and ``own`` (the book's PGD); for each
    independent attack, those still correct after it and every attack before it
    (``apgd-ce``, ``apgd-dlr``, ``square``); ``independent`` (after all of them); ``worst``:
    those that survive the book's PGD *and* every independent attack. Also the per-image
    flags ``own_robust``, ``independent_robust`` and ``worst_robust`` and their number ``n``.
    """
    out = {}
    for key, o in own.items():
        i = independent[key]
        worst = o["robust"] & i[ATTACKS[-1]]
        out[key] = {"clean": o["clean_accuracy"], "own": o["robust_accuracy"],
                    **{a: float(i[a].float().mean()) for a in ATTACKS},
                    "independent": i["robust_accuracy"], "worst": float(worst.float().mean()),
                    "own_robust": o["robust"], "independent_robust": i[ATTACKS[-1]], "worst_robust": worst,
                    "n": len(worst)}
    return out


def _drop(row: Mapping) -> Estimate:
    """How much lower the worst case puts the robust accuracy than the book's PGD alone: the
    paired difference own − worst on the same images (Newcombe's interval)."""
    return paired(row["own_robust"], row["worst_robust"])


def _flag(row: Mapping, mask_gap: float) -> str:
    """How the table marks a drop: "masking" when its whole interval lies above ``mask_gap``,
    "masking?" when the interval reaches above it, else nothing. (A table's mark, not a
    verdict: the chapter's claim is judged by the book's rule on :func:`drops`.)"""
    d = _drop(row)
    return "**masking**" if d.low > mask_gap else "masking?" if d.high > mask_gap else ""


def attack_tables(results: Mapping[tuple, dict], labels: Mapping[str, str], *, mask_gap: float):
    """One table per threat (headed by its label): clean accuracy, the book's PGD, the
    cumulative independent attacks and the worst case of each model, flagged "masking?"
    when the independent attacks lower the robust accuracy by more than ``mask_gap``."""
    from IPython.display import Markdown  # the book's extras

    parts = []
    for threat, label in labels.items():
        rows = {name: {"clean": pct(r["clean"]), "book's PGD": pct(r["own"]),
                       **{head: pct(r[k]) for k, head in _SHOWN.items()},
                       "flag": _flag(r, mask_gap)}
                for (name, t), r in results.items() if t == threat}
        parts.append(f"**{label}**\n\n{table(rows, 'model').data}")
    return Markdown("\n\n".join(parts))


def own_vs_independent(results: Mapping[tuple, dict], labels: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """The bars of the robust-accuracy figure (in %): per threat, the book's PGD and the
    independent attacks, one bar per model."""
    return {f"{label}: {head}": {name: 100 * r[key] for (name, t), r in results.items() if t == threat}
            for threat, label in labels.items()
            for head, key in (("book's PGD", "own"), ("independent", "independent"))}


def drops(results: Mapping[tuple, dict]) -> dict[tuple, Estimate]:
    """Per (model, threat): how much lower the worst case puts robust accuracy than the book's
    PGD alone (the paired difference own − worst on the same images, Newcombe's interval)."""
    return {key: _drop(r) for key, r in results.items()}


def masking_text(drop: Mapping[tuple, Estimate], mask_gap: float, labels: Mapping[str, str]) -> str:
    """The drops in words: the models whose drop's interval lies above ``mask_gap`` (flagged),
    those whose interval reaches above it (undecided), and the largest drop."""
    flagged = sorted({name for (name, _), d in drop.items() if d.low > mask_gap})
    undecided = sorted({name for (name, _), d in drop.items() if d.high > mask_gap} - set(flagged))
    model, threat = max(drop, key=lambda k: drop[k].value)
    return (f"flagged (the worst case lower than the book's PGD by more than {100 * mask_gap:.0f} points, interval "
            f"above the bar): {', '.join(flagged) or 'none'}; undecided: {', '.join(undecided) or 'none'}; largest "
            f"drop {drop[(model, threat)]} ({model}, {labels[threat]})")


def grid_threats(grids: Mapping[str, tuple[str, Sequence[float]]]) -> dict[tuple, dict]:
    """The threat models of ε grids (label → (norm, budgets)): ``{(label, ε): {"norm", "eps"}}``."""
    return {(label, eps): {"norm": norm, "eps": eps} for label, (norm, grid) in grids.items() for eps in grid}


def curve_panels(curve: Mapping[tuple, dict], grids: Mapping[str, tuple[str, Sequence[float]]],
                 attack: str = "APGD-CE") -> dict:
    """The arguments ``x``, ``data`` and ``xlabel`` of :func:`robgen_lib.book.plots.panels` for
    robust accuracy (in %) against ε: one panel per grid, one line per model of ``curve``
    (keyed ``(model, (label, ε))`` as :func:`grid_threats` names the threats)."""
    names = list(dict.fromkeys(name for name, _ in curve))
    titles = {label: f"{label} {attack}" for label in grids}
    return {"x": {titles[label]: list(grid) for label, (_, grid) in grids.items()},
            "data": {titles[label]: {n: [100 * curve[(n, (label, e))]["robust_accuracy"] for e in grid] for n in names}
                     for label, (_, grid) in grids.items()},
            "xlabel": {titles[label]: f"{label} budget ε" for label in grids}}


def prediction_costs(models: Mapping[str, object], images: torch.Tensor) -> dict[str, dict[str, float]]:
    """:func:`robgen_lib.methods.independent.prediction_cost` of each trained model on one batch of
    ``images``: wall time in ``ms`` per image and network ``evaluations`` per image."""
    return {name: prediction_cost(m.model, images) for name, m in models.items()}


def cost_table(costs: Mapping[str, dict]):
    """Milliseconds and network evaluations per image, one row per model."""
    return table({name: {"ms / image": f"{c['ms']:.2f}", "network evaluations / image": f"{c['evaluations']:,.0f}"}
                  for name, c in costs.items()}, "model")


def pgd_step_size(eps: float, steps: int) -> float:
    """The step of the book's PGD for the detection study: 2.5 ε / steps."""
    return 2.5 * eps / steps


def energy_auroc(energies: Mapping[str, torch.Tensor]) -> float:
    """AUROC of chapter 1's detector score −E(x) between attacked (positive) and clean
    (negative) images of one ``attack_energies`` result: P(−E(x′) > −E(x)) + ½ P(equal).
    0.5 is chance; below 0.5 the attack raises the energy."""
    return auroc(-energies["clean_energy"].numpy(), -energies["adv_energy"].numpy())


def detector_aurocs(energies: Mapping[tuple, dict]) -> dict[tuple, float]:
    """:func:`energy_auroc` of each ``attack_energies`` result, with the same keys (model, attack)."""
    return {key: energy_auroc(r) for key, r in energies.items()}


def aurocs_by_attack(aurocs: Mapping[tuple, float]) -> dict[str, dict[str, float]]:
    """The detector's AUROCs regrouped: attack → model → AUROC."""
    out: dict[str, dict[str, float]] = {}
    for (name, attack), value in aurocs.items():
        out.setdefault(attack, {})[name] = value
    return out


def detection_table(aurocs: Mapping[tuple, float]):
    """The detector's AUROC against each attack, one row per model."""
    by_model: dict[str, dict[str, str]] = {}
    for (name, attack), value in aurocs.items():
        by_model.setdefault(name, {})[f"AUROC vs {attack}"] = f"{value:.2f}"
    return table(by_model, "model")


def frontier_points(results: Mapping[tuple, dict], costs: Mapping[str, dict], family: Mapping[str, str],
                    threat: str = "linf") -> dict[str, tuple]:
    """Each model as a point of :func:`robgen_lib.book.plots.frontier` and
    :func:`robgen_lib.methods.evaluate.pareto`: (ms per image, worst-case robust accuracy in %
    under ``threat``, clean accuracy, family)."""
    return {name: (costs[name]["ms"], 100 * results[(name, threat)]["worst"], results[(name, threat)]["clean"],
                   family[name]) for name in family}


def versus_baseline(results: Mapping[tuple, dict], family: Mapping[str, str], labels: Mapping[str, str], *,
                    baseline: str = "standard CNN", group: str = "generative") -> dict:
    """Each model of ``group`` against ``baseline`` in the worst case under each threat of
    ``labels``: ``gaps`` ((model, threat) → the paired gap model − baseline on the images
    both saw, :func:`~robgen_lib.book.analysis.common.robust_gap` on ``worst_robust``) and
    ``text`` (every rate, and the smallest gap)."""
    members = [n for n in family if family[n] == group]
    gaps = {(g, t): common.robust_gap(results, g, baseline, t, key="worst_robust") for g in members for t in labels}
    text = "; ".join(f"{label}: " + ", ".join(f"{g} {gaps[(g, t)]['a']}" for g in members) +
                     f" vs CNN {gaps[(members[0], t)]['b']}" for t, label in labels.items())
    smallest = min(gaps, key=lambda k: gaps[k]["gap"].value)
    text += f"; smallest gap {gaps[smallest]['gap']} ({smallest[0]}, {labels[smallest[1]]})"
    return {"gaps": {k: g["gap"] for k, g in gaps.items()}, "text": text}


def most_robust(results: Mapping[tuple, dict], costs: Mapping[str, dict], family: Mapping[str, str],
                labels: Mapping[str, str], *, group: str = "generative") -> dict:
    """The most robust model (worst case) under each threat of ``labels``, the one with fewer
    network evaluations on a tie (then the first): ``best`` (threat → name); the most robust
    model of ``group`` and of the others, and ``gaps`` (threat → the paired gap best of
    ``group`` − best of the others, on the images both saw); ``text``."""
    names = list(dict.fromkeys(name for name, _ in results))

    def top(pool, t):
        return max(pool, key=lambda n: (results[(n, t)]["worst"], -costs[n]["evaluations"]))

    inside = [n for n in names if family.get(n) == group]
    outside = [n for n in names if family.get(n) != group]
    best = {t: top(names, t) for t in labels}
    pair = {t: (top(inside, t), top(outside, t)) for t in labels}
    gaps = {t: common.robust_gap(results, a, b, t, key="worst_robust")["gap"] for t, (a, b) in pair.items()}
    text = "; ".join(f"{label}: {best[t]} {100 * results[(best[t], t)]['worst']:.1f} % (best {group} "
                     f"{pair[t][0]} minus best other {pair[t][1]}: {gaps[t]})" for t, label in labels.items())
    return {"best": best, "gaps": gaps, "text": text}


def top_agreement(results: Mapping[tuple, dict], threat: str = "linf", k: int = 3) -> dict:
    """The ``k`` most robust models under ``threat`` by the book's PGD (``own``) and by the
    independent attacks (``independent``), each in decreasing order (ties in the models'
    order); whether the two sets are the same (``agree``); and ``separation``: for each
    ranking, the paired gap between its k-th and (k+1)-th model on the images both saw (the
    ranking is settled only where that gap is clear), the less clear of the two."""
    names = [name for name, t in results if t == threat]
    top = min(k, len(names))
    order = {"own": sorted(names, key=lambda n: -results[(n, threat)]["own"]),
             "independent": sorted(names, key=lambda n: -results[(n, threat)]["independent"])}
    flags = {"own": "own_robust", "independent": "independent_robust"}
    seps = [common.robust_gap(results, o[top - 1], o[top], threat, key=flags[which])["gap"]
            for which, o in order.items() if len(o) > top]
    return {"own": order["own"][:top], "independent": order["independent"][:top],
            "agree": set(order["own"][:top]) == set(order["independent"][:top]),
            "separation": min(seps, key=lambda e: e.low) if seps else None}


def overview_table(results: Mapping[tuple, dict], family: Mapping[str, str], costs: Mapping[str, dict],
                   aurocs: Mapping[tuple, float], labels: Mapping[str, str]):
    """One row per model: family, clean accuracy, worst-case robust accuracy under each
    threat, ms per image and the energy detector's AUROC against the book's PGD."""
    return table({name: {"family": family[name], "clean": pct(results[(name, "linf")]["clean"]),
                         **{f"worst, {label}": pct(results[(name, t)]["worst"]) for t, label in labels.items()},
                         "ms / image": f"{costs[name]['ms']:.2f}", "AUROC vs PGD": f"{aurocs[(name, 'PGD')]:.2f}"}
                  for name in family}, "model")
