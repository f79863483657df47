"""What every chapter does first: resolve and validate its parameters, pick the device,
seed, load the data, and hand out (cached) models of the profile.

    ch = Chapter.from_parameters("energy", globals())   # the parameters cell's values
    std = ch.classifier("standard")                      # cached after the first run
"""
from __future__ import annotations

import time

import torch

from ..core.data import Dataset, load_dataset
from ..core.errors import ConfigError
from ..core.fit import NoiseTraining, PGDTraining, Standard, TrainedModel, trained_classifier
from ..core.runtime import pick_device, seed_everything
from ..core.store import ArtifactStore, file_digest
from ..methods.diffusion import RDC, Denoiser, DiffusionClassifier, TrainedDenoiser, trained_denoiser
from ..methods.generative import ABS, FeatureSimilarity, pixels, trained_abs
from ..methods.jeat import JEATTraining
from ..methods.smoothing import SoftSmoothed, denoise_then_classify
from .knobs import Config, chapter_parameters, resolve
from .report import Report

__all__ = ["Chapter"]


class Chapter:
    """Resolved parameters, device, data, store and report of one chapter run."""

    def __init__(self, profile: str = "quick", *, chapter: str | None = None, **params):
        self.started = time.time()
        self.cfg: Config = resolve(profile, chapter=chapter, **params)
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

    @classmethod
    def from_parameters(cls, chapter: str, namespace) -> "Chapter":
        """The chapter set up from its notebook's namespace (``globals()``): the parameters
        cell's values and whatever papermill injected, each checked against the knobs the
        chapter takes (a misspelt or foreign name stops here, before any work)."""
        params = chapter_parameters(chapter, namespace)
        return cls(params.pop("profile"), chapter=chapter, **params)

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

    # -- the diffusion classifier (chapter 4) ---------------------------------------
    def denoiser(self):
        """The profile's multi-head class-conditional denoiser: trained once and cached, or
        loaded from ``denoiser_weights`` (a state dict for :class:`~robgen_lib.methods.diffusion.Denoiser`)."""
        c = self.cfg
        if "denoiser" in self._models:
            return self._models["denoiser"]
        if c.denoiser_weights:
            net = Denoiser(self.data.image_shape[0], self.data.num_classes, c.den_width, multi_head=True)
            try:
                state = torch.load(c.denoiser_weights, map_location="cpu", weights_only=True)
                net.load_state_dict(state.get("state_dict", state))
            except FileNotFoundError as exc:
                raise ConfigError(f"denoiser_weights: no file {c.denoiser_weights!r}") from exc
            except (RuntimeError, KeyError, AttributeError) as exc:
                raise ConfigError(f"denoiser_weights {c.denoiser_weights!r} do not fit a multi-head Denoiser of "
                                  f"width {c.den_width} for {self.data.image_shape}: {exc}") from exc
            out = TrainedDenoiser(net.to(self.device).eval(), {"weights": file_digest(c.denoiser_weights),
                                                               "base": c.den_width}, from_cache=True)
        else:
            out = trained_denoiser(self.data, base=c.den_width, multi_head=True, epochs=c.den_epochs,
                                   batch_size=c.batch_size, lr=c.den_lr, seed=c.seed, device=self.device,
                                   store=self.store)
        self._models["denoiser"] = out
        return out

    def diffusion_classifier(self, timesteps: int | None = None, *, one_pass: bool | None = None) -> TrainedModel:
        """The diffusion classifier on the profile's denoiser, as a model with a cache spec."""
        c = self.cfg
        den = self.denoiser()
        timesteps = c.timesteps if timesteps is None else timesteps
        clf = DiffusionClassifier(den.model, timesteps, scale=c.clf_scale, seed=c.seed, one_pass=one_pass)
        spec = {"denoiser": den.spec, "classifier": "diffusion", "timesteps": timesteps, "scale": c.clf_scale,
                "seed": c.seed}
        return TrainedModel(clf.to(self.device).eval(), spec, from_cache=den.from_cache)

    def rdc(self, *, gradient: str | None = None, eta: float | None = None, steps: int | None = None,
            timesteps: int | None = None) -> TrainedModel:
        """Likelihood maximisation (the profile's N steps, η, step size unless given) then the diffusion classifier."""

        c = self.cfg
        base = self.diffusion_classifier(timesteps)
        gradient = c.lm_gradient if gradient is None else gradient
        eta = c.lm_eta if eta is None else eta
        steps = c.lm_steps if steps is None else steps
        model = RDC(base.model, steps=steps, eta=eta, step_size=c.lm_step, seed=c.seed, gradient=gradient)
        spec = {**base.spec, "classifier": "rdc", "lm_steps": steps, "lm_eta": eta, "lm_step": c.lm_step,
                "gradient": gradient}
        return TrainedModel(model.eval(), spec, from_cache=base.from_cache)

    # -- analysis by synthesis (chapter 5) -------------------------------------------
    def load_other(self, name: str) -> Dataset:
        """Another dataset with this run's sizes (e.g. CIFAR-10 for chapter 5's out-of-domain study)."""
        c = self.cfg
        return load_dataset(name, data_dir=c.data_dir, download=c.download, n_train=c.n_train,
                            n_heldout=c.n_heldout, n_test=c.n_test)

    def class_vaes(self, *, discriminative: bool = False, latent: int | None = None, width: int | None = None,
                   epochs: int | None = None, data: Dataset | None = None):
        """K class VAEs of the profile (``abs_*`` knobs), trained once and cached; with
        ``discriminative`` the E-ABS-style cross-entropy term (weight ``eabs_weight``) is on."""

        c = self.cfg
        return trained_abs(data or self.data, latent=latent or c.abs_latent, width=width or c.abs_width,
                           epochs=epochs or c.abs_epochs, batch_size=c.batch_size, lr=c.abs_lr,
                           discriminative=c.eabs_weight if discriminative else 0.0, alpha=c.abs_alpha,
                           beta=c.abs_beta, seed=c.seed, device=self.device, store=self.store)

    #: ABS variants: (discriminative training term, encoder-initialised latent search)
    ABS_VARIANTS = {"abs": (False, False), "eabs": (True, True)}
    EMBEDS = ("pixels", "standard", "robust")

    def abs_model(self, variant: str = "abs", *, embed: str = "pixels", samples: int | None = None,
                  steps: int | None = None, vaes=None) -> TrainedModel:
        """An ABS (``abs``) or E-ABS-style (``eabs``) classifier as a model with a cache spec.

        ``embed``: the similarity — ``pixels``, or the features of chapter 1's ``standard`` /
        ``robust`` CNN; ``samples`` / ``steps``: the inference budget (default the profile's);
        ``vaes``: other class VAEs (e.g. from :meth:`class_vaes` with another size).
        """

        if variant not in self.ABS_VARIANTS:
            raise ConfigError(f"unknown ABS variant {variant!r}; allowed: {', '.join(map(repr, self.ABS_VARIANTS))}")
        if embed not in self.EMBEDS:
            raise ConfigError(f"unknown similarity {embed!r}; allowed: {', '.join(map(repr, self.EMBEDS))}")
        c = self.cfg
        disc, enc = self.ABS_VARIANTS[variant]
        vaes = vaes or self.class_vaes(discriminative=disc)
        feature_net = None if embed == "pixels" else self.classifier(embed)
        model = ABS(vaes.vaes, alpha=c.abs_alpha, beta=c.abs_beta, n_samples=samples or c.abs_samples,
                    steps=c.abs_steps if steps is None else steps, lr=c.abs_search_lr, radius=c.abs_radius,
                    embed=pixels if feature_net is None else FeatureSimilarity(feature_net.model),
                    encoder_init=enc, seed=c.seed)
        spec = {"vaes": vaes.spec, "classifier": variant, "embed": feature_net.spec if feature_net else "pixels",
                "samples": model.n_samples, "steps": model.steps, "search_lr": model.lr, "radius": model.radius}
        return TrainedModel(model.to(self.device).eval(), spec, from_cache=vaes.from_cache)

    def denoised(self, base: TrainedModel, sigma: float) -> TrainedModel:
        """``base`` behind one denoising step of the profile's diffusion denoiser (chapter 4)
        at noise level ``sigma``: the base classifier of denoise-then-classify smoothing."""
        den = self.denoiser()
        model = denoise_then_classify(den.model, base.model, sigma)
        spec = {"classifier": "denoise_then_classify", "denoiser": den.spec, "base": base.spec, "sigma": sigma}
        return TrainedModel(model.eval(), spec, from_cache=den.from_cache and base.from_cache)

    def smoothed(self, base: TrainedModel, sigma: float) -> TrainedModel:
        """``base`` under Gaussian noise σ, as a stochastic differentiable model (the mean
        softmax over ``smooth_draws`` fresh draws per call) — what attacks with EOT target."""
        c = self.cfg
        model = SoftSmoothed(base.model, sigma, n=c.smooth_draws, seed=c.seed)
        spec = {"classifier": "soft_smoothed", "base": base.spec, "sigma": sigma, "draws": c.smooth_draws,
                "seed": c.seed}
        return TrainedModel(model.eval(), spec, from_cache=base.from_cache)

    def result(self, kind: str, model: TrainedModel, params: dict, build):
        """Cache an evaluation's result under (model spec, evaluation parameters)."""
        return self.store.get_or_build(kind, {"model": model.spec, **params}, build)

    def elapsed(self) -> float:
        return time.time() - self.started
