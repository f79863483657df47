"""The class-conditional denoiser and what it is trained on.

* Parameterisation: ε-prediction (Ho et al. 2020) with the DDPM linear schedule
  β₁ = 10⁻⁴ … β_T = 0.02, T = 1000:  x_t = √ᾱ_t·x + √(1−ᾱ_t)·ε, x mapped to [−1, 1].
* :class:`Denoiser` — a two-level UNet.  ``multi_head=False``: conditioned on a label
  y ∈ {0…K} (K = the null label, i.e. the unconditional model), one ε per pass.
  ``multi_head=True``: no label input; the last convolution predicts ε for all K classes
  *and* the null label in one pass (Chen et al. 2024's multi-head diffusion).
* :class:`DenoisingLoss` — the objective: mean ‖ε̂ − ε‖² at a uniform random timestep.

Every network pass is counted (:attr:`Denoiser.evaluations`, one per image), so the book
can report cost in network evaluations as the paper does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...core.errors import ConfigError
from ...core.versions import versioned

__all__ = ["Schedule", "Denoiser", "DenoisingLoss"]


# ----------------------------------------------------------------------- schedule


class Schedule:
    """DDPM linear β schedule; ``alpha_bar[t]`` for integer t in [0, T)."""

    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.steps = steps
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        self.alpha_bar = torch.cumprod(1.0 - betas, 0).float()

    def timestep_for_sigma(self, sigma: float) -> int:
        """The t whose ᾱ_t is closest to 1/(1 + σ²) (EDM's noise level σ for data in [−1, 1])."""
        return int((self.alpha_bar - 1.0 / (1.0 + sigma ** 2)).abs().argmin())

    def noisy(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """x_t for images x in [−1, 1], timesteps t (B,) and noise eps."""
        ab = self.alpha_bar.to(x.device)[t].view(-1, *([1] * (x.dim() - 1)))
        return ab.sqrt() * x + (1 - ab).sqrt() * eps


# ----------------------------------------------------------------------- network


def _timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float().view(-1, 1) * freqs.view(1, -1)
    return torch.cat([args.sin(), args.cos()], 1)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class _ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.e = nn.Linear(emb, cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, e):
        h = self.c1(F.silu(self.n1(x))) + self.e(e)[:, :, None, None]
        return self.skip(x) + self.c2(F.silu(self.n2(h)))


class Denoiser(nn.Module):
    """A two-level UNet predicting ε (see the module docstring for the two head layouts)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, base: int = 32, multi_head: bool = False):
        super().__init__()
        if base < 8 or base % 8:
            raise ConfigError(f"denoiser width must be a multiple of 8 and >= 8, got {base}")
        self.in_channels, self.num_classes, self.multi_head = in_channels, num_classes, multi_head
        b, emb = base, 4 * base
        self.time = nn.Sequential(nn.Linear(b, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.label = None if multi_head else nn.Embedding(num_classes + 1, emb)
        self.inp = nn.Conv2d(in_channels, b, 3, padding=1)
        self.d1 = _ResBlock(b, b, emb)
        self.down1 = nn.Conv2d(b, b, 3, stride=2, padding=1)
        self.d2 = _ResBlock(b, 2 * b, emb)
        self.down2 = nn.Conv2d(2 * b, 2 * b, 3, stride=2, padding=1)
        self.mid = _ResBlock(2 * b, 2 * b, emb)
        self.u2 = _ResBlock(4 * b, 2 * b, emb)
        self.u1 = _ResBlock(3 * b, b, emb)
        heads = num_classes + 1 if multi_head else 1
        self.out = nn.Sequential(_norm(b), nn.SiLU(), nn.Conv2d(b, heads * in_channels, 3, padding=1))
        self.evaluations = 0  # images passed through the network since the last reset

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Single-head: ε for labels ``y`` (B, C, H, W). Multi-head: ε for every head (B, K+1, C, H, W)."""
        self.evaluations += x_t.shape[0]
        e = self.time(_timestep_embedding(t, self.inp.out_channels).to(self.inp.weight.dtype))
        if self.label is not None:
            if y is None:
                raise ValueError("a single-head denoiser needs labels (the null label is num_classes)")
            e = e + self.label(y)
        h1 = self.d1(self.inp(x_t), e)
        h2 = self.d2(self.down1(h1), e)
        h3 = self.mid(self.down2(h2), e)
        u2 = self.u2(torch.cat([F.interpolate(h3, size=h2.shape[-2:], mode="nearest"), h2], 1), e)
        u1 = self.u1(torch.cat([F.interpolate(u2, size=h1.shape[-2:], mode="nearest"), h1], 1), e)
        out = self.out(u1)
        if self.multi_head:
            return out.view(out.shape[0], self.num_classes + 1, self.in_channels, *out.shape[-2:])
        return out

    def eps(self, x_t: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ε̂ for one label per image (labels may be the null label)."""
        if self.multi_head:
            out = self(x_t, t)
            return out[torch.arange(len(y), device=out.device), y]
        return self(x_t, t, y)

    def eps_all(self, x_t: torch.Tensor, t: torch.Tensor, *, one_pass: bool | None = None) -> torch.Tensor:
        """ε̂ for every real class, (B, K, C, H, W).

        A multi-head network does it in one pass; ``one_pass=False`` forces one pass per
        class (what a single-head network must do) on the same weights.
        """
        one_pass = self.multi_head if one_pass is None else one_pass
        if one_pass:
            if not self.multi_head:
                raise ValueError("only a multi-head denoiser predicts every class in one pass")
            return self(x_t, t)[:, :self.num_classes]
        outs = []
        for k in range(self.num_classes):
            y = torch.full((x_t.shape[0],), k, dtype=torch.long, device=x_t.device)
            outs.append(self.eps(x_t, t, y))
        return torch.stack(outs, 1)


# ----------------------------------------------------------------------- training


@versioned(1)
@dataclass(frozen=True)
class DenoisingLoss:
    """Mean ‖ε̂ − ε‖² on images in [0, 1] mapped to [−1, 1], at a uniform random timestep.

    Single-head: each label is replaced by the null label with probability ``p_uncond``
    (classifier-free training). Multi-head: each image trains its class head and the null head.
    """

    p_uncond: float = 0.1

    def spec(self) -> dict:
        return {"name": "ddpm-eps-linear", "p_uncond": self.p_uncond}

    def __call__(self, net: Denoiser, x01: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        sched = Schedule()
        x = x01 * 2 - 1
        dev = x.device
        t = torch.randint(0, sched.steps, (len(x),), generator=generator).to(dev)
        eps = torch.randn(x.shape, generator=generator).to(dev)
        x_t = sched.noisy(x, t, eps)
        if net.multi_head:
            out = net(x_t, t)
            idx = torch.arange(len(x), device=dev)
            return F.mse_loss(out[idx, y], eps) + F.mse_loss(out[:, net.null_label], eps)
        drop = (torch.rand(len(x), generator=generator) < self.p_uncond).to(dev)
        y_in = torch.where(drop, torch.full_like(y, net.null_label), y)
        return F.mse_loss(net(x_t, t, y_in), eps)
