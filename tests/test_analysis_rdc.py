"""Chapter 4's analysis: the sweeps and the setting they pick, the T′ trade-off, the cost of
one pass against K passes, the gradient-masking checks and the energy shifts."""
import pytest
import torch

from robgen_lib.book.analysis import rdc
from robgen_lib.book.judge import Outcome, Seeds
from robgen_lib.methods.diffusion import Denoiser, DiffusionClassifier


def _flags(rate, n=100):
    """Per-image correctness of ``n`` images, the first ``rate`` of them right."""
    return torch.arange(n) < round(rate * n)


def _robust(rows, threat="linf", n=100):
    """{(setting, threat): robust result} from {setting: (clean, robust)}, on ``n`` images."""
    return {(s, threat): {"clean_accuracy": c, "robust_accuracy": r, "clean": _flags(c, n), "robust": _flags(r, n)}
            for s, (c, r) in rows.items()}


def test_sweep_keeps_the_order_and_takes_clean_accuracy_from_a_separate_run_where_given():
    results = {**_robust({4: (0.5, 0.0), 16: (0.9, 0.2)}), **_robust({4: (0.1, 0.1)}, "l2")}
    sw = rdc.sweep(results)
    assert {k: sw[k] for k in ("settings", "clean", "robust")} == {"settings": [4, 16], "clean": [0.5, 0.9],
                                                                  "robust": [0.0, 0.2]}
    assert [int(c.sum()) for c in sw["correct"]] == [0, 20]
    assert rdc.sweep(results, {4: 0.6, 16: 0.95})["clean"] == [0.6, 0.95]
    assert rdc.percent_curves(sw, "robust") == {"clean": [50.0, 90.0], "robust": [0.0, 20.0]}


def verdict_of(claim_id, evidence, checks=None, **knobs):
    """The word chapter 4's declared claim gets on ``evidence`` under the book's rule."""
    from robgen_lib.book.claims import claims_of
    from robgen_lib.book.judge import judge

    return judge(claims_of("rdc")[claim_id], evidence, "m", checks=checks, knobs=knobs)[0].status


VALID = {"rdc-stand-in": Outcome(True)}


def test_a_peak_needs_every_other_setting_beaten_and_a_tie_is_no_peak():
    sw = rdc.sweep(_robust({0.0: (1.0, 0.1), 0.05: (1.0, 0.2), 0.1: (1.0, 0.6), 0.2: (1.0, 0.3)}))
    assert set(rdc.peak_at(sw, 0.1)["ahead"]) == {0.0, 0.05, 0.2}
    assert verdict_of("rdc-eta-peak", rdc.peak_at(sw, 0.1)["ahead"], VALID) == "reproduced"
    assert verdict_of("rdc-eta-peak", rdc.peak_at(sw, 0.2)["ahead"], VALID) == "not reproduced"   # 0.1 is better
    results = _robust({0.0: (1.0, 0.1), 0.1: (1.0, 0.4), 0.2: (1.0, 0.4)}, n=32)    # 13 of 32 each ...
    results[0.2, "linf"]["robust"] = results[0.2, "linf"]["robust"].roll(8)          # ... on partly other images
    peak = rdc.peak_at(rdc.sweep(results), 0.1)
    assert verdict_of("rdc-eta-peak", peak["ahead"], VALID) == "inconclusive"
    assert peak["best"] == 0.1 and peak["runner_up"] == 0.2


def test_timestep_tradeoff_measures_paired_changes_of_robust_and_clean_accuracy():
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.88, 0.1), 16: (0.9, 0.4)}, n=400)), 4, 16)
    assert abs(t["gain"].value - 0.3) < 1e-9 and abs(t["clean_change"].value - 0.02) < 1e-9 and t["gain"].n == 400
    evidence = {"robust gain": t["gain"], "clean change": t["clean_change"]}
    assert verdict_of("rdc-timesteps", evidence, VALID) == "reproduced"
    # clean accuracy moving by 30 points is not "barely"
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.6, 0.0), 16: (0.9, 0.1)}, n=400)), 4, 16)
    assert verdict_of("rdc-timesteps", {"robust gain": t["gain"], "clean change": t["clean_change"]}, VALID) \
        == "not reproduced"
    # no stand-in, no verdict
    assert verdict_of("rdc-timesteps", evidence, {"rdc-stand-in": Outcome(False)}).startswith("not informative")


def test_head_cost_counts_one_pass_per_class_on_a_single_head_denoiser():
    torch.manual_seed(0)
    multi = DiffusionClassifier(Denoiser(1, num_classes=3, base=8, multi_head=True).eval(), 2)
    single = DiffusionClassifier(Denoiser(1, num_classes=3, base=8, multi_head=False).eval(), 2)
    cost = rdc.head_cost(multi, single, torch.rand(4, 1, 8, 8))
    assert cost[rdc.MULTI_HEAD]["evaluations"] == 2 and cost[rdc.SINGLE_HEAD]["evaluations"] == 6


def test_head_savings_measure_the_ratio_and_the_paired_clean_difference():
    cost = {rdc.MULTI_HEAD: {"evaluations": 16.0, "ms": 1.0}, rdc.SINGLE_HEAD: {"evaluations": 160.0, "ms": 5.0}}
    right = torch.ones(400, dtype=torch.bool)
    robust = {(rdc.MULTI_HEAD, "linf"): {"robust": right[:32]}, (rdc.SINGLE_HEAD, "linf"): {"robust": right[:32]}}
    same = rdc.head_savings(cost, {rdc.MULTI_HEAD: right, rdc.SINGLE_HEAD: right}, robust, 10)
    assert same["ratio"] == 10 and same["speedup"] == 5 and same["ratio_is_k"] and same["clean"].value == 0
    assert not rdc.head_savings(cost, {rdc.MULTI_HEAD: right, rdc.SINGLE_HEAD: right}, robust, 3)["ratio_is_k"]
    worse = right.clone()
    worse[:80] = False                                       # the multi-head model 20 points less accurate
    assert rdc.head_savings(cost, {rdc.MULTI_HEAD: worse, rdc.SINGLE_HEAD: right}, robust, 10)["clean"].value == pytest.approx(-0.2)
    # a comparison of two trainings needs three seeds
    evidence = {"K times fewer": True, "clean accuracy": same["clean"]}
    assert verdict_of("rdc-heads", evidence, {"rdc-same-training": Outcome(True)}) == \
        "not informative (one training seed; the rule needs 3)"
    assert verdict_of("rdc-heads", Seeds({s: evidence for s in range(3)}), {"rdc-same-training": Outcome(True)}) \
        == "reproduced"


def test_robust_gap_compares_models_on_the_images_they_share():
    a = {"robust": torch.tensor([True] * 64)}
    b = {"robust": torch.tensor([False] * 64 + [True] * 295)}  # attacked on every image; the first 64 broken
    g = rdc.robust_gap({("A", "linf"): a, ("B", "linf"): b}, "A", "B")
    assert g["gap"].n == 64 and g["gap"].value == 1.0 and g["b"].n == 359


def test_the_worst_case_counts_an_image_robust_only_if_every_attack_failed():
    own = _robust({"RDC": (1.0, 0.6)}, n=64)
    independent = {("RDC", "linf"): {"square": torch.arange(64) % 2 == 0}}   # the independent attacks break half
    w = rdc.worst_cases(own, independent)[("RDC", "linf")]
    assert w["n"] == 64 and int(w["robust"].sum()) == int((own["RDC", "linf"]["robust"] & (torch.arange(64) % 2 == 0)).sum())
    assert bool((w["robust"] <= w["own_robust"]).all())
    assert rdc.worst_cases(own, {}) == {}                                     # a model the others did not attack


def test_a_stronger_attack_is_judged_within_its_band_and_not_at_the_floor():
    base = _robust({"RDC": (1.0, 0.5)}, n=400)
    same = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.48)}, n=400), "RDC")
    floor_ok = {**VALID, "rdc-floor-rdc": Outcome(True)}
    assert verdict_of("rdc-stronger-rdc", same["drop"], floor_ok) == "reproduced"
    lower = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.2)}, n=400), "RDC")
    assert lower["drop"].value > 0.25 and verdict_of("rdc-stronger-rdc", lower["drop"], floor_ok) == "not reproduced"
    zero = rdc.stronger_attack(_robust({"DC": (1.0, 0.0)}), _robust({"DC": (1.0, 0.0)}), "DC")
    assert verdict_of("rdc-floor-dc", zero["base"].value > 0) == "failed"
    assert verdict_of("rdc-stronger-dc", zero["drop"], {**VALID, "rdc-floor-dc": Outcome(False)}).startswith(
        "not informative (prerequisite rdc-floor-dc failed")
    # 64 images cannot fit a paired interval inside ±10 points
    few = rdc.stronger_attack(_robust({"RDC": (1.0, 0.5)}, n=64), _robust({"RDC": (1.0, 0.45)}, n=64), "RDC")
    few_strong = _robust({"RDC": (1.0, 0.45)}, n=64)
    few_strong["RDC", "linf"]["robust"] = few_strong["RDC", "linf"]["robust"].roll(20)
    few = rdc.stronger_attack(_robust({"RDC": (1.0, 0.5)}, n=64), few_strong, "RDC")
    assert "too small" in verdict_of("rdc-stronger-rdc", few["drop"], floor_ok)


def test_near_zero_and_agreeing_gradients_decide_on_intervals():
    assert verdict_of("rdc-huge-budget", rdc.rates(_robust({"a": (1.0, 0.0), "b": (1.0, 0.01)}, "huge", n=200))) \
        == "holds"
    assert verdict_of("rdc-huge-budget", rdc.rates(_robust({"a": (1.0, 0.0)}, "huge", n=20))) == "inconclusive"
    assert verdict_of("rdc-huge-budget", rdc.rates(_robust({"a": (1.0, 0.5)}, "huge", n=100))) == "does not hold"
    few = {**_robust({"bpda": (1.0, 0.0)}, n=16), **_robust({"exact": (1.0, 0.0)}, n=16)}
    assert verdict_of("rdc-bpda-exact", rdc.gradients_agree(few)["difference"]) == \
        "not informative (n = 16 is too small for a ±10-point bar)"
    many = {**_robust({"bpda": (1.0, 0.50)}, n=1000), **_robust({"exact": (1.0, 0.51)}, n=1000)}
    assert verdict_of("rdc-bpda-exact", rdc.gradients_agree(many)["difference"]) == "reproduced"


def test_a_gap_is_judged_paired_in_three_ways_and_needs_its_seeds():
    res = {**_robust({"RDC": (1.0, 0.6)}), **_robust({"DC": (1.0, 0.2)})}
    assert verdict_of("rdc-lm-gain", rdc.robust_gap(res, "RDC", "DC")["gap"], VALID) == "reproduced"
    assert verdict_of("rdc-lm-gain", rdc.robust_gap(res, "DC", "RDC")["gap"], VALID) == "not reproduced"
    close = {**_robust({"RDC": (1.0, 0.25)}, n=32), **_robust({"DC": (1.0, 0.2)}, n=32)}
    assert verdict_of("rdc-lm-gain", rdc.robust_gap(close, "RDC", "DC")["gap"], VALID) == "inconclusive"
    assert verdict_of("rdc-vs-at", rdc.robust_gap(res, "RDC", "DC")["gap"], VALID).startswith("not informative (one")


def test_energy_shifts_sign_and_detector():
    clean = torch.linspace(-2.0, -1.0, 20)
    energies = {"PGD": {"clean_energy": clean, "adv_energy": clean - 5.0, "accuracy": 0.1},
                "HE-PGD": {"clean_energy": clean, "adv_energy": clean + 5.0, "accuracy": 0.6}}
    shifts = rdc.energy_shifts(energies)
    r = rdc.energy_reversal(energies, "PGD", "HE-PGD")
    assert r["pgd_shift"].value == -5.0 and r["raise_back"].value == 10.0
    back = rdc.energy_reversal(energies, "HE-PGD", "PGD")
    assert verdict_of("rdc-energy-reversal", {"PGD lowers": r["pgd_shift"], "HE-PGD raises back": r["raise_back"]}) \
        == "holds"
    assert verdict_of("rdc-energy-reversal", {"PGD lowers": back["pgd_shift"],
                                              "HE-PGD raises back": back["raise_back"]}) == "does not hold"
    assert abs(shifts["PGD"]["shift"] + 5.0) < 1e-6 and shifts["PGD"]["auroc"] == 1.0   # lower energy: caught
    assert abs(shifts["HE-PGD"]["shift"] - 5.0) < 1e-6 and shifts["HE-PGD"]["auroc"] == 0.0
    assert list(rdc.energy_samples(energies)) == ["clean", "PGD", "HE-PGD"]


def test_a_diffusion_classifier_is_a_valid_stand_in_only_when_its_clean_interval_clears_the_bar():
    def check(dc, rdc_acc, n, bar):
        return verdict_of("rdc-stand-in", rdc.clean_rates({"diffusion classifier": dc, "RDC": rdc_acc}, n),
                          dc_min_clean=bar)

    assert check(0.995, 0.999, 1000, 0.95) == "passed"               # [99.0, 99.8] well above 95
    assert check(0.985, 0.99, 500, 0.98) == "inconclusive"           # [96.9, 99.3] straddles 98
    assert check(0.90, 0.99, 500, 0.98) == "failed"                  # one weak model is enough
    assert check(0.995, 0.999, 1000, 0.98) == "inconclusive (near the bar)"   # lower bound 99.0: within 2 points
    assert rdc.clean_rates({"a": 0.9}, 500)["a"].n == 500
