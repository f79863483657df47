"""The one training loop, what it optimises, and models from recipes.

* :func:`fit` — minibatch training of any module on a split: each epoch a fresh permutation
  (one seeded generator), the objective's loss, a non-finite check, one optimiser step.
  It trains the classifiers, the diffusion denoiser and the class VAEs alike.
* Objectives are callables ``objective(model, x, y, generator) -> loss`` (a tensor, or a
  dict whose ``"loss"`` is minimised and whose other terms are logged), with ``spec()``:

  - ``Standard``      — cross-entropy on clean images: min_θ E[CE(f(x), y)].
  - ``PGDTraining``   — Madry et al.: min_θ E[ max_{‖δ‖≤ε} CE(f(x+δ), y) ], the inner
    maximum by PGD (in eval mode, so batch-norm statistics see only the outer step); with
    ``ramp`` > 0 the budget grows linearly, ε_t = ε · min(1, p / ramp) at the fraction p of
    training done (see :func:`ramped`).
  - ``NoiseTraining`` — cross-entropy on x + N(0, σ²I), clamped to [0, 1] (Gaussian noise
    injection, Zhu et al.'s "random directions").
  - the papers' objectives (JEAT, the denoising loss, the class ELBO) live with their methods.
* :class:`Optimiser` — SGD with Nesterov momentum or Adam, with a one-cycle cosine schedule
  (warm-up then cosine decay) or a constant rate.
* A *recipe* is a small frozen description of a model whose fields, with its code version
  (``@versioned``, see :mod:`robgen_lib.core.versions`), are its cache spec:
  :class:`ClassifierRecipe` here, the denoiser and the class VAEs with their methods, and
  recipes *assembled* from other models (the diffusion classifier, RDC, ABS, smoothed
  models). :func:`obtain` returns a :class:`TrainedModel` for any recipe, from the artifact
  store or trained now (and stored), so chapters share models and re-runs are fast.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import pgd, predict_logits
from .data import Dataset, Split
from .errors import ConfigError, TrainingFailed
from .models import build_model, model_device
from .progress import progress_bar
from .store import ArtifactStore, CorruptArtifact, spec_key
from .versions import code_id, version_of, versioned

__all__ = ["Standard", "PGDTraining", "ramped", "NoiseTraining", "Optimiser", "fit", "require_finite", "TrainedModel",
           "TrainingRecipe", "AssembledRecipe", "ClassifierRecipe", "obtain", "spec_of", "accuracy",
           "default_augment", "TrainingFailed", "model_spec"]


# ----------------------------------------------------------------------- objectives


@versioned(1)
@dataclass(frozen=True)
class Standard:
    """Cross-entropy on clean inputs."""

    def spec(self) -> dict:
        return {"name": "standard"}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator=None) -> torch.Tensor:
        return F.cross_entropy(model(x), y)


def ramped(eps: float, step_size: float, ramp: float, done: float) -> tuple[float, float]:
    """The budget and step of adversarial training once the fraction ``done`` of its steps has
    run: both scaled by min(1, done / ramp), so the budget grows linearly from 0 to ``eps`` over
    the first ``ramp`` of training (``ramp`` = 0: the full budget from the first step).

    Why: PGD training at the full ε = 0.3 from the first step, on a few thousand MNIST images,
    settles on a constant prediction (10 % accuracy) at every learning rate tried; growing ε
    first, as the MNIST schedules of Gowal et al. and Wong et al. do, trains a robust model."""
    if ramp <= 0:
        return eps, step_size
    scale = min(1.0, done / ramp)
    return eps * scale, step_size * scale


@versioned(1)
@dataclass(frozen=True)
class PGDTraining:
    """Cross-entropy on PGD adversarial examples (ℓ∞ or ℓ2 ball of radius ``eps``), the budget
    ramped over the first ``ramp`` fraction of training (:func:`ramped`; :func:`fit` reports
    the progress through :meth:`set_progress`)."""

    eps: float
    step_size: float
    steps: int
    norm: str = "linf"
    ramp: float = 0.0
    done: float = field(default=1.0, init=False, repr=False, compare=False)

    def spec(self) -> dict:
        out = {"name": "pgd", "eps": self.eps, "step_size": self.step_size, "steps": self.steps, "norm": self.norm}
        return {**out, "ramp": self.ramp} if self.ramp > 0 else out

    def set_progress(self, done: float) -> None:
        object.__setattr__(self, "done", done)

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator=None) -> torch.Tensor:
        eps, step = ramped(self.eps, self.step_size, self.ramp, self.done)
        if eps <= 0:
            return F.cross_entropy(model(x), y)
        x_adv = pgd(model, x, y, eps=eps, step_size=step, steps=self.steps, norm=self.norm)
        return F.cross_entropy(model(x_adv), y)


@versioned(1)
@dataclass(frozen=True)
class NoiseTraining:
    """Cross-entropy on Gaussian-noised inputs, x + N(0, σ²I) clamped to [0, 1]."""

    sigma: float

    def spec(self) -> dict:
        return {"name": "noise", "sigma": self.sigma}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator=None) -> torch.Tensor:
        return F.cross_entropy(model((x + self.sigma * torch.randn_like(x)).clamp(0.0, 1.0)), y)


# ----------------------------------------------------------------------- the loop


@versioned(1)
@dataclass(frozen=True)
class Optimiser:
    """How parameters move: ``sgd`` (Nesterov, momentum 0.9) or ``adam``; a ``one-cycle``
    schedule (linear warm-up over the first ``warmup`` fraction of steps to ``lr``, cosine
    decay after; momentum cycles inversely) or a ``constant`` rate."""

    name: str
    lr: float
    weight_decay: float = 0.0
    schedule: str = "one-cycle"
    warmup: float = 0.15

    def __post_init__(self):
        if self.name not in ("sgd", "adam"):
            raise ConfigError(f"unknown optimiser {self.name!r}; allowed: 'sgd', 'adam'")
        if self.schedule not in ("one-cycle", "constant"):
            raise ConfigError(f"unknown schedule {self.schedule!r}; allowed: 'one-cycle', 'constant'")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"the learning rate must be a positive number, got {self.lr!r}")

    def build(self, params, total_steps: int):
        """The torch optimiser and its per-step scheduler (``None`` for a constant rate)."""
        if self.name == "sgd":
            opt = torch.optim.SGD(params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        if self.schedule == "constant":
            return opt, None
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=total_steps,
                                                        pct_start=self.warmup, anneal_strategy="cos")


def require_finite(loss: torch.Tensor, what: str, *, lr: float, epoch: int) -> None:
    """Stop training with :class:`TrainingFailed` when the loss is not finite."""
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


@versioned(1)
def fit(model: nn.Module, data: Split, objective, *, epochs: int, batch_size: int, optimiser: Optimiser,
        seed: int = 0, augment: bool = False, progress: bool = True, desc: str = "train",
        monitor: Callable[[nn.Module], dict] | None = None) -> dict[str, list[float]]:
    """Train ``model`` in place on ``data``; returns the per-epoch mean of every loss term.

    One generator seeded with ``seed`` draws the permutations, the augmentation and whatever
    the objective draws from it. ``monitor(model)``, if given, is called in eval mode after
    every epoch and returns numbers appended to the history (e.g. the test accuracy); so is
    the objective's ``epoch_metrics()`` when it has one. An objective with ``set_progress``
    is told before every step the fraction of the steps done (a budget ramp reads it).

    On CUDA the forward and backward passes run under bf16 autocast with the network in
    channels-last layout (the weights and the optimiser stay float32); on a CPU or MPS
    nothing changes. The loss terms are summed on the device and read once per epoch, so a
    step never waits for the host (on a GPU, ``loss.item()`` every step would).

    Raises :class:`TrainingFailed` when the loss becomes NaN or infinite (checked once per
    epoch, on the epoch's summed loss).
    """
    device = model_device(model)
    mixed = device.type == "cuda"
    if mixed:
        model.to(memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = data.x.to(device), data.y.to(device)
    n = len(y_all)
    opt, schedule = optimiser.build(model.parameters(), epochs * math.ceil(n / batch_size))
    history: dict[str, list[float]] = {}
    bar = progress_bar(range(epochs), desc=desc, enabled=progress, leave=False)
    n_steps, step = epochs * math.ceil(n / batch_size), 0
    tell = getattr(objective, "set_progress", None)
    for epoch in bar:
        model.train()
        perm = torch.randperm(n, generator=gen).to(device)
        sums: dict[str, float] = {}
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            xb, yb = x_all[idx], y_all[idx]
            if augment:
                xb = _augment(xb, gen)
            if tell is not None:
                tell(step / n_steps)
            step += 1
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mixed):
                out = objective(model, xb, yb, gen)
            terms = out if isinstance(out, dict) else {"loss": out}
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            if schedule is not None:
                schedule.step()
            for key, value in terms.items():   # float64 on the device: the same sums as Python floats
                sums[key] = sums.get(key, 0.0) + value.detach().double() * len(yb)
        require_finite(sums["loss"], desc, lr=optimiser.lr, epoch=epoch)
        extra = {key: float(total) / n for key, total in sums.items()}
        extra.update(getattr(objective, "epoch_metrics", dict)())
        if monitor is not None:
            model.eval()
            extra.update(monitor(model))
        for key, value in extra.items():
            history.setdefault(key, []).append(value)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{extra['loss']:.3f}")
    model.eval()
    return history


# ----------------------------------------------------------------------- recipes


def spec_of(value: Any) -> Any:
    """The cache spec of a recipe field: recipes, objectives and losses by their ``spec()`` with
    their code id (:func:`~robgen_lib.core.versions.code_id`), other dataclasses (the optimiser)
    by their fields and, when they declare one, their code id; tuples as lists, plain values as
    they are."""
    if hasattr(value, "spec") and callable(value.spec):
        spec = value.spec()
        return spec if "code" in spec else {**spec, "code": code_id(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: spec_of(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {**fields, "code": code_id(value)} if version_of(type(value)) else fields
    if isinstance(value, (list, tuple)):
        return [spec_of(v) for v in value]
    if isinstance(value, dict):
        return {k: spec_of(v) for k, v in value.items()}
    return value


@dataclass
class TrainedModel:
    """A model ready to use: the network, the spec it is cached under, its training history,
    its test accuracy (classifiers) and whether it came from the cache."""

    model: nn.Module
    spec: dict
    history: dict = field(default_factory=dict)
    test_accuracy: float = float("nan")
    from_cache: bool = False
    samples: torch.Tensor | None = None   # e.g. JEAT's replay-buffer samples


@dataclass(frozen=True, kw_only=True)
class TrainingRecipe:
    """A model trained by :func:`fit`: these keyword fields — the ``objective`` (with
    ``spec()``), ``epochs``, ``batch_size``, the ``optimiser`` and the ``seed`` — and a
    subclass's own fields are its spec, with the subclass's code id (each concrete recipe
    declares its own ``@versioned``). Subclasses are frozen dataclasses that define
    ``kind`` and :meth:`network`; :meth:`extras` adds results kept with the weights,
    :meth:`monitor` numbers logged each epoch."""

    objective: Any
    epochs: int
    batch_size: int
    optimiser: Optimiser
    seed: int = 0

    kind: ClassVar[str]

    def spec(self) -> dict:
        return {"recipe": self.kind, "code": code_id(self),
                **{f.name: spec_of(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    def describe(self) -> str:
        return self.kind

    def network(self, data: Dataset) -> nn.Module:
        raise NotImplementedError

    def fresh_objective(self):
        """The objective to train with; a copy, so that stateful ones (JEAT's buffer) start afresh."""
        return copy.deepcopy(self.objective)

    def monitor(self, data: Dataset):
        return None

    def extras(self, model: nn.Module, objective, data: Dataset) -> dict:
        return {}

    def ready(self, model: nn.Module) -> nn.Module:
        """The trained (or loaded) network as it is handed out."""
        return model


class AssembledRecipe:
    """A model made from other models without training (a wrapper): subclasses are frozen
    dataclasses whose fields (other recipes among them) are the spec, and define ``kind``
    and :meth:`assemble`, which gets each part through ``get(recipe) -> TrainedModel``."""

    kind: ClassVar[str]

    def spec(self) -> dict:
        return {"recipe": self.kind, "code": code_id(self),
                **{f.name: spec_of(getattr(self, f.name)) for f in dataclasses.fields(self)}}

    def parts(self) -> list:
        """The recipes this model is assembled from."""
        return [getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), (TrainingRecipe, AssembledRecipe))]

    def assemble(self, get: Callable[[Any], TrainedModel]) -> nn.Module:
        raise NotImplementedError


def accuracy(model: nn.Module, split: Split, batch_size: int = 512) -> float:
    logits = predict_logits(model, split.x, batch_size)
    return float((logits.argmax(1) == split.y).float().mean())


def default_augment(data: Dataset) -> bool:
    """Crops and flips for 32x32 (or larger) colour images, none otherwise."""
    c, h, _ = data.image_shape
    return c == 3 and h >= 32


@versioned(1)
@dataclass(frozen=True)
class ClassifierRecipe(TrainingRecipe):
    """A classifier of architecture ``arch`` trained with ``objective``."""

    arch: str
    augment: bool = False

    kind: ClassVar[str] = "classifier"

    def describe(self) -> str:
        return f"{self.arch}/{self.objective.spec()['name']}/seed{self.seed}"

    def network(self, data: Dataset) -> nn.Module:
        c, h, _ = data.image_shape
        return build_model(self.arch, in_channels=c, num_classes=data.num_classes, image_size=h,
                           mean=data.mean, std=data.std)

    def monitor(self, data: Dataset):
        return lambda m: {"test_accuracy": accuracy(m, data.test)}

    def extras(self, model: nn.Module, objective, data: Dataset) -> dict:
        out = {"test_accuracy": accuracy(model, data.test)}
        if hasattr(objective, "buffer_samples"):
            out["samples"] = objective.buffer_samples(64)
        return out


def model_spec(recipe, data: Dataset) -> dict:
    """What the model a recipe makes on ``data`` is cached under, and what evaluations of it are
    keyed by: the data's fingerprint (the SHA-256 of every split) and the recipe's spec (its fields
    and code id); a trained model adds the training loop's code id; an assembled one holds, in
    place of each part's recipe, the part's own full spec. So a diffusion classifier whose
    denoiser was trained on other images is another model, with other results."""
    if isinstance(recipe, TrainingRecipe):
        return {"data": data.fingerprint(), "loop": code_id(fit), **recipe.spec()}
    if not isinstance(recipe, AssembledRecipe):
        raise TypeError(f"obtain() takes a recipe, got {type(recipe).__name__}")
    spec = recipe.spec()
    for f in dataclasses.fields(recipe):
        part = getattr(recipe, f.name)
        if isinstance(part, (TrainingRecipe, AssembledRecipe)):
            spec[f.name] = model_spec(part, data)
    return {"data": data.fingerprint(), **spec}


def _check_model_entry(payload: dict) -> None:
    """What :func:`obtain` reads from a stored model: a state dict, a history and extras."""
    for name in ("state_dict", "history", "extras"):
        if not isinstance(payload.get(name), dict):
            raise CorruptArtifact(f"a model entry needs a dict {name!r}, it has "
                                  f"{type(payload[name]).__name__ if name in payload else 'none'}")
    for name in ("state_dict", "history"):
        for k, v in payload[name].items():
            if not isinstance(v, torch.Tensor):
                raise CorruptArtifact(f"{name}[{k!r}] of a model entry is a {type(v).__name__}, not a tensor")


def obtain(recipe, data: Dataset, *, device: torch.device | str = "cpu", store: ArtifactStore | None = None,
           progress: bool = True, min_accuracy: float | None = None, memo: dict | None = None) -> TrainedModel:
    """The model a recipe describes: from the artifact store, or trained now and stored.

    The cache spec is :func:`model_spec`: the recipe's fields and code, the data's fingerprint
    and, for an assembled recipe, the full spec of each of its parts. An assembled recipe
    obtains its parts the same way, and is made afresh on each call (wrappers may hold
    random state). ``memo`` (a dict kept by the caller) hands out each trained or loaded
    network once, so the models assembled from it share it (and its counters).
    ``min_accuracy`` (test accuracy in [0, 1]) raises :class:`TrainingFailed` below it (the
    model stays stored: it is what the recipe trains, and a recipe with other knobs is another
    entry).
    """
    store = store or ArtifactStore()
    if isinstance(recipe, AssembledRecipe):
        parts = []

        def get(part) -> TrainedModel:
            parts.append(obtain(part, data, device=device, store=store, progress=progress, memo=memo))
            return parts[-1]

        spec = model_spec(recipe, data)
        leaf = memo is not None and not recipe.parts()   # e.g. weights from a file: loaded once, shared
        key = (recipe.kind, spec_key(spec))
        if leaf and key in memo:
            return memo[key]
        model = recipe.assemble(get).to(device).eval()
        out = TrainedModel(model, spec, from_cache=all(p.from_cache for p in parts))
        if leaf:
            memo[key] = out
        return out
    spec = model_spec(recipe, data)
    key = (recipe.kind, spec_key(spec))
    if memo is not None and key in memo:
        return memo[key]

    def make() -> nn.Module:
        torch.manual_seed(recipe.seed)
        return recipe.network(data).to(device)

    built = []

    def build() -> dict:
        built.append(True)
        model, objective = make(), recipe.fresh_objective()
        history = fit(model, data.train, objective, epochs=recipe.epochs, batch_size=recipe.batch_size,
                      optimiser=recipe.optimiser, seed=recipe.seed, augment=getattr(recipe, "augment", False),
                      progress=progress, desc=recipe.describe(), monitor=recipe.monitor(data))
        return {"state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": {k: torch.tensor(v) for k, v in history.items()},
                "extras": recipe.extras(model, objective, data)}

    payload = store.get_or_build(recipe.kind, spec, build, check=_check_model_entry)
    model = make()
    model.load_state_dict(payload["state_dict"])
    model = recipe.ready(model.eval())
    extras = payload["extras"]
    out = TrainedModel(model, spec, {k: v.tolist() for k, v in payload["history"].items()},
                       float(extras.get("test_accuracy", float("nan"))), from_cache=not built,
                       samples=extras.get("samples"))
    if min_accuracy is not None and out.test_accuracy < min_accuracy:
        raise TrainingFailed(f"{recipe.describe()} reached test accuracy {out.test_accuracy:.3f} "
                             f"< the expected {min_accuracy:.3f}; train longer, lower the learning rate "
                             f"({recipe.optimiser.lr:g}) or, for adversarial training, ramp its budget "
                             f"(train_ramp)")
    if memo is not None:
        memo[key] = out
    return out
