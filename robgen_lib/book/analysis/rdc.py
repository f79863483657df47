"""Chapter 4 (a single diffusion model as a robust classifier): the T′ and η sweeps, the cost
of a multi-head against a single-head denoiser, the robust-accuracy tables and the energy
view of the diffusion classifier. Robust results are :func:`~robgen_lib.book.studies.robust_table`'s
dicts, keyed ``(model or setting, threat)``."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ...core.energy import auroc
from ...core.stats import Estimate, bootstrap, paired, proportion
from ..report import fmt_budget, pct, table
from . import common
from ...methods.independent import prediction_cost

__all__ = ["denoiser_summary", "sweep", "sweep_table", "percent_curves", "timestep_tradeoff", "clean_rates",
           "peak_at", "MULTI_HEAD", "SINGLE_HEAD", "head_cost", "head_savings", "cost_table", "threat_label",
           "robust_accuracies", "robust_gap", "robust_accuracy_table", "accuracy_bars",
           "masking_table", "gradient_table", "stronger_attack", "rates", "gradients_agree", "worst_cases",
           "worst_case_table",
           "attack_step", "energy_samples", "energy_shifts", "energy_reversal",
           "energy_table"]


def denoiser_summary(denoiser, width: int) -> str:
    """One line on the denoiser: its width, its parameter count (millions) and whether it
    was trained now or read from the cache (``denoiser`` is a trained model)."""
    n_params = sum(p.numel() for p in denoiser.model.parameters())
    return (f"multi-head UNet, width {width}, {n_params / 1e6:.2f} M parameters, "
            + ("from cache" if denoiser.from_cache else "trained now"))


# ------------------------------------------------------------------ one-knob sweeps (T′, η)


def sweep(results: Mapping[tuple, dict], clean: Mapping | None = None, *, threat: str = "linf") -> dict:
    """Clean and robust accuracy at each setting of a one-knob sweep, in the order of ``results``
    (``{(setting, threat): robust result}``). The clean accuracy is ``clean[setting]`` where
    given (a separate evaluation), else the attack's own clean pass. Returns ``settings``,
    ``clean`` and ``robust`` (lists of fractions), ``correct`` (per setting, the per-image
    robust correctness, for intervals and paired tests) and ``clean_correct`` (the per-image
    clean correctness on the attacked images)."""
    settings = [s for s, t in results if t == threat]
    return {"settings": settings,
            "clean": [results[(s, threat)]["clean_accuracy"] if clean is None else clean[s] for s in settings],
            "robust": [results[(s, threat)]["robust_accuracy"] for s in settings],
            "correct": [results[(s, threat)]["robust"] for s in settings],
            "clean_correct": [results[(s, threat)]["clean"] for s in settings]}


def sweep_table(sw: dict, index: str, *, columns: Sequence[str] = ("clean", "robust"), label: Callable = str):
    """The sweep as a table: one row per setting (written by ``label``), clean accuracy and
    robust accuracy with its 95 % Wilson interval and n."""
    return table({label(s): {columns[0]: pct(c), columns[1]: str(proportion(k))}
                  for s, c, k in zip(sw["settings"], sw["clean"], sw["correct"])}, index)


def percent_curves(sw: dict, robust_label: str) -> dict[str, list[float]]:
    """The sweep's clean and robust accuracy in percent, as curves to plot against its settings."""
    return {"clean": [100 * c for c in sw["clean"]], robust_label: [100 * r for r in sw["robust"]]}


def timestep_tradeoff(sw: dict, low, high) -> dict:
    """Two settings of the T′ sweep compared on the same attacked images: the paired
    differences high − low of robust accuracy (``gain``) and of clean accuracy
    (``clean_change``), each with Newcombe's interval, and the two settings' rates."""
    i, j = sw["settings"].index(low), sw["settings"].index(high)
    return {"low": low, "high": high, "clean_low": sw["clean"][i], "clean_high": sw["clean"][j],
            "robust_low": sw["robust"][i], "robust_high": sw["robust"][j],
            "gain": paired(sw["correct"][j], sw["correct"][i]),
            "clean_change": paired(sw["clean_correct"][j], sw["clean_correct"][i])}


def clean_rates(accuracies: Mapping[str, float], n: int) -> dict[str, Estimate]:
    """Each model's clean accuracy (a fraction measured on ``n`` images) with its Wilson interval."""
    return {name: proportion(round(acc * n), n) for name, acc in accuracies.items()}


def peak_at(sw: dict, target) -> dict:
    """Robust accuracy at the setting ``target`` against every other setting of a sweep, on
    the same images: ``ahead`` (other setting → the paired difference target − other), the
    target's rate, the best setting by point estimate (ties: the first) and the other
    setting closest to the target (``runner_up``, its difference ``margin``)."""
    k = sw["settings"].index(target)
    ahead = {sw["settings"][i]: paired(sw["correct"][k], sw["correct"][i])
             for i in range(len(sw["settings"])) if i != k}
    best = max(range(len(sw["settings"])), key=lambda i: (sw["robust"][i], -i))
    closest = min(ahead.items(), key=lambda kv: kv[1].value) if ahead else (None, None)
    return {"ahead": ahead, "best": sw["settings"][best], "best_robust": proportion(sw["correct"][best]),
            "target": proportion(sw["correct"][k]), "runner_up": closest[0], "margin": closest[1]}


# ------------------------------------------------------------------ cost: multi-head vs single-head

MULTI_HEAD, SINGLE_HEAD = "multi-head (one pass)", "single-head (K passes)"


def head_cost(multi_head: nn.Module, single_head: nn.Module, images: torch.Tensor) -> dict[str, dict]:
    """Two diffusion classifiers on ``images``: one on a multi-head denoiser (every class's
    noise in one pass) and one on a single-head, label-embedded denoiser (one pass per class).
    Per way: network evaluations per image and ms per image
    (:func:`~robgen_lib.methods.independent.prediction_cost`: the denoiser's passes counted by a
    hook, one warm-up call, then one timed call)."""
    return {label: prediction_cost(model, images) for label, model in ((MULTI_HEAD, multi_head),
                                                                        (SINGLE_HEAD, single_head))}


def head_savings(cost: dict[str, dict], clean: Mapping[str, torch.Tensor], robust: Mapping[str, dict],
                 num_classes: int, *, threat: str = "linf") -> dict:
    """What the multi-head layout saves, and what it costs in accuracy: evaluations per image
    both ways (``multi``, ``single``), their ratio, the wall-time speed-up, the paired
    differences multi − single of clean accuracy (``clean``: per-image correctness on the
    same images) and of robust accuracy (``robust``: robust tables keyed by the two labels),
    and ``ratio_is_k``: whether the ratio of evaluations is exactly ``num_classes``."""
    multi, single = cost[MULTI_HEAD], cost[SINGLE_HEAD]
    ratio = single["evaluations"] / multi["evaluations"]
    clean_gap = paired(clean[MULTI_HEAD], clean[SINGLE_HEAD])
    ra, rb = robust[(MULTI_HEAD, threat)]["robust"], robust[(SINGLE_HEAD, threat)]["robust"]
    return {"multi": multi["evaluations"], "single": single["evaluations"], "ratio": ratio,
            "speedup": single["ms"] / multi["ms"], "clean": clean_gap, "robust": paired(ra, rb),
            "clean_multi": proportion(clean[MULTI_HEAD]), "clean_single": proportion(clean[SINGLE_HEAD]),
            "ratio_is_k": bool(ratio == num_classes)}


def cost_table(cost: dict[str, dict]):
    """Network evaluations and milliseconds per image, one row per way of evaluating."""
    return table({label: {"network evaluations / image": f"{c['evaluations']:.0f}", "ms / image": f"{c['ms']:.1f}"}
                  for label, c in cost.items()}, "evaluation")


# ------------------------------------------------------------------ robust accuracy


def threat_label(name: str, threat: dict) -> str:
    """A threat as a column head: its name and budget, e.g. ``linf ε = 8/255``."""
    return f"{name} ε = {fmt_budget(threat['eps'])}"


def robust_accuracies(results: Mapping[tuple, dict]) -> dict[tuple, float]:
    """{(model, threat): robust accuracy} of a robust table."""
    return {key: r["robust_accuracy"] for key, r in results.items()}


def robust_gap(results: Mapping[tuple, dict], a, b, threat: str = "linf") -> dict:
    """How much more robust ``a`` is than ``b`` under ``threat``: the paired gap of
    :func:`~robgen_lib.book.analysis.common.robust_gap` on the ``robust`` flags of a robust
    table (or of :func:`worst_cases`)."""
    return common.robust_gap(results, a, b, threat)


def worst_cases(own: Mapping[tuple, dict], independent: Mapping[tuple, dict]) -> dict[tuple, dict]:
    """Each model's worst case over the book's attack and the independent attacks (APGD-CE →
    APGD-DLR → Square, whose last column is the cumulative result): see
    :func:`~robgen_lib.book.analysis.common.worst_case`."""
    return common.worst_case(own, independent, other_key="square")


def worst_case_table(worst: Mapping[tuple, dict], labels: Mapping[str, str]):
    """Per model and threat: robust accuracy under the book's attack and in the worst case,
    and the paired drop own − worst (what the independent attacks add), on the same images."""
    return table({f"{name}, {labels.get(t, t)}": {"book's attack": str(proportion(w["own_robust"])),
                                                   "worst case": str(proportion(w["robust"])),
                                                   "drop": str(paired(w["own_robust"], w["robust"]))}
                  for (name, t), w in worst.items()}, "model, threat")


def _models(results: Mapping[tuple, dict]) -> list:
    return list(dict.fromkeys(name for name, _ in results))


def robust_accuracy_table(results: Mapping[tuple, dict], threats: Mapping[str, dict], *, clean_from: str = "linf"):
    """Clean accuracy (from the ``clean_from`` threat's run) and robust accuracy under each
    threat, each with its 95 % Wilson interval; one row per model, n in the last column."""
    return table({n: {"clean": _interval(proportion(results[(n, clean_from)]["clean"])),
                      **{threat_label(t, v): _interval(proportion(results[(n, t)]["robust"])) for t, v in threats.items()},
                      "n": len(results[(n, clean_from)]["robust"])}
                  for n in _models(results)}, "model")


def _interval(e: Estimate) -> str:
    return f"{100 * e.value:.1f} % [{100 * e.low:.1f}, {100 * e.high:.1f}]"


def accuracy_bars(results: Mapping[tuple, dict], threats: Mapping[str, dict], *, clean_from: str = "linf") -> dict:
    """The robust table as bar groups in percent: clean, then each threat; one bar per model."""
    names = _models(results)
    return {"clean": {n: 100 * results[(n, clean_from)]["clean_accuracy"] for n in names},
            **{threat_label(t, v): {n: 100 * results[(n, t)]["robust_accuracy"] for n in names}
               for t, v in threats.items()}}


def masking_table(base: Mapping, strong: Mapping, huge: Mapping, *, steps: int, restarts: int, big_eps: float,
                  threat: str = "linf", huge_threat: str = "huge"):
    """Robust accuracy of the models of ``strong`` under the chapter's attack (``base``: PGD-``steps``
    × ``restarts``), the stronger one (twice both) and the huge budget ``big_eps``."""
    return table({n: {f"PGD-{steps} × {restarts}": _interval(proportion(base[(n, threat)]["robust"])),
                      f"PGD-{2 * steps} × {2 * restarts}": _interval(proportion(strong[(n, threat)]["robust"])),
                      f"ε = {fmt_budget(big_eps)}": _interval(proportion(huge[(n, huge_threat)]["robust"])),
                      "n": len(base[(n, threat)]["robust"])}
                  for n in _models(strong)}, "model")


def gradient_table(results: Mapping[tuple, dict]):
    """Robust accuracy of one-LM-step RDC per gradient through LM (results keyed ``(gradient, threat)``)."""
    return table({f"RDC, 1 LM step, {g}": {"robust accuracy (CE)": str(proportion(r["robust"]))}
                  for (g, _), r in results.items()}, "gradient through LM")


def stronger_attack(base: Mapping, strong: Mapping, name: str, *, threat: str = "linf") -> dict:
    """Robust accuracy of ``name`` under the chapter's attack (``base``) and a stronger one
    (same images), and the paired drop base − strong."""
    b, s = base[(name, threat)]["robust"], strong[(name, threat)]["robust"]
    return {"base": proportion(b), "strong": proportion(s), "drop": paired(b, s)}


def rates(results: Mapping[tuple, dict]) -> dict[tuple, Estimate]:
    """Every entry's robust accuracy with its Wilson interval, keyed as the table is."""
    return {key: proportion(r["robust"]) for key, r in results.items()}


def gradients_agree(results: Mapping[tuple, dict], a: str = "bpda", b: str = "exact", *,
                    threat: str = "linf") -> dict:
    """Two gradients through LM on the same images: each one's robust accuracy and the paired
    difference a − b (``difference``)."""
    diff = paired(results[(a, threat)]["robust"], results[(b, threat)]["robust"])
    return {"a": proportion(results[(a, threat)]["robust"]), "b": proportion(results[(b, threat)]["robust"]),
            "difference": diff}


def attack_step(eps: float, steps: int) -> float:
    """The step size of the book's attacks on the diffusion models: 2.5·ε / steps."""
    return 2.5 * eps / steps


def energy_samples(energies: Mapping[str, dict]) -> dict:
    """The marginal energies to histogram: clean (from the first attack's run), then each attack's."""
    first = next(iter(energies.values()))
    return {"clean": first["clean_energy"], **{a: r["adv_energy"] for a, r in energies.items()}}


def energy_shifts(energies: Mapping[str, dict]) -> dict[str, dict]:
    """Per attack (an ``attack_energies`` result): the accuracy under attack, the mean energy
    shift mean(E(x′) − E(x)) with its bootstrap interval (``shift_ci``), and the AUROC of the
    low-energy detector (score −E; attacked points are the positives)."""
    return {a: {"accuracy": r["accuracy"], "shift": float((r["adv_energy"] - r["clean_energy"]).mean()),
                "shift_ci": bootstrap((r["adv_energy"] - r["clean_energy"]).numpy()),
                "auroc": auroc(-r["clean_energy"].numpy(), -r["adv_energy"].numpy())}
            for a, r in energies.items()}


def energy_reversal(energies: Mapping[str, dict], pgd: str, he: str) -> dict:
    """What "PGD lowers E(x) and HE-PGD raises it back" measures, on the same images: PGD's
    mean shift mean(E(x′) − E(x)) and the mean paired difference of the two attacks' shifts
    (HE-PGD − PGD), each with its bootstrap interval."""
    shift = {a: (energies[a]["adv_energy"] - energies[a]["clean_energy"]).numpy() for a in (pgd, he)}
    return {"pgd_shift": bootstrap(shift[pgd]), "raise_back": bootstrap(shift[he] - shift[pgd])}


def energy_table(shifts: Mapping[str, dict]):
    """Accuracy under attack, mean energy shift and detector AUROC, one row per attack."""
    return table({a: {"accuracy under attack": pct(s["accuracy"]), "mean E shift": f"{s['shift']:+.4f}",
                      "AUROC of the low-energy detector": f"{s['auroc']:.2f}"} for a, s in shifts.items()}, "attack")
