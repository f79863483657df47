"""Evaluations that span a whole chapter and are shared by the notebook and the command line.

Chapter 4's robust-accuracy table and chapter 6's independent-attack table are the
costliest computations of the book; they live here so that ``torchrun -m
robgen_lib.sharded`` can fill the cache with exactly the results the notebooks then read.
"""
from __future__ import annotations

import torch

from ..core.fit import TrainedModel
from ..methods.evaluate import robust_accuracy
from ..methods.sampling import generate
from .chapter import Chapter
from ..methods.independent import ATTACKS, independent_robust_accuracy, is_stochastic

__all__ = ["sweep_models", "generated", "diffusion_models", "threats", "robust_images", "robust_table", "eot_for", "book_models", "attack_strength",
           "independent_table"]


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
