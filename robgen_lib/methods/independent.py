"""Attacks the book did not write (torchattacks), for every model of the book, and the cost of a prediction.

* :func:`make_attack` — a torchattacks attack by name: ``apgd-ce`` and ``apgd-dlr``
  (APGD, Croce & Hein 2020, with the cross-entropy / scale-free DLR loss) and ``square``
  (the gradient-free Square attack, margin loss). Budgets are the book's: pixel units,
  ``linf`` / ``l2``.
* *EOT* (expectation over transformation): a model whose output is random
  (``model.stochastic`` is true, e.g. a smoothed classifier) is attacked with APGD's
  gradients averaged over ``eot`` forward passes; a deterministic model gets one pass —
  averaging would only cost time.
* :func:`independent_correct` — AutoAttack's protocol: the attacks run one after the
  other, each on the images that survived the previous ones; per image, whether it is
  still classified correctly after each attack (cumulative).
* :func:`independent_robust_accuracy` — the same over a split, through the book's
  sharded evaluation (one process, or a shard per torchrun process).

torchattacks pins an old ``requests``; it is installed with ``pip install --no-deps
torchattacks==3.5.1`` (``make setup`` does this) so the pinned torch stays in place.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch
from torch import nn

from ..core.attacks import predict_logits
from ..core.data import Split
from ..core.errors import ConfigError
from ..core.models import eval_mode, model_device
from ..core.parallel import sharded_map
from ..core.versions import versioned

__all__ = ["ATTACKS", "make_attack", "is_stochastic", "independent_correct", "independent_robust_accuracy",
           "networks_of", "prediction_cost",
           "TorchattacksUnavailable"]

#: The independent attacks, in the order AutoAttack runs them.
ATTACKS = ("apgd-ce", "apgd-dlr", "square")
_NORMS = {"linf": "Linf", "l2": "L2"}


class TorchattacksUnavailable(ImportError):
    """torchattacks is not installed."""


def _torchattacks():
    try:
        import torchattacks
    except ImportError as exc:
        raise TorchattacksUnavailable(
            "the independent attacks need torchattacks: `pip install --no-deps torchattacks==3.5.1` "
            "(make setup installs it; --no-deps keeps the pinned torch)") from exc
    return torchattacks


def is_stochastic(model: nn.Module) -> bool:
    """Whether the model's output is random (it says so with a ``stochastic`` attribute)."""
    return bool(getattr(model, "stochastic", False))


def make_attack(name: str, model: nn.Module, *, norm: str, eps: float, steps: int = 100, queries: int = 5000,
                eot: int = 1, restarts: int = 1, seed: int = 0):
    """The torchattacks attack ``name`` on ``model``: APGD with ``steps`` iterations and
    ``restarts`` random restarts, ``eot`` gradient samples only if the model is stochastic;
    Square with ``queries`` queries."""
    if name not in ATTACKS:
        raise ConfigError(f"unknown independent attack {name!r}; allowed: {', '.join(map(repr, ATTACKS))}")
    if norm not in _NORMS:
        raise ConfigError(f"unknown norm {norm!r}; allowed: 'linf', 'l2'")
    if not eps > 0 or steps < 1 or queries < 1 or eot < 1 or restarts < 1:
        raise ConfigError(f"independent attacks need eps > 0, steps >= 1, queries >= 1, eot >= 1, restarts >= 1; "
                          f"got {eps}, {steps}, {queries}, {eot}, {restarts}")
    ta = _torchattacks()
    if name == "square":
        return ta.Square(model, norm=_NORMS[norm], eps=eps, n_queries=queries, n_restarts=1, seed=seed,
                         loss="margin", resc_schedule=True)
    return ta.APGD(model, norm=_NORMS[norm], eps=eps, steps=steps, n_restarts=restarts, seed=seed,
                   loss=name.split("-")[1], eot_iter=eot if is_stochastic(model) else 1)


def independent_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, attacks: Sequence[str] = ATTACKS,
                        norm: str, eps: float, steps: int = 100, queries: int = 5000, eot: int = 1,
                        restarts: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per image (CPU bool tensors): ``clean``, then for each attack whether the image is
    still classified correctly after it and every attack before it."""
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    with eval_mode(model):
        ok = predict_logits(model, x, len(x)).argmax(1) == y.cpu()
        out = {"clean": ok.clone()}
        for name in attacks:
            todo = ok.nonzero().squeeze(1)
            if len(todo):
                atk = make_attack(name, model, norm=norm, eps=eps, steps=steps, queries=queries, eot=eot,
                                  restarts=restarts, seed=seed)
                adv = atk(x[todo.to(device)].contiguous(), y[todo.to(device)])   # Square needs contiguous images
                ok[todo] = predict_logits(model, adv, len(adv)).argmax(1) == y[todo.to(device)].cpu()
            out[name] = ok.clone()
    return out


@versioned(1)
def independent_robust_accuracy(model: nn.Module, split: Split, *, attacks: Sequence[str] = ATTACKS, norm: str,
                                eps: float, steps: int = 100, queries: int = 5000, eot: int = 1, restarts: int = 1,
                                seed: int = 0, batch_size: int = 64, progress: bool = True) -> dict:
    """:func:`independent_correct` over ``split``, sharded like the book's own robust accuracy;
    adds ``clean_accuracy`` and ``robust_accuracy`` (after all the attacks)."""

    def fn(xb, yb, gen):
        return independent_correct(model, xb, yb, attacks=attacks, norm=norm, eps=eps, steps=steps,
                                   queries=queries, eot=eot, restarts=restarts, seed=seed)

    out = sharded_map(fn, split.x, split.y, batch_size=batch_size, seed=seed,
                      desc=f"independent attacks ({norm}, ε={eps:.3g})", progress=progress)
    return {**out, "clean_accuracy": float(out["clean"].float().mean()),
            "robust_accuracy": float(out[attacks[-1]].float().mean()) if attacks else float(out["clean"].float().mean())}


def networks_of(model: nn.Module) -> list[nn.Module]:
    """The networks whose passes make up a prediction's cost: what a wrapper model reports
    through its ``networks()`` (the denoiser of a diffusion classifier, the decoders and
    feature network of ABS, the base of a smoothed model), else the model itself."""
    return model.networks() if hasattr(model, "networks") else [model]


def prediction_cost(model: nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Wall time (ms per image, on the model's device) and network evaluations per image
    (images passed through any of :func:`networks_of`) of one batched prediction."""
    nets = networks_of(model)
    seen = [0]

    def count(module, inputs, output):
        seen[0] += len(inputs[0]) if inputs and torch.is_tensor(inputs[0]) else 1

    hooks = [n.register_forward_hook(count) for n in nets]
    device = model_device(model)
    try:
        x = x.to(device)
        with eval_mode(model), torch.no_grad():
            model(x)                          # warm-up: first calls pay for allocation and kernel selection
        seen[0] = 0
        t0 = time.perf_counter()
        with eval_mode(model), torch.no_grad():
            model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) / len(x) * 1e3
    finally:
        for h in hooks:
            h.remove()
    return {"ms": ms, "evaluations": seen[0] / len(x)}
