"""The diffusion classifier: Bayes' rule on a class-conditional denoiser's error.

logits_y = −scale · Σ_i w_i · mean‖ε̂(x_{t_i}, t_i, y) − ε_i‖² over T′ timesteps: evenly
spaced t with w_i = 1/T′ (``grid="uniform"``) or Chen et al.'s EDM σ grid and weights
(``grid="sigma"``, :func:`sigma_grid`). The noise ε_i is shared by the K classes; it is drawn
once and shared by every image (``noise="fixed"``: a deterministic function of x) or drawn
anew per image at every call (``noise="fresh"``: a stochastic classifier, attacked with EOT).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...core.errors import ConfigError
from .denoiser import Denoiser, Schedule

__all__ = ["NOISES", "GRIDS", "uniform_grid", "sigma_grid", "DiffusionClassifier"]




#: How the diffusion classifier draws its noise, and where it puts its timesteps.
NOISES = ("fixed", "fresh")
GRIDS = ("uniform", "sigma")


def uniform_grid(timesteps: int, schedule: Schedule, t_min: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """T′ = ``timesteps`` evenly spaced integer t in [t_min, T − 1] with equal weights w_i = 1/T′."""
    ts = torch.linspace(t_min, schedule.steps - 1, timesteps).round().long()
    return ts, torch.full((timesteps,), 1.0 / timesteps)


def sigma_grid(timesteps: int, schedule: Schedule, *, sigma_min: float = 1e-4, sigma_max: float = 3.0,
               sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Chen et al.'s EDM grid, moved to this ε-prediction model: (timesteps, weights).

    σ_i = linspace(σ_min, σ_max, T′ + 1)[i] for i < T′, spacing Δσ = (σ_max − σ_min)/T′. The
    EDM classifier weighs mean‖D(x + σε, σ, y) − x‖² by λ(σ)·p(σ)·Δσ, with
    λ(σ) = (σ² + σ_d²)/(σ·σ_d)² and p(σ) the log-normal density of EDM's training noise,
    p(σ) = exp(−(ln σ − P_mean)²/(2·P_std²)) / (σ·P_std·√(2π)).

    An ε-predictor gives D = (x + σε) − σ·ε̂, so D − x = −σ(ε̂ − ε) and
    ‖D − x‖² = σ²·‖ε̂ − ε‖²: the weight on mean‖ε̂ − ε‖² is
    λ(σ)·σ²·p(σ)·Δσ = (σ² + σ_d²)/σ_d² · p(σ)·Δσ, normalised here to Σ_i w_i = 1 (so logits
    keep the scale of the uniform grid's mean). Since x + σε = x_t/√ᾱ_t with
    ᾱ_t = 1/(1 + σ²), σ_i is evaluated at the DDPM timestep
    :meth:`Schedule.timestep_for_sigma` (σ_i); σ's that land on the same t are kept, each
    with its own weight.
    """
    sigmas = torch.linspace(sigma_min, sigma_max, timesteps + 1, dtype=torch.float64)[:-1]
    delta = (sigma_max - sigma_min) / timesteps
    density = torch.exp(-(sigmas.log() - p_mean) ** 2 / (2 * p_std ** 2)) / (sigmas * p_std * math.sqrt(2 * math.pi))
    raw = (sigmas ** 2 + sigma_data ** 2) / sigma_data ** 2 * density * delta
    ts = torch.tensor([schedule.timestep_for_sigma(float(s)) for s in sigmas], dtype=torch.long)
    return ts, (raw / raw.sum()).float()


class DiffusionClassifier(nn.Module):
    """Bayes' rule on the conditional denoising error: an ordinary logits-returning classifier,

        logits_y = −scale · Σ_i w_i · mean‖ε̂(√ᾱ_{t_i}·x + √(1 − ᾱ_{t_i})·ε_i, t_i, y) − ε_i‖²

    for x mapped to [−1, 1]. ``grid``: ``"uniform"`` — ``timesteps`` (T′) evenly spaced t in
    [t_min, T) with w_i = 1/T′ (:func:`uniform_grid`); ``"sigma"`` — the EDM σ grid and
    weights (:func:`sigma_grid`; ``t_min`` unused). The t_i and w_i are the buffers
    ``ts`` and ``weights``.

    ``noise``: ``"fixed"`` — one noise image ε_i per timestep, drawn once from ``seed`` and
    shared by every image and class (a deterministic function of x); ``"fresh"`` — every
    call draws an independent ε_i per image and timestep, shared by the K classes, from the
    model's own generator seeded with ``seed`` (``stochastic = True``: successive calls
    differ; a new classifier with the same seed, or :meth:`reseed`, repeats the sequence).
    A cached evaluation restarts the draws from its own key (:meth:`restart_draws`, see
    :mod:`robgen_lib.core.cached`), so its result does not depend on the calls before it; one
    shard of a torchrun run still draws differently from a single run (Monte-Carlo noise).

    ``one_pass`` chooses how the K conditional predictions are computed (default: one pass
    if multi-head).
    """

    def __init__(self, denoiser: Denoiser, timesteps: int = 25, *, scale: float = 1.0, t_min: int = 20,
                 seed: int = 0, one_pass: bool | None = None, schedule: Schedule | None = None,
                 noise: str = "fixed", grid: str = "uniform"):
        super().__init__()
        if timesteps < 1:
            raise ConfigError(f"the diffusion classifier needs at least 1 timestep, got {timesteps}")
        if noise not in NOISES:
            raise ConfigError(f"unknown noise {noise!r} of the diffusion classifier; allowed: "
                              f"{', '.join(map(repr, NOISES))}")
        if grid not in GRIDS:
            raise ConfigError(f"unknown grid {grid!r} of the diffusion classifier; allowed: "
                              f"{', '.join(map(repr, GRIDS))}")
        if one_pass and not denoiser.multi_head:
            raise ConfigError("only a multi-head denoiser predicts every class in one pass; pass one_pass=None "
                              "or False for a single-head denoiser")
        self.denoiser, self.scale, self.one_pass = denoiser, scale, one_pass
        self.noise, self.grid = noise, grid
        self.schedule = schedule or Schedule()
        ts, weights = (uniform_grid(timesteps, self.schedule, t_min) if grid == "uniform"
                       else sigma_grid(timesteps, self.schedule))
        self.register_buffer("ts", ts)
        self.register_buffer("weights", weights)
        self.seed = seed
        self._noise: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def stochastic(self) -> bool:
        """Whether successive calls on the same x differ (fresh noise)."""
        return self.noise == "fresh"

    def reseed(self, seed: int | None = None) -> None:
        """Restart the fresh-noise sequence from ``seed`` (default: the classifier's own)."""
        self.seed = self.seed if seed is None else seed
        self.generator.manual_seed(self.seed)
        self._noise = None

    def restart_draws(self, seed: int) -> None:
        """Restart the fresh-noise sequence from ``seed``, leaving the classifier's own seed (and
        so its fixed noise images) as they are."""
        self.generator.manual_seed(seed)

    def _noise_for(self, like: torch.Tensor) -> torch.Tensor:
        """The T′ noise images for a call: (T′, B, C, H, W) fresh, or (T′, 1, C, H, W) fixed —
        made once per image shape, dtype and device from ``seed``."""
        if self.noise == "fresh":
            return torch.randn((len(self.ts), *like.shape), generator=self.generator).to(like.device, like.dtype)
        n = self._noise
        if n is None or n.shape[2:] != like.shape[1:] or n.device != like.device or n.dtype != like.dtype:
            gen = torch.Generator().manual_seed(self.seed)
            self._noise = torch.randn((len(self.ts), *like.shape[1:]), generator=gen).to(like.device, like.dtype)
            self._noise = self._noise.unsqueeze(1)
        return self._noise

    def networks(self) -> list[nn.Module]:
        """The networks whose passes make up one prediction's cost (see ``yardstick.networks_of``)."""
        return [self.denoiser]

    @property
    def num_classes(self) -> int:
        return self.denoiser.num_classes

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        x = x01 * 2 - 1
        noise = self._noise_for(x)
        ab = self.schedule.alpha_bar.to(x.device)
        logits = x.new_zeros(len(x), self.num_classes)
        for i, (t, w) in enumerate(zip(self.ts.tolist(), self.weights.tolist())):
            eps = noise[i].expand_as(x)
            x_t = ab[t].sqrt() * x + (1 - ab[t]).sqrt() * eps
            tt = torch.full((len(x),), t, dtype=torch.long, device=x.device)
            pred = self.denoiser.eps_all(x_t, tt, one_pass=self.one_pass)
            logits = logits - w * ((pred - eps.unsqueeze(1)) ** 2).flatten(2).mean(2)
        return logits * self.scale
