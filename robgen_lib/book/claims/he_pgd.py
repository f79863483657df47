"""Chapter 2's claims (High-Energy PGD; Beadini & Masi 2023): HE-PGD fools like PGD, keeps
the energy near the data's and passes the energy detector; and the book's own questions on
a two-sided detector and an energy-matching attack, each on both models.

Every detector claim rests on a check that the detector's operating point (its threshold,
fitted on held-out images) is usable on the test images: a threshold that flags nearly
every clean image "catches" every attack and says nothing about any."""
from __future__ import annotations

from ..judge import BOOK, CHECK, Claim, Test
from .energy import ENERGY_MARGIN, SCORE_MARGIN

#: The models of the chapter, as the claims' ids and sentences name them.
MODELS = {"standard": "standard", "adversarially-trained": "adversarially trained"}

#: The detector's operating point flags under half of the clean test images.
USABLE_FPR = 0.5


def _catches_pgd(suffix: str, budget: str) -> Claim:
    return Claim(f"he_pgd-catches-pgd{suffix}", f"the one-sided energy detector catches PGD (standard model, ε = {{{budget}}})",
                 measures="the detector's AUROC against PGD (paired bootstrap) and its FPR on the clean test images "
                          "at the held-out threshold (Wilson)",
                 tests=(Test("superiority", 0.8, name="AUROC", margin=SCORE_MARGIN),
                        Test("superiority", USABLE_FPR, name="FPR", below=True)), role=CHECK, points=False)


def _evades(suffix: str, budget: str) -> Claim:
    return Claim(f"he_pgd-evades{suffix}",
                 f"HE-PGD passes the energy detector that catches PGD (standard model, ε = {{{budget}}})",
                 measures="the detector's TPR against PGD minus against HE-PGD (Newcombe) and its AUROC against PGD "
                          "minus against HE-PGD (paired bootstrap)",
                 tests=(Test("superiority", 0.1, name="TPR drop"), Test("direction", name="AUROC drop", margin=SCORE_MARGIN)),
                 paper="PGD histograms separate from clean, HE-PGD's overlap them (Imagenette)", needs=(f"he_pgd-catches-pgd{suffix}",))


CLAIMS = (
    Claim("he_pgd-fools", "HE-PGD fools the standard model about as well as PGD ({steps} steps, within {bar})",
          measures="accuracy under HE-PGD minus accuracy under PGD on the test images (Newcombe's interval)",
          # a 2-point band leaves no room for the 2-point margin of robust accuracies: both attacks drive the
          # standard model near 0 %, where rounding moves a rate by a fraction of a point
          tests=(Test("equivalence", 0.02, margin=0.005),),
          paper="accuracy 0 % for both after 40 steps (Imagenette and CIFAR-10)"),
    Claim("he_pgd-pgd-lowers", "PGD lowers E(x) on the standard model ({hist_steps} steps)",
          measures="the mean per-image change E(x′) − E(x) under PGD (bootstrap interval)",
          tests=(Test("direction", below=True, margin=ENERGY_MARGIN),), role=CHECK, points=False),
    Claim("he_pgd-closer", "HE-PGD energies stay closer to the data's than PGD's (standard model, {hist_steps} steps)",
          measures="|mean shift of HE-PGD| − |mean shift of PGD| and overlap with the clean histogram HE-PGD − PGD "
                   "(paired bootstrap over the images)",
          tests=(Test("direction", name="shift", below=True, margin=ENERGY_MARGIN),
                 Test("direction", name="overlap", margin=SCORE_MARGIN)),
          paper="PGD -7.5 -> -54, HE-PGD within -3 ... -9 (clean ~ -7.5; Imagenette)", needs=("he_pgd-pgd-lowers",),
          points=False),
    _catches_pgd("", "eps"),
    _evades("", "eps"),
    _catches_pgd("-at-detect-eps", "detect_eps"),
    _evades("-at-detect-eps", "detect_eps"),
    *(Claim(f"he_pgd-detectors-usable-{key}", f"both energy detectors have a usable operating point ({name})",
            measures="each detector's FPR on the clean test images at its held-out threshold (Wilson)",
            tests=(Test("superiority", USABLE_FPR, name="one-sided FPR", below=True),
                   Test("superiority", USABLE_FPR, name="two-sided FPR", below=True)), role=CHECK, points=False)
      for key, name in MODELS.items()),
    *(Claim(f"he_pgd-two-sided-{key}", f"the two-sided detector catches HE-PGD again ({name})",
            measures="the two-sided minus the one-sided detector's TPR against HE-PGD (Newcombe) and the two-sided "
                     "detector's AUROC against HE-PGD (paired bootstrap)",
            tests=(Test("direction", name="TPR gain"), Test("superiority", 0.8, name="AUROC", margin=SCORE_MARGIN)),
            role=BOOK, needs=(f"he_pgd-detectors-usable-{key}",), points=False)
      for key, name in MODELS.items()),
    *(Claim(f"he_pgd-matching-{key}", f"energy matching evades both detectors better than HE-PGD while fooling ({name})",
            measures="the higher of the two detectors' TPR against HE-PGD minus against energy matching (Newcombe), "
                     "and energy matching's fooling rate (Wilson)",
            tests=(Test("direction", name="TPR margin"), Test("superiority", 0.9, name="fooling")),
            role=BOOK, needs=(f"he_pgd-detectors-usable-{key}",), points=False)
      for key, name in MODELS.items()),
)
