"""Likelihood maximisation (LM) and the Robust Diffusion Classifier (Chen et al. 2024).

LM takes a few ℓ∞-bounded descent steps on the unconditional denoising loss, one noise image
per step shared by the batch (an image's result does not depend on the rest of its batch);
:class:`RDC` = LM, then the diffusion classifier, with exact gradients through LM or BPDA
(identity backward).
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.errors import ConfigError
from .classifier import DiffusionClassifier
from .denoiser import Denoiser, Schedule

__all__ = ["likelihood_maximisation", "RDC"]


def likelihood_maximisation(denoiser: Denoiser, x01: torch.Tensor, *, steps: int, eta: float, step_size: float,
                            sigma_range: tuple = (0.4, 0.6), seed: int = 0, create_graph: bool = False,
                            schedule: Schedule | None = None) -> torch.Tensor:
    """x̂ = approx. argmin over the ℓ∞ η-ball ∩ [0, 1] of the unconditional denoising loss.

    ``steps`` descent steps; step k draws one noise level σ_k ~ U(``sigma_range``) — the
    paper's range in EDM terms, mapped to the DDPM timestep t_k whose ᾱ_t is closest to
    1/(1 + σ²) — and one noise image ε_k (1, C, H, W) shared by every image of the batch
    (seeded: LM is a deterministic function of each image alone, whatever else is in the
    batch and wherever the image sits in it), and moves

        x̂ ← clip_{[0,1] ∩ B∞(x, η)}(x̂ − step_size · g/‖g‖∞),
        g = ∇_x̂ ‖ε̂(√ᾱ_{t_k}·(2x̂ − 1) + √(1 − ᾱ_{t_k})·ε_k, t_k, ∅) − ε_k‖²   (per image).

    With ``create_graph`` the result stays differentiable in x (exact gradients through LM).
    """
    if eta < 0 or step_size < 0 or steps < 0:
        raise ConfigError(f"LM needs steps, eta, step_size >= 0, got {steps}, {eta}, {step_size}")
    sched = schedule or Schedule()
    gen = torch.Generator().manual_seed(seed)
    null = torch.full((len(x01),), denoiser.null_label, dtype=torch.long, device=x01.device)
    xh = x01 if create_graph else x01.detach()
    with torch.enable_grad():
        for _ in range(steps):
            sigma = sigma_range[0] + (sigma_range[1] - sigma_range[0]) * torch.rand(1, generator=gen).item()
            t = torch.full((len(x01),), sched.timestep_for_sigma(sigma), dtype=torch.long, device=x01.device)
            eps = torch.randn((1, *x01.shape[1:]), generator=gen).to(x01.device, x01.dtype).expand_as(x01)
            if not xh.requires_grad:
                xh = xh.detach().requires_grad_(True)
            x_t = sched.noisy(xh * 2 - 1, t, eps)
            loss = ((denoiser.eps(x_t, t, null) - eps) ** 2).flatten(1).sum(1)
            (g,) = torch.autograd.grad(loss.sum(), xh, create_graph=create_graph)
            g = g / (g.flatten(1).abs().amax(1).view(-1, *([1] * (g.dim() - 1))) + 1e-12)
            step = xh - step_size * g
            xh = torch.min(torch.max(step, x01 - eta), x01 + eta).clamp(0.0, 1.0)
            if not create_graph:
                xh = xh.detach()
    return xh


class RDC(nn.Module):
    """Robust Diffusion Classifier: likelihood maximisation, then the diffusion classifier.

    ``gradient="exact"`` differentiates through LM's steps (second order);
    ``"bpda"`` treats LM as the identity in the backward pass.
    """

    def __init__(self, classifier: DiffusionClassifier, *, steps: int = 5, eta: float = 8 / 255,
                 step_size: float = 0.1 * 8 / 255, seed: int = 0, gradient: str = "bpda"):
        super().__init__()
        if gradient not in ("exact", "bpda"):
            raise ConfigError(f"unknown gradient {gradient!r}; allowed: 'exact', 'bpda'")
        self.classifier, self.gradient = classifier, gradient
        self.lm = dict(steps=steps, eta=eta, step_size=step_size, seed=seed)

    def networks(self) -> list[nn.Module]:
        """The networks whose passes make up one prediction's cost (see ``yardstick.networks_of``)."""
        return [self.denoiser]

    @property
    def stochastic(self) -> bool:
        """Random exactly when its diffusion classifier is (LM's noise is seeded)."""
        return self.classifier.stochastic

    @property
    def denoiser(self) -> Denoiser:
        return self.classifier.denoiser

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        exact = self.gradient == "exact" and torch.is_grad_enabled() and x.requires_grad
        x_lm = likelihood_maximisation(self.denoiser, x, create_graph=exact, schedule=self.classifier.schedule,
                                       **self.lm)
        return x_lm if exact else x + (x_lm - x).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.purify(x))
