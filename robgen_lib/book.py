"""What every chapter does first: resolve and validate its parameters, pick the device,
seed, load the data, and hand out (cached) models of the profile.

    ch = Chapter(profile="quick", device="auto", seed=0, eps=None, ...)
    std = ch.classifier("standard")           # cached after the first run
"""
from __future__ import annotations

import time

import torch

from .config import Config, ConfigError, pick_device, resolve, seed_everything
from .data import Dataset, load_dataset
from .report import Report
from .store import ArtifactStore
from .training import JEATTraining, NoiseTraining, PGDTraining, Standard, TrainedModel, trained_classifier

__all__ = ["Chapter"]


class Chapter:
    """Resolved parameters, device, data, store and report of one chapter run."""

    def __init__(self, profile: str = "quick", **params):
        self.started = time.time()
        self.cfg: Config = resolve(profile, **params)
        self.device: torch.device = pick_device(self.cfg.device)
        seed_everything(self.cfg.seed)
        if self.device.type == "cuda":  # TF32 matmuls/convolutions: several times faster on recent GPUs
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.store = ArtifactStore()
        self.data: Dataset = load_dataset(
            self.cfg.dataset, data_dir=self.cfg.data_dir, download=self.cfg.download, n_train=self.cfg.n_train,
            n_heldout=self.cfg.n_heldout, n_test=self.cfg.n_test)
        self.report = Report(profile)
        self._models: dict = {}

    # -- data -----------------------------------------------------------------------
    @property
    def eval_split(self):
        """The test images attacks are run on (the first ``n_eval``, or all)."""
        return self.data.test.head(self.cfg.n_eval)

    # -- models ---------------------------------------------------------------------
    #: Offset of the scorer's seed: the classifier that rates samples is trained apart from every generator.
    SCORER_SEED_OFFSET = 1000

    def classifier(self, kind: str = "standard", seed: int | None = None, sigma: float | None = None) -> TrainedModel:
        """A classifier of the profile, trained once and cached.

        ``standard``: cross-entropy; ``robust``: PGD-trained; ``noise``: Gaussian noise of
        std ``sigma`` (σ = 0 is the standard model itself); ``jeat``: JEAT (chapter 3);
        ``scorer`` / ``robust_scorer``: a standard / PGD-trained model with its own seed, used
        only to rate samples (chapter 3).
        """
        c = self.cfg
        seed = c.seed if seed is None else seed
        epochs, lr, arch = c.epochs, c.lr, c.model
        if kind == "noise" and sigma is not None and float(sigma) == 0.0:
            kind = "standard"
        if kind == "standard":
            objective = Standard()
        elif kind == "scorer":
            objective, seed = Standard(), seed + self.SCORER_SEED_OFFSET
        elif kind == "robust_scorer":
            arch, epochs, seed = c.robust_model, c.robust_epochs, seed + self.SCORER_SEED_OFFSET
            objective = PGDTraining(c.train_eps, c.train_step_size, c.train_steps)
        elif kind == "noise":
            if sigma is None or not 0.0 <= float(sigma) <= 10.0:
                raise ConfigError(f"kind='noise' needs sigma in [0, 10], got {sigma!r}")
            objective = NoiseTraining(float(sigma))
        elif kind == "robust":
            arch, epochs = c.robust_model, c.robust_epochs
            objective = PGDTraining(c.train_eps, c.train_step_size, c.train_steps)
        elif kind == "jeat":
            arch, epochs, lr = c.robust_model, c.jeat_epochs, c.jeat_lr
            objective = JEATTraining(c.train_eps, c.train_step_size, c.train_steps, sgld_steps=c.sgld_steps,
                                     sgld_step=c.sgld_step, sgld_noise=c.sgld_noise, buffer_size=c.buffer_size,
                                     reinit=c.reinit, energy_penalty=c.energy_penalty, cd_weight=c.cd_weight,
                                     seed=seed)
        else:
            raise ConfigError(f"unknown classifier kind {kind!r}; allowed: 'standard', 'robust', 'noise', 'jeat', "
                              f"'scorer', 'robust_scorer'")
        key = (kind, seed, sigma if kind == "noise" else None)
        if key not in self._models:
            self._models[key] = trained_classifier(
                self.data, arch, objective, epochs=epochs, batch_size=c.batch_size, lr=lr,
                weight_decay=c.weight_decay, seed=seed, device=self.device, store=self.store)
        return self._models[key]

    def result(self, kind: str, model: TrainedModel, params: dict, build):
        """Cache an evaluation's result under (model spec, evaluation parameters)."""
        return self.store.get_or_build(kind, {"model": model.spec, **params}, build)

    def elapsed(self) -> float:
        return time.time() - self.started
