"""Chapter 5 (analysis by synthesis): what ABS's class models see, what its inference budget
buys, how it fares against CNNs under gradient and decision-based attacks, whether its
adversarials morph, what oversized decoders do to its class margin, which similarity it
should measure, and what randomized smoothing certifies.

Models are passed as trained models (``TrainedModel``: their network is ``.model``)."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ...core.attacks import predict_logits
from ...core.data import Split
from ...core.fit import TrainedModel
from ...core.models import model_device
from ...core.stats import Estimate, bootstrap, difference, paired, proportion
from ...methods.evaluate import knn_labels, robust_at
from ...methods.independent import prediction_cost
from ...methods.smoothing import certified_accuracy
from ..report import fmt_budget, markdown_table, pct, table
from . import common

__all__ = ["class_vaes_summary", "training_curves", "first_of_each_class", "reconstruction_grid", "ms_per_image",
           "budget_curves", "budget_table", "budget_gain", "grid_threats", "robustness_panels", "strongest_attack",
           "strongest_table", "robust_bars", "worst_rates", "robust_gap", "above_floor", "generative_vs_standard",
           "decision_excess", "latent_excess", "per_seed_text", "morphing", "all_fooled", "agreement_gap",
           "adversarial_mosaic", "morph_table", "ladder_table", "ladder_panels", "ladder_ends", "ladder_shrinks",
           "margin_restored", "ood_separation", "auroc_text", "ood_table", "error_ratio", "unseen_reconstructions",
           "similarity_results", "similarity_table", "best_metric", "clean_gap", "radius_grid", "certified_curves",
           "certified_table", "certified_at", "certified_gain", "Undefined"]


# -- the class models -------------------------------------------------------------------

def class_vaes_summary(models: Mapping[str, TrainedModel], *, latent: int, width: int) -> str:
    """One line on the class VAEs: how many per model, their size and parameter count
    (of class 0's VAE), and whether all of ``models`` came from the cache."""
    first = next(iter(models.values())).model
    n_params = sum(p.numel() for p in first[0].parameters())
    cached = all(m.from_cache for m in models.values())
    return (f"{len(first)} class VAEs, latent {latent}, width {width}, {n_params:,} parameters each; "
            + ("from cache" if cached else "trained now"))


def training_curves(abs_vaes: TrainedModel, eabs_vaes: TrainedModel) -> tuple[list[int], dict[str, list[float]]]:
    """The epochs and the per-epoch training losses to plot: both models' negative ELBO and
    the E-ABS-style cross-entropy term; ``([], {})`` when no training history was recorded."""
    elbo = abs_vaes.history.get("elbo")
    if not elbo:
        return [], {}
    return list(range(1, len(elbo) + 1)), {"ABS: negative ELBO": elbo,
                                           "E-ABS-style: negative ELBO": eabs_vaes.history["elbo"],
                                           "E-ABS-style: cross-entropy term": eabs_vaes.history["ce"]}


def first_of_each_class(split: Split, num_classes: int, *, n: int) -> torch.Tensor:
    """The first image of each class 0, 1, … in ``split`` (classes with no image are skipped), at most ``n``."""
    idx = torch.cat([(split.y == k).nonzero()[:1, 0] for k in range(num_classes)])[:n]
    return split.x[idx]


def reconstruction_grid(models: Mapping[str, TrainedModel], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per model, one row per image of ``x``: the image, then every class model's best
    reconstruction of it (class 0 … K−1), flattened to a list of images for a mosaic."""
    x = x.to(model_device(next(iter(models.values())).model))
    out = {}
    for name, m in models.items():
        recon = m.model.explain(x)["recon"].cpu()                        # (n, K, C, H, W)
        out[f"{name}: input | class 0 … {recon.shape[1] - 1}"] = torch.cat([x.cpu().unsqueeze(1), recon], 1).flatten(0, 1)
    return out


# -- the inference budget ----------------------------------------------------------------

def ms_per_image(models: Mapping, x: torch.Tensor) -> dict:
    """Wall time of one batched prediction of ``x``, in ms per image, for each model (after
    a warm-up pass; see :func:`~robgen_lib.methods.independent.prediction_cost`). Machine-dependent."""
    return {key: prediction_cost(m.model, x)["ms"] for key, m in models.items()}


def budget_curves(accuracy: Mapping[tuple, float], step_grid: Sequence[int],
                  sample_grid: Sequence[int]) -> dict[str, list[float]]:
    """Clean accuracy (%) against the number of prior samples N, one line per Adam-step count;
    ``accuracy`` is keyed by (steps, N)."""
    return {f"{s} Adam steps": [100 * accuracy[(s, n)] for n in sample_grid] for s in step_grid}


def budget_table(accuracy: Mapping[tuple, float], ms: Mapping[tuple, float], step_grid: Sequence[int],
                 sample_grid: Sequence[int]):
    """Clean accuracy and (in brackets) ms per image, one row per Adam-step count, one column per N."""
    return table({s: {f"N = {n}": f"{pct(accuracy[(s, n)])} ({ms[(s, n)]:.1f} ms)" for n in sample_grid}
                  for s in step_grid}, "Adam steps")


def budget_gain(accuracy: Mapping[tuple, float], step_grid: Sequence[int], sample_grid: Sequence[int], *,
                n_images: int) -> dict:
    """The smallest budget (first step count, first N of the grids) and the largest (last
    of each): ``low`` / ``high`` as (steps, N), their clean accuracies on ``n_images`` test
    images with Wilson intervals (``low_accuracy`` / ``high_accuracy``), and the ``gain``
    high − low with Newcombe's interval for two rates (the per-image results are not kept)."""
    low, high = (step_grid[0], sample_grid[0]), (step_grid[-1], sample_grid[-1])
    lo, hi = (proportion(round(accuracy[k] * n_images), n_images) for k in (low, high))
    return {"low": low, "high": high, "low_accuracy": lo, "high_accuracy": hi, "gain": difference(hi, lo)}


class Undefined:
    """A rate with no images to count (e.g. the judge's agreement when no adversarial fooled
    the model): prints what is missing."""

    def __init__(self, why: str):
        self.why = why

    def __str__(self) -> str:
        return f"undefined ({self.why})"


# -- robustness against CNNs -------------------------------------------------------------

def grid_threats(grids: Mapping[str, tuple[str, Sequence[float]]]) -> dict[tuple, dict]:
    """Every budget of every norm's grid as a threat: (title, ε) → {"norm", "eps"};
    ``grids``: title → (norm, budgets)."""
    return {(t, e): {"norm": norm, "eps": e} for t, (norm, g) in grids.items() for e in g}


def robustness_panels(curves: Mapping[tuple, dict], grids: Mapping[str, tuple[str, Sequence[float]]],
                      names: Sequence[str], *, steps: int) -> dict:
    """The ``x``, ``data`` and ``xlabel`` of :func:`~robgen_lib.book.plots.panels`: one panel
    per norm, robust accuracy (%) against ε for each model; ``curves`` is keyed by
    (model, (title, ε)) as :func:`grid_threats` names the threats."""
    titles = {t: f"{t} PGD-{steps}" for t in grids}
    return {"x": {titles[t]: list(g) for t, (_, g) in grids.items()},
            "data": {titles[t]: {n: [100 * curves[(n, (t, e))]["robust_accuracy"] for e in g] for n in names}
                     for t, (_, g) in grids.items()},
            "xlabel": {titles[t]: f"{t} budget ε" for t in grids}}


def strongest_attack(pgd: Mapping[tuple, dict], decision: Mapping[tuple, dict], threats: Mapping[str, dict],
                     latent: Mapping[tuple, dict] | None = None) -> dict[tuple, dict]:
    """Per (model, threat) of ``decision``, on the first ``n`` images every attack run on the
    model saw: the per-image flags ``pgd_correct`` (robust to ``pgd``, its losses and restarts),
    ``decision_correct`` (correct and no decision-based adversarial within ε),
    ``latent_correct`` (robust to the ``latent``-descent attack; None where it was not run on
    the model) and ``worst_correct`` — the worst case: robust to every attack run on the model,
    pgd ∧ decision (∧ latent); their fractions ``pgd``, ``decision``, ``latent`` (NaN where not
    run), ``worst`` and ``clean``; the ``median`` distance of the decision-based adversarials
    over the correctly classified images (NaN if none); and ``attacks``, the attacks counted."""
    out = {}
    for (name, t), d in decision.items():
        lat = (latent or {}).get((name, t))
        flags = [pgd[(name, t)]["robust"], robust_at(d, threats[t]["eps"])] + ([lat["robust"]] if lat else [])
        n = min(len(f) for f in flags)
        pgd_ok, dec_ok = flags[0][:n], flags[1][:n]
        lat_ok = flags[2][:n] if lat else None
        worst = pgd_ok & dec_ok if lat_ok is None else pgd_ok & dec_ok & lat_ok
        clean, dist = d["clean"][:n], d["dist"][:n]
        out[(name, t)] = {"n": n, "clean": float(clean.float().mean()), "pgd": float(pgd_ok.float().mean()),
                          "decision": float(dec_ok.float().mean()),
                          "latent": float(lat_ok.float().mean()) if lat else float("nan"),
                          "worst": float(worst.float().mean()),
                          "median": float(dist[clean].median()) if clean.any() else float("nan"),
                          "pgd_correct": pgd_ok, "decision_correct": dec_ok, "latent_correct": lat_ok,
                          "worst_correct": worst,
                          "attacks": "PGD, decision-based" + (", latent descent" if lat else "")}
    return out


def strongest_table(robust: Mapping[tuple, dict], threats: Mapping[str, dict], names: Sequence[str]):
    """Clean accuracy, then per threat the robust accuracy under PGD, the decision-based
    attack, latent descent (– where not run) and the worst case over them."""
    first = next(iter(threats))

    def cell(v):
        return "–" if v != v else pct(v)   # NaN: the attack was not run on this model

    return table({n: {"clean": pct(robust[(n, first)]["clean"]),
                      **{f"{t} ε = {fmt_budget(th['eps'])}: {label}": cell(robust[(n, t)][a]) for t, th in threats.items()
                         for a, label in (("pgd", "PGD"), ("decision", "decision-based"), ("latent", "latent descent"),
                                          ("worst", "worst case"))}}
                  for n in names}, "model")


def robust_bars(robust: Mapping[tuple, dict], threats: Mapping[str, dict]) -> dict[str, dict[str, float]]:
    """Worst-case robust accuracy (%), one group per threat, one bar per model."""
    return {f"{t} ε = {fmt_budget(th['eps'])}": {n: 100 * r["worst"] for (n, tt), r in robust.items() if tt == t}
            for t, th in threats.items()}


def worst_rates(robust: Mapping[tuple, dict]) -> dict[tuple, float]:
    """(model, threat) → fraction of images robust to every attack run on the model."""
    return {k: v["worst"] for k, v in robust.items()}


def robust_gap(robust: Mapping[tuple, dict], a: str, b: str, threat: str) -> dict:
    """How much more robust ``a`` is than ``b`` under ``threat`` in the worst case: each
    model's worst-case rate (``a``, ``b``, Wilson) and the paired gap a − b on the images both
    were attacked on (``gap``, Newcombe; :func:`~robgen_lib.book.analysis.common.robust_gap`)."""
    return common.robust_gap(robust, a, b, threat, key="worst_correct")


def above_floor(robust: Mapping[tuple, dict], a: str, b: str, threat: str) -> Estimate:
    """The worst-case robust accuracy of the more robust of ``a`` and ``b`` under ``threat``,
    on the images both were attacked on (the first ones), with its Wilson interval: how far the
    pair is from the floor (0 % against 0 % ranks nothing)."""
    ra, rb = robust[(a, threat)]["worst_correct"], robust[(b, threat)]["worst_correct"]
    n = min(len(ra), len(rb))
    return max(proportion(ra[:n]), proportion(rb[:n]), key=lambda e: e.value)


def generative_vs_standard(robust: Mapping[tuple, dict], threats: Sequence[str], *,
                           generative: Sequence[str] = ("ABS", "E-ABS-style"), standard: str = "standard CNN") -> dict:
    """Every generative model against the standard CNN under every threat, in the worst case:
    ``gaps`` — "model, threat" → the paired gap generative − standard (:func:`robust_gap`);
    ``smallest`` — the name of the smallest gap; ``measured`` — every rate as one line."""
    gaps = {f"{g}, {t}": robust_gap(robust, g, standard, t)["gap"] for g in generative for t in threats}
    measured = "; ".join(f"{t}: " + ", ".join(f"{g} {proportion(robust[(g, t)]['worst_correct'])}" for g in generative)
                         + f" vs CNN {proportion(robust[(standard, t)]['worst_correct'])}" for t in threats)
    return {"gaps": gaps, "smallest": min(gaps, key=lambda k: gaps[k].value), "measured": measured}


def decision_excess(robust: Mapping[tuple, dict], threats: Sequence[str], *,
                    models: Sequence[str] = ("ABS", "E-ABS-style"), control: str = "standard CNN") -> dict:
    """How much more the decision-based attack breaks than PGD: ``excess`` — "model, threat" →
    the paired difference PGD robust − decision-based robust on the same images (positive: the
    decision-based attack is stronger); ``worst`` — the name of the largest; and ``control`` —
    threat → the same comparison turned around on the undefended ``control``, decision-based
    robust − PGD robust (how much *weaker* the decision-based attack is where nothing hides a
    gradient)."""
    excess = {f"{n}, {t}": paired(robust[(n, t)]["pgd_correct"], robust[(n, t)]["decision_correct"])
              for n in models for t in threats}
    control_gap = {t: paired(robust[(control, t)]["decision_correct"], robust[(control, t)]["pgd_correct"])
                   for t in threats}
    return {"excess": excess, "worst": max(excess, key=lambda k: excess[k].value), "control": control_gap}


def latent_excess(robust: Mapping[tuple, dict], threats: Sequence[str], *,
                  models: Sequence[str] = ("ABS", "E-ABS-style")) -> dict:
    """How much more the latent-descent attack breaks than PGD through the latent search:
    ``excess`` — "model, threat" → the paired difference PGD robust − latent-descent robust on
    the same images; ``worst`` — the name of the largest."""
    excess = {f"{n}, {t}": paired(robust[(n, t)]["pgd_correct"], robust[(n, t)]["latent_correct"])
              for n in models for t in threats}
    return {"excess": excess, "worst": max(excess, key=lambda k: excess[k].value)}


def per_seed_text(values: Mapping[int, object]) -> str:
    """A measurement made once per training seed, as the measured line shows it: the one
    value, or "seed 0: …; seed 1: …"."""
    if len(values) == 1:
        return str(next(iter(values.values())))
    return "; ".join(f"seed {s}: {v}" for s, v in values.items())


# -- adversarials that morph -------------------------------------------------------------

def morphing(models: Mapping[str, TrainedModel], adversarials: Mapping[str, torch.Tensor], y: torch.Tensor,
             train: Split, *, k: int = 5) -> dict[str, dict]:
    """Per model: the fraction of its adversarials that fool it (``fooled``), and among those
    the fraction whose ``k``-nearest-training-images label equals the label the model now
    predicts (``judge_agrees``, 0 if none fooled; ``agreement``: with its Wilson interval over
    the fooled images, :class:`Undefined` if none) — the adversarial *looks like* its new class."""
    out = {}
    for name, xa in adversarials.items():
        pred = predict_logits(models[name].model, xa, 256).argmax(1)
        fooled = pred != y
        judge = knn_labels(xa, train.x, train.y, k=k)
        agrees = judge[fooled] == pred[fooled]
        out[name] = {"fooled": float(fooled.float().mean()),
                     "judge_agrees": float(agrees.float().mean()) if fooled.any() else 0.0,
                     "agreement": proportion(agrees) if fooled.any() else Undefined("no image fooled")}
    return out


def all_fooled(morph: Mapping[str, dict], names: Sequence[str]) -> bool:
    """Whether each of ``names`` was fooled by at least one of its adversarials (so that the
    judge's agreement is defined for every model compared)."""
    return all(morph[n]["fooled"] > 0 for n in names)


def agreement_gap(morph: Mapping[str, dict], a: str, b: str) -> Estimate | None:
    """How much more often the nearest-neighbour judge sees the adversarial class for ``a``
    than for ``b``: the difference of the two agreements, which count different images (each
    model's own fooling adversarials), with Newcombe's interval for two rates; None when
    either is :class:`Undefined`."""
    ea, eb = morph[a]["agreement"], morph[b]["agreement"]
    return difference(ea, eb) if isinstance(ea, Estimate) and isinstance(eb, Estimate) else None


def adversarial_mosaic(originals: torch.Tensor, adversarials: Mapping[str, torch.Tensor], n: int) -> dict:
    """The first ``n`` originals and each model's first ``n`` adversarials, as mosaic columns."""
    return {"original": originals[:n], **{name: xa[:n] for name, xa in adversarials.items()}}


def morph_table(morph: Mapping[str, dict], eps: float):
    """Per model: fooled rate and how often the nearest-neighbour judge sees the adversarial class."""
    return table({n: {f"fooled at ℓ2 ε = {fmt_budget(eps)}": pct(m["fooled"]),
                      "judge sees the adversarial class": pct(m["judge_agrees"])} for n, m in morph.items()}, "model")


# -- out-of-domain reconstructions -------------------------------------------------------

VARIANTS = {"abs": "ABS", "eabs": "E-ABS-style"}


def ladder_table(results: Mapping[tuple, dict]):
    """One row per decoder of a ladder of :func:`~robgen_lib.methods.generative.reconstruction_study`
    results: own-class, other-class and noise errors, other / own, margin, accuracy. Keys are
    (latent, width, variant) — then a "model" column names the variant — or (latent, width)."""
    from IPython.display import Markdown   # the book's extras (ipykernel); the library runs without them

    with_model = any(len(key) > 2 for key in results)
    headers = ["latent, width"] + (["model"] if with_model else []) + \
              ["own class", "other classes", "noise", "other / own", "margin", "accuracy"]
    rows = [[f"{key[0]}, {key[1]}"] + ([VARIANTS[key[2]]] if with_model else []) +
            [f"{o['own']:.2f}", f"{o['other']:.2f}", f"{o['noise']:.2f}", f"{o['other'] / o['own']:.2f}",
             f"{o['margin']:.2f}", pct(o["accuracy"])] for key, o in results.items()]
    return Markdown(markdown_table(headers, rows))


def ladder_panels(results: Mapping[tuple, dict], sizes: Sequence[tuple[int, int]]) -> dict:
    """The ``x`` and ``data`` of :func:`~robgen_lib.book.plots.panels`: the other / own error
    ratio and the class margin against the decoder size (latent / width), per variant."""
    return {"x": [f"{lat}/{w}" for lat, w in sizes],
            "data": {"other / own error": {name: [results[(lat, w, v)]["other"] / results[(lat, w, v)]["own"]
                                                  for lat, w in sizes] for v, name in VARIANTS.items()},
                     "class margin": {name: [results[(lat, w, v)]["margin"] for lat, w in sizes]
                                      for v, name in VARIANTS.items()}}}


def ladder_ends(results: Mapping[tuple, dict], sizes: Sequence[tuple[int, int]]) -> dict:
    """The smallest and the largest decoder of the ladder (``small`` / ``large``: (latent,
    width)); ABS at each (``abs_small``, ``abs_large``) and E-ABS-style at the largest
    (``eabs_large``), each study with its ratios ``other_own`` = other / own and
    ``noise_own`` = noise / own added."""
    def with_ratios(o):
        return {**o, "other_own": o["other"] / o["own"], "noise_own": o["noise"] / o["own"]}

    small, large = sizes[0], sizes[-1]
    return {"small": small, "large": large, "abs_small": with_ratios(results[(*small, "abs")]),
            "abs_large": with_ratios(results[(*large, "abs")]), "eabs_large": with_ratios(results[(*large, "eabs")])}


def _paired_mean_gap(a, b) -> Estimate:
    """mean(a) − mean(b) over the same images, with a paired bootstrap interval."""
    return bootstrap((np.asarray(a), np.asarray(b)), lambda u, v, axis: u.mean(axis) - v.mean(axis))


def ladder_shrinks(results: Mapping[tuple, dict], sizes: Sequence[tuple[int, int]]) -> dict:
    """What a larger decoder changes, on the same test images: the largest ABS decoder minus
    the smallest, the change of the other/own distance ratio (``other/own``: mean other-class
    error / mean own-class error, a ratio of means, paired bootstrap) and of the mean class
    margin (``margin``, paired bootstrap). Negative: other classes explained better, a smaller
    margin."""
    s, l = results[(*sizes[0], "abs")], results[(*sizes[-1], "abs")]
    ratio = bootstrap(tuple(np.asarray(v) for v in (l["other_each"], l["own_each"], s["other_each"], s["own_each"])),
                      lambda ol, wl, os_, ws, axis: ol.mean(axis) / wl.mean(axis) - os_.mean(axis) / ws.mean(axis))
    return {"other/own": ratio, "margin": _paired_mean_gap(l["margin_each"], s["margin_each"])}


def margin_restored(results: Mapping[tuple, dict], size: tuple[int, int]) -> dict:
    """How much the E-ABS-style term widens the class margin of the decoder ``size``: the
    difference of mean margins, E-ABS-style minus ABS on the same images, with a paired
    bootstrap interval (``gap``), and both accuracies with Wilson intervals."""
    e, a = results[(*size, "eabs")], results[(*size, "abs")]
    gap = _paired_mean_gap(e["margin_each"], a["margin_each"])
    n = len(a["margin_each"])
    return {"gap": gap, "abs_accuracy": proportion(round(a["accuracy"] * n), n),
            "eabs_accuracy": proportion(round(e["accuracy"] * n), n)}


def _auroc(inside, outside) -> float:
    return float(roc_auc_score(np.r_[np.ones(len(inside)), np.zeros(len(outside))], np.r_[inside, outside]))


def ood_separation(inside: Mapping[str, torch.Tensor], outside: Mapping[str, torch.Tensor], *, seed: int = 0) -> dict:
    """How well each model's best class-conditional score (the largest logit, −α·min_k s_k(x))
    tells in-domain images (``inside``: model → logits on the test images) from out-of-domain
    ones (``outside``: logits on as many out-of-domain images): the AUROC per model, the
    smaller of them (``lowest``: the model that separates the two domains less), and the
    first model's AUROC minus the second's (``gap``), each with a percentile bootstrap interval.
    The bootstrap resamples the in- and out-of-domain images (both sets the same size, so one
    index draws an in-domain image, whose scores under both models stay paired, and an
    out-of-domain one). No bar is applied here."""
    names = list(inside)
    s_in = [inside[n].max(1).values.double().numpy() for n in names]
    s_out = [outside[n].max(1).values.double().numpy() for n in names]
    if len({len(s) for s in s_in + s_out}) != 1:
        raise ValueError("the in- and out-of-domain sets must have the same size")
    auroc = {n: bootstrap((a, b), _auroc, vectorized=False, seed=seed, percent=False)
             for n, a, b in zip(names, s_in, s_out)}
    out = {"auroc": auroc, "lowest": min(auroc.values(), key=lambda e: e.value), "n": len(s_in[0])}
    if len(names) == 2:
        out["gap"] = bootstrap((s_in[0], s_in[1], s_out[0], s_out[1]),
                               lambda ia, ib, oa, ob: _auroc(ia, oa) - _auroc(ib, ob), vectorized=False, seed=seed,
                               percent=False)
    return out


def auroc_text(e: Estimate, *, signed: bool = False) -> str:
    """An AUROC (or a difference of two, ``signed``) with its interval to three decimals:
    ``0.806 [0.770, 0.841]``."""
    f = "+.3f" if signed else ".3f"
    return f"{e.value:{f}} [{e.low:{f}}, {e.high:{f}}]"


def ood_table(separation: Mapping[tuple, dict]):
    """One row per decoder size (latent, width) of :func:`ood_separation` results: each model's
    AUROC with its interval, and the gap between them."""
    from IPython.display import Markdown

    names = list(next(iter(separation.values()))["auroc"])
    headers = ["latent, width"] + [f"AUROC {n}" for n in names] + [f"{names[0]} minus {names[1]}"]
    rows = [[f"{size[0]}, {size[1]}"] + [auroc_text(s["auroc"][n]) for n in names]
            + [auroc_text(s["gap"], signed=True)] for size, s in separation.items()]
    return Markdown(markdown_table(headers, rows))


def error_ratio(study: Mapping[str, object]) -> Estimate:
    """How nearly a decoder ladder's class models explain other classes as well as their own:
    mean other-class error / mean own-class error over the images of a
    :func:`~robgen_lib.methods.generative.reconstruction_study` (per image), with a bootstrap
    interval resampling the images."""
    return bootstrap((np.asarray(study["other_each"]), np.asarray(study["own_each"])),
                     lambda other, own, axis: other.mean(axis) / own.mean(axis))


def unseen_reconstructions(models: Mapping[str, TrainedModel], split: Split, num_classes: int, *, n: int,
                           seed: int) -> dict[str, torch.Tensor]:
    """What decoders make of images they were not trained on: the first ``n`` images of the
    class k of ``split``'s first image, explained by class k + 1's model; and ``n`` uniform-noise
    images (seeded), explained by class 0's model — per model (label → ABS model)."""
    device = model_device(next(iter(models.values())).model)
    k0 = int(split.y[0])
    k1 = (k0 + 1) % num_classes
    xs = split.x[split.y == k0][:n].to(device)
    noise = torch.rand((n, *split.x.shape[1:]), generator=torch.Generator().manual_seed(seed)).to(device)
    panel = {f"class {k0} images": xs.cpu(), "noise": noise.cpu()}
    for label, m in models.items():
        panel[f"{label}: class {k1}'s model"] = m.model.explain(xs)["recon"][:, k1].cpu()
        panel[f"{label}: noise by class 0"] = m.model.explain(noise)["recon"][:, 0].cpu()
    return panel


# -- the similarity metric ---------------------------------------------------------------

def similarity_results(clean: Mapping[str, float], robust: Mapping[tuple, dict], heldout: Mapping[str, dict],
                       worst: Mapping[tuple, dict], threat: str = "ℓ2") -> dict:
    """Per similarity: ``clean`` accuracy on the test images, PGD robust accuracy under
    ``threat`` on the held-out images (``heldout``, where measured) and on the test images
    (``threat``), and the worst case over every attack on the test images (``worst``, where
    measured; NaN otherwise)."""
    nan = float("nan")
    return {n: {"clean": acc, "heldout": heldout[n]["robust_accuracy"] if n in heldout else nan,
                threat: robust[(n, threat)]["robust_accuracy"],
                "worst": worst[(n, threat)]["worst"] if (n, threat) in worst else nan} for n, acc in clean.items()}


def similarity_table(sims: Mapping[str, dict], threat: str = "ℓ2"):
    """Per similarity metric: clean accuracy, PGD robust accuracy under ``threat`` on the
    held-out and on the test images, and the worst case on the test images (– where not run)."""
    def cell(v):
        return "–" if v != v else pct(v)

    return table({n: {"clean": pct(s["clean"]), "held-out: PGD": cell(s["heldout"]), "test: PGD": pct(s[threat]),
                      "test: worst case": cell(s["worst"])} for n, s in sims.items()}, "similarity")


def best_metric(heldout: Mapping[str, dict], candidates: Sequence[str]) -> str:
    """The candidate with the highest PGD robust accuracy on the held-out images (``heldout``:
    name → a robust-accuracy result; the first candidate on a tie), chosen apart from the test
    images it is then judged on."""
    return max(candidates, key=lambda n: heldout[n]["robust_accuracy"])


def clean_gap(clean: Mapping[str, float], a: str, b: str, n_images: int) -> Estimate:
    """Clean accuracy of similarity ``a`` minus ``b`` on the same ``n_images`` test images,
    kept as rates (the per-image results are not): Newcombe's interval for two rates."""
    return difference(*(proportion(round(clean[n] * n_images), n_images) for n in (a, b)))


# -- randomized smoothing ----------------------------------------------------------------

def radius_grid(r_max: float, points: int = 11) -> list[float]:
    """``points`` radii evenly from 0 to ``r_max``, rounded to 4 decimals."""
    return [round(r_max * i / (points - 1), 4) for i in range(points)]


def certified_curves(certs: Mapping[str, dict], radii: Sequence[float]) -> dict[str, list[float]]:
    """Certified accuracy (%) at each radius, per base classifier."""
    return {n: [100 * a for a in certified_accuracy(c, radii)] for n, c in certs.items()}


def certified_table(certs: Mapping[str, dict], radii: Sequence[float]):
    """Certified accuracy at a few radii and the abstention rate (label −1), per base classifier."""
    return table({n: {**{f"r ≥ {r:g}": pct(a) for r, a in zip(radii, certified_accuracy(c, radii))},
                      "abstained": pct(float((c["label"] < 0).float().mean()))} for n, c in certs.items()},
                 "base classifier")


def certified_at(certs: Mapping[str, dict], radius: float) -> dict[str, float]:
    """Certified accuracy at one radius, per base classifier."""
    return {n: certified_accuracy(c, [radius])[0] for n, c in certs.items()}


def certified_gain(certs: Mapping[str, dict], a: str, b: str, radius: float) -> dict:
    """Certified accuracy at ``radius`` (correct and certified with radius ≥ ``radius``) of
    ``a`` and of ``b``, each with its Wilson interval (``a``, ``b``), and the paired difference
    a − b on the same images (``gain``, Newcombe's interval and McNemar's p)."""
    flags = {n: certs[n]["correct"] & (certs[n]["radius"] >= radius) for n in (a, b)}
    return {"a": proportion(flags[a]), "b": proportion(flags[b]), "gain": paired(flags[a], flags[b])}
