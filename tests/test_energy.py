import numpy as np
import pytest
import torch

from robgen_lib.core.energy import EnergyDetector, auroc, ce_decomposition, joint_energy, marginal_energy, roc_curve
from robgen_lib.methods.evaluate import first_crossing, histogram_overlap


def test_ce_is_joint_minus_marginal_energy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=g, dtype=torch.float64) * 5
    y = torch.randint(0, 10, (200,), generator=g)
    ce, exy, ex = ce_decomposition(logits, y)
    assert torch.allclose(ce, exy - ex, atol=1e-12)
    assert torch.equal(exy, -logits[torch.arange(200), y])


def test_identity_on_trained_model(trained, digits):
    from robgen_lib.methods.evaluate import identity_gap

    gap = identity_gap(trained.model, digits.test)
    assert gap["max_abs_gap"] < 1e-9
    assert gap["mean_ce"] == pytest.approx(gap["mean_joint"] - gap["mean_marginal"], abs=1e-9)


def test_tempered_energy_limits():
    logits = torch.tensor([[1.0, 3.0, 2.0]])
    # T -> 0: -max logit; T = 1: -logsumexp.
    assert marginal_energy(logits, 1e-3).item() == pytest.approx(-3.0, abs=1e-2)
    assert marginal_energy(logits).item() == pytest.approx(-float(torch.logsumexp(logits, 1)))
    assert joint_energy(logits, torch.tensor([0])).item() == -1.0


def test_auroc_matches_sklearn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    neg = rng.integers(0, 5, 300).astype(float)
    pos = rng.integers(2, 8, 200).astype(float)
    y = np.r_[np.zeros(300), np.ones(200)]
    assert auroc(neg, pos) == pytest.approx(roc_auc_score(y, np.r_[neg, pos]), abs=1e-12)
    fpr, tpr, thr = roc_curve(neg, pos)
    assert fpr[0] == 0 and tpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(thr[1:]) < 0)


def test_detector_on_separable_energies():
    clean = np.array([-5.0, -4.0, -3.0, -2.0])     # data: high energy
    adv = np.array([-20.0, -15.0, -12.0, -10.0])    # attacked: low energy
    det = EnergyDetector().fit(clean, adv)
    assert -10.0 <= det.threshold < -5.0
    rep = det.evaluate(clean, adv)
    assert (rep.tpr, rep.fpr, rep.auroc) == (1.0, 0.0, 1.0)
    # Applied to unseen energies, the fitted threshold decides.
    assert det.flags(np.array([-30.0, -1.0])).tolist() == [True, False]


def test_detector_known_operating_point():
    # Held-out: one adversarial point sits among the clean ones. The best threshold
    # flags 3 of 4 adversarial points and no clean one: TPR 0.75, FPR 0.
    clean = np.array([-4.0, -3.0, -2.0, -1.0])
    adv = np.array([-9.0, -8.0, -7.0, -2.5])
    det = EnergyDetector().fit(clean, adv)
    rep = det.evaluate(clean, adv)
    assert rep.tpr == 0.75 and rep.fpr == 0.0
    assert rep.auroc == pytest.approx(0.875)


def test_detector_needs_fit():
    with pytest.raises(RuntimeError, match="fit"):
        EnergyDetector().flags([0.0])


def test_histogram_overlap_bounds():
    a = np.random.default_rng(0).normal(0, 1, 5000)
    assert histogram_overlap(a, a) == pytest.approx(1.0)
    assert histogram_overlap(a, a + 100) == 0.0
    assert 0.3 < histogram_overlap(a, a + 1) < 0.9


def test_first_crossing():
    assert first_crossing([1, 2, 3, 4], [True, False, True, True]) == 3
    assert first_crossing([1, 2, 3], [True, True, True]) == 1
    assert first_crossing([1, 2], [True, False]) is None


def test_significantly_lower_uses_the_paired_spread():
    from robgen_lib.methods.evaluate import paired_shift, significantly_lower

    rng = np.random.default_rng(0)
    clean = rng.normal(-10, 3, 400)
    assert significantly_lower(clean, clean - 1.0)
    assert not significantly_lower(clean, clean + rng.normal(0, 1, 400) * 0.01)  # noise only
    assert not significantly_lower(clean, clean + 1.0)
    mean, se = paired_shift(clean, clean - 2.0)
    assert mean == pytest.approx(-2.0) and se == pytest.approx(0.0, abs=1e-9)


def test_fmt_budget():
    from robgen_lib.book.report import fmt_budget

    assert fmt_budget(8 / 255) == "8/255" and fmt_budget(0.3) == "0.3"
    assert fmt_budget(0.2) == "0.2" and fmt_budget(0.6) == "0.6" and fmt_budget(2.0) == "2"   # not 51/255, 153/255, 510/255
    assert fmt_budget(1 / 255) == "1/255" and fmt_budget(0.0133) == "0.0133"


def test_two_sided_detector_catches_both_tails():
    from robgen_lib.core.energy import TwoSidedEnergyDetector

    clean = np.array([-6.0, -5.5, -5.0, -4.5, -4.0])  # median -5
    low = np.array([-20.0, -15.0])
    high = np.array([5.0, 10.0])
    det = TwoSidedEnergyDetector().fit(clean, np.r_[low, high])
    assert det.center == -5.0 and 1.0 < det.threshold <= 10.0
    assert det.flags(np.r_[low, high]).all() and not det.flags(clean).any()
    rep = det.evaluate(clean, high)
    assert (rep.tpr, rep.fpr, rep.auroc) == (1.0, 0.0, 1.0)
    # The one-sided detector, fitted the same way, misses the high-energy points by construction.
    one = EnergyDetector().fit(clean, low)
    assert one.evaluate(clean, high).tpr == 0.0 and one.evaluate(clean, high).auroc == 0.0


def test_ks_statistic():
    from robgen_lib.methods.evaluate import ks_statistic

    assert ks_statistic([1, 2, 3], [1, 2, 3]) == 0.0
    assert ks_statistic([1, 2, 3], [10, 11]) == 1.0
