"""Evaluations that span a whole chapter and are shared by the notebook and the command line.

Chapter 4's robust-accuracy table is the costliest computation of the book; it lives here
so that ``torchrun -m robgen_lib.sharded`` can fill the cache with exactly the results the
notebook then reads.
"""
from __future__ import annotations

from .book import Chapter
from .evaluate import robust_accuracy
from .training import TrainedModel

__all__ = ["diffusion_models", "threats", "robust_table"]


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
