"""One training loop and the objectives it can optimise.

* ``Standard``        — cross-entropy on clean images: min_θ E[CE(f(x), y)].
* ``PGDTraining``     — Madry et al.: min_θ E[ max_{‖δ‖≤ε} CE(f(x+δ), y) ], the inner
  maximum by PGD (in eval mode, so batch-norm statistics see only the outer step).
* ``NoiseTraining``   — cross-entropy on x + N(0, σ²I), clamped to [0, 1]
  (Gaussian noise injection, Zhu et al.'s "random directions").
* JEAT's objective (a paper's method) lives in :mod:`robgen_lib.methods.jeat`; any object
  with ``spec()`` and ``__call__(model, x, y) -> loss`` is an objective.

Training is SGD with Nesterov momentum and a cosine learning-rate schedule.  Models
are cached in the artifact store under the spec that produced them (see
:func:`trained_classifier`), so chapters share them and re-runs are fast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd, predict_logits
from .data import Dataset, Split
from .errors import TrainingFailed
from .models import build_model, model_device
from .progress import progress_bar
from .store import ArtifactStore

__all__ = ["Standard", "PGDTraining", "NoiseTraining", "train", "require_finite", "trained_classifier", "TrainedModel", "TrainingFailed"]


@dataclass(frozen=True)
class Standard:
    """Cross-entropy on clean inputs."""

    def spec(self) -> dict:
        return {"name": "standard"}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)


@dataclass(frozen=True)
class PGDTraining:
    """Cross-entropy on PGD adversarial examples (ℓ∞ or ℓ2 ball of radius ``eps``)."""

    eps: float
    step_size: float
    steps: int
    norm: str = "linf"

    def spec(self) -> dict:
        return {"name": "pgd", "eps": self.eps, "step_size": self.step_size, "steps": self.steps, "norm": self.norm}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = pgd(model, x, y, eps=self.eps, step_size=self.step_size, steps=self.steps, norm=self.norm)
        return F.cross_entropy(model(x_adv), y)


@dataclass(frozen=True)
class NoiseTraining:
    """Cross-entropy on Gaussian-noised inputs, x + N(0, σ²I) clamped to [0, 1]."""

    sigma: float

    def spec(self) -> dict:
        return {"name": "noise", "sigma": self.sigma}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model((x + self.sigma * torch.randn_like(x)).clamp(0.0, 1.0)), y)


def require_finite(loss: torch.Tensor, what: str, *, lr: float, epoch: int) -> None:
    """Stop a training loop with :class:`TrainingFailed` when its loss is not finite: every
    loop of the library (classifiers, the denoiser, the class VAEs) checks the same way."""
    if not torch.isfinite(loss):
        raise TrainingFailed(f"{what}: loss became {loss.item()} at epoch {epoch + 1}; "
                             f"lower the learning rate (lr={lr}) or check the objective")


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random crop (4-pixel zero padding) and horizontal flip, for 32x32 colour images."""
    n, c, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=gen).to(x.device)
    dy = torch.randint(0, 9, (n,), generator=gen).to(x.device)
    rows = (dy.view(n, 1) + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 8)
    out = padded.gather(2, rows)
    cols = (dx.view(n, 1) + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
    out = out.gather(3, cols)
    flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
    return torch.where(flip.view(n, 1, 1, 1), out.flip(-1), out)


def train(model: nn.Module, data: Split, objective, *, epochs: int, batch_size: int, lr: float,
          weight_decay: float = 5e-4, seed: int = 0, augment: bool = False, progress: bool = True,
          desc: str = "train", monitor=None) -> dict[str, list[float]]:
    """Train ``model`` in place on ``data``; returns the per-epoch mean training loss.

    ``monitor(model)``, if given, is called in eval mode after every epoch and returns a
    dict of numbers appended to the history (e.g. the test accuracy); so is the
    objective's ``epoch_metrics()`` when it has one.

    Raises :class:`TrainingFailed` when the loss becomes NaN or infinite.
    """
    device = model_device(model)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = data.x.to(device), data.y.to(device)
    n = len(y_all)
    steps_per_epoch = math.ceil(n / batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch,
                                                pct_start=0.15, anneal_strategy="cos")
    history: dict[str, list[float]] = {"loss": []}
    bar = progress_bar(range(epochs), desc=desc, enabled=progress, leave=False)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        total = 0.0
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x_all[idx], y_all[idx]
            if augment:
                xb = _augment(xb, gen)
            loss = objective(model, xb, yb)
            require_finite(loss, desc, lr=lr, epoch=epoch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(yb)
        history["loss"].append(total / n)
        extra = dict(getattr(objective, "epoch_metrics", dict)())
        if monitor is not None:
            model.eval()
            extra.update(monitor(model))
        for key, value in extra.items():
            history.setdefault(key, []).append(value)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total / n:.3f}")
    model.eval()
    return history


@dataclass
class TrainedModel:
    model: nn.Module
    spec: dict
    history: dict = field(default_factory=dict)
    test_accuracy: float = float("nan")
    from_cache: bool = False
    samples: torch.Tensor | None = None   # e.g. JEAT's replay-buffer samples


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    logits = predict_logits(model, split.x, batch_size)
    return float((logits.argmax(1) == split.y).float().mean())


def trained_classifier(data: Dataset, arch: str, objective, *, epochs: int, batch_size: int, lr: float,
                       weight_decay: float = 5e-4, seed: int = 0, device: torch.device | str = "cpu",
                       augment: bool | None = None, store: ArtifactStore | None = None,
                       min_accuracy: float | None = None, progress: bool = True) -> TrainedModel:
    """Get ``arch`` trained with ``objective`` on ``data`` from the cache, or train and cache it.

    ``augment`` defaults to crops and flips for 32x32 colour images, none otherwise.
    ``min_accuracy`` (test accuracy in [0, 1]) raises :class:`TrainingFailed` below it.
    """
    store = store or ArtifactStore()
    c, h, _ = data.image_shape
    if augment is None:
        augment = c == 3 and h >= 32
    spec: dict[str, Any] = {
        "data": data.fingerprint(), "arch": arch, "objective": objective.spec(), "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay, "seed": seed, "augment": augment,
    }

    def make() -> nn.Module:
        torch.manual_seed(seed)
        return build_model(arch, in_channels=c, num_classes=data.num_classes, image_size=h,
                           mean=data.mean, std=data.std).to(device)

    built = []

    def build() -> dict:
        built.append(True)
        model = make()
        hist = train(model, data.train, objective, epochs=epochs, batch_size=batch_size, lr=lr,
                     weight_decay=weight_decay, seed=seed, augment=augment, progress=progress,
                     desc=f"{arch}/{objective.spec()['name']}/seed{seed}",
                     monitor=lambda m: {"test_accuracy": accuracy(m, data.test)})
        payload = {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                   "history": {k: torch.tensor(v) for k, v in hist.items()},
                   "test_accuracy": accuracy(model, data.test)}
        if hasattr(objective, "buffer_samples"):
            payload["samples"] = objective.buffer_samples(64)
        return payload

    payload = store.get_or_build("classifier", spec, build)
    model = make()
    model.load_state_dict(payload["state_dict"])
    model.eval()
    out = TrainedModel(model, spec, {k: v.tolist() for k, v in payload["history"].items()},
                       float(payload["test_accuracy"]), from_cache=not built, samples=payload.get("samples"))
    if min_accuracy is not None and out.test_accuracy < min_accuracy:
        raise TrainingFailed(f"{arch} ({objective.spec()['name']}) reached test accuracy "
                             f"{out.test_accuracy:.3f} < the expected {min_accuracy:.3f}")
    return out
