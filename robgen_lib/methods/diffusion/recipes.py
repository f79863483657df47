"""The diffusion models as recipes: a trained denoiser, a user's weights, the diffusion
classifier and RDC assembled on them (their fields are their cache key)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...core.data import Dataset
from ...core.errors import ConfigError
from ...core.fit import AssembledRecipe, TrainingRecipe
from ...core.versions import versioned
from .classifier import GRIDS, NOISES, DiffusionClassifier
from .denoiser import Denoiser
from .rdc import RDC
from .weights import load_denoiser_weights

__all__ = ["DenoiserRecipe", "DenoiserWeights", "DiffusionClassifierRecipe", "RDCRecipe"]


@versioned(1)
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


@versioned(1)
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




@versioned(1)
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


@versioned(1)
@dataclass(frozen=True)
class RDCRecipe(AssembledRecipe):
    """RDC: ``steps`` of likelihood maximisation in the ℓ∞ ``eta``-ball (one noise image per step
    for the whole batch, see :func:`~.rdc.likelihood_maximisation`), then a diffusion classifier."""

    classifier: DiffusionClassifierRecipe
    steps: int
    eta: float
    step_size: float
    seed: int = 0
    gradient: str = "bpda"

    kind: ClassVar[str] = "rdc"

    def assemble(self, get) -> RDC:
        return RDC(get(self.classifier).model, steps=self.steps, eta=self.eta, step_size=self.step_size,
                   seed=self.seed, gradient=self.gradient)
