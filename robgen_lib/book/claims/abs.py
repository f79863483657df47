"""Chapter 5's claims (An Ju's thesis on generative classifiers, E-ABS, ABS): the inference
budget, ABS against adversarial training and a standard CNN, whether its attacks are masked,
morphing adversarials, overpowered decoders, the similarity metric and certified robustness.

Every claim about robustness is judged on each model's *worst case*: an image counts as
robust only if it survives every attack run on it (PGD through the latent search, the
decision-based attack, and on the ABS family the latent-descent attack). The claims that
compare trained models need three training seeds (the ``n_abs_seeds`` knob).

The class margins are in the class score's units (α × summed squared pixel error): their
margin, 0.02, is about 1 % of the smallest decoder's mean margin on the 8×8 digits, and so is
the default margin of the other/own error ratio (about 2.6 there). An
AUROC on a few hundred images of each domain moves by far less than its margin, 0.01, when a
handful of scores round differently.
"""
from __future__ import annotations

from ..judge import BOOK, CHECK, Claim, Test

__all__ = ["CLAIMS", "OPTIONAL", "GENERATIVE", "THREATS", "CERTIFIED_BAR"]

#: The generative models of the robustness comparisons and the threats they are judged under.
GENERATIVE = ("ABS", "E-ABS-style")
THREATS = ("ℓ2", "ℓ∞")
#: Certified points the denoiser must add: the headroom check asks the baseline to leave them.
CERTIFIED_BAR = 0.10

_WORST = ("worst-case robust accuracy (an image counts only if it survives PGD with CE and DLR losses, the "
          "decision-based attack and, on ABS and the E-ABS-style model, latent descent)")
_PAIRED = "Newcombe's paired interval on the images both models were attacked on"
_FLOOR = ("the more robust model of each compared pair keeps a worst-case robust accuracy above the bar (Wilson "
          "interval); at the floor (0 % against 0 %) the comparison ranks nothing")

CLAIMS = (
    Claim("abs-budget", "a larger inference budget (more samples, more steps) gives ABS a higher clean accuracy",
          "ABS's clean accuracy on the test images at the largest budget of the grid (most prior samples, most Adam "
          "steps) minus at the smallest, with Newcombe's interval for two rates",
          (Test("direction"),), role=BOOK),
    Claim("abs-linf-floor-at",
          "in ℓ∞ (ε = {abs_linf_eps}) ABS and the PGD-trained CNN are not both at the floor",
          "per training seed, " + _FLOOR + " (the pair: ABS and the PGD-trained CNN)",
          (Test("superiority", 0.05),), role=CHECK, unit="%"),
    Claim("abs-linf-floor-standard",
          "in ℓ∞ (ε = {abs_linf_eps}) no generative model is at the floor together with the standard CNN",
          "per training seed, " + _FLOOR + " (the pairs: ABS and the standard CNN, the E-ABS-style model and the "
          "standard CNN)",
          tuple(Test("superiority", 0.05, name=g) for g in GENERATIVE), role=CHECK, unit="%"),
    Claim("abs-l2", "ABS is more robust than adversarial training in ℓ2 (ε = {abs_l2_eps})",
          f"per training seed, ABS's {_WORST} minus the PGD-trained CNN's, {_PAIRED}",
          (Test("direction"),), paper="ABS 79.9 % vs Madry et al. 35 % (MNIST, ε = 1.5)",
          seeds=3),
    Claim("abs-linf", "ABS is far less robust than adversarial training in ℓ∞ (ε = {abs_linf_eps})",
          f"per training seed, the PGD-trained CNN's {_WORST} minus ABS's, {_PAIRED}",
          (Test("superiority", 0.20),),
          paper="ABS 8 % vs Madry et al. 87.1 % (MNIST, ε = 0.3)",
          needs=("abs-linf-floor-at",), seeds=3),
    Claim("abs-generative", "generative classifiers are more robust than a standard discriminative one",
          f"per training seed, for ABS and the E-ABS-style model under ℓ2 and ℓ∞, the {_WORST} minus the standard "
          f"CNN's, {_PAIRED}; holds when every gap is above 0",
          tuple(Test("direction", name=f"{g}, {t}") for g in GENERATIVE for t in THREATS),
          paper="thesis claim 1 (ABS: ℓ2 79.9 % vs CNN 8 %, ℓ∞ 8 % vs 0 %)",
          needs=("abs-linf-floor-standard",), seeds=3),
    Claim("abs-decision-power",
          "the decision-based attack is strong where nothing is defended: on the standard CNN it leaves few more "
          "images robust than PGD",
          "under each threat, the standard CNN's robust accuracy under the decision-based attack minus under PGD "
          "on the same images (" + _PAIRED + "); passes when each is below the bar, else a weak attack would pass "
          "any model",
          tuple(Test("superiority", 0.10, name=t, below=True) for t in THREATS), role=CHECK),
    Claim("abs-not-masked-decision",
          "the gradient attack through the latent search is not masked (the decision-based attack is not stronger)",
          "for ABS and the E-ABS-style model under each threat, PGD's robust accuracy minus the decision-based "
          "attack's on the same images (" + _PAIRED + "); holds when every excess is below the bar",
          tuple(Test("superiority", 0.05, name=f"{g}, {t}", below=True) for g in GENERATIVE for t in THREATS),
          needs=("abs-decision-power",), role=BOOK),
    Claim("abs-not-masked-latent",
          "the adaptive latent-descent attack is not stronger than PGD through the latent search",
          "for ABS and the E-ABS-style model under each threat, PGD's robust accuracy minus latent descent's on "
          "the same images (" + _PAIRED + "); holds when every excess is below the bar",
          tuple(Test("superiority", 0.05, name=f"{g}, {t}", below=True) for g in GENERATIVE for t in THREATS),
          role=BOOK),
    Claim("abs-morph-fooled",
          "ℓ2 PGD fools ABS, the standard CNN and the PGD-trained CNN on at least one image each (the judge has "
          "adversarials to look at)",
          "whether each of the three models predicts a wrong class on at least one of its own ℓ2 PGD adversarials",
          (Test("fact"),), role=CHECK),
    Claim("abs-morph", "ABS's adversarial examples morph into the other class; a standard CNN's do not",
          "among each model's ℓ2 PGD adversarials that fool it, the fraction whose 5 nearest training images "
          "carry the adversarial label: ABS's minus the standard CNN's (different images: Newcombe's interval "
          "for two rates)",
          (Test("superiority", 0.10),), paper="qualitative (figures of MNIST adversarials)",
          needs=("abs-morph-fooled",)),
    Claim("abs-morph-generative",
          "the morphing is generative, not robustness: ABS's adversarials morph more than a PGD-trained CNN's",
          "the same agreement of the nearest-neighbour judge: ABS's minus the PGD-trained CNN's (Newcombe's "
          "interval for two rates)",
          (Test("direction"),), needs=("abs-morph-fooled",), role=BOOK),
    Claim("abs-ladder", "larger decoders reconstruct other classes better, and the class margin shrinks",
          "on the same test images, ABS's largest decoder of the ladder minus its smallest: the change of the "
          "other-class / own-class reconstruction error ratio (ratio of means) and of the mean class margin, "
          "paired bootstrap intervals; holds when both fall",
          (Test("direction", name="other/own", below=True), Test("direction", name="margin", below=True)),
          paper="thesis claim 2 (qualitative; CIFAR-10 and ImageNet)", points=False),
    Claim("abs-eabs-margin",
          "the discriminative term widens the class margin it is trained on (the largest decoder; the book's check "
          "of its E-ABS-style objective)",
          "the mean class margin of the E-ABS-style model minus ABS's at the largest decoder, on the same test "
          "images, paired bootstrap interval",
          (Test("direction"),), role=BOOK, points=False),
    Claim("abs-ood-not-at-ceiling",
          "at the largest decoder, in- and out-of-domain images are not separated perfectly by both models (the "
          "AUROCs can still be ranked)",
          "the AUROC (test digits against photo patches, by the best class score) of the model that separates "
          "them less, bootstrap interval; fails when its lower bound reaches the bar plus the margin (0.99: both "
          "models at the ceiling)",
          (Test("superiority", 0.98, below=True, margin=0.01),), role=CHECK, points=False),
    Claim("abs-ood",
          "E-ABS-style likelihoods separate in-domain from out-of-domain images better than ABS's (largest decoder)",
          "the AUROC of the E-ABS-style model minus ABS's at the largest decoder, test digits against as many photo "
          "patches, by the best class score, bootstrap interval over both sets of images",
          (Test("direction", margin=0.01),),
          paper="E-ABS: more reliable class-conditional likelihoods than ABS, in and out of domain (qualitative)",
          needs=("abs-ood-not-at-ceiling",), points=False),
    Claim("abs-ood-colour",
          "on {ood_dataset}, the largest decoder explains other classes nearly as well as its own",
          "the ratio of the mean other-class to the mean own-class reconstruction error of ABS's largest decoder "
          "on the second dataset's test images, bootstrap interval over the images",
          (Test("superiority", 1.2, below=True),), role=BOOK, points=False),
    Claim("abs-similarity-clean",
          "a better similarity metric improves the generative classifier's clean accuracy",
          "per training seed, with the feature metric of the higher ℓ2 PGD robust accuracy on held-out images: its "
          "clean accuracy on the test images minus the pixel metric's (Newcombe's interval for two rates)",
          (Test("superiority", 0.02),), role=BOOK, seeds=3),
    Claim("abs-similarity", "a better similarity metric significantly improves the generative classifier",
          "per training seed, with the feature metric of the higher ℓ2 PGD robust accuracy on held-out images: its "
          "worst-case ℓ2 robust accuracy on the first test images (an image counts only if it survives PGD with "
          "CE, latent descent and the decision-based attack) minus the pixel metric's, " + _PAIRED,
          (Test("superiority", 0.05),), paper="thesis claim 3 (on complex images)", seeds=3),
    Claim("abs-certified-headroom",
          "the classifier smoothed without a denoiser leaves room for the gain the denoiser is asked for",
          "per training seed, the standard CNN's certified accuracy at r = σ (Wilson interval); passes when its "
          "upper bound plus the claimed gain stays below 100 %",
          (Test("superiority", 1 - CERTIFIED_BAR, below=True),), role=CHECK, unit="%"),
    Claim("abs-certified",
          "modelling the noise (a denoiser) makes an unprotected classifier certifiably robust (r = {smooth_sigma})",
          "per training seed, certified accuracy at r = σ of denoise-then-classify minus the standard CNN smoothed "
          "alone, on the same images, " + _PAIRED,
          (Test("superiority", CERTIFIED_BAR),), paper="thesis claim 4 (its own method is not public)",
          needs=("abs-certified-headroom",), seeds=3),
)

#: The colour-image study runs only when ``ood_dataset`` names a second dataset (the paper profile).
OPTIONAL = ("abs-ood-colour",)
