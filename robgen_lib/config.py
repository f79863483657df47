"""Profiles, parameter validation, devices and seeding.

A *profile* is a named preset of parameters: ``quick`` (the default: CPU, offline,
minutes, scikit-learn's 8x8 digits) and ``paper`` (the paper's dataset and scale,
meant for a GPU).  A chapter's parameters cell holds plain values, ``None`` meaning
"take the profile's"; :func:`resolve` merges them over the profile and validates
every value *before* any work starts, so a bad value costs nothing and leaves
nothing half-written behind.

All budgets (``eps``, step sizes) are in [0, 1] pixel units of their norm.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch

__all__ = [
    "ConfigError",
    "Config",
    "PROFILES",
    "CHAPTER_PRESETS",
    "resolve",
    "pick_device",
    "seed_everything",
    "cache_root",
    "data_root",
]


class ConfigError(ValueError):
    """A parameter is unknown, out of range, or cannot be honoured here."""


# --------------------------------------------------------------------------- roots


def _user_cache() -> str:
    return os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")


def cache_root() -> str:
    """Where trained models and results are cached (``ROBGEN_CACHE``)."""
    return os.environ.get("ROBGEN_CACHE") or os.path.join(_user_cache(), "robgen", "artifacts")


def data_root() -> str:
    """Where downloadable datasets live (``ROBGEN_DATA``)."""
    return os.environ.get("ROBGEN_DATA") or os.path.join(_user_cache(), "robgen", "data")


# --------------------------------------------------------------------- validators


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise ConfigError(f"{name} must be a number such as 0.03 or 8/255, got {value!r}") from None
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return out


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False) -> Callable:
    def check(name: str, value: Any) -> float:
        out = _as_float(name, value)
        if lo is not None and (out < lo or (lo_open and out == lo)):
            rel = ">" if lo_open else ">="
            raise ConfigError(f"{name} must be {rel} {lo}, got {out}")
        if hi is not None and out > hi:
            raise ConfigError(f"{name} must be <= {hi}, got {out} (budgets are in [0,1] pixel units)")
        return out

    return check


def integer(lo: int | None = None, hi: int | None = None) -> Callable:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {value!r}") from None
        if isinstance(value, float):
            if not math.isfinite(value) or value != int(value):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
            value = int(value)
        if not isinstance(value, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
        value = int(value)
        if lo is not None and value < lo:
            raise ConfigError(f"{name} must be >= {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{name} must be <= {hi}, got {value}")
        return value

    return check


def choice(*allowed: str) -> Callable:
    def check(name: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"unknown {name} {value!r}; allowed: {', '.join(map(repr, allowed))}")
        return value

    return check


def list_of(item: Callable, *, min_len: int = 1) -> Callable:
    def check(name: str, value: Any) -> tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("[", "").replace("]", "").split(",") if v.strip()]
        elif isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
            value = [value]      # papermill reads `-p grid 0.5` as a number: a list of one
        if not isinstance(value, Iterable):
            raise ConfigError(f"{name} must be a list, got {value!r}")
        out = tuple(item(f"{name}[{i}]", v) for i, v in enumerate(value))
        if len(out) < min_len:
            raise ConfigError(f"{name} needs at least {min_len} value(s)")
        return out

    return check


def optional_path(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, got {value!r}")
    return os.path.expanduser(str(value))


def text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, got {value!r}")
    return value


DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "imagefolder")
MODELS = ("small_cnn", "resnet10", "preact_resnet18")
DEVICES = ("auto", "cpu", "cuda", "mps")

#: Every parameter a chapter may take, with its validator: one place knows them all.
SCHEMA: dict[str, Callable] = {
    "profile": text,
    "device": choice(*DEVICES),
    "seed": integer(0, 2**31 - 1),
    # data
    "dataset": choice(*DATASETS),
    "data_dir": optional_path,
    "n_train": integer(10),
    "n_heldout": integer(10),
    "n_test": integer(10),
    "download": lambda n, v: bool(v),
    # models and training
    "model": choice(*MODELS),
    "robust_model": choice(*MODELS),
    "epochs": integer(1, 10_000),
    "robust_epochs": integer(1, 10_000),
    "batch_size": integer(1, 1_000_000),
    "lr": number(0.0, 10.0, lo_open=True),
    "weight_decay": number(0.0, 1.0),
    "train_eps": number(0.0, 1.0),
    "train_step_size": number(0.0, 1.0, lo_open=True),
    "train_steps": integer(1, 1000),
    # attacks
    "eps": number(0.0, 1.0, lo_open=True),
    "step_size": number(0.0, 1.0, lo_open=True),
    "steps": integer(0, 10_000),
    "step_grid": list_of(integer(0, 10_000)),
    "eps_grid": list_of(number(0.0, 1.0)),
    "n_eval": integer(10),
    "hist_steps": integer(0, 10_000),
    # HE-PGD (chapter 2)
    "lam": number(0.0, 1e3),
    "lam_grid": list_of(number(0.0, 1e3)),
    "match_margin": number(0.0, 1e3),
    # energy detector
    "temperatures": list_of(number(0.0, 1e6, lo_open=True)),
    "n_seeds": integer(1, 100),
    # noise injection, JEAT, generation, landscapes (chapter 3)
    "sigma_grid": list_of(number(0.0, 10.0)),
    "jeat_epochs": integer(1, 10_000),
    "jeat_lr": number(0.0, 10.0, lo_open=True),
    "sgld_steps": integer(0, 10_000),
    "sgld_step": number(0.0, 1e3),
    "sgld_noise": number(0.0, 10.0),
    "buffer_size": integer(1, 10_000_000),
    "reinit": number(0.0, 1.0),
    "energy_penalty": number(0.0, 1e3),
    "cd_weight": number(0.0, 1e3),
    "gen_eps": number(0.0, 1e4, lo_open=True),
    "gen_step": number(0.0, 1e3, lo_open=True),
    "gen_steps": integer(0, 10_000),
    "n_gen": integer(2, 100_000),
    "n_show": integer(1, 64),
    "landscape_radius": number(0.0, 1e3, lo_open=True),
    "landscape_points": integer(3, 401),
    "n_landscape": integer(1, 64),
    "fidelity": lambda n, v: bool(v),
    # diffusion classifier and RDC (chapter 4)
    "den_width": integer(8, 1024),
    "den_epochs": integer(1, 100_000),
    "den_lr": number(0.0, 1.0, lo_open=True),
    "denoiser_weights": optional_path,
    "timesteps": integer(1, 1000),
    "timestep_grid": list_of(integer(1, 1000)),
    "clf_scale": number(0.0, 1e6, lo_open=True),
    "lm_steps": integer(0, 1000),
    "lm_eta": number(0.0, 1.0),
    "lm_step": number(0.0, 1.0),
    "eta_grid": list_of(number(0.0, 1.0)),
    "lm_gradient": choice("bpda", "exact"),
    "n_robust": integer(1, 1_000_000),
    "rob_eps": number(0.0, 1.0, lo_open=True),
    "l2_eps": number(0.0, 1e3, lo_open=True),
    "attack_steps": integer(1, 100_000),
    "restarts": integer(1, 1000),
    "big_eps": number(0.0, 1.0, lo_open=True),
    # analysis by synthesis, similarity and smoothing (chapter 5)
    "abs_latent": integer(1, 4096),
    "abs_width": integer(4, 65_536),
    "abs_epochs": integer(1, 10_000),
    "abs_lr": number(0.0, 1.0, lo_open=True),
    "abs_alpha": number(0.0, 1e6, lo_open=True),
    "abs_beta": number(0.0, 1e3),
    "abs_samples": integer(1, 1_000_000),
    "abs_steps": integer(0, 10_000),
    "abs_search_lr": number(0.0, 10.0, lo_open=True),
    "abs_radius": number(0.0, 1e3, lo_open=True),
    "eabs_weight": number(0.0, 1e3, lo_open=True),
    "abs_sample_grid": list_of(integer(1, 1_000_000)),
    "abs_step_grid": list_of(integer(0, 10_000)),
    "abs_linf_grid": list_of(number(0.0, 1.0, lo_open=True)),
    "abs_l2_grid": list_of(number(0.0, 1e3, lo_open=True)),
    "abs_linf_eps": number(0.0, 1.0, lo_open=True),
    "abs_l2_eps": number(0.0, 1e3, lo_open=True),
    "boundary_candidates": integer(1, 10_000),
    "boundary_iters": integer(0, 1_000_000),
    "ood_latent_grid": list_of(integer(1, 4096)),
    "ood_width_grid": list_of(integer(4, 65_536)),
    "ood_epochs": integer(1, 10_000),
    "ood_dataset": lambda n, v: None if v is None else choice(*DATASETS)(n, v),
    "smooth_sigma": number(0.0, 10.0, lo_open=True),
    "smooth_n0": integer(1, 10_000_000),
    "smooth_n": integer(1, 10_000_000),
    "smooth_alpha": number(0.0, 0.5, lo_open=True),
    "n_certify": integer(1, 1_000_000),
    # one yardstick: independent attacks on every model (chapter 6)
    "ind_steps": integer(1, 100_000),
    "ind_queries": integer(1, 10_000_000),
    "eot": integer(1, 10_000),
    "smooth_draws": integer(1, 100_000),
    "ind_linf_grid": list_of(number(0.0, 1.0, lo_open=True)),
    "ind_l2_grid": list_of(number(0.0, 1e3, lo_open=True)),
    "n_curve": integer(1, 1_000_000),
    "mask_gap": number(0.0, 1.0),
}


_TEMPERATURES = (0.1, 0.2, 0.5, 1.0, 2.0, 10.0, 20.0)

PROFILES: dict[str, dict[str, Any]] = {
    # CPU, offline, a few minutes: 8x8 digits that ship with scikit-learn.
    "quick": dict(
        device="auto",
        seed=0,
        dataset="digits",
        data_dir=None,
        n_train=None,
        n_heldout=None,
        n_test=None,
        download=False,
        model="small_cnn",
        robust_model="small_cnn",
        epochs=30,
        robust_epochs=30,
        batch_size=64,
        lr=0.05,
        weight_decay=5e-4,
        train_eps=0.15,
        train_step_size=0.0375,
        train_steps=7,
        eps=0.3,
        step_size=0.0375,
        steps=40,
        step_grid=(0, 2, 5, 10, 20, 40),
        eps_grid=(0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
        n_eval=None,
        hist_steps=20,
        temperatures=_TEMPERATURES,
        n_seeds=5,
        lam=1.5,
        lam_grid=(1.0, 1.2, 1.5, 2.0, 3.0),
        match_margin=1.0,
        sigma_grid=(0.0, 8 / 255, 0.12, 0.25, 0.5),
        jeat_epochs=30,
        jeat_lr=0.05,
        sgld_steps=10,
        sgld_step=0.05,
        sgld_noise=0.01,
        buffer_size=2000,
        reinit=0.05,
        energy_penalty=0.01,
        cd_weight=1.0,
        gen_eps=4.0,
        gen_step=0.1,
        gen_steps=60,
        n_gen=50,
        n_show=6,
        landscape_radius=2.0,
        landscape_points=25,
        n_landscape=3,
        fidelity=False,
        den_width=32,
        den_epochs=60,
        den_lr=2e-3,
        denoiser_weights=None,
        timesteps=16,
        timestep_grid=(4, 8, 16, 32),
        clf_scale=1.0,
        lm_steps=5,
        lm_eta=None,   # = rob_eps, where the paper finds LM's peak
        lm_step=0.03,
        eta_grid=(0.0, 0.05, 0.1, 0.2),
        lm_gradient="bpda",
        n_robust=64,
        rob_eps=0.1,
        l2_eps=0.5,
        attack_steps=20,
        restarts=1,
        big_eps=0.5,
        abs_latent=8,
        abs_width=64,
        abs_epochs=50,
        abs_lr=3e-3,
        abs_alpha=1.0,
        abs_beta=0.5,
        abs_samples=64,
        abs_steps=10,
        abs_search_lr=0.1,
        abs_radius=3.0,
        eabs_weight=1.0,
        abs_sample_grid=(1, 8, 64, 512),
        abs_step_grid=(0, 5, 10, 25),
        abs_linf_grid=(0.05, 0.1, 0.2, 0.3),
        abs_l2_grid=(0.25, 0.5, 1.0, 1.5),
        abs_linf_eps=0.15,   # the PGD-trained CNN's training budget, as the paper's 0.3 was Madry's
        abs_l2_eps=0.5,      # the paper's 1.5 on 28x28 scaled by sqrt(64/784) for 8x8 images
        boundary_candidates=5,
        boundary_iters=60,
        ood_latent_grid=(2, 8, 32),
        ood_width_grid=(16, 64, 256),
        ood_epochs=15,
        ood_dataset=None,
        smooth_sigma=0.25,
        smooth_n0=32,
        smooth_n=256,
        smooth_alpha=0.001,
        n_certify=64,
        ind_steps=20,
        ind_queries=100,
        eot=4,
        smooth_draws=8,
        ind_linf_grid=(0.05, 0.1, 0.2),
        ind_l2_grid=(0.25, 0.5, 1.0),
        n_curve=32,
        mask_gap=0.1,
    ),
    # The paper's scale: CIFAR-10, ResNet-10 (standard) and PreActResNet-18 (PGD-AT), a GPU.
    "paper": dict(
        device="auto",
        seed=0,
        dataset="cifar10",
        data_dir=None,
        n_train=None,
        n_heldout=5000,
        n_test=None,
        download=True,
        model="resnet10",
        robust_model="preact_resnet18",
        epochs=30,
        robust_epochs=30,
        batch_size=128,
        lr=0.1,
        weight_decay=5e-4,
        train_eps=8 / 255,
        train_step_size=2 / 255,
        train_steps=10,
        eps=8 / 255,
        step_size=1 / 255,
        steps=40,
        step_grid=(0, 2, 5, 10, 20, 40),
        eps_grid=(0.0, 1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 32 / 255),
        n_eval=2000,
        hist_steps=20,
        temperatures=_TEMPERATURES,
        n_seeds=3,
        lam=1.5,
        lam_grid=(1.0, 1.2, 1.5, 2.0, 3.0),
        match_margin=1.0,
        sigma_grid=(0.0, 8 / 255, 0.12, 0.25, 0.5),
        jeat_epochs=30,
        jeat_lr=0.1,
        sgld_steps=20,
        sgld_step=1.0,
        sgld_noise=0.01,
        buffer_size=10_000,
        reinit=0.05,
        energy_penalty=0.1,
        cd_weight=1.0,
        gen_eps=30.0,
        gen_step=0.5,
        gen_steps=60,
        n_gen=500,
        n_show=8,
        landscape_radius=2.0,
        landscape_points=41,
        n_landscape=4,
        fidelity=True,
        den_width=64,
        den_epochs=100,
        den_lr=1e-3,
        denoiser_weights=None,
        timesteps=50,
        timestep_grid=(5, 10, 25, 50, 100),
        clf_scale=1.0,
        lm_steps=5,
        lm_eta=None,   # = rob_eps, where the paper finds LM's peak
        lm_step=2 / 255,
        eta_grid=(0.0, 4 / 255, 8 / 255, 16 / 255),
        lm_gradient="bpda",
        n_robust=512,
        rob_eps=8 / 255,
        l2_eps=0.5,
        attack_steps=50,
        restarts=1,
        big_eps=0.5,
        abs_latent=8,
        abs_width=128,
        abs_epochs=10,
        abs_lr=3e-3,
        abs_alpha=0.5,
        abs_beta=0.5,
        abs_samples=8000,
        abs_steps=50,
        abs_search_lr=0.05,
        abs_radius=5.0,
        eabs_weight=1.0,
        abs_sample_grid=(80, 800, 8000),
        abs_step_grid=(0, 10, 50),
        abs_linf_grid=(0.1, 0.2, 0.3, 0.4),
        abs_l2_grid=(0.5, 1.0, 1.5, 2.0, 2.5),
        abs_linf_eps=0.3,
        abs_l2_eps=1.5,
        boundary_candidates=20,
        boundary_iters=1000,
        ood_latent_grid=(2, 8, 32, 128),
        ood_width_grid=(32, 128, 512, 1024),
        ood_epochs=10,
        ood_dataset="cifar10",
        smooth_sigma=0.25,
        smooth_n0=100,
        smooth_n=10_000,
        smooth_alpha=0.001,
        n_certify=500,
        ind_steps=100,
        ind_queries=5000,
        eot=20,
        smooth_draws=32,
        ind_linf_grid=(2 / 255, 4 / 255, 8 / 255, 16 / 255),
        ind_l2_grid=(0.25, 0.5, 1.0),
        n_curve=256,
        mask_gap=0.1,
    ),
}

#: Per-chapter presets applied over a profile (and under the user's overrides): at the
#: paper's scale chapter 5 works on MNIST with Madry et al.'s threat model, as ABS did.
CHAPTER_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "abs": dict(
            dataset="mnist",
            n_heldout=5000,
            model="small_cnn",
            robust_model="small_cnn",
            epochs=10,
            robust_epochs=20,
            batch_size=128,
            lr=0.05,
            train_eps=0.3,
            train_step_size=0.01,
            train_steps=40,
        ),
    },
}


@dataclass(frozen=True)
class Config(Mapping):
    """A validated, immutable set of parameters with attribute access."""

    values: tuple

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
        """The resolved parameters as a small Markdown table."""
        from .report import markdown_table

        def fmt(v):
            if isinstance(v, float):
                return f"{v:.4g}"
            if isinstance(v, tuple):
                return ", ".join(fmt(x) for x in v)
            return str(v)

        return markdown_table(["parameter", "value"], [(f"`{k}`", fmt(v)) for k, v in self.values])


def resolve(profile: str = "quick", *, chapter: str | None = None, **overrides: Any) -> Config:
    """Merge ``overrides`` (``None`` = the profile's value) over ``profile`` (and the
    profile's preset for ``chapter``, if it has one) and validate.

    Raises :class:`ConfigError` naming the allowed values or the fix for an unknown
    profile or parameter, a value out of range, or a device that is not available.
    """
    if profile not in PROFILES:
        raise ConfigError(f"unknown profile {profile!r}; allowed: {', '.join(map(repr, PROFILES))}")
    merged = {**PROFILES[profile], **CHAPTER_PRESETS.get(profile, {}).get(chapter or "", {})}
    for key, value in overrides.items():
        if key not in SCHEMA:
            raise ConfigError(f"unknown parameter {key!r}; known: {', '.join(sorted(SCHEMA))}")
        if value is not None:
            merged[key] = value
    out: dict[str, Any] = {"profile": profile}
    for key, value in merged.items():
        if key not in SCHEMA:
            raise ConfigError(f"profile {profile!r} sets unknown parameter {key!r}")
        out[key] = value if value is None else SCHEMA[key](key, value)
    if out.get("hist_steps") is not None and out.get("steps") is not None and out["hist_steps"] > out["steps"]:
        if overrides.get("hist_steps") is not None:
            raise ConfigError(f"hist_steps={out['hist_steps']} must be <= steps={out['steps']}")
        out["hist_steps"] = out["steps"]  # the profile's default follows a shorter attack
    if out.get("lm_eta") is None and out.get("rob_eps") is not None:
        out["lm_eta"] = out["rob_eps"]  # LM's budget follows the attack's ε unless given
    grids = [out.get(k) for k in ("ood_latent_grid", "ood_width_grid")]
    if None not in grids and len(grids[0]) != len(grids[1]):
        raise ConfigError(f"ood_latent_grid and ood_width_grid pair up (one decoder size each) and need the same "
                          f"length, got {len(grids[0])} and {len(grids[1])}")
    if out.get("dataset") == "imagefolder" and not out.get("data_dir"):
        raise ConfigError("dataset='imagefolder' needs data_dir= a folder with train/ and test/ sub-folders")
    pick_device(out.get("device", "auto"))  # fail now, not after the data loaded
    return Config(tuple(out.items()))


# ------------------------------------------------------------------------ devices


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit request must be available."""
    if isinstance(device, torch.device):
        device = device.type
    if device not in DEVICES:
        raise ConfigError(f"unknown device {device!r}; allowed: {', '.join(map(repr, DEVICES))}")
    has_mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' was requested but CUDA is not available here; use device='auto' or 'cpu'")
    if device == "mps" and not has_mps:
        raise ConfigError("device='mps' was requested but MPS is not available here; use device='auto' or 'cpu'")
    return torch.device(device)


# ------------------------------------------------------------------------ seeding


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    Returns a CPU ``torch.Generator`` seeded with ``seed`` for code that wants its own.
    """
    seed = integer(0, 2**31 - 1)("seed", seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    return torch.Generator().manual_seed(seed)
