"""Chapter 4's claims: the Robust Diffusion Classifier (Chen et al. 2024) and the diffusion
classifier it is built on. Robustness is judged on each model's worst case over the book's
attack and the independent attacks of chapter 6 (the same cached runs on the same images)."""
from ..judge import BOOK, CHECK, Claim, Test

#: Every robustness claim rests on a diffusion classifier that classifies clean images well.
_VALID = ("rdc-stand-in",)

CLAIMS = (
    Claim("rdc-stand-in", "the diffusion classifier and RDC are good enough on clean images to stand in for the "
          "paper's (clean accuracy above {bar} at T′ = {timesteps})",
          "clean accuracy of each on the evaluation images, Wilson interval",
          (Test("superiority", "dc_min_clean", name="diffusion classifier"),
           Test("superiority", "dc_min_clean", name="RDC")), role=CHECK, unit="%"),
    Claim("rdc-timesteps", "fewer timesteps barely change clean accuracy but lower robust accuracy "
          "(T′ {low} vs {high})",
          "paired differences (largest − smallest T′) of robust and of clean accuracy on the attacked images",
          (Test("direction", name="robust gain"), Test("equivalence", 0.1, name="clean change")),
          paper="qualitative (ablation on 100 CIFAR-10 images)", needs=_VALID),
    Claim("rdc-same-training", "the two denoisers of the head comparison come from the same training recipe",
          "whether the multi-head denoiser is the book's (not the user's denoiser_weights)",
          (Test("fact"),), role=CHECK),
    Claim("rdc-heads", "a multi-head denoiser cuts the network evaluations per image by K at the same clean "
          "accuracy (within {bar})",
          "evaluations per image counted by a hook (exactly K times fewer?) and the paired clean-accuracy "
          "difference multi − single",
          (Test("fact", name="K times fewer"), Test("equivalence", 0.05, name="clean accuracy")),
          paper="10,000 -> 1,000 evaluations per image (K = 10, T′ = 1000)", needs=("rdc-same-training",), seeds=3),
    Claim("rdc-lm-gain", "LM makes the diffusion classifier much more robust (ℓ∞, worst case)",
          "paired gap RDC − diffusion classifier of worst-case robust accuracy (one denoiser: LM is the only "
          "difference)",
          (Test("superiority", 0.05),),
          paper="RDC 75.67 % vs diffusion classifier 35.94 % (CIFAR-10, 8/255; the latter from a score-SDE model)",
          needs=_VALID),
    Claim("rdc-vs-at", "RDC is more robust than adversarial training (ℓ∞, worst case)",
          "paired gap RDC − PGD-trained CNN of worst-case robust accuracy",
          (Test("direction"),), paper="RDC 75.67 % vs AT-EDM 70.90 % (a far larger WRN-70-16)",
          needs=_VALID, seeds=3),
    Claim("rdc-dc-l2", "the diffusion classifier alone is robust in ℓ2 ({bar} above the standard CNN, worst case)",
          "paired gap diffusion classifier − standard CNN of worst-case robust accuracy (ℓ2)",
          (Test("superiority", 0.2),), paper="diffusion classifier ≈ 76.95 %, RDC 82.03 % (ℓ2 0.5)",
          needs=_VALID, seeds=3),
    Claim("rdc-small-budget", "at a small budget (ℓ∞ ε = {small_eps}) the diffusion classifier is more robust than "
          "the standard CNN (the paper's ordering; else the small diffusion classifier is no stand-in for the paper's)",
          "paired gap diffusion classifier − standard CNN under the book's attack",
          (Test("direction"),), role=BOOK, needs=_VALID),
    Claim("rdc-floor-dc", "the book's attack leaves the diffusion classifier some robust images to lose",
          "whether any image survives the chapter's attack (a rate at 0 % cannot be lowered)",
          (Test("fact"),), role=CHECK),
    Claim("rdc-floor-rdc", "the book's attack leaves RDC some robust images to lose",
          "whether any image survives the chapter's attack (a rate at 0 % cannot be lowered)",
          (Test("fact"),), role=CHECK),
    Claim("rdc-stronger-dc", "a stronger attack does not change the diffusion classifier's accuracy (within {bar})",
          "paired drop base − stronger attack (twice the steps and restarts)",
          (Test("equivalence", 0.1),), paper="more iterations/restarts do not change RDC's number",
          needs=_VALID + ("rdc-floor-dc",)),
    Claim("rdc-stronger-rdc", "a stronger attack does not change RDC's accuracy (within {bar})",
          "paired drop base − stronger attack (twice the steps and restarts)",
          (Test("equivalence", 0.1),), paper="more iterations/restarts do not change RDC's number",
          needs=_VALID + ("rdc-floor-rdc",)),
    Claim("rdc-huge-budget", "a huge budget (ε = {big_eps}) drives every diffusion model to 0 % (upper bound below "
          "{bar})",
          "robust accuracy of each model under the book's attack at the huge budget, Wilson interval",
          (Test("superiority", 0.1, below=True),), role=BOOK, unit="%"),
    Claim("rdc-bpda-exact", "BPDA and exact gradients through LM agree (within {bar})",
          "paired difference BPDA − exact of robust accuracy (one LM step, fixed-noise classifier)",
          (Test("equivalence", 0.1),), paper="exact (N = 1) 69.53 % vs BPDA 69.92 %"),
    Claim("rdc-energy-reversal", "on the diffusion classifier, PGD lowers E(x) and HE-PGD raises it back",
          "PGD's mean energy shift and the paired difference of the two attacks' shifts, bootstrap intervals",
          (Test("direction", name="PGD lowers", below=True, margin=0.002),
           Test("direction", name="HE-PGD raises back", margin=0.002)), role=BOOK, points=False),
    Claim("rdc-eta-peak", "LM's robustness peaks when η equals the attack's ε",
          "paired differences of robust accuracy at η = ε against every other η of the grid",
          (Test("direction"),), paper="peak at η = 8/255 = ε", needs=_VALID),
)
