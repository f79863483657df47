"""Projected gradient descent (Madry et al. 2018) over any per-sample loss.

One loop, two small step rules:

* ℓ∞:  x' ← Π_{‖x'-x‖∞≤ε, [0,1]} ( x' + α · sign(∇L) )
* ℓ2:  x' ← Π_{‖x'-x‖₂≤ε, [0,1]} ( x' + α · ∇L / ‖∇L‖₂ )

Untargeted attacks *ascend* L(f(x'), y); targeted attacks *descend* L(f(x'), target).
A loss is any ``loss(logits, y) -> (N,)`` tensor, so HE-PGD and friends
(:mod:`robgen_lib.methods.he_pgd`) are losses, not new attacks.  Inputs are in [0, 1]; the model is put in eval mode during the attack and
restored afterwards; the device is taken from the inputs.

Two options make the attack fit models that are not smooth or not deterministic: ``eot``
averages each gradient over several passes (expectation over transformation), and
``best`` returns, per image, the first iterate seen misclassified (else the one of
highest loss) rather than the last.  :func:`robust_correct` uses the best iterate.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .data import batch_slices
from .errors import ConfigError
from .models import eval_mode, model_device
from .progress import progress_bar
from .validate import as_float
from .versions import versioned

__all__ = ["LinfRule", "L2Rule", "ce_loss", "dlr_loss", "pgd", "check_eot", "attack",
           "attack_path", "predict_logits", "robust_correct", "boundary_attack"]

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@versioned(1)
def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy, the default PGD loss."""
    return F.cross_entropy(logits, y, reduction="none")


@versioned(1)
def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference-of-logits-ratio loss (Croce & Hein 2020): −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3).

    Invariant to the scale and shift of the logits, so a classifier whose logits are tiny
    (or huge) cannot hide behind a flat softmax. Needs at least 3 classes.
    """
    srt = logits.sort(1, descending=True).values
    true = logits.gather(1, y.view(-1, 1)).squeeze(1)
    other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(1).values
    return -(true - other) / (srt[:, 0] - srt[:, 2] + 1e-12)


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
    eps = as_float("eps", eps)
    step_size = as_float("step_size", step_size)
    if eps < 0 or (norm == "linf" and eps > 1):
        raise ConfigError(f"eps must be in [0, 1] for linf (pixel units), got {eps}")
    if step_size < 0:
        raise ConfigError(f"step_size must be >= 0, got {step_size}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
    return eps, step_size


def check_eot(eot) -> int:
    """``eot`` if it is an integer >= 1 (passes per gradient), else :class:`ConfigError`."""
    if isinstance(eot, bool) or not isinstance(eot, int) or eot < 1:
        raise ConfigError(f"eot (forward/backward passes per gradient) must be an integer >= 1, got {eot!r}")
    return eot


def _eot_gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor, loss: Loss, sign: float, eot: int):
    """∇ₓ of the mean over ``eot`` passes of sign·L(f(x'), y), with the passes' mean
    per-image objective and mean logits (both detached)."""
    grad = objective = logits = None
    for _ in range(eot):
        out = model(x_adv)
        per_image = loss(out, y) * sign
        (g,) = torch.autograd.grad(per_image.sum(), x_adv)
        grad = g if grad is None else grad + g
        objective = per_image.detach() if objective is None else objective + per_image.detach()
        logits = out.detach() if logits is None else logits + out.detach()
    if eot == 1:
        return grad, objective, logits
    return grad / eot, objective / eot, logits / eot


class _BestIterate:
    """Per image, the first iterate seen misclassified, else the one of highest objective."""

    def __init__(self, x_adv: torch.Tensor, targeted: bool):
        self.x = x_adv.detach().clone()
        self.objective = torch.full((len(x_adv),), float("-inf"), device=x_adv.device)
        self.found = torch.zeros(len(x_adv), dtype=torch.bool, device=x_adv.device)
        self.targeted = targeted

    @torch.no_grad()
    def offer(self, x_adv: torch.Tensor, objective: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        pred = logits.argmax(1)
        fooled = pred == y if self.targeted else pred != y
        objective = objective.float()
        better = ~self.found & (fooled | (objective > self.objective))
        self.x[better] = x_adv.detach()[better]
        self.objective = torch.where(better, objective, self.objective)
        self.found |= fooled


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
    best: bool = False,
    eot: int = 1,
) -> torch.Tensor:
    """Return x' in the ``norm`` ball of radius ``eps`` around x (and in [0, 1]).

    The objective is J(x') = s·L(f(x'), y), s = +1 untargeted, s = -1 targeted (``y`` is
    then the target); each step ascends J.

    * ``eot`` (expectation over transformation): each gradient is the mean over ``eot``
      forward/backward passes, ∇J ≈ (1/eot)·Σ_j ∇ₓ s·L(f_j(x'), y), for a model whose
      output is random (fresh noise per call). For a deterministic model it only costs time.
    * ``best=False``: the last iterate x'_K is returned.
    * ``best=True``: per image, the first iterate x'_k (k = 0 is the random start, then
      k = 1..K) whose prediction is already adversarial — argmax ≠ y untargeted, argmax = y
      targeted — else the iterate of highest J. Iterate k < K is judged on the logits and
      losses of the gradient passes taken at it (the mean over the ``eot`` passes), so this
      costs nothing extra; the last iterate gets ``eot`` forward passes of its own. With a
      stochastic model the choice is made on the attack's own draws: whoever then judges
      the returned images on a fresh draw (as :func:`robust_correct` does) judges honestly.

    ``callback(k, x')`` is called after the random start (k = 0) and after each step.
    """
    eps, step_size = _check(eps, step_size, steps, norm)
    eot = check_eot(eot)
    rule = RULES[norm](eps)
    x = x.detach()
    x_adv = rule.project(rule.random_start(x, generator), x) if random_start and eps > 0 else x.clone()
    sign = -1.0 if targeted else 1.0
    keep = _BestIterate(x_adv, targeted) if best and steps > 0 else None
    with eval_mode(model):
        if callback is not None:
            callback(0, x_adv)
        for k in range(1, steps + 1):
            x_adv.requires_grad_(True)
            grad, objective, logits = _eot_gradient(model, x_adv, y, loss, sign, eot)
            with torch.no_grad():
                if keep is not None:
                    keep.offer(x_adv, objective, logits, y)
                x_adv = rule.project(x_adv + rule.step(grad, step_size), x)
            if callback is not None:
                callback(k, x_adv)
        if keep is not None:
            with torch.no_grad():
                outs = [model(x_adv) for _ in range(eot)]
                objective = torch.stack([loss(o, y) * sign for o in outs]).mean(0)
                keep.offer(x_adv, objective, torch.stack(outs).mean(0), y)
            return keep.x
    return x_adv.detach()


@versioned(1)
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


@versioned(1)
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
                   best_iterate: bool = True, eot: int = 1, **pgd_kwargs) -> torch.Tensor:
    """Per image: still classified correctly after every restart of PGD with every loss.

    The worst case over ``restarts`` random starts × ``losses`` (e.g. CE and DLR) — the
    usual way to make a PGD evaluation harder to fool. Each run is :func:`pgd` with
    ``best=best_iterate`` and ``eot`` gradient passes: with ``best_iterate`` an iterate the
    attack saw misclassified is kept even if later steps un-fool it (a model whose loss
    is not smooth in x — a purification step, a latent search — loses such iterates
    otherwise). The returned images are then judged by a separate :func:`predict_logits`
    pass, so a stochastic model is judged on a draw independent of the attack's. Images
    already misclassified clean count as not robust. Returns a bool tensor on the CPU.
    """
    eot = check_eot(eot)
    ok = predict_logits(model, x, len(x)).argmax(1) == y.cpu()
    for loss in losses:
        for _ in range(restarts):
            todo = ok.nonzero().squeeze(1)
            if len(todo) == 0:
                return ok
            xa = pgd(model, x[todo.to(x.device)], y[todo.to(y.device)], loss=loss, generator=generator,
                     best=best_iterate, eot=eot, **pgd_kwargs)
            ok[todo] = predict_logits(model, xa, len(xa)).argmax(1) == y[todo.to(y.device)].cpu()
    return ok


# ----------------------------------------------------------------- decision-based


def _dist(a: torch.Tensor, b: torch.Tensor, norm: str) -> torch.Tensor:
    d = (a - b).flatten(1)
    return d.abs().amax(1) if norm == "linf" else d.norm(dim=1)


@torch.no_grad()
def _labels(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return predict_logits(model, x, batch_size).argmax(1).to(x.device)


@torch.no_grad()
def boundary_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, *, norm: str = "l2",
                    candidates: int = 10, iters: int = 100, bisections: int = 10,
                    generator: torch.Generator | None = None, batch_size: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """A decision-based attack: it sees only the predicted label, never a gradient or a score.

    1. *Line search* (as in ABS's latent line-search and the boundary attack's start):
       from each image toward its ``candidates`` nearest images of ``pool`` that the model
       labels differently, bisect for the point where the label flips; keep the closest.
    2. *Boundary walk* (a simplified boundary attack, Brendel et al. 2018): ``iters``
       proposals, each a random step along the boundary followed by a step toward x; a
       proposal is kept only if it is still misclassified *and* closer to x, so the
       distance never grows. The step toward x adapts per image to the acceptance rate.

    Returns (adversarial images, their ``norm`` distance to x); the distance is 0 for
    images the model already gets wrong and ``inf`` where nothing in ``pool`` helps.
    """
    if norm not in RULES:
        raise ConfigError(f"unknown norm {norm!r}; allowed: 'linf', 'l2'")
    if candidates < 1 or iters < 0 or bisections < 1:
        raise ConfigError(f"boundary_attack needs candidates >= 1, iters >= 0, bisections >= 1; "
                          f"got {candidates}, {iters}, {bisections}")
    with eval_mode(model):
        device = x.device
        n = len(x)
        wrong = _labels(model, x, batch_size) != y
        pool_lab = _labels(model, pool, batch_size)
        best = x.clone()
        dist = torch.full((n,), float("inf"), device=device)
        dist[wrong] = 0.0
        flat_pool = pool.flatten(1).to(device)
        rows = (~wrong).nonzero().squeeze(1)
        if len(rows):
            # the `candidates` nearest pool images of another predicted label, per image
            d = torch.cdist(x[rows].flatten(1), flat_pool) if norm == "l2" else torch.stack(
                [_dist(flat_pool, x[i].flatten().unsqueeze(0), norm) for i in rows.tolist()])
            d = d.masked_fill(pool_lab.view(1, -1) == y[rows].view(-1, 1), float("inf"))
            c = min(candidates, len(pool))
            dc, pick = d.topk(c, dim=1, largest=False)                  # (m, c)
            valid = torch.isfinite(dc)
            xi = x[rows].unsqueeze(1).expand(-1, c, *x.shape[1:]).reshape(-1, *x.shape[1:])
            starts = pool.to(device)[pick.reshape(-1)]
            yy = y[rows].repeat_interleave(c)
            lo = torch.zeros(len(xi), device=device)     # still correct at lo
            hi = torch.ones(len(xi), device=device)      # adversarial at hi
            view = (-1, *[1] * (x.dim() - 1))
            for _ in range(bisections):
                mid = (lo + hi) / 2
                adv = _labels(model, xi + mid.view(view) * (starts - xi), batch_size) != yy
                hi, lo = torch.where(adv, mid, hi), torch.where(adv, lo, mid)
            pts = xi + hi.view(view) * (starts - xi)
            dd = _dist(pts, xi, norm).view(-1, c).masked_fill(~valid, float("inf"))
            j = dd.argmin(1)
            found = torch.isfinite(dd.gather(1, j.view(-1, 1)).squeeze(1))
            chosen = pts.view(-1, c, *x.shape[1:])[torch.arange(len(rows), device=device), j]
            best[rows[found]], dist[rows[found]] = chosen[found], dd.gather(1, j.view(-1, 1)).squeeze(1)[found]
        todo = torch.isfinite(dist) & (dist > 0)
        toward = torch.full((n,), 0.1, device=device)
        spread = 0.1
        for _ in range(iters):
            idx = todo.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            xa, xo = best[idx], x[idx]
            noise = torch.randn(xa.shape, generator=generator).to(device)
            if norm == "linf":
                noise = noise.sign()
            scale = dist[idx].view(-1, *[1] * (x.dim() - 1))
            noise = noise / _dist(noise, torch.zeros_like(noise), norm).view_as(scale) * scale * spread
            prop = xa + noise
            prop = (prop + toward[idx].view_as(scale) * (xo - prop)).clamp(0.0, 1.0)
            nd = _dist(prop, xo, norm)
            keep = (_labels(model, prop, batch_size) != y[idx]) & (nd < dist[idx])
            best[idx[keep]], dist[idx[keep]] = prop[keep], nd[keep]
            toward[idx] = torch.where(keep, (toward[idx] * 1.5).clamp(max=0.5), (toward[idx] * 0.7).clamp(min=1e-3))
    return best.detach(), dist.detach()
