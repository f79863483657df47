"""Chapter 3 (energy landscapes, noise and JEAT; Zhu et al. 2021): how flat the joint energy
E(x, y) = −f(x)[y] is around the data, how well each classifier generates from Gaussian
seeds (rated by the scorers' FID-/IS-style scores), how generation changes with the
training noise σ, and JEAT's training, samples and robustness."""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import nn

from ...core.attacks import predict_logits
from ...core.data import Split
from ...core.energy import joint_energy
from ...core.fit import TrainedModel
from ...core.stats import LEVEL, Estimate, bootstrap, paired
from ...methods.evaluate import accuracy_of
from ...methods.landscape import centre_rank, centre_ranks
from ...methods.quality import HIGHER_IS_BETTER, FidelityUnavailable, fidelity_scores, rate
from ...methods.sampling import fit_class_gaussians, sample_seeds
from .. import plots
from ..report import fmt_budget, pct, table

__all__ = ["noise_name", "sweep_names", "shown_models", "landscape_figure", "mean_joint_energy",
           "flatness_summary", "flatness_table", "flatness_ratios", "flatness_text", "landscape_ranks", "ranks_text",
           "scorers_table", "class_seeds", "first_of_each_class", "rate_sets", "score_pairs", "score_name",
           "quality_gains", "gains_text", "sigma_sweep_figure", "noise_trend", "trend_text", "by_seed",
           "equal_l2_sigma", "robustness_gaps", "training_history_figure", "clean_and_attacked_accuracy",
           "robustness_table", "real_scores", "real_scores_table", "inception_difference"]

#: The two scores every sample set gets from each scorer (higher IS-style is better, lower FID-style).
METRICS = ("is_style", "fid_style")


def score_name(scorer: str, metric: str) -> str:
    """A score's name as the claims name their parts: ``"fid-style (robust scorer)"``."""
    return f"{metric.replace('_', '-')} ({scorer})"


def by_seed(per_seed: Mapping[int, object], text) -> str:
    """Each training seed's numbers, as a verdict prints them: ``"seed 0: …; seed 1: …"``
    (``text``: one seed's evidence in words, its parts joined by commas)."""
    return "; ".join(f"seed {s}: {text(e)}" for s, e in per_seed.items())


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


def flatness_ratios(sharp: dict, flat: dict) -> dict[str, Estimate]:
    """How much flatter ``flat`` is than ``sharp`` (two :func:`flatness_summary` entries on the
    same images): three ratios sharp / flat of means over the images, with paired bootstrap
    intervals — ``gradient``: mean ‖∇ₓE(x, y)‖ at the data; ``per logit std``: the same per unit
    of each model's logit std (scale alone cannot make it fall); ``ε-ball range``: the mean
    range of E(x', y) over the ε-ball. Each is above 1 where ``flat`` is flatter."""
    return {"gradient": _ratio(sharp["grad_norms"], flat["grad_norms"]),
            "per logit std": _ratio(np.asarray(sharp["grad_norms"]) / sharp["logit_std"],
                                    np.asarray(flat["grad_norms"]) / flat["logit_std"]),
            "ε-ball range": _ratio(sharp["ball_ranges"], flat["ball_ranges"])}


def flatness_text(ratios: Mapping[str, Estimate]) -> str:
    """:func:`flatness_ratios` in words."""
    g, s, r = ratios["gradient"], ratios["per logit std"], ratios["ε-ball range"]
    return (f"standard/adv. trained ratio of mean ‖∇E‖ {_interval(g)}, per unit of logit std {_interval(s)}, "
            f"of the ε-ball range {_interval(r)} (n = {g.n})")


def landscape_ranks(standard: dict, robust: dict) -> dict[str, Estimate]:
    """Where the image sits in its own landscape (``ranks`` of :func:`flatness_summary`: per
    image, the fraction of grid points below it): ``rank``, the standard model's mean rank,
    and ``gap``, the standard model's mean rank minus the robust model's on the same images,
    with (paired) bootstrap intervals."""
    rs, rr = np.asarray(standard["ranks"]), np.asarray(robust["ranks"])
    return {"rank": bootstrap(rs), "gap": bootstrap((rs, rr), lambda u, v, axis: u.mean(axis) - v.mean(axis))}


def ranks_text(ranks: Mapping[str, Estimate]) -> str:
    """:func:`landscape_ranks` in words."""
    return (f"standard model's mean rank {_interval(ranks['rank'])}, minus the adversarially trained model's "
            f"{_interval(ranks['gap'], signed=True)} (n = {ranks['rank'].n})")


def _interval(e: Estimate, signed: bool = False, digits: int = 3) -> str:
    f = f"{'+' if signed else ''}.{digits}g"
    return f"{e.value:{f}} [{e.low:{f}}, {e.high:{f}}]"


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


def quality_gains(differences: Mapping[str, dict], rating_b: Mapping[str, dict],
                  names: Sequence[str] | None = None) -> dict[str, Estimate]:
    """Sample set A's gain over set B (grown from the same seeds) on each score, from the
    measurements of :func:`~robgen_lib.methods.quality.quality_differences` (A minus B: value,
    paired bootstrap interval over the seeds, n) and B's scores ``rating_b`` (scorer → scores,
    as :func:`rate_sets` gives them): the difference in units of B's score, signed so that
    positive means A is better,

        IS-style: (IS_A − IS_B) / IS_B,    FID-style: (FID_B − FID_A) / FID_B,

    with the interval of A − B scaled the same way (B's score is the unit, held fixed).
    ``names``: the scores to keep, in order (:func:`score_name`; default every one)."""
    measured = {score_name(m["scorer"], m["metric"]): m for m in differences.values()}
    missing = [n for n in names or () if n not in measured]
    if missing:
        raise KeyError(f"no measured difference for {missing} (measured: {sorted(measured)})")
    out = {}
    for name in names or list(measured):
        m = measured[name]
        unit = float(rating_b[m["scorer"]][m["metric"]])
        if not unit > 0:
            raise ValueError(f"{name}: B's score {unit} cannot be the unit of a gain")
        sign = 1.0 if HIGHER_IS_BETTER[m["metric"]] else -1.0
        low, high = sorted((sign * m["low"] / unit, sign * m["high"] / unit))
        out[name] = Estimate(sign * m["value"] / unit, low, high, int(m["n"]))
    return out


def gains_text(gains: Mapping[str, Estimate]) -> str:
    """:func:`quality_gains` in words: each score's gain in % of B's score with its interval, then n."""
    n = next(iter(gains.values())).n
    return ", ".join(f"{name} {100 * e.value:+.1f} % [{100 * e.low:+.1f}, {100 * e.high:+.1f}]"
                     for name, e in gains.items()) + f" (n = {n})"


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


def noise_trend(quality: Mapping[str, dict], sigma_grid: Sequence[float],
                names: Sequence[str] | None = None) -> dict[str, Estimate]:
    """How generation changes with the training noise within one training seed's sweep
    (``quality``: {model name: rating} of that seed's sweep): per score, Spearman's ρ between σ
    and the score of the samples of the model trained at σ (``scipy.stats.spearmanr``), signed
    so that positive means better at larger σ (ρ(σ, −FID-style) for a distance), with the
    Bonett–Wright interval on Fisher's z over the n = len(sigma_grid) points,

        tanh(atanh ρ ± z₀.₉₇₅ · sqrt((1 + ρ²/2) / (n − 3))).

    A score that is the same at every σ ranks nothing, and a sweep of three σ or fewer has no
    interval: ρ = 0 over the whole range [−1, 1]. A perfect ranking (|ρ| = 1) has the
    transform's limit for its interval, the point itself. ``names``: the scores to keep, in
    order (:func:`score_name`; default every one)."""
    sig = [float(s) for s in sigma_grid]
    n = len(sig)
    pairs = {score_name(s, m): (s, m) for s, m in score_pairs(quality)}
    out = {}
    for name in names or list(pairs):
        s, m = pairs[name]
        sign = 1.0 if HIGHER_IS_BETTER[m] else -1.0
        values = [sign * quality[model][s][m] for model in sweep_names(sig)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # scipy warns of a constant input; handled below
            rho = float(stats.spearmanr(sig, values).statistic)
        if not np.isfinite(rho) or n <= 3:
            out[name] = Estimate(0.0, -1.0, 1.0, n, percent=False)
            continue
        half = stats.norm.ppf(0.5 + LEVEL / 2) * np.sqrt((1 + rho ** 2 / 2) / (n - 3))
        with np.errstate(divide="ignore"):
            z = np.arctanh(rho)
        out[name] = Estimate(rho, float(np.tanh(z - half)), float(np.tanh(z + half)), n, percent=False)
    return out


def trend_text(trend: Mapping[str, Estimate]) -> str:
    """:func:`noise_trend` in words: each score's ρ with its interval, then the number of σ."""
    n = next(iter(trend.values())).n
    return ", ".join(f"{name} {e.value:+.2f} [{e.low:+.2f}, {e.high:+.2f}]" for name, e in trend.items()) \
        + f" (n = {n} σ)"


def equal_l2_sigma(x: torch.Tensor, x_adv: torch.Tensor) -> float:
    """The Gaussian σ whose expected ℓ2 norm matches the adversarial perturbations':
    E‖N(0, σ²I_d)‖₂ ≈ σ√d, so σ = mean ‖x_adv − x‖₂ / √d (3 significant digits)."""
    d = x[0].numel()
    sigma = float((x_adv - x).flatten(1).norm(dim=1).mean()) / d ** 0.5
    return float(f"{sigma:.3g}")


def robustness_gaps(correct_a: Mapping[int, torch.Tensor],
                    correct_b: Mapping[int, torch.Tensor]) -> dict[int, Estimate]:
    """Per training seed, the robust accuracy of A minus that of B on the same images, from
    their per-image robust correctness: Newcombe's paired interval and McNemar's p
    (:func:`~robgen_lib.core.stats.paired`)."""
    return {seed: paired(correct_a[seed], correct_b[seed]) for seed in correct_a}


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
    ``reference``, with ``splits``: the number of splits the score's std is over (as
    :func:`~robgen_lib.methods.quality.fidelity_scores` splits, at most 10). Returns
    ``(scores, why_not)``: no scores and the reason when ``enabled`` is false or torch-fidelity
    (or its weights) is unavailable."""
    if not enabled:
        return {}, "real IS/FID not computed at this profile (fidelity=False): the FID-/IS-style scores above stand in"
    scores = {}
    try:
        for name in names:
            scores[name] = {**fidelity_scores(samples[name], reference), "splits": min(10, len(samples[name]))}
    except FidelityUnavailable as exc:
        return scores, f"real IS/FID skipped: {exc}"
    return scores, None


def real_scores_table(scores: Mapping[str, dict]):
    """Inception Score (mean ± std over splits) and FID of each sample set."""
    return table({name: {"Inception Score": f"{s['IS']:.2f} ± {s['IS_std']:.2f}", "FID": f"{s['FID']:.1f}"}
                  for name, s in scores.items()}, "samples")


def inception_difference(a: Mapping[str, float], b: Mapping[str, float]) -> Estimate:
    """Inception Score of sample set A minus that of B (:func:`real_scores` entries), with a
    Welch-style interval from each score's spread over its k splits:

        IS_A − IS_B ± t₀.₉₇₅(2k − 2) · sqrt((s_A² + s_B²) / k),

    s the std of the score over the splits (n: the splits of each)."""
    k = int(min(a["splits"], b["splits"]))
    d = a["IS"] - b["IS"]
    if k < 2:
        return Estimate(d, -np.inf, np.inf, k, percent=False)
    half = stats.t.ppf(0.5 + LEVEL / 2, 2 * k - 2) * np.sqrt((a["IS_std"] ** 2 + b["IS_std"] ** 2) / k)
    return Estimate(d, d - half, d + half, k, percent=False)
