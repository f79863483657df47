"""Chapter 3 (energy landscapes, noise and JEAT; Zhu et al. 2021): how flat the joint energy
E(x, y) = −f(x)[y] is around the data, how well each classifier generates from Gaussian
seeds (rated by the scorers' FID-/IS-style scores), how generation changes with the
training noise σ, and JEAT's training, samples and robustness."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from scipy.stats import spearmanr
from torch import nn

from ...core.attacks import predict_logits
from ...core.data import Split
from ...core.energy import joint_energy
from ...methods.evaluate import accuracy_of
from ...methods.landscape import centre_rank
from ...methods.quality import FidelityUnavailable, compare, fidelity_scores, first_as_good, rate
from ...methods.sampling import fit_class_gaussians, sample_seeds
from .. import plots
from ..report import fmt_budget, pct, table

__all__ = ["noise_name", "sweep_names", "shown_models", "landscape_figure", "mean_joint_energy",
           "flatness_summary", "flatness_table", "scorers_table", "class_seeds", "first_of_each_class", "rate_sets",
           "score_pairs", "sigma_sweep_figure", "noise_trend", "noise_catch_up", "training_history_figure",
           "clean_and_attacked_accuracy", "robustness_table", "real_scores", "real_scores_table"]

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
    return {name: {**f, "energy": energy_at_data[name], "rank": centre_rank(landscapes[name]["energy"])}
            for name, f in flatness.items()}


def flatness_table(summary: Mapping[str, dict], eps: float):
    """The :func:`flatness_summary` numbers, one row per model."""
    return table({name: {"mean ‖∇E(x,y)‖ at data": f"{f['grad_norm']:.3g}",
                         f"E range in ε-ball (ε = {fmt_budget(eps)})": f"{f['ball_range']:.3g}",
                         "mean E(x,y) at data": f"{f['energy']:.2f}",
                         "centre's rank in its landscape": f"{f['rank']:.2f}"}
                  for name, f in summary.items()}, "model")


# -- finding 2: generation ------------------------------------------------------------------
def scorers_table(scorers: Mapping[str, object]):
    """What each scorer is: architecture, training seed, test accuracy, trained now or cached."""
    return table({name: {"architecture": m.spec.get("arch", ""), "seed": m.spec.get("seed", ""),
                         "test accuracy": pct(m.test_accuracy), "": "from cache" if m.from_cache else "trained now"}
                  for name, m in scorers.items()}, "scorer")


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
    networks = {name: m.model for name, m in scorers.items()}
    return {name: rate(networks, x, reference, targets) for name, x in sets.items()}


def score_pairs(quality: Mapping[str, dict]) -> list[tuple[str, str]]:
    """Every (scorer, metric) pair of a :func:`rate_sets` result: scorers in order, IS-style then FID-style."""
    return [(s, m) for s in next(iter(quality.values())) for m in METRICS]


# -- finding 3: noise ----------------------------------------------------------------------
def sigma_sweep_figure(quality: Mapping[str, dict], flatness: Mapping[str, dict], sigma_grid: Sequence[float]):
    """One panel per (scorer, metric): the score of the noise-trained models' samples against
    the training σ, with adversarial training's as a dashed line; a last panel does the same
    for the mean ‖∇E(x, y)‖ at the data (``flatness``: a :func:`flatness_summary`)."""
    sig = [float(s) for s in sigma_grid]
    names = sweep_names(sig)
    pairs = score_pairs(quality)
    fig, axes = plots.plt.subplots(1, len(pairs) + 1, figsize=(3.6 * (len(pairs) + 1), 3.2))
    for ax, (s, m) in zip(axes, pairs):
        ax.plot(sig, [quality[n][s][m] for n in names], "o-", color=plots.PALETTE[0], label="noise-trained")
        ax.axhline(quality["adversarially trained"][s][m], color=plots.PALETTE[1], ls="--",
                   label="adversarially trained")
        ax.set_title(s, fontsize=9)
        ax.set_xlabel("training noise σ")
        ax.set_ylabel(m.replace("_", "-") + (" ↑" if m == "is_style" else " ↓"))
        ax.legend(fontsize=7)
    axes[-1].plot(sig, [flatness[n]["grad_norm"] for n in names], "o-", color=plots.PALETTE[0])
    axes[-1].axhline(flatness["adversarially trained"]["grad_norm"], color=plots.PALETTE[1], ls="--")
    axes[-1].set_xlabel("training noise σ")
    axes[-1].set_ylabel("mean ‖∇E(x,y)‖ at data")
    fig.tight_layout()
    return fig


def noise_trend(quality: Mapping[str, dict], sigma_grid: Sequence[float]) -> dict:
    """Whether generation improves with the training noise: for each (scorer, metric) the
    Spearman rank correlation ρ(σ, score) over the sweep (``rho``); a score *improves* when
    ρ > 0 (IS-style) or ρ < 0 (FID-style). Returns ``rho``, the ``improving`` scores,
    ``all_improve``, a sentence ``text`` and ``only_when`` ("judged by …" the improving ones, or None)."""
    sig = [float(s) for s in sigma_grid]
    rho = {(s, m): float(spearmanr(sig, [quality[n][s][m] for n in sweep_names(sig)]).statistic)
           for s, m in score_pairs(quality)}
    improving = [_label(s, m) for (s, m), r in rho.items() if (r > 0 if m == "is_style" else r < 0)]
    return {"rho": rho, "improving": improving, "all_improve": len(improving) == len(rho),
            "text": "Spearman(σ, score): " + ", ".join(f"{_label(s, m)} {r:+.2f}" for (s, m), r in rho.items()),
            "only_when": f"judged by {', '.join(improving)}" if improving else None}


def noise_catch_up(quality: Mapping[str, dict], sigma_grid: Sequence[float], train_eps: float) -> dict:
    """From which σ noise training generates as well as adversarial training. Only the scores
    on which adversarial training beats the standard model count (``informative``); for each,
    ``match`` is the smallest σ of the sweep after its first (σ = 0) whose score is at least as
    good as adversarial training's (None: no σ is). ``slower``: some score is informative and
    every match is None or larger than the training budget ``train_eps``."""
    sig = [float(s) for s in sigma_grid]
    at = quality["adversarially trained"]
    informative = compare(at, quality["standard"], "adversarially trained")["wins"]
    match = {(s, m): first_as_good(sig[1:], [quality[noise_name(v)][s][m] for v in sig[1:]], at[s][m], m)
             for s, m in informative}
    text = (f"smallest σ > 0 as good as adversarial training (ε = {fmt_budget(train_eps)}): "
            + ", ".join(f"{_label(s, m)} {'none' if v is None else f'{v:.3g}'}" for (s, m), v in match.items())
            if informative else "untestable: adversarial training beats the standard model on no score")
    return {"informative": informative, "match": match, "text": text,
            "slower": bool(informative) and all(v is None or v > train_eps for v in match.values())}


# -- JEAT -----------------------------------------------------------------------------------
def training_history_figure(jeat_history: dict, robust_history: dict):
    """Left: test accuracy per epoch of JEAT and the adversarially trained model. Right: JEAT's
    mean marginal energy E(x) per epoch, of the attacked data and of its SGLD samples."""
    fig, axes = plots.plt.subplots(1, 2, figsize=(11, 3.4))
    for h, label, colour in [(robust_history, "adversarially trained", plots.PALETTE[1]),
                             (jeat_history, "JEAT", plots.PALETTE[0])]:
        axes[0].plot(range(1, len(h["test_accuracy"]) + 1), [100 * a for a in h["test_accuracy"]], "o-", ms=3,
                     color=colour, label=label)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("test accuracy (%)")
    axes[0].legend(fontsize=8)
    epochs = range(1, len(jeat_history["energy_data"]) + 1)
    axes[1].plot(epochs, jeat_history["energy_data"], "o-", ms=3, label="E(x_adv), data")
    axes[1].plot(epochs, jeat_history["energy_samples"], "s--", ms=3, label="E(x̂), SGLD samples")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("mean marginal energy E(x)")
    axes[1].set_title("JEAT")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


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
