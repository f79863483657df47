"""Drawing images out of a classifier.

* Class-conditional seeds (Santurkar et al. 2019): per class k, a Gaussian
  N(μ_k, Σ_k + 10⁻⁴·I) fitted on that class's training images; samples clamped to [0, 1].
* Robust-classifier generation: from a seed of class k, *targeted* ℓ2 PGD that descends
  CE(f(x), k) inside an ℓ2 ball around the seed — for a robust model this is descent of
  the joint energy E(x, k) up to the log-normaliser.
* SGLD on an energy (Welling & Teh 2011; as used by JEM):
  x ← clamp( x − step·∇ₓE(x) + noise·N(0, I), 0, 1 ), with E = E(x, y) when labels
  are given, else the marginal E(x).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..core.attacks import attack, ce_loss
from ..core.data import Split, batch_slices
from ..core.energy import joint_energy, marginal_energy
from ..core.errors import ConfigError
from ..core.models import eval_mode, model_device
from ..core.progress import progress_bar
from ..core.validate import as_float
from ..core.versions import versioned

__all__ = ["ClassGaussians", "fit_class_gaussians", "sample_seeds", "generate", "sgld", "sgld_samples"]


@dataclass
class ClassGaussians:
    means: torch.Tensor   # (K, D)
    chols: torch.Tensor   # (K, D, D) Cholesky factors of Σ_k + ridge·I
    shape: tuple          # (C, H, W)


def fit_class_gaussians(split: Split, num_classes: int, ridge: float = 1e-4) -> ClassGaussians:
    """Mean and full covariance (+ ``ridge``·I) of each class's images."""
    x = split.x.flatten(1).double()
    d = x.shape[1]
    means, chols = [], []
    for k in range(num_classes):
        xk = x[split.y == k]
        if len(xk) < 2:
            raise ConfigError(f"class {k} has {len(xk)} training image(s); at least 2 are needed for a covariance")
        mu = xk.mean(0)
        cov = torch.cov(xk.T) + ridge * torch.eye(d, dtype=torch.float64)
        means.append(mu)
        chols.append(torch.linalg.cholesky(cov))
    return ClassGaussians(torch.stack(means).float(), torch.stack(chols).float(), tuple(split.x.shape[1:]))


def sample_seeds(g: ClassGaussians, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One seed per label: μ_y + L_y·z with z ~ N(0, I), clamped to [0, 1], shaped like the images."""
    z = torch.randn(len(labels), g.means.shape[1], generator=generator)
    x = g.means[labels] + torch.einsum("nij,nj->ni", g.chols[labels], z)
    return x.clamp(0.0, 1.0).view(len(labels), *g.shape)


@versioned(1)
def generate(model: nn.Module, seeds: torch.Tensor, targets: torch.Tensor, *, eps: float, step_size: float,
             steps: int, batch_size: int = 256, progress: bool = False) -> torch.Tensor:
    """Targeted ℓ2 PGD on CE toward ``targets`` from ``seeds`` (no random start), batched on the
    model's device; the samples come back on the device of ``seeds``."""
    if len(seeds) == 0:
        return seeds.clone()
    return attack(model, seeds, targets, eps=eps, step_size=step_size, steps=steps, norm="l2", loss=ce_loss,
                  targeted=True, random_start=False, batch_size=batch_size, progress=progress,
                  desc="generate").to(seeds.device)


def sgld(model: nn.Module, x: torch.Tensor, *, steps: int, step_size: float, noise: float,
         y: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``steps`` SGLD steps on E(x, y) (labels given) or E(x); the model is in eval mode meanwhile."""
    step_size, noise = as_float("step_size", step_size), as_float("noise", noise)
    if step_size < 0 or noise < 0:
        raise ConfigError(f"SGLD needs step_size >= 0 and noise >= 0, got {step_size} and {noise}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ConfigError(f"steps must be a non-negative integer, got {steps!r}")
    x = x.detach().clone()
    with eval_mode(model):
        for _ in range(steps):
            x.requires_grad_(True)
            logits = model(x)
            energy = joint_energy(logits, y) if y is not None else marginal_energy(logits)
            (grad,) = torch.autograd.grad(energy.sum(), x)
            with torch.no_grad():
                z = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
                x = (x - step_size * grad + noise * z).clamp(0.0, 1.0)
    return x.detach()


@versioned(1)
def sgld_samples(model: nn.Module, starts: torch.Tensor, *, steps: int, step_size: float, noise: float,
                 y: torch.Tensor | None = None, seed: int = 0, batch_size: int = 256,
                 progress: bool = False) -> torch.Tensor:
    """:func:`sgld` over ``starts`` in batches on the model's device, seeded; results on the CPU."""
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in progress_bar(list(batch_slices(len(starts), batch_size)), desc=f"SGLD ({len(starts)})",
                          enabled=progress, leave=False):
        yb = None if y is None else y[s].to(device)
        out.append(sgld(model, starts[s].to(device), steps=steps, step_size=step_size, noise=noise, y=yb,
                        generator=gen).cpu())
    return torch.cat(out) if out else starts.clone()
