"""Evaluations that span a whole chapter and are shared by the notebook and the command line.

Chapter 4's robust-accuracy table and chapter 6's independent-attack table are the
costliest computations of the book; they live here so that ``torchrun -m
robgen_lib.sharded`` can fill the cache with exactly the results the notebooks then read.
"""
from __future__ import annotations

from .book import Chapter
from .evaluate import robust_accuracy
from .training import TrainedModel

__all__ = ["diffusion_models", "threats", "robust_table", "book_models", "independent_table"]


def diffusion_models(ch: Chapter) -> dict[str, TrainedModel]:
    """Chapter 4's contestants: chapter 1's two CNNs, the diffusion classifier and RDC."""
    return {"standard CNN": ch.classifier("standard"), "PGD-trained CNN": ch.classifier("robust"),
            "diffusion classifier": ch.diffusion_classifier(), "RDC": ch.rdc()}


def threats(ch: Chapter) -> dict[str, dict]:
    """The two threat models of chapter 4: ℓ∞ (``rob_eps``) and ℓ2 (``l2_eps``)."""
    c = ch.cfg
    return {"linf": {"norm": "linf", "eps": c.rob_eps}, "l2": {"norm": "l2", "eps": c.l2_eps}}


def robust_table(ch: Chapter, models: dict[str, TrainedModel] | None = None, *, steps: int | None = None,
                 restarts: int | None = None, losses=("ce", "dlr"), n: int | None = None,
                 which: dict[str, dict] | None = None) -> dict:
    """{(model, threat): robust_accuracy result} on the first ``n`` (default ``n_robust``) test images, cached."""
    c = ch.cfg
    models = diffusion_models(ch) if models is None else models
    which = threats(ch) if which is None else which
    steps = c.attack_steps if steps is None else steps
    restarts = c.restarts if restarts is None else restarts
    split = ch.data.test.head(c.n_robust if n is None else n)
    out = {}
    for name, m in models.items():
        for tname, t in which.items():
            params = {**t, "steps": steps, "restarts": restarts, "losses": list(losses), "n": len(split),
                      "seed": c.seed}
            out[(name, tname)] = ch.result(
                "robust_accuracy", m, params,
                lambda m=m, t=t: robust_accuracy(m.model, split, steps=steps, restarts=restarts, losses=losses,
                                                 seed=c.seed, **t))
    return out


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
    from .yardstick import ATTACKS, independent_robust_accuracy

    c = ch.cfg
    models = {k: m for k, (_, m) in book_models(ch).items()} if models is None else models
    which = threats(ch) if which is None else which
    attacks = tuple(ATTACKS if attacks is None else attacks)
    split = ch.data.test.head(c.n_robust if n is None else n)
    out = {}
    for name, m in models.items():
        for tname, t in which.items():
            params = {**t, "attacks": list(attacks), "steps": c.ind_steps, "queries": c.ind_queries,
                      "eot": c.eot, "n": len(split), "seed": c.seed}
            out[(name, tname)] = ch.result(
                "independent_attacks", m, params,
                lambda m=m, t=t: independent_robust_accuracy(m.model, split, attacks=attacks, steps=c.ind_steps,
                                                             queries=c.ind_queries, eot=c.eot, seed=c.seed, **t))
    return out
