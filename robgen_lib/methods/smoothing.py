"""Randomized smoothing (Cohen, Rosenfeld & Kolter 2019) for any classifier of the book.

The smoothed classifier g(x) = argmax_c P(f(x + δ) = c), δ ~ N(0, σ²I).

* :meth:`Smoothed.predict` — PREDICT: the top two counts of ``n`` noisy votes; abstain
  unless a two-sided binomial test says the top class wins at level ``alpha``.
* :meth:`Smoothed.certify` — CERTIFY: guess the class from ``n0`` votes, estimate a
  one-sided Clopper–Pearson lower bound p̲_A on its probability from ``n`` fresh votes;
  the ℓ2 radius is σ·Φ⁻¹(p̲_A), or abstain when p̲_A ≤ 1/2.
* :func:`denoise_then_classify` — a base classifier that first removes the Gaussian
  noise with the book's diffusion denoiser (one ε-prediction step at the matching noise
  level), then classifies.

Noise is drawn from a seeded generator per call, so results are reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from scipy.stats import beta, binomtest, norm
from torch import nn

from ..core.data import Split
from ..core.errors import ConfigError
from ..core.fit import AssembledRecipe
from ..core.models import eval_mode, model_device
from ..core.parallel import batch_generator
from ..core.versions import versioned
from .diffusion import Schedule

__all__ = ["Smoothed", "Certificate", "clopper_pearson_lower", "denoise_then_classify", "ABSTAIN", "certify_split",
           "DenoisedRecipe", "SoftSmoothedRecipe", "certify", "largest_certifiable_radius",
           "certified_accuracy", "SoftSmoothed"]

#: The label returned when the smoothed classifier abstains.
ABSTAIN = -1


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided (1 − alpha) Clopper–Pearson lower confidence bound on a binomial proportion."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return 0.0 if k == 0 else float(beta.ppf(alpha, k, n - k + 1))


@dataclass(frozen=True)
class Certificate:
    label: int        # the certified class, or ABSTAIN
    radius: float     # certified ℓ2 radius (0 when abstaining)
    p_lower: float    # the lower confidence bound on the top class's probability


class Smoothed:
    """The smoothed version of ``base`` (logits-returning, inputs in [0, 1]) at noise level ``sigma``.

    Noisy inputs are *not* clamped to [0, 1]: the certificate assumes plain Gaussian noise.
    """

    def __init__(self, base: nn.Module, sigma: float, *, num_classes: int, batch_size: int = 500, seed: int = 0):
        if not sigma > 0:
            raise ConfigError(f"smoothing needs sigma > 0, got {sigma}")
        self.base, self.sigma, self.num_classes = base, float(sigma), num_classes
        self.batch_size, self.seed = batch_size, seed

    @torch.no_grad()
    def votes(self, x: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
        """Counts (K,) of the base classifier's labels on ``n`` noisy copies of one image x (C, H, W)."""
        device = model_device(self.base)
        counts = torch.zeros(self.num_classes, dtype=torch.long)
        done = 0
        with eval_mode(self.base):
            while done < n:
                m = min(self.batch_size, n - done)
                noise = torch.randn((m, *x.shape), generator=generator) * self.sigma
                batch = (x.cpu().unsqueeze(0) + noise).to(device)
                labels = self.base(batch).argmax(1).cpu()
                counts += torch.bincount(labels, minlength=self.num_classes)
                done += m
        return counts

    def _gen(self, index: int) -> torch.Generator:
        return batch_generator(self.seed, index)

    def predict(self, x: torch.Tensor, *, n: int = 100, alpha: float = 0.001) -> torch.Tensor:
        """PREDICT for each image of ``x`` (N, C, H, W): the class, or ABSTAIN."""
        out = []
        for i in range(len(x)):
            counts = self.votes(x[i], n, self._gen(i))
            top2 = counts.topk(2)
            a, b = int(top2.values[0]), int(top2.values[1])
            ok = binomtest(a, a + b, 0.5).pvalue <= alpha if a + b > 0 else False
            out.append(int(top2.indices[0]) if ok else ABSTAIN)
        return torch.tensor(out)

    def certify(self, x: torch.Tensor, *, n0: int = 100, n: int = 1000, alpha: float = 0.001) -> list[Certificate]:
        """CERTIFY for each image of ``x``: class and ℓ2 radius, or ABSTAIN."""
        certs = []
        for i in range(len(x)):
            gen = self._gen(i)
            guess = int(self.votes(x[i], n0, gen).argmax())
            k = int(self.votes(x[i], n, gen)[guess])
            p = clopper_pearson_lower(k, n, alpha)
            if p > 0.5:
                certs.append(Certificate(guess, float(self.sigma * norm.ppf(p)), p))
            else:
                certs.append(Certificate(ABSTAIN, 0.0, p))
        return certs


class _DenoiseThenClassify(nn.Module):
    def __init__(self, denoiser, classifier: nn.Module, sigma: float, schedule):
        super().__init__()
        self.denoiser, self.classifier, self.schedule = denoiser, classifier, schedule
        # x + σ·δ in [0, 1] units is 2x − 1 + 2σ·δ in [−1, 1]; scaled by √ᾱ it is a DDPM x_t
        # when (1 − ᾱ)/ᾱ = (2σ)², i.e. ᾱ = 1 / (1 + 4σ²).
        self.t = schedule.timestep_for_sigma(2 * sigma)
        ab = float(schedule.alpha_bar[self.t])
        self.sqrt_ab, self.sqrt_1mab = ab ** 0.5, (1 - ab) ** 0.5

    def networks(self) -> list[nn.Module]:
        """The networks whose passes make up one prediction's cost (see ``yardstick.networks_of``)."""
        return [self.denoiser, *getattr(self.classifier, "networks", lambda: [self.classifier])()]

    def forward(self, x_noisy01: torch.Tensor) -> torch.Tensor:
        x_t = self.sqrt_ab * (x_noisy01 * 2 - 1)
        t = torch.full((len(x_t),), self.t, dtype=torch.long, device=x_t.device)
        null = torch.full((len(x_t),), self.denoiser.null_label, dtype=torch.long, device=x_t.device)
        eps = self.denoiser.eps(x_t, t, null)
        x0 = ((x_t - self.sqrt_1mab * eps) / self.sqrt_ab).clamp(-1, 1)
        return self.classifier((x0 + 1) / 2)


def denoise_then_classify(denoiser, classifier: nn.Module, sigma: float, schedule=None) -> nn.Module:
    """A base classifier for smoothing at ``sigma``: one-step denoising with the unconditional
    head of the book's diffusion denoiser, then ``classifier``."""
    return _DenoiseThenClassify(denoiser, classifier, sigma, schedule or Schedule())


def certify_split(smoothed: Smoothed, x: torch.Tensor, y: torch.Tensor, *, n0: int, n: int,
                  alpha: float) -> dict[str, torch.Tensor]:
    """CERTIFY every image: ``label``, ``radius``, ``p_lower`` and ``correct`` (certified
    label = true label) as tensors, ready for :func:`certified_accuracy` and the cache."""
    certs = smoothed.certify(x, n0=n0, n=n, alpha=alpha)
    label = torch.tensor([c.label for c in certs])
    return {"label": label, "radius": torch.tensor([c.radius for c in certs]),
            "p_lower": torch.tensor([c.p_lower for c in certs]), "correct": label == y.cpu()}


@versioned(1)
def certify(model: nn.Module, split: Split, *, sigma: float, num_classes: int, n0: int, n: int, alpha: float,
            seed: int = 0) -> dict[str, torch.Tensor]:
    """:func:`certify_split` of ``model`` smoothed at ``sigma`` over ``split`` (noise seeded per image)."""
    smoothed = Smoothed(model, sigma, num_classes=num_classes, seed=seed)
    return certify_split(smoothed, split.x, split.y, n0=n0, n=n, alpha=alpha)


def largest_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius ``n`` votes can certify at confidence 1 − α: all n votes agree, so the
    Clopper–Pearson lower bound is α^(1/n) and the radius σ·Φ⁻¹(α^(1/n))."""
    return float(sigma * norm.ppf(alpha ** (1 / n)))


def certified_accuracy(result: dict, radii) -> list[float]:
    """Fraction of images certified correctly with a radius of at least r, for each r in ``radii``."""
    return [float((result["correct"] & (result["radius"] >= r)).float().mean()) for r in radii]


class SoftSmoothed(nn.Module):
    """A differentiable, *stochastic* stand-in for the smoothed classifier, for attacks:
    logits = log of the mean softmax of ``base`` over ``n`` fresh noisy copies of x.

    Each call draws new noise from the model's own generator (seeded once), so a run is
    reproducible while successive calls differ — which is why attacks on it need EOT
    (``stochastic = True``). A cached evaluation restarts the draws from its own key
    (:meth:`restart_draws`, see :mod:`robgen_lib.core.cached`), so its result does not depend
    on the calls before it; a shard of a torchrun run still draws differently.
    """

    stochastic = True

    def __init__(self, base: nn.Module, sigma: float, *, n: int = 8, seed: int = 0):
        super().__init__()
        if not sigma > 0 or n < 1:
            raise ConfigError(f"SoftSmoothed needs sigma > 0 and n >= 1, got {sigma}, {n}")
        self.base, self.sigma, self.n = base, float(sigma), n
        self.generator = torch.Generator().manual_seed(seed)

    def networks(self) -> list[nn.Module]:
        """The networks whose passes make up one prediction's cost (see ``yardstick.networks_of``)."""
        return getattr(self.base, "networks", lambda: [self.base])()

    def restart_draws(self, seed: int) -> None:
        """Restart the noise sequence from ``seed``."""
        self.generator.manual_seed(seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn((self.n, *x.shape), generator=self.generator).to(x.device) * self.sigma
        logits = self.base((x.unsqueeze(0) + noise).flatten(0, 1))
        probs = logits.float().softmax(-1).view(self.n, len(x), -1).mean(0)
        return probs.clamp_min(1e-12).log()


# ----------------------------------------------------------------------- recipes


@versioned(1)
@dataclass(frozen=True)
class DenoisedRecipe(AssembledRecipe):
    """``base`` (a classifier recipe) behind one denoising step of ``denoiser`` at noise σ."""

    denoiser: Any
    base: Any
    sigma: float

    kind: ClassVar[str] = "denoise_then_classify"

    def assemble(self, get) -> nn.Module:
        return denoise_then_classify(get(self.denoiser).model, get(self.base).model, self.sigma)


@versioned(1)
@dataclass(frozen=True)
class SoftSmoothedRecipe(AssembledRecipe):
    """``base`` under Gaussian noise σ as a :class:`SoftSmoothed` model (``draws`` copies per call)."""

    base: Any
    sigma: float
    draws: int
    seed: int = 0

    kind: ClassVar[str] = "soft_smoothed"

    def assemble(self, get) -> SoftSmoothed:
        return SoftSmoothed(get(self.base).model, self.sigma, n=self.draws, seed=self.seed)
