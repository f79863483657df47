"""A small class-conditional diffusion model and the classifiers built on it (chapter 4).

* :mod:`.denoiser` — the DDPM schedule, the UNet denoiser (single- or multi-head) and its loss;
* :mod:`.weights` — a user's multi-head weights, loaded safely;
* :mod:`.classifier` — the diffusion classifier (uniform or EDM σ grid; fixed or fresh noise);
* :mod:`.rdc` — likelihood maximisation and RDC;
* :mod:`.recipes` — each of them as a recipe (its fields are its cache key).
"""
from .classifier import GRIDS, NOISES, DiffusionClassifier, sigma_grid, uniform_grid
from .denoiser import Denoiser, DenoisingLoss, Schedule
from .rdc import RDC, likelihood_maximisation
from .recipes import DenoiserRecipe, DenoiserWeights, DiffusionClassifierRecipe, RDCRecipe
from .weights import load_denoiser_weights

__all__ = ["Schedule", "Denoiser", "DiffusionClassifier", "NOISES", "GRIDS", "sigma_grid", "uniform_grid",
           "likelihood_maximisation", "RDC", "DenoisingLoss",
           "DenoiserRecipe", "DenoiserWeights", "load_denoiser_weights", "DiffusionClassifierRecipe", "RDCRecipe"]
