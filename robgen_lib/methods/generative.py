"""Analysis by synthesis: one small VAE per class, classified by how well each explains x.

* ABS (Schott et al. 2019): class score s_k(x) = min_{‖z‖₂ ≤ r} d(x, dec_k(z)) + β‖z‖²,
  found at test time by the best of N seeded prior samples, then Adam steps on z with a
  projection onto the ℓ2 ball; logits = −α·s_k(x), so the book's attacks apply. The
  gradient with respect to x is taken at the optimal z (envelope theorem) — exact for
  the minimum the search found.
* An E-ABS-style variant (this book's reconstruction; E-ABS is not public): the VAEs are
  trained jointly with a discriminative cross-entropy term on −α·s_k computed at the
  encoder's latent, and the latent search starts from the encoder's guess as well.
* Pluggable similarity: d = squared Euclidean distance between embeddings — of pixels
  (:func:`pixels`), or of a fixed network's features (:class:`FeatureSimilarity`).
* The K searches run as one: :class:`ClassDecoders` applies every class's decoder to its own
  latents in one batched product per layer, and one Adam moves all K·B latents (Adam is
  elementwise, so this is K independent searches, step for step).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..core.attacks import RULES
from ..core.data import Dataset
from ..core.errors import ConfigError
from ..core.fit import AssembledRecipe, TrainingRecipe
from ..core.models import eval_mode, last_linear
from ..core.parallel import batch_generator
from ..core.versions import versioned

__all__ = ["ClassVAE", "ABS", "pixels", "FeatureSimilarity", "ClassELBO", "ClassVAEsRecipe", "ABSRecipe",
           "latent_descent_attack", "reconstruction_study"]


class ClassVAE(nn.Module):
    """A fully connected VAE for images in [0, 1] (Bernoulli-style decoder through a sigmoid)."""

    def __init__(self, shape: tuple, latent: int = 8, width: int = 64):
        super().__init__()
        d = math.prod(shape)
        self.shape, self.latent = tuple(shape), latent
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, 2 * latent))
        self.dec = nn.Sequential(nn.Linear(latent, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, d))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        return mu, logvar.clamp(-10, 10)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).view(-1, *self.shape)

    def elbo_loss(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Negative ELBO per image (binary cross-entropy reconstruction + KL), averaged."""
        mu, logvar = self.encode(x)
        z = mu + (0.5 * logvar).exp() * torch.randn(mu.shape, generator=generator).to(mu.device)
        rec = F.binary_cross_entropy_with_logits(self.dec(z), x.flatten(1), reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return (rec + kl).mean()


def pixels(x: torch.Tensor) -> torch.Tensor:
    """The pixel embedding: the image itself, flattened."""
    return x.flatten(1)


class FeatureSimilarity:
    """Embedding by a fixed network's features entering its last linear layer (gradients flow to x)."""

    def __init__(self, net: nn.Module):
        self.net = net
        self.head = last_linear(net)

    def networks(self) -> list[nn.Module]:
        return [self.net]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        hook = self.head.register_forward_hook(lambda mod, inp, out: feats.append(inp[0].flatten(1)))
        try:
            with eval_mode(self.net):
                self.net(x)
        finally:
            hook.remove()
        return feats[0]


class ClassDecoders(nn.Module):
    """The decoders of K class VAEs as one network: latents (K·M, L), class-major (the first M
    belong to class 0), → images (K·M, C, H, W), each decoded by its own class's decoder.

    Written for speed, not available in a library: ``torch.func.vmap`` over the stacked
    weights turns K small matrix products per layer into one batched product (about 3× faster
    at 8×8 on a CPU, the same numbers). The weights are stacked afresh at each call, detached
    (nothing trains through ABS), so the VAEs stay the one copy of them. A forward hook sees
    the K·M images of a call, as it saw M per decoder before."""

    def __init__(self, vaes):
        super().__init__()
        self._vaes = list(vaes)                         # not registered: ABS owns them
        # the layer structure functional_call fills in: weightless (meta) and unregistered,
        # so that moving ABS to a device never touches it
        object.__setattr__(self, "_template", copy.deepcopy(self._vaes[0].dec).to("meta"))
        self.shape = self._vaes[0].shape

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        params, buffers = stack_module_state([v.dec for v in self._vaes])
        params = {k: v.detach() for k, v in params.items()}
        k = len(self._vaes)
        out = vmap(lambda p, b, zz: functional_call(self._template, (p, b), (zz,)))(params, buffers,
                                                                                    z.view(k, -1, z.shape[-1]))
        return torch.sigmoid(out).view(-1, *self.shape)


class ABS(nn.Module):
    """Analysis-by-synthesis classifier over K class VAEs (see the module docstring)."""

    def __init__(self, vaes: list[ClassVAE], *, alpha: float = 1.0, beta: float = 1.0, n_samples: int = 64,
                 steps: int = 10, lr: float = 0.05, radius: float = 3.0, embed: Callable = pixels,
                 encoder_init: bool = False, seed: int = 0):
        super().__init__()
        if radius <= 0 or n_samples < 1 or steps < 0:
            raise ConfigError(f"ABS needs radius > 0, n_samples >= 1, steps >= 0; got {radius}, {n_samples}, {steps}")
        self.vaes = nn.ModuleList(vaes)
        self.decoders = ClassDecoders(vaes)
        self.alpha, self.beta, self.n_samples, self.steps, self.lr = alpha, beta, n_samples, steps, lr
        self.radius, self.embed, self.encoder_init, self.seed = radius, embed, encoder_init, seed

    def networks(self) -> list[nn.Module]:
        """The networks whose passes make up one prediction's cost (see ``yardstick.networks_of``)."""
        return [self.decoders] + getattr(self.embed, "networks", lambda: [])()

    @property
    def num_classes(self) -> int:
        return len(self.vaes)

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        norm = z.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return z * (self.radius / norm).clamp(max=1.0)

    def _decode_all(self, z: torch.Tensor) -> torch.Tensor:
        """dec_k(z[k]) for latents (K, M, L): images (K, M, C, H, W)."""
        return self.decoders(z.reshape(-1, z.shape[-1])).view(*z.shape[:2], *self.decoders.shape)

    def _objective(self, ex: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """d(x, dec_k(z_k)) + β‖z_k‖² for embeddings ``ex`` (B, D) and latents (K, B, L): (K, B)."""
        k, b = z.shape[:2]
        emb = self.embed(self._decode_all(z).flatten(0, 1)).view(k, b, -1)
        return (emb - ex).pow(2).sum(2) + self.beta * z.pow(2).sum(2)

    def search(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every class's latent for each image, (K, B, L), and the score it reached, (K, B) (both
        detached).

        Per class, the best of its seeded prior samples (and the encoder's mean, if
        ``encoder_init``), then Adam steps inside the ℓ2 ball; the best latent seen is kept, so
        the score never increases along the search.
        """
        K = self.num_classes
        with torch.no_grad():
            ex = self.embed(x)
            cand = torch.stack([self._project(torch.randn(self.n_samples, v.latent, generator=batch_generator(
                self.seed, k)).to(x.device)) for k, v in enumerate(self.vaes)])               # (K, S, L)
            emb = torch.stack([self.embed(images) for images in self._decode_all(cand)])   # a class at a time:
            # at the paper's 8,000 samples a feature network would hold all K·S images at once
            d = torch.cdist(ex.unsqueeze(0).expand(K, -1, -1).contiguous(), emb).pow(2)
            best, idx = (d + self.beta * cand.pow(2).sum(2).unsqueeze(1)).min(2)             # (K, B)
            z = torch.gather(cand, 1, idx.unsqueeze(-1).expand(-1, -1, cand.shape[-1])).clone()
            if self.encoder_init:
                zc = self._project(torch.stack([v.encode(x)[0] for v in self.vaes]).flatten(0, 1)).view_as(z)
                sc = self._objective(ex, zc)
                better = sc < best
                z[better], best = zc[better], torch.minimum(best, sc)
        if self.steps:
            with torch.enable_grad():
                zz = z.clone().requires_grad_(True)
                opt = torch.optim.Adam([zz], lr=self.lr)
                for _ in range(self.steps):
                    loss = self._objective(ex, zz)
                    opt.zero_grad()
                    loss.sum().backward()
                    opt.step()
                    with torch.no_grad():
                        zz.copy_(self._project(zz.flatten(0, 1)).view_as(zz))
                        now = self._objective(ex, zz)
                        better = now < best
                        z[better], best = zz[better].detach(), torch.where(better, now, best)
        return z.detach(), best.detach()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """s_k(x) for every class, (N, K), differentiable in x at the latents found."""
        z, _ = self.search(x)
        return self._objective(self.embed(x), z).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.alpha * self.scores(x)

    @torch.no_grad()
    def explain(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every class model's best explanation of x: ``recon`` (N, K, C, H, W), ``distance``
        d(x, dec_k(z*)) and ``score`` (both (N, K))."""
        z, score = self.search(x)
        recon = self._decode_all(z)                                                            # (K, N, C, H, W)
        k, n = z.shape[:2]
        dist = (self.embed(recon.flatten(0, 1)).view(k, n, -1) - self.embed(x)).pow(2).sum(2)
        return {"recon": recon.transpose(0, 1), "distance": dist.T, "score": score.T}


def latent_descent_attack(model: ABS, x: torch.Tensor, y: torch.Tensor, *, norm: str, eps: float, steps: int = 10,
                          step: float = 0.25) -> torch.Tensor:
    """An attack that uses what ABS computes (after Schott et al.'s latent descent attack):
    each step finds, for the current x′, the other class c* = argmin_{c ≠ y} s_c(x′) that
    explains it best, moves x′ a fraction ``step`` of the way to that class's reconstruction
    dec_c*(z*), and projects onto the ``norm`` ball of radius ``eps`` around x and [0, 1]:

        x′ ← Π_ε( x′ + step · (dec_c*(z*_c*(x′)) − x′) )

    Images already misclassified stop moving. No gradient of the latent search is needed, so
    a search that hides its gradient cannot hide from it. Returns x′ (on x's device)."""
    if norm not in ("linf", "l2") or not eps > 0 or steps < 0 or not 0 < step <= 1:
        raise ConfigError(f"latent descent needs norm 'linf' or 'l2', eps > 0, steps >= 0, 0 < step <= 1; "
                          f"got {norm!r}, {eps}, {steps}, {step}")
    rule, x_adv = RULES[norm](eps), x.clone()
    with eval_mode(model):
        for _ in range(steps):
            out = model.explain(x_adv)
            score = out["score"].scatter(1, y.view(-1, 1), float("inf"))
            target = score.argmin(1)
            fooled = out["score"].argmin(1) != y
            if fooled.all():
                break
            recon = out["recon"][torch.arange(len(x), device=x.device), target]
            moved = rule.project(x_adv + step * (recon - x_adv), x)
            x_adv = torch.where(fooled.view(-1, *([1] * (x.dim() - 1))), x_adv, moved).detach()
    return x_adv


@versioned(1)
def reconstruction_study(model: ABS, x: torch.Tensor, y: torch.Tensor, *, n_noise: int = 64, seed: int = 0,
                         batch_size: int = 256, per_image: bool = True) -> dict:
    """How well the class models explain their own class, the other classes and noise.

    Per image (pixel squared error of the best reconstruction, ``distance``): ``own`` — by
    its own class's model; ``other`` — mean over the other classes' models; ``noise`` —
    uniform-noise images, mean over all models; ``margin`` — mean over images of the
    runner-up's score minus the own class's score (the class margin ABS's robustness rests
    on; < 0 means misclassified); ``accuracy``. Smaller ``other``/``own`` and ``noise``/``own``
    ratios mean the class models are *overpowered*: they explain what they never saw.
    ``per_image`` adds the per-image values (``own_each``, ``other_each``, ``margin_each``:
    (N,) tensors) so that two decoders can be compared on the same images.
    """
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand((n_noise, *x.shape[1:]), generator=gen).to(x.device)
    parts = [model.explain(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    dist = torch.cat([p["distance"] for p in parts]).cpu()
    score = torch.cat([p["score"] for p in parts]).cpu()
    y = y.cpu()
    own = dist.gather(1, y.view(-1, 1)).squeeze(1)
    other = dist.scatter(1, y.view(-1, 1), float("nan")).nanmean(1)
    own_s = score.gather(1, y.view(-1, 1)).squeeze(1)
    runner = score.scatter(1, y.view(-1, 1), float("inf")).min(1).values
    noise_d = torch.cat([model.explain(noise[i:i + batch_size])["distance"].cpu()
                         for i in range(0, len(noise), batch_size)])
    margin = runner - own_s
    out = {"own": float(own.mean()), "other": float(other.mean()), "noise": float(noise_d.mean()),
           "margin": float(margin.mean()), "accuracy": float((score.argmin(1) == y).float().mean())}
    if per_image:
        out.update(own_each=own, other_each=other, margin_each=margin)
    return out


@versioned(1)
@dataclass(frozen=True)
class ClassELBO:
    """Each class VAE's negative ELBO on the images of its class (summed per image, averaged
    over the batch); with ``discriminative`` > 0 also that weight times the cross-entropy of
    logits −α·s_k at the encoders' latents over all classes (E-ABS-style)."""

    discriminative: float = 0.0
    alpha: float = 1.0
    beta: float = 1.0

    def spec(self) -> dict:
        return {"name": "class-elbo", "discriminative": self.discriminative, "alpha": self.alpha, "beta": self.beta}

    def __call__(self, vaes: nn.ModuleList, x: torch.Tensor, y: torch.Tensor,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        elbo = sum(vaes[k].elbo_loss(x[y == k], generator) * (y == k).sum() for k in range(len(vaes))
                   if (y == k).any()) / len(y)
        if self.discriminative <= 0:
            return {"loss": elbo, "elbo": elbo}
        scores = []
        for v in vaes:
            z = v.encode(x)[0]
            scores.append((v.decode(z) - x).pow(2).flatten(1).sum(1) + self.beta * z.pow(2).sum(1))
        ce = F.cross_entropy(-self.alpha * torch.stack(scores, 1), y)
        return {"loss": elbo + self.discriminative * ce, "elbo": elbo, "ce": ce}


@versioned(1)
@dataclass(frozen=True)
class ClassVAEsRecipe(TrainingRecipe):
    """One :class:`ClassVAE` per class (latent size ``latent``, hidden ``width``), trained
    together on :class:`ClassELBO`; the model is an ``nn.ModuleList`` indexed by class."""

    latent: int
    width: int

    kind: ClassVar[str] = "class_vaes"

    def describe(self) -> str:
        return "class VAEs"

    def network(self, data: Dataset) -> nn.ModuleList:
        return nn.ModuleList([ClassVAE(data.image_shape, self.latent, self.width) for _ in range(data.num_classes)])


@versioned(1)
@dataclass(frozen=True)
class ABSRecipe(AssembledRecipe):
    """An ABS classifier over class VAEs; ``embed`` is ``None`` for the pixel similarity or a
    classifier recipe whose features are compared; the rest are :class:`ABS`'s arguments."""

    vaes: ClassVAEsRecipe
    embed: Any = None
    alpha: float = 1.0
    beta: float = 1.0
    samples: int = 64
    steps: int = 10
    lr: float = 0.05
    radius: float = 3.0
    encoder_init: bool = False
    seed: int = 0

    kind: ClassVar[str] = "abs"

    def assemble(self, get) -> ABS:
        embed = pixels if self.embed is None else FeatureSimilarity(get(self.embed).model)
        return ABS(list(get(self.vaes).model), alpha=self.alpha, beta=self.beta, n_samples=self.samples,
                   steps=self.steps, lr=self.lr, radius=self.radius, embed=embed, encoder_init=self.encoder_init,
                   seed=self.seed)
