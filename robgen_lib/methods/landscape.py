"""Energy landscapes around data points (Zhu et al. 2021, Fig. 2) and flatness numbers.

* Landscape: E(x + a·d₁ + b·d₂, y) on a grid a, b ∈ [-r, r], d₁, d₂ random Gaussian
  directions of unit ℓ2 norm (per image).  Points are not clamped to [0, 1]: the
  landscape is the model's, around x.
* Flatness: the mean ‖∇ₓE(x, y)‖₂ at the data, and the mean range (max - min) of
  E(x', y) over random points x' of the ℓ∞ ball of radius ε around each image; both per
  image too, with the standard deviation s of the model's logits at the data (over images
  and classes). A model with logits twice as large has gradients twice as large, so
  ‖∇ₓE‖ / s is the gradient per unit of logit scale, a flatness that scale alone cannot fake.
* Centre rank: the fraction of a landscape's grid points with a lower energy than the
  image itself (0: the image is the lowest point, 1: the highest), per image.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.data import Split
from ..core.energy import joint_energy
from ..core.models import eval_mode, model_device
from ..core.versions import versioned

__all__ = ["energy_landscape", "flatness", "centre_ranks", "centre_rank"]


@versioned(1)
@torch.no_grad()
def energy_landscape(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, radius: float, n: int = 21,
                     seed: int = 0) -> dict:
    """Joint energy on an n×n grid of two random unit directions (drawn with ``seed``) around each image.

    Returns ``offsets`` (n,) and ``energy`` (N, n, n), rows along d₁, columns along d₂.
    """
    device = model_device(model)
    d = torch.randn((2, *x.shape), generator=torch.Generator().manual_seed(seed))
    d = d / d.flatten(2).norm(dim=2).view(2, len(x), *([1] * (x.dim() - 1)))
    offsets = torch.linspace(-radius, radius, n)
    a, b = torch.meshgrid(offsets, offsets, indexing="ij")
    out = torch.empty(len(x), n, n)
    with eval_mode(model):
        for i in range(len(x)):
            pts = x[i] + a.reshape(-1, 1, 1, 1) * d[0, i] + b.reshape(-1, 1, 1, 1) * d[1, i]
            yy = y[i].repeat(len(pts))
            out[i] = joint_energy(model(pts.to(device)).float().cpu(), yy).view(n, n)
    return {"offsets": offsets, "energy": out}


@versioned(1)
def flatness(model: nn.Module, split: Split, *, eps: float, n_samples: int = 16, seed: int = 0,
             per_image: bool = True) -> dict:
    """Mean ‖∇ₓE(x, y)‖₂ over ``split`` (``grad_norm``) and mean range of E(·, y) over
    ``n_samples`` random points of the ε-ball, drawn with ``seed`` (``ball_range``).

    ``per_image`` adds both per image (``grad_norms``, ``ball_ranges``: (N,) tensors) and
    ``logit_std``, the standard deviation of the logits at the data over images and classes.
    """
    device = model_device(model)
    generator = torch.Generator().manual_seed(seed)
    x, y = split.x.to(device), split.y.to(device)
    with eval_mode(model):
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(joint_energy(model(xg), y).sum(), xg)
        grad_norm = grad.flatten(1).norm(dim=1)
        lo = hi = None
        with torch.no_grad():
            for _ in range(n_samples):
                u = torch.rand(x.shape, generator=generator).to(device)
                e = joint_energy(model((x + (2 * u - 1) * eps).clamp(0, 1)), y)
                lo = e if lo is None else torch.minimum(lo, e)
                hi = e if hi is None else torch.maximum(hi, e)
            logit_std = float(model(x).float().std()) if per_image else None
    out = {"grad_norm": float(grad_norm.mean()), "ball_range": float((hi - lo).mean())}
    if per_image:
        out.update(grad_norms=grad_norm.detach().float().cpu(), ball_ranges=(hi - lo).float().cpu(),
                   logit_std=logit_std)
    return out


def centre_ranks(energy: torch.Tensor) -> torch.Tensor:
    """Per image, the fraction of grid points whose energy is below the centre's (the image itself).

    ``energy``: (N, n, n) landscapes from :func:`energy_landscape` with an odd ``n``; 0 means
    the image is the lowest point of its landscape, 1 the highest.
    """
    n = energy.shape[-1]
    if energy.dim() != 3 or n % 2 == 0 or energy.shape[-2] != n:
        raise ValueError(f"centre_rank needs (N, n, n) grids with odd n, got {tuple(energy.shape)}")
    centre = energy[:, n // 2, n // 2].view(-1, 1, 1)
    return (energy < centre).float().flatten(1).mean(1)


def centre_rank(energy: torch.Tensor) -> float:
    """The mean of :func:`centre_ranks` over the images."""
    return float(centre_ranks(energy).mean())
