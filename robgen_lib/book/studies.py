"""Evaluations that span a whole chapter and are shared by the notebook and the command line.

Chapter 4's robust-accuracy table and chapter 6's independent-attack table are the
costliest computations of the book; they live here so that ``torchrun -m
robgen_lib.sharded`` can fill the cache with exactly the results the notebooks then read.
"""
from __future__ import annotations

import torch

from ..core.fit import TrainedModel
from ..methods.evaluate import clean_accuracy, decision_distances, latent_descent_robustness, robust_accuracy
from ..methods.smoothing import certify
from ..methods.sampling import generate
from .chapter import Chapter
from ..methods.independent import ATTACKS, independent_robust_accuracy, is_stochastic

__all__ = ["sweep_models", "generated", "diffusion_models", "threats", "robust_images", "robust_table", "eot_for", "book_models", "attack_strength",
           "independent_table", "abs_contest", "abs_worst_case", "similarity_models", "similarity_study", "certificates"]


def sweep_models(ch: Chapter, seed: int | None = None) -> dict[str, TrainedModel]:
    """Chapter 3's noise-injection sweep trained with ``seed`` (default: the run's): the
    standard CNN for σ = 0 and a noise-trained CNN for every other σ of ``sigma_grid``,
    named as :func:`~robgen_lib.book.analysis.jeat.noise_name` names them."""
    from .analysis.jeat import noise_name

    seed = ch.cfg.seed if seed is None else seed
    return {noise_name(s): ch.model("standard", seed=seed) if float(s) == 0 else ch.model("noise", sigma=s, seed=seed)
            for s in ch.cfg.sigma_grid}


def generated(ch: Chapter, models: dict[str, TrainedModel], seeds: torch.Tensor,
              targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each model's targeted-PGD samples grown from ``seeds`` toward ``targets`` with chapter
    3's generation knobs (``gen_eps``, ``gen_step``, ``gen_steps``), cached."""
    c = ch.cfg
    return {name: ch.run(generate, m, seeds, targets, eps=c.gen_eps, step_size=c.gen_step, steps=c.gen_steps,
                         progress=True) for name, m in models.items()}


def diffusion_models(ch: Chapter) -> dict[str, TrainedModel]:
    """Chapter 4's contestants: chapter 1's two CNNs, the diffusion classifier and RDC."""
    return {"standard CNN": ch.model("standard"), "PGD-trained CNN": ch.model("robust"),
            "diffusion classifier": ch.model("dc"), "RDC": ch.model("rdc")}


def threats(ch: Chapter) -> dict[str, dict]:
    """The two threat models of chapter 4: ℓ∞ (``rob_eps``) and ℓ2 (``l2_eps``)."""
    c = ch.cfg
    return {"linf": {"norm": "linf", "eps": c.rob_eps}, "l2": {"norm": "l2", "eps": c.l2_eps}}


def eot_for(ch: Chapter, model: TrainedModel) -> int:
    """Gradient passes per attack step: ``eot`` for a stochastic model, one for a deterministic one."""
    return ch.cfg.eot if is_stochastic(model.model) else 1


#: Recipes cheap enough to attack on every test image (the others use ``n_robust``): plain
#: classifiers, and ABS models (one small VAE per class, a batched latent search).
CHEAP = frozenset({"classifier", "abs"})


def robust_images(ch: Chapter, model: TrainedModel, n: int | None = None) -> int:
    """How many test images (from the first) a robust table attacks ``model`` on: ``n`` if
    given, else every test image for the :data:`CHEAP` recipes and ``n_robust`` for the
    costly models (the diffusion classifier, RDC, the smoothed models); ABS and the
    E-ABS-style model take ``abs_images`` where it is set (a large latent search, as at the
    paper's 8,000 samples, makes every attack step costly). Tables compare two models on
    the images they share (the first ones)."""
    if n is not None:
        return n
    recipe = model.spec.get("recipe")
    if recipe == "abs" and ch.cfg.abs_images is not None:
        return ch.cfg.abs_images
    return len(ch.data.test) if recipe in CHEAP else ch.cfg.n_robust


def robust_table(ch: Chapter, models: dict[str, TrainedModel] | None = None, *, steps: int | None = None,
                 restarts: int | None = None, losses=("ce", "dlr"), n: int | None = None,
                 which: dict[str, dict] | None = None) -> dict:
    """{(model, threat): robust_accuracy result} on the first :func:`robust_images` test images,
    cached; a stochastic model is attacked with ``eot`` forward passes per gradient, a
    deterministic one with one."""
    c = ch.cfg
    models = diffusion_models(ch) if models is None else models
    return {(name, tname): ch.run(robust_accuracy, m, ch.data.test.head(robust_images(ch, m, n)),
                                  steps=c.attack_steps if steps is None else steps,
                                  restarts=c.restarts if restarts is None else restarts, losses=tuple(losses),
                                  seed=c.seed, eot=eot_for(ch, m), **t)
            for name, m in models.items() for tname, t in (threats(ch) if which is None else which).items()}


def book_models(ch: Chapter) -> dict[str, tuple[str, TrainedModel]]:
    """Every model of chapters 1–5 (cached ones are reused): name → (family, model)."""
    sigma = ch.cfg.smooth_sigma
    return {
        "standard CNN": ("discriminative", ch.model("standard")),
        "PGD-trained CNN": ("discriminative", ch.model("robust")),
        f"noise-trained CNN (σ = {sigma:g})": ("discriminative", ch.model("noise", sigma=sigma)),
        "JEAT": ("discriminative", ch.model("jeat")),
        "diffusion classifier": ("generative", ch.model("dc")),
        "RDC": ("generative", ch.model("rdc")),
        "ABS": ("generative", ch.model("abs")),
        "E-ABS-style": ("generative", ch.model("eabs")),
        f"smoothed CNN (σ = {sigma:g})": ("smoothed", ch.model("smoothed", sigma=sigma)),
    }


#: Recipes whose network passes are cheap enough for the independent attacks' full strength
#: (``ind_*``); the others get the reduced ``ind_costly_*`` budgets.
FULL_STRENGTH = frozenset({"classifier", "soft_smoothed"})


def attack_strength(ch: Chapter, model: TrainedModel) -> dict:
    """The independent attacks' budget for ``model``: APGD ``steps`` and ``restarts``, Square
    ``queries`` — full strength (``ind_steps``, ``ind_restarts``, ``ind_queries``) for cheap
    models, ``ind_costly_steps`` / one restart / ``ind_costly_queries`` for the others."""
    c = ch.cfg
    if model.spec.get("recipe") in FULL_STRENGTH:
        return {"steps": c.ind_steps, "restarts": c.ind_restarts, "queries": c.ind_queries}
    return {"steps": c.ind_costly_steps, "restarts": 1, "queries": c.ind_costly_queries}


def independent_table(ch: Chapter, models: dict[str, TrainedModel] | None = None, *, attacks=None,
                      n: int | None = None, which: dict[str, dict] | None = None) -> dict:
    """{(model, threat): independent_robust_accuracy result} on the first :func:`robust_images`
    test images (the same as :func:`robust_table`'s) — APGD-CE, APGD-DLR, Square by default,
    at :func:`attack_strength` — cached."""
    c = ch.cfg
    models = {k: m for k, (_, m) in book_models(ch).items()} if models is None else models
    return {(name, tname): ch.run(independent_robust_accuracy, m, ch.data.test.head(robust_images(ch, m, n)),
                                  attacks=tuple(ATTACKS if attacks is None else attacks), eot=c.eot, seed=c.seed,
                                  **attack_strength(ch, m), **t)
            for name, m in models.items() for tname, t in (threats(ch) if which is None else which).items()}


def abs_contest(ch: Chapter, seed: int | None = None) -> dict[str, TrainedModel]:
    """Chapter 5's contest trained with ``seed`` (default: the run's): ABS, the E-ABS-style
    model, the standard and the PGD-trained CNN."""
    return {"ABS": ch.model("abs", seed=seed), "E-ABS-style": ch.model("eabs", seed=seed),
            "standard CNN": ch.model("standard", seed=seed), "PGD-trained CNN": ch.model("robust", seed=seed)}


def abs_worst_case(ch: Chapter, models: dict[str, TrainedModel], threats: dict[str, dict], *, n: int | None = None,
                   losses=("ce", "dlr")) -> dict:
    """Every attack chapter 5 runs on ``models`` (on the first ``n`` test images, default
    :func:`robust_images`): the book's PGD, the decision-based attack (its starting points
    from the training images) and, on the ABS family, latent descent; per (model, threat)
    the worst case of :func:`~robgen_lib.book.analysis.abs.strongest_attack`."""
    from .analysis.abs import strongest_attack

    c, data = ch.cfg, ch.data
    pool = data.train.x[: max(500, 10 * data.num_classes)]
    pgd = robust_table(ch, models, which=threats, n=n, losses=losses)
    split = {name: data.test.head(robust_images(ch, m, n)) for name, m in models.items()}
    decision = {(name, t): ch.run(decision_distances, m, split[name], pool, norm=th["norm"],
                                  candidates=c.boundary_candidates, iters=c.boundary_iters, seed=c.seed)
                for name, m in models.items() for t, th in threats.items()}
    latent = {(name, t): ch.run(latent_descent_robustness, m, split[name], norm=th["norm"], eps=th["eps"],
                                steps=c.latent_steps, seed=c.seed)
              for name, m in models.items() if m.spec.get("recipe") == "abs" for t, th in threats.items()}
    return strongest_attack(pgd, decision, threats, latent)


def similarity_models(ch: Chapter, features: dict[str, str], seed: int | None = None) -> dict[str, TrainedModel]:
    """ABS over the pixels and over each CNN's features (``features``: name → the CNN's
    recipe name), trained with ``seed``."""
    return {"pixels": ch.model("abs", seed=seed),
            **{name: ch.model("abs", embed=e, seed=seed) for name, e in features.items()}}


def similarity_study(ch: Chapter, models: dict[str, TrainedModel], features: dict[str, str], n: int,
                     threat: dict[str, dict]) -> dict:
    """Chapter 5's similarity metric: the feature metric chosen on the first ``n`` held-out
    images by its robust accuracy under the book's PGD (CE) in ``threat`` (one ``{name:
    threat}``), then, on the first ``n`` test images, its worst case and the pixel metric's
    (:func:`abs_worst_case`), and both clean accuracies on the test images."""
    from .analysis.abs import best_metric

    c, data = ch.cfg, ch.data
    (th,) = threat.values()
    heldout = {name: ch.run(robust_accuracy, models[name], data.heldout.head(n), steps=c.attack_steps,
                            restarts=c.restarts, losses=("ce",), seed=c.seed, eot=eot_for(ch, models[name]), **th)
               for name in features}
    best = best_metric(heldout, list(features))
    pair = {name: models[name] for name in ("pixels", best)}
    return {"best": best, "heldout": heldout, "worst": abs_worst_case(ch, pair, threat, n=n, losses=("ce",)),
            "clean": {name: ch.run(clean_accuracy, m, data.test) for name, m in pair.items()}}


def certificates(ch: Chapter, bases: dict[str, TrainedModel], sigma: float) -> dict:
    """Each base classifier smoothed at ``sigma``, certified on the first ``n_certify`` test
    images (``smooth_n0``, ``smooth_n``, ``smooth_alpha``), cached."""
    c, data = ch.cfg, ch.data
    return {name: ch.run(certify, b, data.test.head(c.n_certify), sigma=sigma, num_classes=data.num_classes,
                         n0=c.smooth_n0, n=c.smooth_n, alpha=c.smooth_alpha, seed=c.seed) for name, b in bases.items()}
