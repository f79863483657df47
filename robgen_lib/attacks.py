"""Projected gradient descent (Madry et al. 2018) over any per-sample loss.

One loop, two small step rules:

* ℓ∞:  x' ← Π_{‖x'-x‖∞≤ε, [0,1]} ( x' + α · sign(∇L) )
* ℓ2:  x' ← Π_{‖x'-x‖₂≤ε, [0,1]} ( x' + α · ∇L / ‖∇L‖₂ )

Untargeted attacks *ascend* L(f(x'), y); targeted attacks *descend* L(f(x'), target).
A loss is any ``loss(logits, y) -> (N,)`` tensor, so HE-PGD and friends are losses, not
new attacks.  Inputs are in [0, 1]; the model is put in eval mode during the attack and
restored afterwards; the device is taken from the inputs.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, _as_float
from .energy import marginal_energy
from .data import batch_slices
from .models import eval_mode, model_device
from .progress import progress_bar

__all__ = ["LinfRule", "L2Rule", "ce_loss", "dlr_loss", "he_pgd_loss", "energy_matching_loss", "pgd", "attack",
           "attack_path", "predict_logits", "robust_correct"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, the default PGD loss."""
    return F.cross_entropy(logits, y, reduction="none")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020): −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3).

    Invariant to the scale and shift of the logits, so a classifier whose logits are tiny
    (or huge) cannot hide behind a flat softmax. Needs at least 3 classes.
    """
    srt = logits.sort(1, descending=True).values
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(1).values
    return -(true - other) / (srt[:, 0] - srt[:, 2] + 1e-12)


def he_pgd_loss(lam: float) -> Loss:
    """High-Energy PGD (Beadini & Masi): L = CE(x', y) + λ·E(x') = E(x', y) + (λ - 1)·E(x').

    λ = 1 only lowers the true logit; λ > 1 also pushes the marginal energy E(x') up,
    keeping attacked points near the data's energy instead of far below it.
    """
    lam = _as_float("lam", lam)
    if lam < 0:
        raise ConfigError(f"lam (HE-PGD's λ) must be >= 0, got {lam}; the paper uses 1.2-1.5")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none") + lam * marginal_energy(logits)

    loss.__name__ = f"he_pgd_loss(lam={lam:g})"
    return loss


def energy_matching_loss(target: float, margin: float = 1.0) -> Loss:
    """Fool first, then match the energy (this book's variant, beyond the paper).

    Per image: while the true logit is not at least ``margin`` below the best other logit,
    ascend CE; once it is, ascend -|E(x') - target| instead, which moves the marginal
    energy toward ``target`` (e.g. the median clean energy).  A step that un-fools the
    image switches it back to CE.
    """
    target = _as_float("target", target)
    margin = _as_float("margin", margin)
    if margin < 0:
        raise ConfigError(f"margin must be >= 0, got {margin}")

    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, y.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(1).values
        fooled = (true - other).detach() < -margin
        match = -(marginal_energy(logits) - target).abs()
        return torch.where(fooled, match, F.cross_entropy(logits, y, reduction="none"))

    return loss


def _flat_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (t.dim() - 1)))


class LinfRule:
    """Step and projection for an ℓ∞ ball of radius ``eps``."""

    def __init__(self, eps: float):
        self.eps = eps

    def random_start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(x.shape, generator=generator).to(x.device, x.dtype)
        return x + (2 * u - 1) * self.eps

    def step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha * grad.sign()

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (x + (x_adv - x).clamp(-self.eps, self.eps)).clamp(0.0, 1.0)


class L2Rule:
    """Step and projection for an ℓ2 ball of radius ``eps``."""

    def __init__(self, eps: float):
        self.eps = eps

    def random_start(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        d = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
        r = torch.rand((x.shape[0],), generator=generator).to(x.device, x.dtype)
        return x + d / _flat_norm(d) * (r.view(-1, *([1] * (x.dim() - 1))) * self.eps)

    def step(self, grad: torch.Tensor, alpha: float) -> torch.Tensor:
        return alpha * grad / _flat_norm(grad)

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        delta = x_adv - x
        delta = delta * (self.eps / _flat_norm(delta)).clamp(max=1.0)
        return (x + delta).clamp(0.0, 1.0)


RULES = {"linf": LinfRule, "l2": L2Rule}


def _check(eps, step_size, steps, norm):
    if norm not in RULES:
        raise ConfigError(f"unknown norm {norm!r}; allowed: 'linf', 'l2'")
    eps = _as_float("eps", eps)
    step_size = _as_float("step_size", step_size)
    if eps < 0 or (norm == "linf" and eps > 1):
        raise ConfigError(f"eps must be in [0, 1] for linf (pixel units), got {eps}")
    if step_size < 0:
        raise ConfigError(f"step_size must be >= 0, got {step_size}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
    return eps, step_size


def pgd(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
    norm: str = "linf",
    loss: Loss = ce_loss,
    targeted: bool = False,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Return x' in the ``norm`` ball of radius ``eps`` around x (and in [0, 1]).

    ``callback(k, x')`` is called after the random start (k = 0) and after each step.
    """
    eps, step_size = _check(eps, step_size, steps, norm)
    rule = RULES[norm](eps)
    x = x.detach()
    x_adv = rule.project(rule.random_start(x, generator), x) if random_start and eps > 0 else x.clone()
    sign = -1.0 if targeted else 1.0
    with eval_mode(model):
        if callback is not None:
            callback(0, x_adv)
        for k in range(1, steps + 1):
            x_adv.requires_grad_(True)
            objective = loss(model(x_adv), y).sum() * sign
            (grad,) = torch.autograd.grad(objective, x_adv)
            with torch.no_grad():
                x_adv = rule.project(x_adv + rule.step(grad, step_size), x)
            if callback is not None:
                callback(k, x_adv)
    return x_adv.detach()


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode, batched, returned on the CPU."""
    device = model_device(model)
    with eval_mode(model):
        return torch.cat([model(x[s].to(device)).float().cpu() for s in batch_slices(len(x), batch_size)])


def attack_path(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    record: Sequence[int],
    *,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = False,
    **pgd_kwargs,
) -> dict[int, torch.Tensor]:
    """Run one PGD per batch for ``max(record)`` steps; return ``{k: logits after k steps}``.

    One run gives the whole accuracy-and-energy-vs-steps curve.  Logits come back on
    the CPU; ``k = 0`` is the random start.
    """
    record = sorted(set(int(k) for k in record))
    device = model_device(model)
    out: dict[int, list] = {k: [] for k in record}
    gen = torch.Generator().manual_seed(seed)
    batches = list(batch_slices(len(x), batch_size))
    bar = progress_bar(None, desc=f"PGD ({len(x)} images)", total=len(batches) * max(record), enabled=progress)
    for s in batches:
        xb, yb = x[s].to(device), y[s].to(device)

        def keep(k, xa):
            if k > 0:
                bar.update(1)
            if k in out:
                with torch.no_grad():
                    out[k].append(model(xa).float().cpu())

        pgd(model, xb, yb, steps=max(record), generator=gen, callback=keep, **pgd_kwargs)
    bar.close()
    return {k: torch.cat(v) for k, v in out.items()}


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int = 256, seed: int = 0,
           progress: bool = False, desc: str = "PGD", **pgd_kwargs) -> torch.Tensor:
    """PGD over a whole tensor of images, batched; adversarial images come back on the CPU."""
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    batches = progress_bar(list(batch_slices(len(x), batch_size)), desc=f"{desc} ({len(x)})", enabled=progress)
    return torch.cat([pgd(model, x[s].to(device), y[s].to(device), generator=gen, **pgd_kwargs).cpu()
                      for s in batches])


def robust_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, restarts: int = 1,
                   losses: Sequence[Loss] = (ce_loss,), generator: torch.Generator | None = None,
                   **pgd_kwargs) -> torch.Tensor:
    """Per image: still classified correctly after every restart of PGD with every loss.

    The worst case over ``restarts`` random starts × ``losses`` (e.g. CE and DLR) — the
    usual way to make a PGD evaluation harder to fool. Images already misclassified
    clean count as not robust. Returns a bool tensor on the CPU.
    """
    ok = predict_logits(model, x, len(x)).argmax(1) == y.cpu()
    for loss in losses:
        for _ in range(restarts):
            todo = ok.nonzero().squeeze(1)
            if len(todo) == 0:
                return ok
            xa = pgd(model, x[todo.to(x.device)], y[todo.to(y.device)], loss=loss, generator=generator, **pgd_kwargs)
            ok[todo] = predict_logits(model, xa, len(xa)).argmax(1) == y[todo.to(y.device)].cpu()
    return ok
