"""Chapter 3's analysis functions on small hand-made results."""
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


def test_noise_trend_needs_every_score_to_improve_with_sigma():
    better = [(1.0, 9.0), (2.0, 8.0), (3.0, 7.0)]            # IS-style up, FID-style down: both improve
    q = sweep_quality(better, better, [(5.0, 1.0), (5.0, 1.0)])
    t = jeat.noise_trend(q, SIGMAS)
    assert t["all_improve"] and t["rho"][("robust scorer", "fid_style")] == pytest.approx(-1.0)
    mixed = [(1.0, 7.0), (2.0, 8.0), (3.0, 9.0)]             # IS-style up, FID-style worse
    t = jeat.noise_trend(sweep_quality(better, mixed, [(5.0, 1.0), (5.0, 1.0)]), SIGMAS)
    assert not t["all_improve"]
    assert t["only_when"] == "judged by is-style (standard scorer), fid-style (standard scorer), is-style (robust scorer)"
    assert "fid-style (robust scorer) +1.00" in t["text"]


def test_noise_trend_counts_only_significant_correlations_and_leaves_out_saturated_scores():
    sig5 = [0.0, 0.1, 0.2, 0.3, 0.4]
    names = jeat.sweep_names(sig5)
    flat_is = [(9.95 + 0.01 * i, 9.0 - i) for i in range(5)]          # IS-style at its ceiling 10, FID-style down
    noisy = [(1.0, 9.0), (3.0, 8.5), (2.0, 9.1), (4.0, 8.7), (2.5, 9.0)]   # no clear trend
    q = {n: {"a": scores(*flat_is[i]), "b": scores(*noisy[i])} for i, n in enumerate(names)}
    t = jeat.noise_trend(q, sig5, num_classes=10)
    assert t["saturated"] == ["is-style (a)"]
    assert t["improving"] == ["fid-style (a)"] and t["worsening"] == []
    assert t["holds"] is False and t["only_when"] == "judged by fid-style (a)"
    none = {n: {"b": scores(*noisy[i])} for i, n in enumerate(names)}
    assert jeat.noise_trend(none, sig5, num_classes=10)["holds"] is None      # nothing significant: inconclusive


def test_equal_l2_sigma_matches_the_perturbations_norm():
    x = torch.zeros(4, 1, 8, 8)
    x_adv = x + 0.1                                          # every pixel moved by 0.1: ℓ2 norm 0.8 over 64 pixels
    assert jeat.equal_l2_sigma(x, x_adv) == pytest.approx(0.1)


def test_at_least_as_robust_decides_per_seed():
    n = 200
    same = torch.ones(n, dtype=torch.bool)
    worse = same.clone()
    worse[:40] = False                                       # 20 points fewer images robust
    assert jeat.at_least_as_robust({0: same}, {0: same})["holds"] is True
    assert jeat.at_least_as_robust({0: worse}, {0: same})["holds"] is False
    r = jeat.at_least_as_robust({0: same, 1: worse}, {0: same, 1: same})
    assert r["holds"] is False and "over 2 seeds" in r["text"]


def test_flatter_and_sits_high_decide_on_intervals():
    g = torch.linspace(1.0, 2.0, 100)
    sharp = {"grad_norms": 3 * g, "ball_ranges": 3 * g, "logit_std": 1.0, "ranks": torch.full((100,), 0.8)}
    scaled = {"grad_norms": g, "ball_ranges": g, "logit_std": 1 / 4, "ranks": torch.full((100,), 0.2)}
    f = jeat.flatter(sharp, scaled)
    assert f["grad"].low > 1 and f["normalised"].value == pytest.approx(0.75)
    assert f["holds"] is False                               # the sharp model's logits are larger still: scale, not shape
    truly = {**scaled, "logit_std": 1.0}
    assert jeat.flatter(sharp, truly)["holds"] is True
    assert jeat.sits_high(sharp, scaled)["holds"] is True
    assert jeat.sits_high(scaled, sharp)["holds"] is False


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


def test_noise_trend_pools_the_training_seeds_and_reports_their_spread():
    # three seeds that agree make a trend of 9 points; one seed against another leaves it undecided
    up = [(1.0, 9.0), (2.0, 8.0), (3.0, 7.0)]
    at = [(5.0, 1.0), (5.0, 1.0)]
    shifted = [(a + 0.2, b - 0.3) for a, b in up]
    pooled = jeat.noise_trend(sweep_quality(up, up, at), SIGMAS,
                              other_seeds=[sweep_quality(shifted, shifted, at), sweep_quality(up, up, at)])
    assert pooled["holds"] is True and pooled["p"][("standard scorer", "is_style")] < 0.05
    assert pooled["spread"][("robust scorer", "fid_style")] == pytest.approx(0.3)
    assert "× 3 training seeds" in pooled["text"] and "seeds spread ≤ 0.3" in pooled["text"]
    down = [(3.0, 7.0), (2.0, 8.0), (1.0, 9.0)]
    split = jeat.noise_trend(sweep_quality(up, up, at), SIGMAS, other_seeds=[sweep_quality(down, down, at)])
    assert split["holds"] is None


def test_over_seeds_needs_every_training_seed_to_agree():
    def v(holds, better=(), worse=(), only_when=None):
        return {"holds": holds, "better": list(better), "worse": list(worse), "tied": [], "informative": True,
                "text": f"seed text {holds}", "only_when": only_when}

    yes = jeat.over_seeds({0: v(True, "ab"), 1: v(True, "ab"), 2: v(True, "ab")})
    assert yes["holds"] is True and "3 of 3 seeds say yes, 0 no" in yes["text"]
    assert yes["text"].startswith("seed text True; other training seeds: seed 1: better on 2, worse on 0")
    mixed = jeat.over_seeds({0: v(True, "ab"), 1: v(False, "a", "bc"), 2: v(True, "ab")})
    assert mixed["holds"] is None and mixed["only_when"] is None
    no = jeat.over_seeds({0: v(False, "a", "bc", "judged by a"), 1: v(False, "a", "bc", "judged by a")})
    assert no["holds"] is False and no["only_when"] == "judged by a"
    single = jeat.over_seeds({0: v(None)})
    assert single["holds"] is None and single["text"] == "seed text None"
