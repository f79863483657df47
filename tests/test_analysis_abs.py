"""Chapter 5's analysis functions on small hand-made results."""
import math

import pytest
import torch
from torch import nn

from robgen_lib.book.analysis import abs as abs_analysis
from robgen_lib.core.data import Split
from robgen_lib.core.fit import TrainedModel

T = torch.tensor


def test_budget_gain_compares_the_smallest_and_the_largest_budget_with_intervals():
    acc = {(0, 1): 0.5, (0, 8): 0.9, (5, 1): 0.7, (5, 8): 0.8}
    gain = abs_analysis.budget_gain(acc, [0, 5], [1, 8], n_images=359)
    assert (gain["low"], gain["high"]) == ((0, 1), (5, 8))
    assert gain["low_accuracy"].value == pytest.approx(180 / 359) and gain["high_accuracy"].n == 359
    assert gain["gain"].points and gain["gain"].value == pytest.approx((287 - 180) / 359, abs=1e-9)   # 0.8 · 359 → 287 images
    assert gain["gain"].low > 0.15
    small = abs_analysis.budget_gain(acc, [0, 5], [1, 8], n_images=10)["gain"]     # 5/10 vs 8/10: wide
    assert small.low < 0 < small.value < small.high and small.n == 10
    assert abs_analysis.budget_curves(acc, [0, 5], [1, 8]) == {"0 Adam steps": [50.0, 90.0],
                                                              "5 Adam steps": [70.0, 80.0]}


def test_strongest_attack_counts_an_image_robust_only_if_it_survives_every_attack_run_on_it():
    pgd = {("m", "ℓ2"): {"robust": T([True, True, False, False])}}
    decision = {("m", "ℓ2"): {"clean": T([True, True, True, False]), "dist": T([0.2, 0.9, 1.0, 5.0])}}
    r = abs_analysis.strongest_attack(pgd, decision, {"ℓ2": {"norm": "l2", "eps": 0.5}})[("m", "ℓ2")]
    assert r["clean"] == 0.75
    assert r["pgd"] == 0.5
    assert r["decision"] == 0.5        # correct and no adversarial within ε: images 1 and 2
    assert r["worst"] == 0.25          # only image 1
    assert r["worst_correct"].tolist() == [False, True, False, False]
    assert r["latent_correct"] is None and math.isnan(r["latent"]) and "latent" not in r["attacks"]
    assert r["median"] == pytest.approx(0.9)    # over the three correctly classified images
    # latent descent breaks image 1 too: nothing survives every attack
    latent = {("m", "ℓ2"): {"robust": T([True, False, True, True])}}
    r = abs_analysis.strongest_attack(pgd, decision, {"ℓ2": {"eps": 0.5}}, latent)[("m", "ℓ2")]
    assert r["worst"] == 0.0 and r["latent"] == 0.75 and r["attacks"].endswith("latent descent")


def test_strongest_attack_judges_on_the_images_every_attack_saw():
    """PGD on 2 images, the decision-based attack and latent descent on 4: the worst case
    covers the first 2 only (the images all three were run on)."""
    pgd = {("m", "ℓ2"): {"robust": T([True, True])}}
    decision = {("m", "ℓ2"): {"clean": T([True, False, True, True]), "dist": T([1.0, 1.0, 0.1, 1.0])}}
    latent = {("m", "ℓ2"): {"robust": T([True, True, False, False])}}
    r = abs_analysis.strongest_attack(pgd, decision, {"ℓ2": {"eps": 0.5}}, latent)[("m", "ℓ2")]
    assert r["n"] == 2 and r["worst_correct"].tolist() == [True, False] and r["clean"] == 0.5


def test_strongest_attack_median_is_nan_without_a_correct_image():
    pgd = {("m", "ℓ2"): {"robust": T([False])}}
    decision = {("m", "ℓ2"): {"clean": T([False]), "dist": T([0.0])}}
    assert math.isnan(abs_analysis.strongest_attack(pgd, decision, {"ℓ2": {"eps": 0.1}})[("m", "ℓ2")]["median"])


def _flags(rate, n=40, shift=0):
    """Per-image flags of ``n`` images, ``rate`` of them set (rolled by ``shift``)."""
    return (torch.arange(n) < round(rate * n)).roll(shift)


def _rob(rates):
    """{(model, threat): strongest-attack flags} from {(model, threat): (pgd, decision)}."""
    return {k: {"pgd_correct": _flags(p), "decision_correct": _flags(d), "worst_correct": _flags(min(p, d))}
            for k, (p, d) in rates.items()}


def test_decision_excess_measures_every_excess_and_the_control_turned_around():
    rob = _rob({("ABS", "ℓ2"): (0.75, 0.5), ("ABS", "ℓ∞"): (0.5, 0.625), ("E-ABS-style", "ℓ2"): (0.5, 0.25),
                ("E-ABS-style", "ℓ∞"): (0.5, 0.5), ("standard CNN", "ℓ2"): (0.1, 0.9),
                ("standard CNN", "ℓ∞"): (0.0, 0.0)})
    out = abs_analysis.decision_excess(rob, ["ℓ2", "ℓ∞"])
    assert set(out["excess"]) == {"ABS, ℓ2", "ABS, ℓ∞", "E-ABS-style, ℓ2", "E-ABS-style, ℓ∞"}
    assert out["worst"] == "ABS, ℓ2" and out["excess"]["ABS, ℓ2"].value == pytest.approx(0.25)  # tie: model order
    assert out["excess"]["ABS, ℓ∞"].value == pytest.approx(-0.125) and out["excess"]["ABS, ℓ∞"].n == 40
    # the control: decision-based robust minus PGD robust on the undefended CNN (+80 points: a weak attack)
    assert out["control"]["ℓ2"].value == pytest.approx(0.8) and out["control"]["ℓ2"].low > 0.5
    assert out["control"]["ℓ∞"].value == 0 and out["control"]["ℓ∞"].low < 0 < out["control"]["ℓ∞"].high


def test_latent_excess_flags_an_attack_that_breaks_more_than_pgd():
    pgd_ok = torch.ones(100, dtype=torch.bool)
    broken = pgd_ok.clone()
    broken[:30] = False
    robust = {("ABS", "ℓ2"): {"pgd_correct": pgd_ok, "latent_correct": pgd_ok},
              ("ABS", "ℓ∞"): {"pgd_correct": pgd_ok, "latent_correct": broken}}
    out = abs_analysis.latent_excess(robust, ["ℓ2", "ℓ∞"], models=["ABS"])
    assert out["excess"]["ABS, ℓ2"].value == 0 and out["excess"]["ABS, ℓ2"].high < 0.05
    assert out["worst"] == "ABS, ℓ∞" and out["excess"]["ABS, ℓ∞"].low > 0.2


def _worst(rates, n=40):
    """{(model, threat): {"worst_correct": flags}} from {(model, threat): rate}."""
    return {k: {"worst_correct": _flags(r, n)} for k, r in rates.items()}


def test_generative_vs_standard_measures_every_generative_model_against_the_cnn_under_every_threat():
    rob = _worst({("ABS", "ℓ2"): 0.7, ("E-ABS-style", "ℓ2"): 0.8, ("standard CNN", "ℓ2"): 0.2,
                  ("ABS", "ℓ∞"): 0.4, ("E-ABS-style", "ℓ∞"): 0.9, ("standard CNN", "ℓ∞"): 0.4})
    out = abs_analysis.generative_vs_standard(rob, ["ℓ2", "ℓ∞"])
    assert set(out["gaps"]) == {"ABS, ℓ2", "ABS, ℓ∞", "E-ABS-style, ℓ2", "E-ABS-style, ℓ∞"}
    assert out["smallest"] == "ABS, ℓ∞" and out["gaps"]["ABS, ℓ∞"].value == 0   # a tie on the same images
    assert out["gaps"]["E-ABS-style, ℓ2"].value == pytest.approx(0.6) and out["gaps"]["E-ABS-style, ℓ2"].low > 0.4
    assert out["measured"].startswith("ℓ2: ABS 70.0 % [") and "vs CNN 40.0 % [" in out["measured"]


def test_robust_gap_and_floor_compare_on_the_images_both_models_saw():
    rob = {("ABS", "ℓ∞"): {"worst_correct": _flags(0.5, 20)}, ("CNN", "ℓ∞"): {"worst_correct": _flags(0.25, 40)}}
    g = abs_analysis.robust_gap(rob, "ABS", "CNN", "ℓ∞")
    assert g["a"].n == 20 and g["b"].n == 40 and g["gap"].n == 20
    assert g["gap"].value == pytest.approx(0.5 - 10 / 20)   # the CNN's first 20 images: its 10 robust ones
    floor = abs_analysis.above_floor(rob, "ABS", "CNN", "ℓ∞")
    assert floor.n == 20 and floor.value == pytest.approx(0.5)
    at_floor = {("ABS", "ℓ∞"): {"worst_correct": _flags(0.0, 359)}, ("CNN", "ℓ∞"): {"worst_correct": _flags(0.0, 359)}}
    floor = abs_analysis.above_floor(at_floor, "ABS", "CNN", "ℓ∞")
    assert floor.value == 0 and floor.high < 0.02      # 0 % against 0 %: the upper bound stays near 0


def test_per_seed_text_shows_one_value_bare_and_several_by_seed():
    assert abs_analysis.per_seed_text({0: "a"}) == "a"
    assert abs_analysis.per_seed_text({0: "a", 1: "b"}) == "seed 0: a; seed 1: b"


def test_certified_gain_is_paired_on_the_same_images():
    certs = {"a": {"correct": _flags(0.9, 100), "radius": torch.full((100,), 0.5)},
             "b": {"correct": _flags(0.9, 100), "radius": torch.linspace(0.0, 1.0, 100)}}
    g = abs_analysis.certified_gain(certs, "a", "b", 0.25)
    assert g["a"].value == pytest.approx(0.9) and g["b"].value == pytest.approx(0.65)   # radius ≥ 0.25 from image 25
    assert g["gain"].value == pytest.approx(0.25) and g["gain"].low > 0.1 and g["gain"].p_value < 0.001
    tie = abs_analysis.certified_gain(certs, "a", "a", 0.25)["gain"]
    assert tie.value == 0 and tie.low < 0 < tie.high


class Fixed(nn.Module):
    """Predicts the class stored for each image's first pixel value."""

    def __init__(self, label_of: dict):
        super().__init__()
        self.label_of = label_of
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        labels = torch.tensor([self.label_of[round(float(v), 3)] for v in x.flatten(1)[:, 0]])
        return nn.functional.one_hot(labels, 3).float()


def test_morphing_measures_the_judge_only_on_the_fooling_adversarials():
    train = Split(T([[0.0], [0.1], [1.0], [1.1], [2.0], [2.1]]).view(6, 1, 1, 1), T([0, 0, 1, 1, 2, 2]))
    adv = T([[0.05], [1.05], [2.05], [1.0]]).view(4, 1, 1, 1)   # look like classes 0, 1, 2, 1
    y = T([0, 0, 0, 2])
    model = TrainedModel(Fixed({0.05: 0, 1.05: 1, 2.05: 1, 1.0: 1}), {})   # fooled on images 1, 2, 3
    out = abs_analysis.morphing({"m": model}, {"m": adv}, y, train, k=1)["m"]
    assert out["fooled"] == 0.75
    assert out["judge_agrees"] == pytest.approx(2 / 3)   # image 2 looks like a 2 but was called a 1
    unfooled = TrainedModel(Fixed({0.05: 0, 1.05: 0, 2.05: 0, 1.0: 2}), {})
    none = abs_analysis.morphing({"m": unfooled}, {"m": adv}, y, train, k=1)["m"]
    assert none["fooled"] == 0.0 and none["judge_agrees"] == 0.0
    assert str(none["agreement"]) == "undefined (no image fooled)"
    assert out["agreement"].n == 3
    # a model no adversarial fooled leaves the judge's agreement undefined: no gap, and the check says so
    morph = {"m": out, "u": none}
    assert abs_analysis.agreement_gap(morph, "m", "u") is None
    assert abs_analysis.all_fooled(morph, ["m"]) and not abs_analysis.all_fooled(morph, ["m", "u"])
    same = abs_analysis.agreement_gap({"m": out, "n": out}, "m", "n")
    assert same.value == 0 and same.points and same.low < 0 < same.high


def test_ladder_ends_adds_the_error_ratios_of_the_smallest_and_largest_decoders():
    study = {"own": 2.0, "other": 5.0, "noise": 10.0, "margin": 1.0, "accuracy": 0.9}
    results = {(2, 16, "abs"): study, (2, 16, "eabs"): study, (32, 256, "abs"): {**study, "other": 3.0},
               (32, 256, "eabs"): {**study, "margin": 2.0}}
    ends = abs_analysis.ladder_ends(results, [(2, 16), (32, 256)])
    assert (ends["small"], ends["large"]) == ((2, 16), (32, 256))
    assert ends["abs_small"]["other_own"] == 2.5 and ends["abs_small"]["noise_own"] == 5.0
    assert ends["abs_large"]["other_own"] == 1.5
    assert ends["eabs_large"]["margin"] == 2.0
    panels = abs_analysis.ladder_panels(results, [(2, 16), (32, 256)])
    assert panels["x"] == ["2/16", "32/256"]
    assert panels["data"]["other / own error"]["ABS"] == [2.5, 1.5]
    assert panels["data"]["class margin"]["E-ABS-style"] == [1.0, 2.0]


def test_certified_helpers_count_correct_certificates_at_a_radius():
    certs = {"a": {"correct": T([True, True, False, True]), "radius": T([0.0, 0.3, 0.5, 0.1]),
                   "label": T([1, 2, -1, 0])}}
    assert abs_analysis.radius_grid(0.5, points=3) == [0.0, 0.25, 0.5]
    assert abs_analysis.certified_at(certs, 0.25) == {"a": 0.25}
    assert abs_analysis.certified_curves(certs, [0.0, 0.1]) == {"a": [75.0, 50.0]}
    assert "25.0 %" in abs_analysis.certified_table(certs, [0.0]).data   # abstained: label −1


def test_best_metric_is_chosen_on_held_out_results_and_prefers_the_first_on_a_tie():
    heldout = {"a": {"robust_accuracy": 0.5}, "b": {"robust_accuracy": 0.5}, "c": {"robust_accuracy": 0.4}}
    assert abs_analysis.best_metric(heldout, ("a", "b", "c")) == "a"
    assert abs_analysis.best_metric(heldout, ("c", "b")) == "b"


def test_clean_gap_and_similarity_results():
    clean = {"pixels": 0.9, "features": 0.95}
    d = abs_analysis.clean_gap(clean, "features", "pixels", 359)
    assert d.points and d.value == pytest.approx(round(0.95 * 359) / 359 - round(0.9 * 359) / 359) and d.n == 359
    assert d.low < d.value < d.high
    robust = {("pixels", "ℓ2"): {"robust_accuracy": 0.7}, ("features", "ℓ2"): {"robust_accuracy": 0.8}}
    sims = abs_analysis.similarity_results(clean, robust, {"features": {"robust_accuracy": 0.75}},
                                           {("pixels", "ℓ2"): {"worst": 0.6}})
    assert sims["features"]["heldout"] == 0.75 and math.isnan(sims["pixels"]["heldout"])
    assert sims["pixels"]["worst"] == 0.6 and math.isnan(sims["features"]["worst"]) and sims["features"]["ℓ2"] == 0.8
    assert "–" in abs_analysis.similarity_table(sims).data


def test_first_of_each_class_skips_a_missing_class_and_keeps_at_most_n():
    split = Split(torch.arange(6.0).view(6, 1, 1, 1), T([2, 0, 2, 0, 1, 1]))
    assert abs_analysis.first_of_each_class(split, 4, n=8).flatten().tolist() == [1.0, 4.0, 0.0]
    assert abs_analysis.first_of_each_class(split, 3, n=2).flatten().tolist() == [1.0, 4.0]


def _study(own, other, margin, accuracy=0.9):
    return {"own_each": own, "other_each": other, "margin_each": margin, "accuracy": accuracy}


def test_ladder_shrinks_and_margin_restored_decide_on_paired_intervals():
    g = torch.Generator().manual_seed(0)
    own = 1 + torch.rand(200, generator=g)
    small = _study(own, 3 * own, 2 + torch.rand(200, generator=g))
    large = _study(own, 2 * own, small["margin_each"] - 0.5)    # others explained better, margin smaller
    results = {(2, 16, "abs"): small, (32, 256, "abs"): large,
               (32, 256, "eabs"): _study(own, 2 * own, large["margin_each"] + 0.3)}
    s = abs_analysis.ladder_shrinks(results, [(2, 16), (32, 256)])
    assert s["other/own"].value == pytest.approx(-1.0) and s["other/own"].high < 0
    assert s["margin"].value == pytest.approx(-0.5) and s["margin"].high < 0 and s["margin"].n == 200
    grows = abs_analysis.ladder_shrinks({(2, 16, "abs"): large, (32, 256, "abs"): small}, [(2, 16), (32, 256)])
    assert grows["other/own"].low > 0 and grows["margin"].low > 0
    r = abs_analysis.margin_restored(results, (32, 256))
    assert r["gap"].value == pytest.approx(0.3) and r["gap"].low > 0.2 and r["abs_accuracy"].n == 200


def test_error_ratio_is_a_ratio_of_means_with_a_bootstrap_interval():
    g = torch.Generator().manual_seed(0)
    own = 1 + torch.rand(300, generator=g)
    r = abs_analysis.error_ratio({"own_each": own, "other_each": 1.1 * own})
    assert r.value == pytest.approx(1.1) and not r.percent and r.n == 300
    noisy = abs_analysis.error_ratio({"own_each": own, "other_each": own + torch.rand(300, generator=g)})
    assert noisy.low < noisy.value < noisy.high


def test_ood_separation_measures_each_models_auroc_and_their_gap():
    import torch

    from robgen_lib.book.analysis.abs import ood_separation

    g = torch.Generator().manual_seed(0)
    inside_good, outside_good = torch.randn(200, 3, generator=g) + 3, torch.randn(200, 3, generator=g)
    inside_bad, outside_bad = torch.randn(200, 3, generator=g), torch.randn(200, 3, generator=g)
    s = ood_separation({"good": inside_good, "bad": inside_bad}, {"good": outside_good, "bad": outside_bad})
    assert s["auroc"]["good"].low > 0.95 and s["auroc"]["bad"].low < 0.5 < s["auroc"]["bad"].high
    assert s["gap"].low > 0.3 and s["n"] == 200
    assert s["lowest"] is s["auroc"]["bad"]
    with pytest.raises(ValueError, match="same size"):
        ood_separation({"a": inside_good}, {"a": outside_good[:10]})
