"""The book's models by name: each name turns a chapter's knobs into a recipe.

    recipe(cfg, data, "robust")                        # the profile's PGD-trained classifier
    recipe(cfg, data, "noise", sigma=0.25)             # Gaussian-noise training at σ
    recipe(cfg, data, "rdc", eta=0.1)                  # RDC with another LM budget
    recipe(cfg, data, "abs", embed="robust")           # ABS comparing robust-CNN features
    recipe(cfg, data, "denoised", base="standard", sigma=0.25)

A recipe's fields are its cache spec (see :mod:`robgen_lib.core.fit`); the chapter obtains
it with ``ch.model(name, **options)``. To add a kind of model: write its recipe next to its
method, then one function here and one line in :data:`RECIPES`.
"""
from __future__ import annotations

import difflib
import os
from typing import Any, Callable

from ..core.data import Dataset
from ..core.errors import ConfigError
from ..core.fit import ClassifierRecipe, NoiseTraining, Optimiser, PGDTraining, Standard, default_augment
from ..core.store import file_digest
from ..methods.diffusion import (DenoiserRecipe, DenoiserWeights, DenoisingLoss, DiffusionClassifierRecipe, RDCRecipe,
                                 load_denoiser_weights)
from ..methods.generative import ABSRecipe, ClassELBO, ClassVAEsRecipe
from ..methods.jeat import JEATTraining
from ..methods.smoothing import DenoisedRecipe, SoftSmoothedRecipe
from .knobs import Config

__all__ = ["RECIPES", "recipe", "preflight", "SCORER_SEED_OFFSET"]

#: Offset of the scorers' seeds: the classifiers that rate samples are trained apart from every generator.
SCORER_SEED_OFFSET = 1000


def _classifier(c: Config, data: Dataset, objective, *, robust: bool, seed: int | None, epochs: int | None = None,
                lr: float | None = None) -> ClassifierRecipe:
    return ClassifierRecipe(
        c.robust_model if robust else c.model, objective=objective,
        epochs=(c.robust_epochs if robust else c.epochs) if epochs is None else epochs, batch_size=c.batch_size,
        optimiser=Optimiser("sgd", c.lr if lr is None else lr, weight_decay=c.weight_decay),
        seed=c.seed if seed is None else seed, augment=default_augment(data))


def _pgd(c: Config) -> PGDTraining:
    return PGDTraining(c.train_eps, c.train_step_size, c.train_steps, ramp=c.train_ramp)


def standard(c, data, *, seed=None):
    """Cross-entropy training of the profile's ``model``."""
    return _classifier(c, data, Standard(), robust=False, seed=seed)


def robust(c, data, *, seed=None):
    """PGD adversarial training (``train_eps``, ``train_step_size``, ``train_steps``, the budget
    ramped over the first ``train_ramp`` of training) of ``robust_model``."""
    return _classifier(c, data, _pgd(c), robust=True, seed=seed)


def noise(c, data, *, sigma, seed=None):
    """Training on x + N(0, σ²I); σ = 0 is the standard model itself."""
    if sigma is None or not 0.0 <= float(sigma) <= 10.0:
        raise ConfigError(f"the noise-trained classifier needs sigma in [0, 10], got {sigma!r}")
    if float(sigma) == 0.0:
        return standard(c, data, seed=seed)
    return _classifier(c, data, NoiseTraining(float(sigma)), robust=False, seed=seed)


def jeat(c, data, *, seed=None):
    """JEAT (chapter 3): PGD training plus SGLD contrastive divergence on E(x)."""
    seed = c.seed if seed is None else seed
    objective = JEATTraining(c.train_eps, c.train_step_size, c.train_steps, sgld_steps=c.sgld_steps,
                             sgld_step=c.sgld_step, sgld_noise=c.sgld_noise, buffer_size=c.buffer_size,
                             reinit=c.reinit, energy_penalty=c.energy_penalty, cd_weight=c.cd_weight, seed=seed,
                             ramp=c.train_ramp)
    return _classifier(c, data, objective, robust=True, seed=seed, epochs=c.jeat_epochs, lr=c.jeat_lr)


def scorer(c, data, *, seed=None):
    """A standard classifier with its own seed, used only to rate samples (chapter 3)."""
    return standard(c, data, seed=(c.seed if seed is None else seed) + SCORER_SEED_OFFSET)


def robust_scorer(c, data, *, seed=None):
    """A PGD-trained classifier with its own seed, used only to rate samples (chapter 3)."""
    return robust(c, data, seed=(c.seed if seed is None else seed) + SCORER_SEED_OFFSET)


def denoiser(c, data, *, multi_head=True, seed=None):
    """The class-conditional denoiser: trained, or a user's ``denoiser_weights`` (a multi-head
    one). ``multi_head=False``: one label-embedded head, one class per pass — always trained by the
    book, beside the user's weights when there are some (chapter 4 compares the two layouts);
    ``seed``: the training seed of a trained one (default: the run's)."""
    if c.denoiser_weights and multi_head:
        if not os.path.isfile(c.denoiser_weights):
            raise ConfigError(f"denoiser_weights: no file {c.denoiser_weights!r}")
        return DenoiserWeights(c.denoiser_weights, file_digest(c.denoiser_weights), c.den_width,
                               data.image_shape[0], data.num_classes)
    return DenoiserRecipe(c.den_width, bool(multi_head), objective=DenoisingLoss(0.1), epochs=c.den_epochs,
                          batch_size=c.batch_size, optimiser=Optimiser("adam", c.den_lr, warmup=0.05),
                          seed=c.seed if seed is None else seed)


def dc(c, data, *, timesteps=None, one_pass=None, multi_head=True, noise=None, grid=None):
    """The diffusion classifier on the profile's denoiser (``timesteps`` evaluation points;
    ``noise`` / ``grid``: the ``dc_noise`` / ``dc_grid`` knobs unless given)."""
    return DiffusionClassifierRecipe(denoiser(c, data, multi_head=multi_head),
                                     c.timesteps if timesteps is None else timesteps, scale=c.clf_scale, seed=c.seed,
                                     one_pass=one_pass, noise=c.dc_noise if noise is None else noise,
                                     grid=c.dc_grid if grid is None else grid)


def rdc(c, data, *, gradient=None, eta=None, steps=None, timesteps=None, multi_head=True, noise=None, grid=None):
    """Likelihood maximisation (the profile's ``lm_*`` unless given), then the diffusion classifier."""
    return RDCRecipe(dc(c, data, timesteps=timesteps, multi_head=multi_head, noise=noise, grid=grid),
                     steps=c.lm_steps if steps is None else steps, eta=c.lm_eta if eta is None else eta,
                     step_size=c.lm_step, seed=c.seed, gradient=c.lm_gradient if gradient is None else gradient)


def class_vaes(c, data, *, discriminative=False, latent=None, width=None, epochs=None, seed=None):
    """K class VAEs (``abs_*`` knobs); ``discriminative`` adds the E-ABS-style term (``eabs_weight``);
    ``seed``: the training seed (default: the run's)."""
    objective = ClassELBO(c.eabs_weight if discriminative else 0.0, c.abs_alpha, c.abs_beta)
    return ClassVAEsRecipe(latent or c.abs_latent, width or c.abs_width, objective=objective,
                           epochs=epochs or c.abs_epochs, batch_size=c.batch_size,
                           optimiser=Optimiser("adam", c.abs_lr, schedule="constant"),
                           seed=c.seed if seed is None else seed)


EMBEDS = ("pixels", "standard", "robust")


def _abs(c, data, *, discriminative, embed="pixels", samples=None, steps=None, latent=None, width=None, epochs=None,
         seed=None):
    if embed not in EMBEDS:
        raise ConfigError(f"unknown similarity {embed!r}; allowed: {', '.join(map(repr, EMBEDS))}")
    seed = c.seed if seed is None else seed
    vaes = class_vaes(c, data, discriminative=discriminative, latent=latent, width=width, epochs=epochs, seed=seed)
    return ABSRecipe(vaes, None if embed == "pixels" else RECIPES[embed](c, data, seed=seed), alpha=c.abs_alpha,
                     beta=c.abs_beta, samples=samples or c.abs_samples, steps=c.abs_steps if steps is None else steps,
                     lr=c.abs_search_lr, radius=c.abs_radius, encoder_init=discriminative, seed=seed)


def abs_(c, data, **options):
    """ABS over generatively trained class VAEs; ``embed``: ``pixels``, or chapter 1's
    ``standard`` / ``robust`` CNN's features; ``samples`` / ``steps``: the search budget;
    ``latent`` / ``width`` / ``epochs``: other class VAEs; ``seed``: the training seed of the
    VAEs (and of the feature CNN) and the search's seed (default: the run's)."""
    return _abs(c, data, discriminative=False, **options)


def eabs(c, data, **options):
    """The E-ABS-style variant: discriminatively trained VAEs, encoder-initialised search."""
    return _abs(c, data, discriminative=True, **options)


def denoised(c, data, *, sigma, base="standard", seed=None):
    """The classifier ``base`` behind one denoising step of the profile's denoiser at σ;
    ``seed``: the training seed of both (default: the run's)."""
    return DenoisedRecipe(denoiser(c, data, seed=seed), RECIPES[base](c, data, seed=seed), float(sigma))


def smoothed(c, data, *, sigma, base="noise"):
    """``base`` (default: trained with noise of the same σ) under Gaussian noise σ, as a
    stochastic differentiable model averaging ``smooth_draws`` draws per call."""
    base_recipe = noise(c, data, sigma=sigma) if base == "noise" else RECIPES[base](c, data)
    return SoftSmoothedRecipe(base_recipe, float(sigma), c.smooth_draws, seed=c.seed)


#: name → function(cfg, data, **options) -> recipe
RECIPES: dict[str, Callable[..., Any]] = {
    "standard": standard, "robust": robust, "noise": noise, "jeat": jeat, "scorer": scorer,
    "robust_scorer": robust_scorer, "denoiser": denoiser, "dc": dc, "rdc": rdc, "class_vaes": class_vaes,
    "abs": abs_, "eabs": eabs, "denoised": denoised, "smoothed": smoothed,
}


def preflight(cfg: Config, data: Dataset) -> None:
    """Read every file the configuration names for a model now, so a missing or unfit file
    stops the chapter in its first cell, before anything is trained."""
    if cfg.get("denoiser_weights"):
        load_denoiser_weights(cfg.denoiser_weights, data.image_shape[0], data.num_classes, cfg.den_width)


def recipe(cfg: Config, data: Dataset, name: str, **options):
    """The recipe called ``name`` for this configuration and data."""
    if name not in RECIPES:
        close = difflib.get_close_matches(name, list(RECIPES), n=1)
        raise ConfigError(f"unknown model {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                          + f" (known: {', '.join(RECIPES)})")
    try:
        return RECIPES[name](cfg, data, **options)
    except TypeError as exc:
        raise ConfigError(f"model {name!r}: {exc}") from None
