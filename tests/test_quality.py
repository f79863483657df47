import numpy as np
import pytest
import torch

from robgen_lib.methods.quality import frechet_distance, gaussian_fit, is_style_score, penultimate_features


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


def test_sample_quality_prefers_real_images_and_reads_targets(trained, digits):
    from robgen_lib.methods.quality import sample_quality

    real, ref = digits.test.x[:150], digits.test.x[150:]
    noise = torch.rand(150, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    good = sample_quality(trained.model, real, ref, targets=digits.test.y[:150])
    bad = sample_quality(trained.model, noise, ref, targets=digits.test.y[:150])
    assert good["fid_style"] < bad["fid_style"] and good["is_style"] > bad["is_style"]
    assert good["agreement"] > 0.9 > bad["agreement"]
    assert "agreement" not in sample_quality(trained.model, real, ref)


def test_fidelity_scores_explain_what_is_missing(monkeypatch):
    import sys

    from robgen_lib.methods import quality

    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # import fails as if not installed
    with pytest.raises(quality.FidelityUnavailable, match=r"pip install -e \".\[paper\]\""):
        quality.fidelity_scores(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8))


def test_fidelity_scores_hand_uint8_rgb_images_to_torch_fidelity(monkeypatch):
    import sys
    import types

    from robgen_lib.methods import quality

    seen = {}

    def fake_calculate_metrics(**kw):
        seen.update(kw)
        return {"inception_score_mean": 2.0, "inception_score_std": 0.1, "frechet_inception_distance": 5.0}

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=fake_calculate_metrics))
    out = quality.fidelity_scores(torch.full((6, 1, 8, 8), 0.5), torch.rand(5, 3, 8, 8), cuda=False)
    assert out == {"IS": 2.0, "IS_std": 0.1, "FID": 5.0}
    img = seen["input1"][0]
    assert img.dtype == torch.uint8 and img.shape == (3, 8, 8) and int(img[0, 0, 0]) == 128
    assert len(seen["input2"]) == 5 and seen["isc"] and seen["fid"]

    def offline(**kw):
        raise OSError("<urlopen error>")

    monkeypatch.setitem(sys.modules, "torch_fidelity", types.SimpleNamespace(calculate_metrics=offline))
    with pytest.raises(quality.FidelityUnavailable, match="Inception-v3 weights"):
        quality.fidelity_scores(torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8))


def test_pixel_scorer_votes_with_its_nearest_training_images():
    from robgen_lib.methods.quality import PixelScorer, scorer_view
    train_x = torch.cat([torch.zeros(5, 1, 2, 2), torch.ones(5, 1, 2, 2)])
    train_y = torch.tensor([0] * 5 + [1] * 5)
    scorer = PixelScorer(train_x, train_y, num_classes=2, k=3)
    feats, probs = scorer_view(scorer, torch.tensor([[[[0.1, 0.0], [0.0, 0.0]]], [[[0.9, 1.0], [1.0, 1.0]]]]))
    assert feats.shape == (2, 4) and probs.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    with pytest.raises(ValueError, match="k"):
        PixelScorer(train_x, train_y, 2, k=11)
    big = torch.rand(3, 1, 28, 28)                             # a 28x28 image: 8x8 pooled features
    feats, _ = scorer_view(PixelScorer(big, torch.tensor([0, 1, 1]), 2, k=1), big)
    assert feats.shape == (3, 64)
    assert torch.allclose(feats[:, 0], big[:, 0, :4, :4].flatten(1).mean(1))   # the first bin: the top-left 4x4


def test_score_difference_is_paired_and_signed():
    from robgen_lib.methods.quality import PixelScorer, saturated, score_difference
    gen = torch.Generator().manual_seed(0)
    reference = torch.rand(200, 1, 4, 4, generator=gen)
    train_y = torch.arange(200) % 2
    scorer = PixelScorer(reference, train_y, num_classes=2, k=5)
    close = torch.rand(100, 1, 4, 4, generator=gen)          # drawn like the reference
    far = close * 0.2 + 0.8                                  # squeezed into a corner
    d = score_difference(scorer, far, close, reference, "fid_style", n_resamples=200)
    assert d.low > 0                                         # far is farther from the reference
    assert score_difference(scorer, close, close, reference, "fid_style", n_resamples=50).value == 0.0
    assert saturated([9.95, 9.99], 10) and not saturated([9.95, 9.5], 10)


def test_a_reference_fitted_once_gives_the_same_frechet_distance():

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(0.5, 2.0, size=(300, 16))
    d = frechet_distance(a, b)
    assert frechet_distance(a, gaussian_fit(b, root=True)) == pytest.approx(d, rel=1e-9)
    assert frechet_distance(gaussian_fit(a), gaussian_fit(b)) == pytest.approx(d, rel=1e-9)
    assert frechet_distance(b, a) == pytest.approx(d, rel=1e-9)          # symmetric


def test_a_pixel_scorer_is_cached_by_its_training_images():
    from robgen_lib.core.cached import call_key
    from robgen_lib.methods.quality import PixelScorer, sample_quality

    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 10
    same, other = PixelScorer(x, y, 10), PixelScorer(x.flip(0), y, 10)
    key = call_key(sample_quality, PixelScorer(x, y, 10), x[:5], x[5:10])
    assert key == call_key(sample_quality, same, x[:5], x[5:10])
    assert key != call_key(sample_quality, other, x[:5], x[5:10])


def test_fewer_samples_than_features_give_the_same_frechet_distance():
    """Below the feature dimension the distance takes its n × n form: the same number as
    the D × D one, and a set of two samples (rank one) is no special case."""
    rng = np.random.default_rng(2)
    ref = gaussian_fit(rng.normal(size=(300, 40)), root=True)
    for n in (2, 10, 40):
        a = rng.normal(1.0, 2.0, size=(n, 40))
        assert frechet_distance(a, ref) == pytest.approx(frechet_distance(gaussian_fit(a), ref), rel=1e-7)
