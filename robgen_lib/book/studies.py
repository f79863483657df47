"""Evaluations that span a whole chapter and are shared by the notebook and the command line.

Chapter 4's robust-accuracy table and chapter 6's independent-attack table are the
costliest computations of the book; they live here so that ``torchrun -m
robgen_lib.sharded`` can fill the cache with exactly the results the notebooks then read.
"""
from __future__ import annotations

from ..core.fit import TrainedModel
from ..methods.evaluate import robust_accuracy
from .chapter import Chapter
from .yardstick import ATTACKS, independent_robust_accuracy

__all__ = ["diffusion_models", "threats", "robust_table", "book_models", "independent_table"]


def diffusion_models(ch: Chapter) -> dict[str, TrainedModel]:
    """Chapter 4's contestants: chapter 1's two CNNs, the diffusion classifier and RDC."""
    return {"standard CNN": ch.classifier("standard"), "PGD-trained CNN": ch.classifier("robust"),
            "diffusion classifier": ch.diffusion_classifier(), "RDC": ch.rdc()}


def threats(ch: Chapter) -> dict[str, dict]:
    """The two threat models of chapter 4: ℓ∞ (``rob_eps``) and ℓ2 (``l2_eps``)."""
    c = ch.cfg
    return {"linf": {"norm": "linf", "eps": c.rob_eps}, "l2": {"norm": "l2", "eps": c.l2_eps}}


def _table(ch: Chapter, kind: str, models: dict[str, TrainedModel], which: dict[str, dict], n: int | None,
           params: dict, evaluate) -> dict:
    """{(model, threat): evaluate(model, split, **threat)} for every model × threat, each cached
    under (model spec, threat, ``params``, split size, seed)."""
    split = ch.data.test.head(ch.cfg.n_robust if n is None else n)
    return {(name, tname): ch.result(kind, m, {**t, **params, "n": len(split), "seed": ch.cfg.seed},
                                     lambda m=m, t=t: evaluate(m.model, split, **t))
            for name, m in models.items() for tname, t in which.items()}


def robust_table(ch: Chapter, models: dict[str, TrainedModel] | None = None, *, steps: int | None = None,
                 restarts: int | None = None, losses=("ce", "dlr"), n: int | None = None,
                 which: dict[str, dict] | None = None) -> dict:
    """{(model, threat): robust_accuracy result} on the first ``n`` (default ``n_robust``) test images, cached."""
    c = ch.cfg
    steps = c.attack_steps if steps is None else steps
    restarts = c.restarts if restarts is None else restarts
    return _table(ch, "robust_accuracy", diffusion_models(ch) if models is None else models,
                  threats(ch) if which is None else which, n,
                  {"steps": steps, "restarts": restarts, "losses": list(losses)},
                  lambda model, split, **t: robust_accuracy(model, split, steps=steps, restarts=restarts,
                                                            losses=losses, seed=c.seed, **t))


def book_models(ch: Chapter) -> dict[str, tuple[str, TrainedModel]]:
    """Every model of chapters 1–5 (cached ones are reused): name → (family, model)."""
    c = ch.cfg
    noise = ch.classifier("noise", sigma=c.smooth_sigma)
    return {
        "standard CNN": ("discriminative", ch.classifier("standard")),
        "PGD-trained CNN": ("discriminative", ch.classifier("robust")),
        f"noise-trained CNN (σ = {c.smooth_sigma:g})": ("discriminative", noise),
        "JEAT": ("discriminative", ch.classifier("jeat")),
        "diffusion classifier": ("generative", ch.diffusion_classifier()),
        "RDC": ("generative", ch.rdc()),
        "ABS": ("generative", ch.abs_model("abs")),
        "E-ABS-style": ("generative", ch.abs_model("eabs")),
        f"smoothed CNN (σ = {c.smooth_sigma:g})": ("smoothed", ch.smoothed(noise, c.smooth_sigma)),
    }


def independent_table(ch: Chapter, models: dict[str, TrainedModel] | None = None, *, attacks=None,
                      n: int | None = None, which: dict[str, dict] | None = None) -> dict:
    """{(model, threat): independent_robust_accuracy result} on the first ``n`` (default
    ``n_robust``) test images — APGD-CE, APGD-DLR, Square by default — cached."""

    c = ch.cfg
    attacks = tuple(ATTACKS if attacks is None else attacks)
    return _table(ch, "independent_attacks", {k: m for k, (_, m) in book_models(ch).items()} if models is None
                  else models, threats(ch) if which is None else which, n,
                  {"attacks": list(attacks), "steps": c.ind_steps, "queries": c.ind_queries, "eot": c.eot},
                  lambda model, split, **t: independent_robust_accuracy(model, split, attacks=attacks,
                                                                        steps=c.ind_steps, queries=c.ind_queries,
                                                                        eot=c.eot, seed=c.seed, **t))
