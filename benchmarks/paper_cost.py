"""An estimate (not a measurement) of the paper profile's cost on one GPU, per chapter.

    python benchmarks/paper_cost.py [--tflops 40]

No GPU run of the paper profile exists yet, so the README's GPU times come from here:

1. The forward FLOPs per image of each paper-profile network are *measured* with
   ``torch.utils.flop_counter.FlopCounterMode`` (ResNet-10, PreActResNet-18 and the
   multi-head diffusion denoiser on 32×32×3 CIFAR-10).
2. Each chapter's dominant work is *counted* from the paper profile's knobs, in forward
   passes: a training step or an attack step costs a forward and a backward (≈ 3 forward
   passes); PGD training adds ``train_steps`` attack steps per image; JEAT adds
   ``sgld_steps`` SGLD steps; every diffusion-classifier prediction is ``timesteps``
   denoiser passes (multi-head), every attack step on it ``eot`` such predictions. Work
   under about 1 % of a chapter's total (energies, histograms, tables) is left out.
3. The time is work / throughput at an assumed *sustained* rate (``--tflops``, default 40
   TFLOP/s: small CNNs at batch 128–512 use a fraction of a modern GPU's bf16 peak).

So the figures carry the uncertainty of the assumed rate (a factor of 2–3 either way) and
of the work model; they say hours rather than days, not minutes rather than hours.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from robgen_lib.book.knobs import resolve  # noqa: E402
from robgen_lib.core.models import build_model  # noqa: E402
from robgen_lib.methods.diffusion import Denoiser  # noqa: E402


def forward_flops(net: torch.nn.Module, *inputs) -> float:
    """FLOPs of one forward pass, per image (the batch is 2 images)."""
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(*inputs)
    return counter.get_total_flops() / inputs[0].shape[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tflops", type=float, default=40.0, help="assumed sustained TFLOP/s (default 40)")
    args = ap.parse_args()
    c = resolve("paper", chapter="rdc")
    n_train, n_test, classes = 50_000, 10_000, 10
    x = torch.rand(2, 3, 32, 32)
    f = {"resnet10": forward_flops(build_model("resnet10", in_channels=3, num_classes=10, image_size=32), x),
         "preact_resnet18": forward_flops(build_model("preact_resnet18", in_channels=3, num_classes=10,
                                                      image_size=32), x)}
    den = Denoiser(in_channels=3, num_classes=classes, base=c.den_width, multi_head=True)
    f["denoiser"] = forward_flops(den, x, torch.tensor([10, 500]))
    for name, value in f.items():
        print(f"{name:>16}: {value / 1e9:7.3f} GFLOP per image (forward, measured)")

    def train(net, epochs, extra_steps=0, images=n_train):   # forward-equivalents × FLOPs
        return epochs * images * 3 * (1 + extra_steps) * f[net]

    def attack(net, images, steps, repeats=1):
        return images * steps * 3 * repeats * f[net]

    dc_pred = c.timesteps * f["denoiser"]                      # one diffusion-classifier prediction
    dc_attack_step = 3 * c.eot * dc_pred                      # one EOT attack step through it
    std, rob = "resnet10", "preact_resnet18"
    work = {
        "1 energy": train(std, c.epochs) * (1 + c.n_seeds) + train(rob, c.robust_epochs, c.train_steps)
        + attack(std, c.n_eval, c.steps, 20) + attack(rob, c.n_eval, c.steps, 20),
        "2 HE-PGD": attack(std, c.n_eval, c.steps, 30) + attack(rob, c.n_eval, c.steps, 10),
        "3 JEAT": c.n_jeat_seeds * (len(c.sigma_grid) * train(std, c.epochs)
                                    + train(rob, c.robust_epochs, c.train_steps)
                                    + train(rob, c.jeat_epochs, c.train_steps + c.sgld_steps))
        + 2 * train(std, c.epochs),                           # the two scorers
        "4 RDC": 2 * train("denoiser", c.den_epochs)           # multi-head and single-head denoisers
        + sum(c.n_robust * c.attack_steps * c.restarts * 2 * 3 * c.eot * t * f["denoiser"]
              for t in c.timestep_grid)                       # the T′ sweep (CE)
        + 4 * 2 * c.n_robust * c.attack_steps * c.restarts * dc_attack_step * (1 + c.lm_steps / 2)
        + c.n_robust * dc_pred * 100,                         # robust table: DC, fixed, RDC, ℓ∞/ℓ2, CE/DLR
        "6 yardstick": 4 * c.n_curve * 100 * c.ind_restarts * dc_attack_step
        + 10 * attack(rob, n_test, 100, c.ind_restarts),       # APGD on the costly and the cheap models
    }
    rate = args.tflops * 1e12

    def duration(flops: float) -> str:
        seconds = flops / rate
        return f"{seconds / 3600:5.1f} h" if seconds >= 3600 else f"{seconds / 60:5.0f} min"

    print(f"\nestimated time on one GPU at a sustained {args.tflops:g} TFLOP/s (an estimate, see the docstring):")
    for chapter, flops in work.items():
        print(f"  chapter {chapter:<12} {flops / 1e15:9.1f} PFLOP  ≈ {duration(flops)}")
    print("  chapter 5 (MNIST, ABS) is small beside these: its class VAEs and CNNs are LeNet-sized.")
    print(f"  all                 {sum(work.values()) / 1e15:9.1f} PFLOP  ≈ {duration(sum(work.values()))}")


if __name__ == "__main__":
    main()
