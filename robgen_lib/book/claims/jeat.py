"""Chapter 3's claims (Zhu et al. 2021): flatter energy around the data, generation from robust
and noise-trained classifiers, and JEAT's samples and robustness.

A claim about sample quality is judged by :data:`SCORES`, one part each: A's gain over B on
the score, in units of B's score and signed so that positive means A is better (see
:func:`~robgen_lib.book.analysis.jeat.quality_gains`). It holds when A gains on every score;
when a part fails, :func:`judged_by` names the scores on which it does hold, and the verdict
reads *reproduced only when judged by* them. The pixel scorer's FID-style distance is shown
but not counted: the class Gaussians the seeds are drawn from match the pixels' means and
covariances by construction, so on pixels no sample set comes closer to the data than the
seeds, and the distance ranks how far a generator moved them, not how well it generates.
"""
from __future__ import annotations

from typing import Mapping

from ..judge import CHECK, Claim, Seeds, Test, decide_test

__all__ = ["CLAIMS", "OPTIONAL", "SCORES", "judged_by"]

#: The scores every claim about sample quality is judged by (the parts of its test).
SCORES = ("is-style (standard scorer)", "fid-style (standard scorer)", "is-style (robust scorer)",
          "fid-style (robust scorer)", "is-style (pixel scorer)")

#: One direction test per score (bar 0); the default margin, 0.02, is 2 % of B's score for a gain
#: and 0.02 of a rank correlation for the noise trend.
_GAINS = tuple(Test("direction", name=s) for s in SCORES)

_GAIN = ("A's gain over B on each of five scores (IS-style and FID-style under the standard and the robust "
         "scorer, the pixel scorer's IS-style): the paired bootstrap difference over the n Gaussian seeds both grew "
         "from, in units of B's score, positive when A is better")
_READING = ("; holds when A gains on every score, 'reproduced only when judged by' the scores that gain when "
            "they outnumber those that lose")

CLAIMS = (
    Claim("jeat-flatter", "adversarial training makes the energy around the data flatter",
          "per training seed, three ratios standard / adversarially trained on the same evaluation images, each "
          "with a paired bootstrap interval: mean ‖∇ₓE(x, y)‖ at the data, the same per unit of each model's logit "
          "std, and the mean range of E(x', y) over random points of the ℓ∞ ε-ball",
          tuple(Test("superiority", 1.0, name=n) for n in ("gradient", "per logit std", "ε-ball range")),
          paper="standard sharp, adversarially trained smoother (Fig. 2)", seeds=3, points=False),
    Claim("jeat-sits-high", "on a standard model the real image sits high in its own energy landscape",
          "per training seed, over every evaluation image, the fraction of the landscape's grid points with a lower "
          "E(x, y) than the image itself: the standard model's mean (rank, above one half) and its paired difference "
          "from the adversarially trained model's (gap), bootstrap intervals",
          (Test("superiority", 0.5, name="rank"), Test("direction", name="gap")),
          paper="standard: the image at high energy (Fig. 2)", seeds=3, points=False),
    Claim("jeat-headroom",
          "generation gains on its starting point: the adversarially trained classifier's samples score better "
          "than the Gaussian seeds they grew from, on every score the claims about sample quality are judged by",
          "A = the adversarially trained classifier's samples, B = the Gaussian seeds they grew from: " + _GAIN
          + "; passes when A gains on every score",
          _GAINS, role=CHECK, points=False),
    Claim("jeat-robust-generates", "an adversarially trained classifier generates better samples than a standard one",
          "per training seed, A = the adversarially trained classifier's samples, B = the standard one's: " + _GAIN
          + _READING,
          _GAINS, paper="robust classifier IS 7.50 on CIFAR-10; a standard one's samples are not recognisable",
          needs=("jeat-headroom",), seeds=3, points=False),
    Claim("jeat-noise-trend", "noise injection improves generation, more so at larger σ",
          "per training seed (one cluster of the sweep's models, judged on its own) and each of the five scores of "
          "the quality claims, Spearman's ρ between σ and the score of the samples of the model trained at σ "
          "(σ = 0: the standard model), positive when larger σ generates better, with the Bonett–Wright interval "
          "on Fisher's z; holds when ρ is positive on every score, 'reproduced only when judged by' the scores with "
          "ρ > 0 when they outnumber those with ρ < 0",
          _GAINS, paper="noise-trained classifiers gain some generative ability (no numbers)",
          needs=("jeat-headroom",), seeds=3, points=False),
    Claim("jeat-noise-vs-attack", "at the same ℓ2 size, noise training generates worse than adversarial training",
          "A = the adversarially trained classifier's samples, B = those of a classifier trained with Gaussian noise "
          "at the σ whose expected ℓ2 norm matches PGD's perturbations at the training ε: " + _GAIN + _READING
          + "; one training seed: a matched noise model per further seed would add two trainings and generations, "
          "past the quick chapter's time budget",
          _GAINS, paper="random directions are less efficient than attacks", needs=("jeat-headroom",), points=False),
    Claim("jeat-generates", "JEAT generates better samples than adversarial training",
          "per training seed, A = JEAT's samples, B = the adversarially trained classifier's: " + _GAIN + _READING,
          _GAINS, paper="IS 8.80 (JEAT) vs 7.50 (robust classifier), CIFAR-10", needs=("jeat-headroom",), seeds=3,
          points=False),
    Claim("jeat-robust", "JEAT is at least as robust as adversarial training (within {bar})",
          "per training seed, PGD accuracy at the training ε of JEAT minus that of the adversarially trained "
          "classifier on the same evaluation images (Newcombe's paired interval)",
          (Test("non-inferiority", 0.02),),
          paper="arXiv v1: 57.20 -> 62.04 % (withdrawn in later versions); later table: JEAT 28.43 % under AutoAttack",
          seeds=3),
    Claim("jeat-real-is", "JEAT's samples reach a higher Inception Score than adversarial training's",
          "per training seed, torch-fidelity's Inception Score of JEAT's samples minus that of the adversarially "
          "trained classifier's (same seeds), with an interval from the scores' spread over their splits",
          (Test("direction", margin=0.1),), paper="IS 8.80 vs 7.50", needs=("jeat-headroom",), seeds=3, points=False),
)

#: Real Inception Scores need torch-fidelity and its downloaded weights (``fidelity=True``).
OPTIONAL = ("jeat-real-is",)


def judged_by(claim: Claim, evidence) -> str | None:
    """The measured condition under which a claim about sample quality that fails does hold:
    "judged by" the scores whose part holds by the rule (clear of its margin), when they
    outnumber the parts that fail; with :class:`~robgen_lib.book.judge.Seeds`, only when every
    seed names the same scores. None otherwise (the verdict then reads *not reproduced*)."""
    per_seed = evidence.per_seed.values() if isinstance(evidence, Seeds) else [evidence]
    named = {_favouring(claim, e) for e in per_seed}
    return named.pop() if len(named) == 1 else None


def _favouring(claim: Claim, parts: Mapping[str, object]) -> str | None:
    outcomes = {t.name: decide_test(t, parts[t.name]) for t in claim.tests}
    holds = [name for name, (o, near) in outcomes.items() if o is True and not near]
    fails = [name for name, (o, _) in outcomes.items() if o is False]
    return f"judged by {', '.join(holds)}" if holds and len(holds) > len(fails) else None
