"""A small class-conditional diffusion model and the classifiers built on it (chapter 4).

* Parameterisation: ε-prediction (Ho et al. 2020) with the DDPM linear schedule
  β₁ = 10⁻⁴ … β_T = 0.02, T = 1000:  x_t = √ᾱ_t·x + √(1−ᾱ_t)·ε, x mapped to [−1, 1].
* :class:`Denoiser` — a two-level UNet.  ``multi_head=False``: conditioned on a label
  y ∈ {0…K} (K = the null label, i.e. the unconditional model), one ε per pass.
  ``multi_head=True``: no label input; the last convolution predicts ε for all K classes
  *and* the null label in one pass (Chen et al. 2024's multi-head diffusion).
* :class:`DiffusionClassifier` — logits_y = −scale · Σ_i w_i · mean‖ε̂(x_{t_i}, t_i, y) − ε_i‖²
  over T′ timesteps: evenly spaced t with w_i = 1/T′ (``grid="uniform"``) or Chen et al.'s
  EDM σ grid and weights (``grid="sigma"``, :func:`sigma_grid`). The noise ε_i is shared by
  the K classes; it is drawn once and shared by every image (``noise="fixed"``: a
  deterministic function of x) or drawn anew per image at every call (``noise="fresh"``:
  a stochastic classifier, attacked with EOT).
* :func:`likelihood_maximisation` (LM) — a few ℓ∞-bounded descent steps on the
  unconditional denoising loss, one noise image per step shared by the batch (an image's
  result does not depend on the rest of its batch); :class:`RDC` = LM, then the diffusion
  classifier, with exact gradients through LM or BPDA (identity backward).

Every network pass is counted (:attr:`Denoiser.evaluations`, one per image), so the book
can report cost in network evaluations as the paper does.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..core.data import Dataset
from ..core.errors import ConfigError
from ..core.fit import AssembledRecipe, Optimiser, TrainingRecipe

__all__ = ["Schedule", "Denoiser", "DiffusionClassifier", "NOISES", "GRIDS", "sigma_grid", "uniform_grid",
           "likelihood_maximisation", "RDC", "DenoisingLoss",
           "DenoiserRecipe", "DenoiserWeights", "load_denoiser_weights", "DiffusionClassifierRecipe", "RDCRecipe",
           "LM_NOISES"]


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


@dataclass(frozen=True)
class DenoiserRecipe(TrainingRecipe):
    """A class-conditional :class:`Denoiser` of width ``base`` trained on the denoising loss."""

    base: int
    multi_head: bool

    kind: ClassVar[str] = "denoiser"

    def network(self, data: Dataset) -> Denoiser:
        return Denoiser(data.image_shape[0], data.num_classes, self.base, self.multi_head)

    def ready(self, model: Denoiser) -> Denoiser:
        model.evaluations = 0
        return model


@dataclass(frozen=True)
class DenoiserWeights(AssembledRecipe):
    """A user's multi-head :class:`Denoiser` state dict of width ``base`` (a file whose
    bytes hash to ``digest``), for ``in_channels`` × ``num_classes`` data, loaded safely."""

    path: str
    digest: str
    base: int
    in_channels: int
    num_classes: int

    kind: ClassVar[str] = "denoiser_weights"

    def spec(self) -> dict:
        return {"recipe": self.kind, "weights": self.digest, "base": self.base}

    def assemble(self, get) -> Denoiser:
        return load_denoiser_weights(self.path, self.in_channels, self.num_classes, self.base)


def load_denoiser_weights(path: str, in_channels: int, num_classes: int, base: int) -> "Denoiser":
    """A multi-head :class:`Denoiser` with the state dict in ``path`` (a plain state dict, or
    a dict holding one under ``"state_dict"``), read with ``torch.load(weights_only=True)``.

    Raises :class:`ConfigError` naming the file when it is missing, is not a PyTorch file of
    tensors, or does not fit the network (width ``base``, the data's channels and classes).
    """
    net = Denoiser(in_channels, num_classes, base, multi_head=True)
    if not os.path.isfile(path):
        raise ConfigError(f"denoiser_weights: no file {path!r}")
    try:
        with warnings.catch_warnings():   # torch's notes on a foreign pickle protocol: the error below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # UnpicklingError, a bad zip, a text file: all mean "not a safe state dict"
        raise ConfigError(f"denoiser_weights {path!r} is not a PyTorch file of tensors that loads safely "
                          f"({type(exc).__name__}); save the weights with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    try:
        if not isinstance(state, dict):
            raise TypeError(f"it holds a {type(state).__name__}, not a state dict")
        net.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"denoiser_weights {path!r} do not fit a multi-head Denoiser of width {base} for "
                          f"{in_channels} channels and {num_classes} classes ({first}); set den_width to the "
                          f"width they were trained with") from None
    return net


# ----------------------------------------------------------------------- classifiers


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


# ----------------------------------------------------------------------- recipes


@dataclass(frozen=True)
class DiffusionClassifierRecipe(AssembledRecipe):
    """The diffusion classifier on a denoiser (a :class:`DenoiserRecipe` or :class:`DenoiserWeights`);
    ``noise`` (one of :data:`NOISES`) and ``grid`` (one of :data:`GRIDS`) as in
    :class:`DiffusionClassifier`."""

    denoiser: Any
    timesteps: int
    scale: float = 1.0
    seed: int = 0
    one_pass: bool | None = None
    noise: str = "fixed"
    grid: str = "uniform"

    kind: ClassVar[str] = "diffusion_classifier"

    def __post_init__(self):
        if self.noise not in NOISES:
            raise ConfigError(f"unknown noise {self.noise!r} of the diffusion classifier; allowed: "
                              f"{', '.join(map(repr, NOISES))}")
        if self.grid not in GRIDS:
            raise ConfigError(f"unknown grid {self.grid!r} of the diffusion classifier; allowed: "
                              f"{', '.join(map(repr, GRIDS))}")

    def assemble(self, get) -> DiffusionClassifier:
        return DiffusionClassifier(get(self.denoiser).model, self.timesteps, scale=self.scale, seed=self.seed,
                                   one_pass=self.one_pass, noise=self.noise, grid=self.grid)


#: How likelihood maximisation lays out its noise (a field of :class:`RDCRecipe`'s spec).
LM_NOISES = ("shared",)


@dataclass(frozen=True)
class RDCRecipe(AssembledRecipe):
    """RDC: ``steps`` of likelihood maximisation in the ℓ∞ ``eta``-ball, then a diffusion classifier.

    ``lm_noise`` names LM's noise layout and is part of the spec, so that results of another
    layout are never read for this one: ``"shared"`` (the only one) — one noise image per
    step for the whole batch (see :func:`likelihood_maximisation`).
    """

    classifier: DiffusionClassifierRecipe
    steps: int
    eta: float
    step_size: float
    seed: int = 0
    gradient: str = "bpda"
    lm_noise: str = "shared"

    kind: ClassVar[str] = "rdc"

    def __post_init__(self):
        if self.lm_noise not in LM_NOISES:
            raise ConfigError(f"unknown lm_noise {self.lm_noise!r} of RDC; allowed: {', '.join(map(repr, LM_NOISES))}")

    def assemble(self, get) -> RDC:
        return RDC(get(self.classifier).model, steps=self.steps, eta=self.eta, step_size=self.step_size,
                   seed=self.seed, gradient=self.gradient)
