"""High-Energy PGD (Beadini & Masi 2023) and the book's energy-matching variant, as losses for
:func:`~robgen_lib.core.attacks.pgd` (an attack is the loop; these say what it ascends).

* HE-PGD:  L = CE(x', y) + λ·E(x') = E(x', y) + (λ − 1)·E(x'), with E(x') = −logsumexp f(x').
* Energy matching (beyond the paper): ascend CE until the image is fooled by a margin, then
  ascend −|E(x') − target|.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.energy import marginal_energy
from ..core.errors import ConfigError
from ..core.validate import as_float
from ..core.versions import versioned

__all__ = ["HighEnergyLoss", "EnergyMatchingLoss", "he_pgd_loss", "energy_matching_loss"]


@versioned(1)
@dataclass(frozen=True)
class HighEnergyLoss:
    """High-Energy PGD (Beadini & Masi): L = CE(x', y) + λ·E(x') = E(x', y) + (λ - 1)·E(x').

    λ = 1 only lowers the true logit; λ > 1 also pushes the marginal energy E(x') up,
    keeping attacked points near the data's energy instead of far below it.
    """

    lam: float

    def __post_init__(self):
        lam = as_float("lam", self.lam)
        if lam < 0:
            raise ConfigError(f"lam (HE-PGD's λ) must be >= 0, got {lam}; the paper uses 1.2-1.5")
        object.__setattr__(self, "lam", lam)

    def spec(self) -> dict:
        return {"loss": "he_pgd", "lam": self.lam}

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, reduction="none") + self.lam * marginal_energy(logits)


def he_pgd_loss(lam: float) -> HighEnergyLoss:
    """HE-PGD's loss with weight ``lam`` on the marginal energy (see :class:`HighEnergyLoss`)."""
    return HighEnergyLoss(lam)


@versioned(1)
@dataclass(frozen=True)
class EnergyMatchingLoss:
    """Fool first, then match the energy (this book's variant, beyond the paper).

    Per image: while the true logit is not at least ``margin`` below the best other logit,
    ascend CE; once it is, ascend -|E(x') - target| instead, which moves the marginal
    energy toward ``target`` (e.g. the median clean energy).  A step that un-fools the
    image switches it back to CE.
    """

    target: float
    margin: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "target", as_float("target", self.target))
        margin = as_float("margin", self.margin)
        if margin < 0:
            raise ConfigError(f"margin must be >= 0, got {margin}")
        object.__setattr__(self, "margin", margin)

    def spec(self) -> dict:
        return {"loss": "energy_matching", "target": self.target, "margin": self.margin}

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true = logits.gather(1, y.view(-1, 1)).squeeze(1)
        other = logits.scatter(1, y.view(-1, 1), float("-inf")).max(1).values
        fooled = (true - other).detach() < -self.margin
        match = -(marginal_energy(logits) - self.target).abs()
        return torch.where(fooled, match, F.cross_entropy(logits, y, reduction="none"))


def energy_matching_loss(target: float, margin: float = 1.0) -> EnergyMatchingLoss:
    """The fool-then-match-energy loss (see :class:`EnergyMatchingLoss`)."""
    return EnergyMatchingLoss(target, margin)
