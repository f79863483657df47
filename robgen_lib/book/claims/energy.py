"""Chapter 1's claims (the energy inside a classifier; Beadini & Masi 2023): the
cross-entropy identity, where PGD leaves the marginal energy E(x), and the energy detector."""
from __future__ import annotations

from ..judge import CHECK, Claim, Test

#: Near-the-bar margin of a marginal energy (or of a change of it): a tenth of a unit. The
#: data's energies spread over several units on every profile (their mean is −7 … −23), and
#: another machine's rounding moves an attack's mean energy by far less.
ENERGY_MARGIN = 0.1
#: Near-the-bar margin of an AUROC or a histogram overlap coefficient.
SCORE_MARGIN = 0.02

CLAIMS = (
    Claim("energy-identity", "CE(x,y) = E(x,y) - E(x)",
          measures="the largest |CE − (E(x,y) − E(x))| over the test images (float64 logits; exact, so its "
                   "interval is the point)",
          tests=(Test("superiority", 1e-6, below=True, margin=0.0),),
          paper="exact identity (the paper's decomposition of the cross-entropy)", points=False),
    Claim("energy-pgd-lowers", "untargeted PGD lowers E(x) below the data's, more with attack strength (standard model)",
          measures="the mean per-image change E(x′) − E(x) at every attack setting of the step and ε sweeps "
                   "(bootstrap intervals); the largest of them decides",
          tests=(Test("direction", below=True, margin=ENERGY_MARGIN),),
          paper="mean E -7.5 -> -54 over 40 steps (Imagenette, standard ResNet-10, ε = 8/255)", points=False),
    Claim("energy-overlap", "after {hist_steps} PGD steps clean and attacked energies barely overlap (standard model)",
          measures="the overlap coefficient of the clean and attacked energy histograms and the mean per-image "
                   "change E(x′) − E(x) (bootstrap intervals, images resampled)",
          tests=(Test("superiority", 0.2, name="overlap", below=True, margin=SCORE_MARGIN),
                 Test("direction", name="shift", below=True, margin=ENERGY_MARGIN)),
          paper="clean ~[-20, 0] vs adversarial ~[-70, -15] after 20 steps (Imagenette)", points=False),
    Claim("energy-detector", "the energy detector catches PGD points (standard model, T = 1)",
          measures="TPR and FPR on the test images at the threshold fitted on held-out images (Wilson intervals)",
          tests=(Test("superiority", 0.9, name="TPR"), Test("superiority", 0.05, name="FPR", below=True)),
          paper="TPR 0.982-0.984, FPR 0.014-0.017 (PGD-40; Imagenette ε = 8/255, CIFAR-10)", points=False),
    Claim("energy-detector-works", "the energy detector works on every training seed (ε = {stable_eps})",
          measures="the lowest AUROC over the training seeds, each with its bootstrap interval over the test images",
          tests=(Test("superiority", 0.8, margin=SCORE_MARGIN),), role=CHECK, points=False),
    Claim("energy-detector-seeds",
          "the detector's TPR moves between runs (beyond its sampling noise; ε = {stable_eps})",
          measures="the highest minus the lowest training seed's TPR at T = 1 (Newcombe's interval)",
          tests=(Test("direction"),), paper="TPR 0.984 vs 0.855 (CIFAR-10, two runs of the official code)",
          needs=("energy-detector-works",)),
)
