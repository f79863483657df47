import pytest
import torch
from scipy.stats import norm
from torch import nn

from robgen_lib.methods.smoothing import ABSTAIN, Smoothed, clopper_pearson_lower, denoise_then_classify


class FirstPixel(nn.Module):
    """Class 0 when the first pixel is below ``thr``, else class 1: P(class 0 | x + σδ) = Φ((thr − x₀)/σ)."""

    def __init__(self, thr: float):
        super().__init__()
        self.thr = thr
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        first = x.flatten(1)[:, 0]
        return torch.stack([(first < self.thr).float(), (first >= self.thr).float()], 1) + 0 * self.dummy


def test_clopper_pearson_bounds():
    assert clopper_pearson_lower(0, 10, 0.05) == 0.0
    assert clopper_pearson_lower(10, 10, 0.05) == pytest.approx(0.05 ** (1 / 10))
    assert clopper_pearson_lower(500, 1000, 0.001) < 0.5
    with pytest.raises(ValueError):
        clopper_pearson_lower(11, 10, 0.05)


def test_certified_radius_is_sigma_times_inverse_normal_of_p():
    sigma, p = 0.5, 0.9
    base = FirstPixel(sigma * norm.ppf(p))
    sm = Smoothed(base, sigma, num_classes=2, batch_size=20_000, seed=1)
    (cert,) = sm.certify(torch.zeros(1, 1, 4, 4), n0=100, n=100_000, alpha=0.001)
    assert cert.label == 0
    assert cert.radius == pytest.approx(sigma * norm.ppf(cert.p_lower))
    assert cert.radius == pytest.approx(sigma * norm.ppf(p), abs=0.03 * sigma)
    assert cert.p_lower < p                          # a lower bound, not the estimate


def test_smoothing_abstains_when_the_top_class_is_uncertain():
    base = FirstPixel(0.0)                           # a coin flip for an image whose first pixel is 0
    sm = Smoothed(base, 0.25, num_classes=2, batch_size=5_000)
    x = torch.zeros(2, 1, 4, 4)
    assert all(c.label == ABSTAIN and c.radius == 0.0 for c in sm.certify(x, n0=100, n=2_000))
    assert (sm.predict(x, n=2_000) == ABSTAIN).all()
    clear = torch.full((1, 1, 4, 4), -1.0)           # 4σ below the threshold: class 0 almost surely
    assert sm.predict(clear, n=200).tolist() == [0]


def test_smoothing_is_reproducible_and_checks_sigma():
    sm = Smoothed(FirstPixel(0.1), 0.3, num_classes=2, seed=4)
    x = torch.zeros(3, 1, 4, 4)
    assert sm.certify(x, n0=50, n=500) == sm.certify(x, n0=50, n=500)
    with pytest.raises(Exception, match="sigma"):
        Smoothed(FirstPixel(0.1), 0.0, num_classes=2)


def test_denoise_then_classify_runs_the_unconditional_head():
    from robgen_lib.methods.diffusion import Denoiser

    torch.manual_seed(0)
    den = Denoiser(1, 10, base=8, multi_head=True).eval()
    seen = {}

    class Spy(nn.Module):
        def forward(self, x):
            seen["x"] = x
            return torch.zeros(len(x), 10)

    model = denoise_then_classify(den, Spy(), sigma=0.25)
    out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10) and seen["x"].min() >= 0 and seen["x"].max() <= 1
    ab = float(model.schedule.alpha_bar[model.t])
    assert (1 - ab) / ab == pytest.approx((2 * 0.25) ** 2, rel=0.05)   # the matching noise level


def test_certified_accuracy_counts_correct_certificates_above_each_radius():
    from robgen_lib.methods.smoothing import certified_accuracy, certify_split

    sigma = 0.5
    base = FirstPixel(sigma * norm.ppf(0.9))
    sm = Smoothed(base, sigma, num_classes=2, batch_size=5000, seed=0)
    x = torch.zeros(4, 1, 2, 2)
    x[2:, 0, 0, 0] = 5.0                          # far above the threshold: class 1 with certainty
    y = torch.tensor([0, 1, 1, 0])                # images 1 and 3 are labelled against the base
    res = certify_split(sm, x, y, n0=50, n=2000, alpha=0.001)
    assert res["correct"].tolist() == [True, False, True, False]
    acc = certified_accuracy(res, [0.0, float(res["radius"][0]), 10.0])
    assert acc[0] == 0.5 and acc[-1] == 0.0
    assert acc[1] == pytest.approx(0.5 if res["radius"][2] >= res["radius"][0] else 0.25)
