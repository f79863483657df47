import numpy as np
import pytest
import torch

from robgen_lib.quality import frechet_distance, is_style_score, penultimate_features


def test_scores_rank_real_images_above_noise(trained, digits):
    real_a, real_b = digits.test.x[:150], digits.test.x[150:300]
    noise = torch.rand(150, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    fa, pa = penultimate_features(trained.model, real_a)
    fb, pb = penultimate_features(trained.model, real_b)
    fn, pn = penultimate_features(trained.model, noise)
    assert fa.shape == (150, 128) and pa.shape == (150, 10)
    assert frechet_distance(fa, fb) < frechet_distance(fa, fn)
    assert is_style_score(pa) > is_style_score(pn)


def test_frechet_distance_of_known_gaussians():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, (20000, 3))
    b = rng.normal(0, 1, (20000, 3)) + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, b) == pytest.approx(4.0, abs=0.1)


def test_is_style_score_bounds():
    k = 10
    confident_diverse = np.eye(k)[np.arange(1000) % k]
    assert is_style_score(confident_diverse) == pytest.approx(k, rel=1e-6)
    assert is_style_score(np.full((100, k), 1 / k)) == pytest.approx(1.0)
