"""JEAT as reconstructed by this book (Zhu et al. 2021 published no code): an objective
for the core training loop.

    -log p(x_adv, y) = [E(x_adv, y) - E(x_adv)] + [E(x_adv) - E(x̂)]

x_adv by PGD on the cross-entropy, x̂ by SGLD on E(x) started from a replay buffer, plus
an L2 penalty on both energies for stability.  PGD and SGLD run with the model in eval
mode; in the loss, the adversarial batch goes through BatchNorm in train mode (batch
statistics, running statistics updated) while the samples' energies E(x̂) use the
running statistics and leave them untouched, so samples never shift the statistics the
classifier is evaluated with.  Exploding energies stop training with a
clear message (:class:`~robgen_lib.core.errors.TrainingFailed`).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..core.attacks import pgd
from ..core.energy import marginal_energy
from ..core.errors import ConfigError, TrainingFailed
from ..core.fit import ramped
from ..core.models import frozen_batchnorm
from ..core.versions import versioned
from .sampling import sgld

__all__ = ["JEATTraining", "ReplayBuffer"]


class ReplayBuffer:
    """SGLD starting points: stored samples, each drawn afresh from U[0, 1] with probability ``reinit``."""

    def __init__(self, size: int, shape: tuple, reinit: float, generator: torch.Generator):
        if not 0.0 <= reinit <= 1.0:
            raise ConfigError(f"reinit must be in [0, 1], got {reinit}")
        self.gen, self.reinit = generator, reinit
        self.data = torch.rand((size, *shape), generator=generator)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.data), (n,), generator=self.gen)
        x = self.data[idx].clone()
        fresh = torch.rand(n, generator=self.gen) < self.reinit
        x[fresh] = torch.rand((int(fresh.sum()), *x.shape[1:]), generator=self.gen)
        return x, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        self.data[idx] = x.detach().cpu()


@versioned(1)
class JEATTraining:
    """JEAT as reconstructed by this book (see the module docstring)."""

    def __init__(self, eps: float, step_size: float, steps: int, *, sgld_steps: int = 20, sgld_step: float = 1.0,
                 sgld_noise: float = 0.01, buffer_size: int = 10_000, reinit: float = 0.05,
                 energy_penalty: float = 0.1, cd_weight: float = 1.0, max_energy: float = 1e4, seed: int = 0,
                 ramp: float = 0.0):
        if cd_weight < 0 or energy_penalty < 0:
            raise ConfigError(f"cd_weight and energy_penalty must be >= 0, got {cd_weight} and {energy_penalty}")
        self.eps, self.step_size, self.steps = eps, step_size, steps
        self.ramp, self.done = ramp, 1.0   # the PGD budget's ramp, as in PGDTraining (fit.ramped)
        self.cd_weight = cd_weight
        self.sgld_steps, self.sgld_step, self.sgld_noise = sgld_steps, sgld_step, sgld_noise
        self.buffer_size, self.reinit, self.energy_penalty = buffer_size, reinit, energy_penalty
        self.max_energy, self.seed = max_energy, seed
        self.gen = torch.Generator().manual_seed(seed)
        self.buffer: ReplayBuffer | None = None
        self._log: dict[str, list[float]] = {"energy_data": [], "energy_samples": []}

    def spec(self) -> dict:
        return {"name": "jeat", "eps": self.eps, "step_size": self.step_size, "steps": self.steps,
                "sgld_steps": self.sgld_steps, "sgld_step": self.sgld_step, "sgld_noise": self.sgld_noise,
                "buffer_size": self.buffer_size, "reinit": self.reinit, "energy_penalty": self.energy_penalty,
                "cd_weight": self.cd_weight, "sample_norm": "running", "seed": self.seed,
                **({"ramp": self.ramp} if self.ramp > 0 else {})}

    def set_progress(self, done: float) -> None:
        self.done = done

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, generator=None) -> torch.Tensor:
        """The loss of one batch (JEAT draws from its own seeded generator, not the loop's).

        PGD and SGLD see the model in eval mode; E(x_adv) and the cross-entropy use it in
        the caller's mode, E(x̂) with BatchNorm on its running statistics (not updated).
        """
        if self.buffer is None:
            self.buffer = ReplayBuffer(self.buffer_size, tuple(x.shape[1:]), self.reinit, self.gen)
        eps, step = ramped(self.eps, self.step_size, self.ramp, self.done)
        x_adv = pgd(model, x, y, eps=eps, step_size=step, steps=self.steps) if eps > 0 else x
        start, idx = self.buffer.sample(len(x))
        samples = sgld(model, start.to(x.device), steps=self.sgld_steps, step_size=self.sgld_step,
                       noise=self.sgld_noise, generator=self.gen)
        self.buffer.update(idx, samples)
        logits_adv = model(x_adv)
        with frozen_batchnorm(model):
            logits_samp = model(samples)
        e_data, e_samp = marginal_energy(logits_adv), marginal_energy(logits_samp)
        worst = max(e_data.detach().abs().max().item(), e_samp.detach().abs().max().item())
        if not math.isfinite(worst) or worst > self.max_energy:
            raise TrainingFailed(f"JEAT diverged: |energy| reached {worst:.3g} (limit {self.max_energy:g}); "
                                 f"lower the learning rate, raise energy_penalty (now {self.energy_penalty}) "
                                 f"or use more SGLD steps")
        self._log["energy_data"].append(e_data.mean().item())
        self._log["energy_samples"].append(e_samp.mean().item())
        return (F.cross_entropy(logits_adv, y) + self.cd_weight * (e_data.mean() - e_samp.mean())
                + self.energy_penalty * (e_data.pow(2).mean() + e_samp.pow(2).mean()))

    def buffer_samples(self, n: int) -> torch.Tensor:
        """The first ``n`` samples of the replay buffer (JEAT's own unconditional samples)."""
        if self.buffer is None:
            raise RuntimeError("the replay buffer is filled during training; train first")
        return self.buffer.data[:n].clone()

    def epoch_metrics(self) -> dict[str, float]:
        """Mean energies of data and SGLD samples over the epoch just ended."""
        out = {k: (sum(v) / len(v) if v else float("nan")) for k, v in self._log.items()}
        self._log = {k: [] for k in self._log}
        return out
