"""Chapter 4 (a single diffusion model as a robust classifier): the T′ and η sweeps, the cost
of a multi-head against a single-head denoiser, the robust-accuracy tables and the energy
view of the diffusion classifier. Robust results are :func:`~robgen_lib.book.studies.robust_table`'s
dicts, keyed ``(model or setting, threat)``."""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from ...core.energy import auroc
from ...core.models import eval_mode, model_device
from ..report import fmt_budget, pct, table
from ..yardstick import prediction_cost

__all__ = ["denoiser_summary", "sweep", "sweep_table", "percent_curves", "timestep_tradeoff", "best_setting",
           "MULTI_HEAD", "SINGLE_HEAD", "head_cost", "head_savings", "cost_table", "threat_label",
           "robust_accuracies", "robust_accuracy_table", "accuracy_bars", "masking_table", "gradient_table",
           "stronger_attack", "highest_robust_accuracy", "attack_step", "energy_samples", "energy_shifts",
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
    ``clean`` and ``robust`` (lists of fractions)."""
    settings = [s for s, t in results if t == threat]
    return {"settings": settings,
            "clean": [results[(s, threat)]["clean_accuracy"] if clean is None else clean[s] for s in settings],
            "robust": [results[(s, threat)]["robust_accuracy"] for s in settings]}


def sweep_table(sw: dict, index: str, *, columns: Sequence[str] = ("clean", "robust"), label: Callable = str):
    """The sweep as a table: one row per setting (written by ``label``), clean and robust accuracy."""
    return table({label(s): {columns[0]: pct(c), columns[1]: pct(r)}
                  for s, c, r in zip(sw["settings"], sw["clean"], sw["robust"])}, index)


def percent_curves(sw: dict, robust_label: str) -> dict[str, list[float]]:
    """The sweep's clean and robust accuracy in percent, as curves to plot against its settings."""
    return {"clean": [100 * c for c in sw["clean"]], robust_label: [100 * r for r in sw["robust"]]}


def timestep_tradeoff(sw: dict, low, high) -> dict:
    """Clean and robust accuracy at two settings of the T′ sweep, and ``robust_gains_more``:
    from ``low`` to ``high`` robust accuracy rises, and by more than clean accuracy does:
    r_high > r_low and (c_high − c_low) < (r_high − r_low). This is the book's reading of
    "fewer timesteps barely change clean accuracy but lower robust accuracy"."""
    i, j = sw["settings"].index(low), sw["settings"].index(high)
    c_lo, r_lo, c_hi, r_hi = sw["clean"][i], sw["robust"][i], sw["clean"][j], sw["robust"][j]
    return {"low": low, "high": high, "clean_low": c_lo, "clean_high": c_hi, "robust_low": r_lo, "robust_high": r_hi,
            "robust_gains_more": (c_hi - c_lo) < (r_hi - r_lo) and r_hi > r_lo}


def best_setting(sw: dict) -> tuple:
    """The setting with the highest robust accuracy and that accuracy; on a tie, the first
    setting of the sweep (the smallest, for a sorted sweep)."""
    i = max(range(len(sw["settings"])), key=lambda k: (sw["robust"][k], -k))
    return sw["settings"][i], sw["robust"][i]


# ------------------------------------------------------------------ cost: multi-head vs single-head

MULTI_HEAD, SINGLE_HEAD = "multi-head (one pass)", "single-head (K passes)"


def head_cost(multi_head: nn.Module, single_head: nn.Module, images: torch.Tensor) -> dict[str, dict]:
    """The same diffusion classifier evaluated two ways on ``images``: every class's noise in
    one pass (``multi_head``) or one pass per class (``single_head``). Per way: network
    evaluations per image and ms per image (:func:`~robgen_lib.book.yardstick.prediction_cost`:
    the denoiser's passes counted by a hook, one warm-up call, then one timed call) and the
    logits of one more call (on the CPU)."""
    out = {}
    for label, model in ((MULTI_HEAD, multi_head), (SINGLE_HEAD, single_head)):
        cost = prediction_cost(model, images)
        with eval_mode(model), torch.no_grad():
            logits = model(images.to(model_device(model))).cpu()
        out[label] = {**cost, "logits": logits}
    return out


def head_savings(cost: dict[str, dict], num_classes: int, *, atol: float = 1e-5) -> dict:
    """What the multi-head layout saves: evaluations per image both ways (``multi``, ``single``),
    their ratio single/multi, the wall-time speed-up, ``same_logits`` (equal within ``atol``)
    and ``cut_by_k``: the ratio is exactly K and the logits are the same."""
    multi, single = cost[MULTI_HEAD], cost[SINGLE_HEAD]
    ratio = single["evaluations"] / multi["evaluations"]
    same = torch.allclose(multi["logits"], single["logits"], atol=atol)
    return {"multi": multi["evaluations"], "single": single["evaluations"], "ratio": ratio,
            "speedup": single["ms"] / multi["ms"], "same_logits": same, "cut_by_k": ratio == num_classes and same}


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


def _models(results: Mapping[tuple, dict]) -> list:
    return list(dict.fromkeys(name for name, _ in results))


def robust_accuracy_table(results: Mapping[tuple, dict], threats: Mapping[str, dict], *, clean_from: str = "linf"):
    """Clean accuracy (from the ``clean_from`` threat's run) and robust accuracy under each threat, one row per model."""
    return table({n: {"clean": pct(results[(n, clean_from)]["clean_accuracy"]),
                      **{threat_label(t, v): pct(results[(n, t)]["robust_accuracy"]) for t, v in threats.items()}}
                  for n in _models(results)}, "model")


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
    return table({n: {f"PGD-{steps} × {restarts}": pct(base[(n, threat)]["robust_accuracy"]),
                      f"PGD-{2 * steps} × {2 * restarts}": pct(strong[(n, threat)]["robust_accuracy"]),
                      f"ε = {fmt_budget(big_eps)}": pct(huge[(n, huge_threat)]["robust_accuracy"])}
                  for n in _models(strong)}, "model")


def gradient_table(results: Mapping[tuple, dict], n_images: int):
    """Robust accuracy of one-LM-step RDC per gradient through LM (results keyed ``(gradient, threat)``)."""
    return table({f"RDC, 1 LM step, {g}": {f"robust accuracy ({n_images} images, CE)": pct(r["robust_accuracy"])}
                  for (g, _), r in results.items()}, "gradient through LM")


def stronger_attack(base: Mapping, strong: Mapping, name: str, *, threat: str = "linf",
                    tolerance: float = 0.1) -> dict:
    """Robust accuracy of ``name`` under the chapter's attack (``base``) and a stronger one;
    ``holds``: the stronger attack does not raise it and lowers it by at most ``tolerance``;
    ``only_when``: the condition under which the claim stands otherwise (None if it rose)."""
    b, s = base[(name, threat)]["robust_accuracy"], strong[(name, threat)]["robust_accuracy"]
    when = f"the stronger attack is counted (it lowers accuracy by more than {100 * tolerance:.0f} points)"
    return {"base": b, "strong": s, "holds": s <= b and b - s <= tolerance, "only_when": when if s <= b else None}


def highest_robust_accuracy(results: Mapping[tuple, dict]) -> float:
    """The highest robust accuracy of any entry of a robust table."""
    return max(r["robust_accuracy"] for r in results.values())


# ------------------------------------------------------------------ the energy view


def attack_step(eps: float, steps: int) -> float:
    """The step size of the book's attacks on the diffusion models: 2.5·ε / steps."""
    return 2.5 * eps / steps


def energy_samples(energies: Mapping[str, dict]) -> dict:
    """The marginal energies to histogram: clean (from the first attack's run), then each attack's."""
    first = next(iter(energies.values()))
    return {"clean": first["clean_energy"], **{a: r["adv_energy"] for a, r in energies.items()}}


def energy_shifts(energies: Mapping[str, dict]) -> dict[str, dict]:
    """Per attack (an ``attack_energies`` result): the accuracy under attack, the mean energy
    shift mean(E(x′) − E(x)) and the AUROC of the low-energy detector (score −E; attacked
    points are the positives)."""
    return {a: {"accuracy": r["accuracy"], "shift": float((r["adv_energy"] - r["clean_energy"]).mean()),
                "auroc": auroc(-r["clean_energy"].numpy(), -r["adv_energy"].numpy())}
            for a, r in energies.items()}


def energy_table(shifts: Mapping[str, dict]):
    """Accuracy under attack, mean energy shift and detector AUROC, one row per attack."""
    return table({a: {"accuracy under attack": pct(s["accuracy"]), "mean E shift": f"{s['shift']:+.4f}",
                      "AUROC of the low-energy detector": f"{s['auroc']:.2f}"} for a, s in shifts.items()}, "attack")
