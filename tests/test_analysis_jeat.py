"""Chapter 3's analysis functions on small hand-made results."""
import math

import pytest
import torch

from robgen_lib.book.analysis import jeat

SIGMAS = [0.0, 0.1, 0.3]


def scores(is_style, fid_style, agreement=0.5):
    return {"is_style": is_style, "fid_style": fid_style, "agreement": agreement}


def sweep_quality(std, rob, at):
    """Quality of the σ sweep (standard, noise σ = 0.1, noise σ = 0.3) and of adversarial training:
    ``std`` / ``rob``: (IS-style, FID-style) per σ under each scorer; ``at``: adversarial training's."""
    names = ["standard", "noise σ = 0.1", "noise σ = 0.3"]
    q = {n: {"standard scorer": scores(*std[i]), "robust scorer": scores(*rob[i])} for i, n in enumerate(names)}
    q["adversarially trained"] = {"standard scorer": scores(*at[0]), "robust scorer": scores(*at[1])}
    return q


def test_noise_names_and_shown_models():
    assert jeat.sweep_names(SIGMAS) == ["standard", "noise σ = 0.1", "noise σ = 0.3"]
    names = ["standard", "adversarially trained", "noise σ = 0.1", "noise σ = 0.3", "JEAT"]
    assert jeat.shown_models(names, SIGMAS) == ["standard", "noise σ = 0.3", "adversarially trained", "JEAT"]
    assert jeat.shown_models(["standard", "JEAT"], [0]) == ["standard", "JEAT"]   # no noise model: not shown


def test_equal_l2_sigma_matches_the_perturbations_norm():
    x = torch.zeros(4, 1, 8, 8)
    x_adv = x + 0.1                                          # every pixel moved by 0.1: ℓ2 norm 0.8 over 64 pixels
    assert jeat.equal_l2_sigma(x, x_adv) == pytest.approx(0.1)


def test_flatness_summary_ranks_the_image_in_its_landscape():
    peak = torch.zeros(1, 3, 3)
    peak[0, 1, 1] = 5.0                                      # the image is the highest point
    valley = -peak                                           # the image is the lowest point
    flat = {"a": {"grad_norm": 1.0, "ball_range": 2.0}, "b": {"grad_norm": 0.5, "ball_range": 1.0}}
    out = jeat.flatness_summary(flat, {"a": -3.0, "b": -1.0}, {"a": {"energy": peak}, "b": {"energy": valley}})
    ranks = out["a"].pop("ranks")
    assert out["a"] == {"grad_norm": 1.0, "ball_range": 2.0, "energy": -3.0, "rank": pytest.approx(8 / 9)}
    assert ranks.tolist() == [pytest.approx(8 / 9)]
    assert out["b"]["rank"] == 0.0


def test_first_of_each_class_and_accuracies():
    assert jeat.first_of_each_class(3, 4, 2).tolist() == [0, 1, 4, 5, 8, 9]
    y = torch.tensor([0, 1, 1, 0])
    clean = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])      # all right
    attacked = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])   # one of four right
    acc = jeat.clean_and_attacked_accuracy({"m": (clean, attacked)}, y)
    assert acc == {"m": {"clean": 1.0, "attacked": 0.25}}


def test_real_scores_say_why_they_are_missing():
    scores_, why = jeat.real_scores({}, torch.zeros(2, 1, 8, 8), ["JEAT"], enabled=False)
    assert scores_ == {} and "fidelity=False" in why


SIG5 = [0.0, 0.1, 0.2, 0.3, 0.4]


def sweep5(is_style, fid_style):
    """Quality of a five-σ sweep under one scorer "s": IS-style and FID-style per σ."""
    return {n: {"s": scores(i, f)} for n, i, f in zip(jeat.sweep_names(SIG5), is_style, fid_style)}


def test_noise_trend_signs_rho_so_that_positive_is_better_with_a_bonett_wright_interval():
    t = jeat.noise_trend(sweep5([1, 2, 3, 4, 5], [9, 8, 7, 6, 5]), SIG5)   # both scores improve with σ, perfectly
    assert list(t) == ["is-style (s)", "fid-style (s)"]
    assert t["is-style (s)"].value == pytest.approx(1.0)
    assert t["fid-style (s)"].value == pytest.approx(1.0)                  # a falling distance counts as better
    assert t["fid-style (s)"].low == pytest.approx(1.0) and t["fid-style (s)"].n == 5
    worse = jeat.noise_trend(sweep5([1, 2, 3, 5, 4], [5, 6, 7, 9, 8]), SIG5)["fid-style (s)"]
    assert worse.value == pytest.approx(-0.9)                              # FID-style rises: negative
    half = 1.959964 * math.sqrt((1 + 0.81 / 2) / 2)                        # Bonett–Wright at n = 5
    assert worse.low == pytest.approx(math.tanh(math.atanh(-0.9) - half))
    assert worse.high == pytest.approx(math.tanh(math.atanh(-0.9) + half)) and worse.high > 0   # undecided at 5 σ


def test_noise_trend_gives_a_flat_score_the_whole_range_and_keeps_the_named_scores():
    t = jeat.noise_trend(sweep5([10, 10, 10, 10, 10], [9, 8, 7, 6, 5]), SIG5, ["is-style (s)"])
    assert list(t) == ["is-style (s)"]
    e = t["is-style (s)"]
    assert (e.value, e.low, e.high) == (0.0, -1.0, 1.0)                    # a constant score ranks nothing
    three = jeat.noise_trend(sweep_quality([(1, 9), (2, 8), (3, 7)], [(1, 9), (2, 8), (3, 7)], [(5, 1), (5, 1)]),
                             SIGMAS)
    assert all((e.low, e.high) == (-1.0, 1.0) for e in three.values())    # three σ: no interval


def diffs(value, low, high, metric="fid_style", scorer="s", n=50):
    return {f"{scorer}/{metric}": {"scorer": scorer, "metric": metric, "a": float("nan"), "b": float("nan"),
                                   "value": value, "low": low, "high": high, "n": n}}


def test_quality_gains_are_in_units_of_bs_score_and_positive_when_a_is_better():
    measured = {**diffs(-2.0, -3.0, -1.0), **diffs(0.5, 0.25, 0.75, metric="is_style")}
    g = jeat.quality_gains(measured, {"s": scores(5.0, 4.0)})
    fid, is_ = g["fid-style (s)"], g["is-style (s)"]
    assert (fid.value, fid.low, fid.high, fid.n) == (0.5, 0.25, 0.75, 50)   # A's distance 2 lower than B's 4
    assert (is_.value, is_.low, is_.high) == (0.1, 0.05, 0.15)             # IS-style 0.5 above B's 5
    only = jeat.quality_gains(measured, {"s": scores(5.0, 4.0)}, ["is-style (s)"])
    assert list(only) == ["is-style (s)"]
    assert "fid-style (s) +50.0 % [+25.0, +75.0]" in jeat.gains_text(g) and jeat.gains_text(g).endswith("(n = 50)")
    with pytest.raises(KeyError, match="no measured difference"):
        jeat.quality_gains(measured, {"s": scores(5.0, 4.0)}, ["fid-style (other)"])
    with pytest.raises(ValueError, match="unit"):
        jeat.quality_gains(measured, {"s": scores(5.0, 0.0)})


def test_robustness_gaps_are_paired_per_seed():
    n = 200
    same = torch.ones(n, dtype=torch.bool)
    worse = same.clone()
    worse[:40] = False                                       # 20 points fewer images robust
    gaps = jeat.robustness_gaps({0: same, 1: worse}, {0: same, 1: same})
    assert gaps[0].value == 0.0 and gaps[0].points
    assert gaps[1].value == pytest.approx(-0.2) and gaps[1].high < 0 and gaps[1].n == n
    assert gaps[1].p_value < 1e-6                            # McNemar: 40 discordant images, all one way
    text = jeat.by_seed(gaps, str)
    assert text.startswith("seed 0: +0.0 points") and "; seed 1: -20.0 points" in text


def test_flatness_ratios_separate_scale_from_shape_and_ranks_are_paired():
    g = torch.linspace(1.0, 2.0, 100)
    sharp = {"grad_norms": 3 * g, "ball_ranges": 3 * g, "logit_std": 1.0, "ranks": torch.full((100,), 0.8)}
    scaled = {"grad_norms": g, "ball_ranges": g, "logit_std": 1 / 4, "ranks": torch.full((100,), 0.2)}
    r = jeat.flatness_ratios(sharp, scaled)
    assert r["gradient"].value == pytest.approx(3.0) and r["gradient"].low > 1
    assert r["per logit std"].value == pytest.approx(0.75) and r["per logit std"].high < 1   # logits 4× larger: scale
    assert r["ε-ball range"].n == 100
    assert "per unit of logit std 0.75" in jeat.flatness_text(r)
    ranks = jeat.landscape_ranks(sharp, scaled)
    assert ranks["rank"].value == pytest.approx(0.8) and ranks["gap"].value == pytest.approx(0.6)
    assert jeat.landscape_ranks(scaled, sharp)["gap"].value == pytest.approx(-0.6)
    assert "minus the adversarially trained model's +0.6" in jeat.ranks_text(ranks)


def test_inception_difference_widens_with_the_splits_spread():
    a, b = {"IS": 8.8, "IS_std": 0.2, "splits": 10}, {"IS": 7.5, "IS_std": 0.1, "splits": 10}
    d = jeat.inception_difference(a, b)
    assert d.value == pytest.approx(1.3) and d.n == 10 and d.low > 0
    half = 2.100922 * math.sqrt((0.04 + 0.01) / 10)          # t(0.975, 18)
    assert d.high - d.value == pytest.approx(half, rel=1e-5)
    noisy = jeat.inception_difference({**a, "IS_std": 3.0}, b)
    assert noisy.low < 0 < noisy.high
    one = jeat.inception_difference({**a, "splits": 1}, b)
    assert one.low == -math.inf and one.high == math.inf     # one split: no spread, no interval
