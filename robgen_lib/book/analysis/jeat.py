"""Chapter 3 (energy landscapes, noise and JEAT; Zhu et al. 2021): how flat the joint energy
E(x, y) = −f(x)[y] is around the data, how well each classifier generates from Gaussian
seeds (rated by the scorers' FID-/IS-style scores), how generation changes with the
training noise σ, and JEAT's training, samples and robustness."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn

from ...core.attacks import predict_logits
from ...core.data import Split
from ...core.energy import joint_energy
from ...core.fit import TrainedModel
from ...core.stats import Estimate, all_of, bootstrap, decide, paired
from ...methods.evaluate import accuracy_of
from ...methods.landscape import centre_rank, centre_ranks
from ...methods.quality import HIGHER_IS_BETTER, FidelityUnavailable, fidelity_scores, rate, saturated
from ...methods.sampling import fit_class_gaussians, sample_seeds
from .. import plots
from ..report import fmt_budget, pct, table

__all__ = ["noise_name", "sweep_names", "shown_models", "landscape_figure", "mean_joint_energy",
           "flatness_summary", "flatness_table", "scorers_table", "class_seeds", "first_of_each_class", "rate_sets",
           "score_pairs", "sigma_sweep_figure", "noise_trend", "over_seeds", "training_history_figure",
           "clean_and_attacked_accuracy", "robustness_table", "real_scores", "real_scores_table", "flatter",
           "sits_high", "quality_verdict", "seed_fid_note", "equal_l2_sigma", "at_least_as_robust"]

#: The two scores every sample set gets from each scorer (higher IS-style is better, lower FID-style).
METRICS = ("is_style", "fid_style")


def _label(scorer: str, metric: str) -> str:
    return f"{metric.replace('_', '-')} ({scorer})"


# -- the models -------------------------------------------------------------------------
def noise_name(sigma: float) -> str:
    """The chapter's name of the model trained with noise σ: ``"standard"`` at σ = 0, else ``"noise σ = …"``."""
    return "standard" if float(sigma) == 0 else f"noise σ = {float(sigma):.3g}"


def sweep_names(sigma_grid: Sequence[float]) -> list[str]:
    """The model names of the σ sweep, in the sweep's order."""
    return [noise_name(s) for s in sigma_grid]


def shown_models(names, sigma_grid: Sequence[float]) -> list[str]:
    """The models whose landscapes and samples are drawn: the standard one, the noise-trained one
    at the sweep's largest σ, the adversarially trained one and JEAT — those among ``names``."""
    wanted = ["standard", f"noise σ = {float(max(sigma_grid)):.3g}", "adversarially trained", "JEAT"]
    return [name for name in wanted if name in names]


# -- finding 1: flatness ----------------------------------------------------------------
def landscape_figure(landscapes: Mapping[str, dict], names: Sequence[str]):
    """Contours of E(x, y) around the probe images (columns) for the models ``names`` (rows),
    from :func:`~robgen_lib.methods.landscape.energy_landscape` results; the image at the red star."""
    return plots.contours({name: list(landscapes[name]["energy"]) for name in names}, landscapes[names[0]]["offsets"],
                          xlabel="direction 2 (ℓ2)", ylabel="direction 1 (ℓ2)")


def mean_joint_energy(model: nn.Module, split: Split) -> float:
    """Mean joint energy E(x, y) = −f(x)[y] over a split's images under their labels."""
    return float(joint_energy(predict_logits(model, split.x), split.y).mean())


def flatness_summary(flatness: Mapping[str, dict], energy_at_data: Mapping[str, float],
                     landscapes: Mapping[str, dict]) -> dict[str, dict]:
    """Per model, the numbers of finding 1: ``grad_norm`` (mean ‖∇ₓE(x, y)‖₂ at the data) and
    ``ball_range`` (mean max − min of E(x′, y) in the ε-ball) from
    :func:`~robgen_lib.methods.landscape.flatness`, ``energy`` (mean E(x, y) at the data), and
    ``rank``: the fraction of landscape grid points below the image itself (0 = the image is
    the lowest point, 1 the highest; :func:`~robgen_lib.methods.landscape.centre_rank`)."""
    return {name: {**f, "energy": energy_at_data[name], "rank": centre_rank(landscapes[name]["energy"]),
                   "ranks": centre_ranks(landscapes[name]["energy"])}
            for name, f in flatness.items()}


def _ratio(a, b) -> Estimate:
    """mean(a) / mean(b) over the same images, with a paired bootstrap interval."""
    return bootstrap((np.asarray(a), np.asarray(b)), lambda u, v, axis: u.mean(axis) / v.mean(axis))


def flatter(sharp: dict, flat: dict) -> dict:
    """Is ``flat`` (a :func:`flatness_summary` entry) flatter than ``sharp`` on the same images?
    Three ratios sharp / flat with paired bootstrap intervals: the gradient norm ``grad``, the
    gradient per unit of each model's logit std ``normalised`` (scale alone cannot make it
    fall) and the ε-ball ``range``. ``holds``: every ratio's interval above 1 (None if one
    straddles 1, False if one lies at or below it)."""
    grad = _ratio(sharp["grad_norms"], flat["grad_norms"])
    norm = _ratio(np.asarray(sharp["grad_norms"]) / sharp["logit_std"], np.asarray(flat["grad_norms"]) / flat["logit_std"])
    rng = _ratio(sharp["ball_ranges"], flat["ball_ranges"])
    return {"grad": grad, "normalised": norm, "range": rng,
            "holds": all_of(decide(grad, 1.0), decide(norm, 1.0), decide(rng, 1.0)),
            "text": f"sharp/flat ratio of mean |grad E| {grad}; per unit of logit std {norm}; "
                    f"of the ε-ball range {rng}"}


def sits_high(standard: dict, robust: dict) -> dict:
    """Does the image sit high in its own landscape on the standard model? Per image, the
    fraction of grid points below it (``ranks`` of :func:`flatness_summary`): the standard
    model's mean rank must exceed 0.5 and the robust model's on the same images (paired
    bootstrap intervals; None where an interval straddles its bar)."""
    rs, rr = np.asarray(standard["ranks"]), np.asarray(robust["ranks"])
    mean = bootstrap(rs)
    gap = bootstrap((rs, rr), lambda u, v, axis: u.mean(axis) - v.mean(axis))
    return {"mean": mean, "gap": gap, "holds": all_of(decide(mean, 0.5), decide(gap, 0.0)),
            "text": f"standard model's mean rank {mean}; minus the adversarially trained model's {gap}"}


def flatness_table(summary: Mapping[str, dict], eps: float):
    """The :func:`flatness_summary` numbers, one row per model."""
    return table({name: {"mean ‖∇E(x,y)‖ at data": f"{f['grad_norm']:.3g}",
                         "… per unit of logit std": f"{f['grad_norm'] / f['logit_std']:.3g}",
                         f"E range in ε-ball (ε = {fmt_budget(eps)})": f"{f['ball_range']:.3g}",
                         "mean E(x,y) at data": f"{f['energy']:.2f}",
                         "centre's rank in its landscape": f"{f['rank']:.2f}"}
                  for name, f in summary.items()}, "model")


# -- finding 2: generation ------------------------------------------------------------------
def scorers_table(scorers: Mapping[str, object]):
    """What each scorer is: architecture, training seed, test accuracy, trained now or cached."""
    def row(m):
        if not isinstance(m, TrainedModel):   # a network-free scorer (pixels)
            return {"architecture": f"{m.k}-nearest neighbours on pixels", "seed": "–", "test accuracy": "–",
                    "": "no training"}
        return {"architecture": m.spec.get("arch", ""), "seed": m.spec.get("seed", ""),
                "test accuracy": pct(m.test_accuracy), "": "from cache" if m.from_cache else "trained now"}

    return table({name: row(m) for name, m in scorers.items()}, "scorer")


def class_seeds(train: Split, num_classes: int, per_class: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Santurkar et al.'s starting points: for each class k in turn, ``per_class`` draws from a
    Gaussian with full covariance (+10⁻⁴·I) fitted to class k's training images, clamped to
    [0, 1] (drawn with ``seed``). Returns ``(seeds, targets)``, targets = 0…0, 1…1, …"""
    targets = torch.arange(num_classes).repeat_interleave(per_class)
    seeds = sample_seeds(fit_class_gaussians(train, num_classes), targets,
                         generator=torch.Generator().manual_seed(seed))
    return seeds, targets


def first_of_each_class(num_classes: int, per_class: int, n_show: int) -> torch.Tensor:
    """Indices of the first ``n_show`` samples of every class in a set laid out as
    :func:`class_seeds` lays it out (``per_class`` samples per class, class 0 first)."""
    return torch.cat([torch.arange(k * per_class, k * per_class + n_show) for k in range(num_classes)])


def rate_sets(scorers: Mapping[str, object], sets: Mapping[str, torch.Tensor], reference: torch.Tensor,
              targets: torch.Tensor | None) -> dict[str, dict]:
    """Each sample set rated by every scorer (trained models): set name → scorer name →
    FID-style distance to ``reference``, IS-style score and agreement with ``targets``
    (:func:`~robgen_lib.methods.quality.rate`)."""
    networks = {name: getattr(m, "model", m) for name, m in scorers.items()}
    return {name: rate(networks, x, reference, targets) for name, x in sets.items()}


def score_pairs(quality: Mapping[str, dict]) -> list[tuple[str, str]]:
    """Every (scorer, metric) pair of a :func:`rate_sets` result: scorers in order, IS-style then FID-style."""
    return [(s, m) for s in next(iter(quality.values())) for m in METRICS]


def quality_verdict(differences: Mapping[str, dict], a_name: str, num_classes: int) -> dict:
    """Do samples A beat samples B (grown from the same seeds)? Decided from the measurements
    of :func:`~robgen_lib.methods.quality.quality_differences` (A minus B): for every scorer and
    metric the paired bootstrap difference decides *better*, *worse* or *tied*; an IS-style
    score at its ceiling K for both sets is *saturated* and does not count. With W better and L
    worse of the n counted scores: every one better → ``holds`` True; none counted → not
    ``informative``; none better or worse → None (inconclusive); more better than worse → False
    with ``only_when`` the better ones; otherwise False (the scores that disagree are at least
    as many)."""
    better, worse, tied, sat, parts = [], [], [], [], []
    n = 0
    for m in differences.values():
        label, n = _label(m["scorer"], m["metric"]), m["n"]
        if m["metric"] == "is_style" and saturated([m["a"], m["b"]], num_classes):
            sat.append(label)
            parts.append(f"{label} saturated ({m['a']:.2f} vs {m['b']:.2f})")
            continue
        d = Estimate(m["value"], m["low"], m["high"], m["n"], percent=False)
        up = HIGHER_IS_BETTER[m["metric"]]
        (better if decide(d, 0.0, above=up) is True else worse if decide(d, 0.0, above=not up) is True
         else tied).append(label)
        parts.append(f"{label} {d.value:+.3g} [{d.low:+.3g}, {d.high:+.3g}]")
    counted = len(better) + len(worse) + len(tied)
    holds = None if not (better or worse) else (len(better) == counted)
    text = (f"{a_name} minus the other, n = {n} paired samples: " + "; ".join(parts)
            + f" — better on {len(better)}, worse on {len(worse)}, tied on {len(tied)} of {counted} counted scores")
    return {"better": better, "worse": worse, "tied": tied, "saturated": sat, "holds": holds,
            "informative": counted > 0, "text": text,
            "only_when": f"judged by {', '.join(better)}" if better and len(better) > len(worse) else None}


def seed_fid_note(quality: Mapping[str, dict], generators: Sequence[str], seeds: str = "Gaussian seeds") -> str | None:
    """A sentence when every generator's FID-style distance is larger than that of the seeds
    it started from, under every scorer (generation moves the seeds away from the data's
    feature statistics), else None."""
    start = quality[seeds]
    if not all(quality[g][s]["fid_style"] > start[s]["fid_style"] for g in generators for s in start):
        return None
    values = ", ".join(f"{s} {start[s]['fid_style']:.3g}" for s in start)
    return (f"Under every scorer, every generator's samples are farther (FID-style) from the real images than the "
            f"{seeds} they started from ({values}): on this data the class Gaussians already match the "
            f"features' statistics, and generating moves away from them.")


# -- finding 3: noise ----------------------------------------------------------------------
def sigma_sweep_figure(quality: Mapping[str, dict], flatness: Mapping[str, dict], sigma_grid: Sequence[float],
                       other_seeds: Sequence[Mapping[str, dict]] = ()):
    """One panel per (scorer, metric): the score of the noise-trained models' samples against
    the training σ (the line: the main training seed; dots: ``other_seeds``' qualities, one
    per further training seed), with adversarial training's as a dashed line; a last panel
    does the same for the mean ‖∇E(x, y)‖ at the data (``flatness``: a :func:`flatness_summary`)."""
    sig = [float(s) for s in sigma_grid]
    names = sweep_names(sig)
    pairs = score_pairs(quality)
    noise, robust = plots.model_colour("noise-trained"), plots.model_colour("adversarially trained")
    fig, axes = plots.grid(len(pairs) + 1, 2.6)
    for ax, (s, m) in zip(axes, pairs):
        ax.plot(sig, [quality[n][s][m] for n in names], "o-", color=noise, label="noise-trained")
        for i, q in enumerate(other_seeds):
            ax.plot(sig, [q[n][s][m] for n in names], "o", ms=3, alpha=0.6, color=noise,
                    label="other training seeds" if i == 0 else None)
        ax.axhline(quality["adversarially trained"][s][m], color=robust, ls="--", label="adversarially trained")
        ax.set_title(s)
        ax.set_xlabel("training noise σ")
        ax.set_ylabel(m.replace("_", "-") + (" ↑" if m == "is_style" else " ↓"))
    axes[-1].plot(sig, [flatness[n]["grad_norm"] for n in names], "o-", color=noise)
    axes[-1].axhline(flatness["adversarially trained"]["grad_norm"], color=robust, ls="--")
    axes[-1].set_title("flatness")
    axes[-1].set_xlabel("training noise σ")
    axes[-1].set_ylabel("mean ‖∇E(x,y)‖ at data")
    plots.shared_legend(fig, axes)
    return fig


def noise_trend(quality: Mapping[str, dict], sigma_grid: Sequence[float], num_classes: int | None = None,
                level: float = 0.05, other_seeds: Sequence[Mapping[str, dict]] = ()) -> dict:
    """Whether generation improves with the training noise: for each (scorer, metric) the
    Spearman rank correlation ρ(σ, score) over the sweep (``rho``) and its p-value
    (``scipy.stats.spearmanr``), pooling the (σ, score) points of every training seed
    (``quality`` and ``other_seeds``, each a {model name: rating} of one seed's sweep). A score
    *improves* when ρ points the better way (> 0 for IS-style, < 0 for FID-style) with
    p < ``level``, *worsens* when it points the other way with p < ``level``; IS-style scores
    at their ceiling K over the whole sweep are ``saturated`` and do not count
    (``num_classes`` given). ``spread``: per score, the largest range over seeds at one σ.
    ``holds``: every counted score improves; None when none improves or worsens;
    ``only_when``: the improving ones, when they outnumber the worsening ones."""
    sig = [float(s) for s in sigma_grid]
    runs = [quality, *other_seeds]
    rho, pval, spread, improving, worsening, sat = {}, {}, {}, [], [], []
    for s, m in score_pairs(quality):
        per_seed = [[q[n][s][m] for n in sweep_names(sig)] for q in runs]
        values = [v for vs in per_seed for v in vs]
        if m == "is_style" and num_classes is not None and saturated(values, num_classes):
            sat.append(_label(s, m))
            continue
        res = spearmanr(sig * len(runs), values)
        r, p = float(res.statistic), float(res.pvalue)
        rho[(s, m)], pval[(s, m)] = r, p
        spread[(s, m)] = max(max(col) - min(col) for col in zip(*per_seed))
        good = r > 0 if HIGHER_IS_BETTER[m] else r < 0
        if p < level:
            (improving if good else worsening).append(_label(s, m))
    counted = len(rho)
    holds = None if not (improving or worsening) else len(improving) == counted
    seeds = f" × {len(runs)} training seeds" if len(runs) > 1 else ""
    text = "Spearman(σ, score) over {} σ{}: ".format(len(sig), seeds) + ", ".join(
        f"{_label(s, m)} {r:+.2f} (p = {pval[(s, m)]:.2g}"
        + (f"; seeds spread ≤ {spread[(s, m)]:.2g}" if len(runs) > 1 else "") + ")" for (s, m), r in rho.items())
    if sat:
        text += "; saturated: " + ", ".join(sat)
    return {"rho": rho, "p": pval, "spread": spread, "improving": improving, "worsening": worsening,
            "saturated": sat, "all_improve": holds is True, "holds": holds, "informative": counted > 0, "text": text,
            "only_when": f"judged by {', '.join(improving)}" if improving and len(improving) > len(worsening) else None}


def over_seeds(verdicts: Mapping[int, dict]) -> dict:
    """One verdict from :func:`quality_verdict`'s per training seed (the first in full, the
    others by their counts): the seeds' common answer
    (every seed True → True, every seed False → False, with the first seed's ``only_when``
    when every seed has the same), otherwise None — the seeds disagree, inconclusive."""
    answers = [v["holds"] for v in verdicts.values()]
    first = next(iter(verdicts.values()))
    holds = answers[0] if all(a == answers[0] for a in answers) else None
    same_only = all(v["only_when"] == first["only_when"] for v in verdicts.values())
    text = first["text"]
    if len(verdicts) > 1:
        text += "; other training seeds: " + "; ".join(
            f"seed {s}: better on {len(v['better'])}, worse on {len(v['worse'])}, tied on {len(v['tied'])}"
            for s, v in list(verdicts.items())[1:])
        text += f" — {sum(a is True for a in answers)} of {len(answers)} seeds say yes, {sum(a is False for a in answers)} no"
    return {"holds": holds, "informative": all(v["informative"] for v in verdicts.values()), "text": text,
            "only_when": first["only_when"] if holds is False and same_only else None,
            "per_seed": dict(verdicts)}


def equal_l2_sigma(x: torch.Tensor, x_adv: torch.Tensor) -> float:
    """The Gaussian σ whose expected ℓ2 norm matches the adversarial perturbations':
    E‖N(0, σ²I_d)‖₂ ≈ σ√d, so σ = mean ‖x_adv − x‖₂ / √d (3 significant digits)."""
    d = x[0].numel()
    sigma = float((x_adv - x).flatten(1).norm(dim=1).mean()) / d ** 0.5
    return float(f"{sigma:.3g}")


def at_least_as_robust(correct_a: Mapping[int, torch.Tensor], correct_b: Mapping[int, torch.Tensor], *,
                       margin: float = 0.02) -> dict:
    """Is A at least as robust as B (within ``margin``)? Per training seed, the paired
    difference of their per-image robust correctness (Newcombe's interval); a seed says yes
    when the interval lies above −``margin``, no when it lies at or below it. ``holds``: every
    seed yes (False if one says no, None otherwise)."""
    diffs = {seed: paired(correct_a[seed], correct_b[seed]) for seed in correct_a}
    outcomes = [decide(d, -margin) for d in diffs.values()]
    spread = ""
    if len(diffs) > 1:
        vals = [100 * d.value for d in diffs.values()]
        spread = f"; over {len(diffs)} seeds {min(vals):+.1f} … {max(vals):+.1f} points"
    text = "; ".join(f"seed {s}: {d}" for s, d in diffs.items()) + spread
    return {"diffs": diffs, "holds": all_of(*outcomes), "text": text}


# -- JEAT -----------------------------------------------------------------------------------
def training_history_figure(jeat_history: dict, robust_history: dict):
    """Left: test accuracy per epoch of JEAT and the adversarially trained model. Right: JEAT's
    mean marginal energy E(x) per epoch, of the attacked data and of its SGLD samples."""
    fig, axes = plots.grid(2, 3.1)
    for h, label in [(robust_history, "adversarially trained"), (jeat_history, "JEAT")]:
        colour = plots.model_colour(label)
        axes[0].plot(range(1, len(h["test_accuracy"]) + 1), [100 * a for a in h["test_accuracy"]], "o-", ms=3,
                     color=colour, label=label)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend()
    epochs = range(1, len(jeat_history["energy_data"]) + 1)
    data_colour, sample_colour = plots.colours(["data", "samples"])
    axes[1].plot(epochs, jeat_history["energy_data"], "o-", ms=3, color=data_colour, label="E(x_adv), data")
    axes[1].plot(epochs, jeat_history["energy_samples"], "s--", ms=3, color=sample_colour, label="E(x̂), SGLD samples")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("mean marginal energy E(x)")
    axes[1].set_title("JEAT")
    axes[1].legend()
    return plots.finish(fig)


def clean_and_attacked_accuracy(logits: Mapping[str, tuple], y: torch.Tensor) -> dict[str, dict]:
    """Per model, the fraction of ``y`` classified correctly from its (clean, attacked) logits:
    ``clean`` and ``attacked``."""
    return {name: {"clean": accuracy_of(clean, y), "attacked": accuracy_of(attacked, y)}
            for name, (clean, attacked) in logits.items()}


def robustness_table(accuracy: Mapping[str, dict], *, steps: int, eps: float):
    """Clean accuracy and accuracy under PGD-``steps`` (ℓ∞ ``eps``), one row per model."""
    return table({name: {"clean accuracy": pct(a["clean"]),
                         f"PGD-{steps} accuracy (ℓ∞ ε = {fmt_budget(eps)})": pct(a["attacked"])}
                  for name, a in accuracy.items()}, "model")


# -- real Inception Score and FID ---------------------------------------------------------
def real_scores(samples: Mapping[str, torch.Tensor], reference: torch.Tensor, names: Sequence[str], *,
                enabled: bool) -> tuple[dict[str, dict], str | None]:
    """torch-fidelity's Inception Score of the samples ``names`` and their FID against
    ``reference``. Returns ``(scores, why_not)``: no scores and the reason when ``enabled`` is
    false or torch-fidelity (or its weights) is unavailable."""
    if not enabled:
        return {}, "real IS/FID not computed at this profile (fidelity=False): the FID-/IS-style scores above stand in"
    scores = {}
    try:
        for name in names:
            scores[name] = fidelity_scores(samples[name], reference)
    except FidelityUnavailable as exc:
        return scores, f"real IS/FID skipped: {exc}"
    return scores, None


def real_scores_table(scores: Mapping[str, dict]):
    """Inception Score (mean ± std over splits) and FID of each sample set."""
    return table({name: {"Inception Score": f"{s['IS']:.2f} ± {s['IS_std']:.2f}", "FID": f"{s['FID']:.1f}"}
                  for name, s in scores.items()}, "samples")
