"""Chapter 4's analysis: the sweeps and the setting they pick, the T′ trade-off, the cost of
one pass against K passes, the gradient-masking checks and the energy shifts."""
import torch

from robgen_lib.book.analysis import rdc
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


def test_a_peak_needs_every_other_setting_beaten_and_a_tie_is_no_peak():
    sw = rdc.sweep(_robust({0.0: (1.0, 0.1), 0.05: (1.0, 0.2), 0.1: (1.0, 0.6), 0.2: (1.0, 0.3)}))
    assert rdc.peak_at(sw, 0.1)["holds"] is True
    assert rdc.peak_at(sw, 0.2)["holds"] is False                       # 0.1 is significantly better
    results = _robust({0.0: (1.0, 0.1), 0.1: (1.0, 0.4), 0.2: (1.0, 0.4)}, n=32)    # 13 of 32 each ...
    results[0.2, "linf"]["robust"] = results[0.2, "linf"]["robust"].roll(8)          # ... on partly other images
    peak = rdc.peak_at(rdc.sweep(results), 0.1)
    assert peak["holds"] is None and peak["best"] == 0.1 and peak["runner_up"] == 0.2


def test_timestep_tradeoff_needs_robust_accuracy_to_gain_more_than_clean():
    # clean +0.3, robust +0.1: fewer timesteps cost clean accuracy more than robust accuracy
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.6, 0.0), 8: (0.8, 0.05), 16: (0.9, 0.1)})), 4, 16)
    assert (t["clean_low"], t["robust_high"]) == (0.6, 0.1) and t["robust_gains_more"] is False
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.88, 0.1), 16: (0.9, 0.4)})), 4, 16)
    assert t["robust_gains_more"] is True
    # robust accuracy that does not rise never counts for the claim, however flat clean accuracy is (a tie)
    assert rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.9, 0.2), 16: (0.8, 0.2)})), 4, 16)["robust_gains_more"] \
        is None
    assert rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.9, 0.5), 16: (0.8, 0.2)})), 4, 16)["robust_gains_more"] \
        is False
    # a small gain on few images is undecided
    small = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.9, 0.1), 16: (0.9, 0.15)}, n=20)), 4, 16)
    assert small["robust_gains_more"] is None


def test_head_cost_counts_one_pass_per_class_on_a_single_head_denoiser():
    torch.manual_seed(0)
    multi = DiffusionClassifier(Denoiser(1, num_classes=3, base=8, multi_head=True).eval(), 2)
    single = DiffusionClassifier(Denoiser(1, num_classes=3, base=8, multi_head=False).eval(), 2)
    cost = rdc.head_cost(multi, single, torch.rand(4, 1, 8, 8))
    assert cost[rdc.MULTI_HEAD]["evaluations"] == 2 and cost[rdc.SINGLE_HEAD]["evaluations"] == 6


def test_head_savings_need_k_times_fewer_evaluations_and_the_same_clean_accuracy():
    cost = {rdc.MULTI_HEAD: {"evaluations": 16.0, "ms": 1.0}, rdc.SINGLE_HEAD: {"evaluations": 160.0, "ms": 5.0}}
    right = torch.ones(400, dtype=torch.bool)
    robust = {(rdc.MULTI_HEAD, "linf"): {"robust": right[:32]}, (rdc.SINGLE_HEAD, "linf"): {"robust": right[:32]}}
    same = rdc.head_savings(cost, {rdc.MULTI_HEAD: right, rdc.SINGLE_HEAD: right}, robust, 10)
    assert same["ratio"] == 10 and same["speedup"] == 5 and same["holds"] is True
    worse = right.clone()
    worse[:80] = False                                       # the multi-head model 20 points less accurate
    assert rdc.head_savings(cost, {rdc.MULTI_HEAD: worse, rdc.SINGLE_HEAD: right}, robust, 10)["holds"] is False
    assert rdc.head_savings(cost, {rdc.MULTI_HEAD: right, rdc.SINGLE_HEAD: right}, robust, 3)["holds"] is False


def test_robust_gap_compares_models_on_the_images_they_share():
    a = {"robust": torch.tensor([True] * 64)}
    b = {"robust": torch.tensor([False] * 64 + [True] * 295)}  # attacked on every image; the first 64 broken
    g = rdc.robust_gap({("A", "linf"): a, ("B", "linf"): b}, "A", "B")
    assert g["gap"].n == 64 and g["gap"].value == 1.0 and g["b"].n == 359


def test_a_stronger_attack_within_tolerance_holds_a_large_drop_is_conditional_and_zero_tests_nothing():
    base = _robust({"RDC": (1.0, 0.5)}, n=400)
    same = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.48)}, n=400), "RDC")
    assert same["holds"] is True and same["informative"]
    lower = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.2)}, n=400), "RDC")
    assert lower["holds"] is False and lower["only_when"] == \
        "the stronger attack is counted (it lowers accuracy by more than 10 points)"
    higher = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.8)}, n=400), "RDC")
    assert higher["holds"] is False and higher["only_when"] is None
    zero = rdc.stronger_attack(_robust({"DC": (1.0, 0.0)}), _robust({"DC": (1.0, 0.0)}), "DC")
    assert not zero["informative"]


def test_near_zero_and_agreeing_gradients_decide_on_intervals():
    assert rdc.near_zero(_robust({"a": (1.0, 0.0), "b": (1.0, 0.01)}, "huge", n=200))["holds"] is True
    assert rdc.near_zero(_robust({"a": (1.0, 0.0)}, "huge", n=20))["holds"] is None        # 0/20: upper bound 16 %
    assert rdc.near_zero(_robust({"a": (1.0, 0.5)}, "huge", n=100))["holds"] is False
    few = {**_robust({"bpda": (1.0, 0.09)}, n=32), **_robust({"exact": (1.0, 0.125)}, n=32)}
    few["exact", "linf"]["robust"] = few["exact", "linf"]["robust"].flip(0)     # right on other images: 7 discordant
    assert rdc.gradients_agree(few)["holds"] is None
    many = {**_robust({"bpda": (1.0, 0.50)}, n=1000), **_robust({"exact": (1.0, 0.51)}, n=1000)}
    assert rdc.gradients_agree(many)["holds"] is True


def test_robust_gap_is_paired_and_three_valued():
    res = {**_robust({"RDC": (1.0, 0.6)}), **_robust({"AT": (1.0, 0.2)})}
    assert rdc.robust_gap(res, "RDC", "AT")["holds"] is True
    assert rdc.robust_gap(res, "AT", "RDC")["holds"] is False
    close = {**_robust({"RDC": (1.0, 0.25)}, n=32), **_robust({"AT": (1.0, 0.2)}, n=32)}
    assert rdc.robust_gap(close, "RDC", "AT")["holds"] is None


def test_energy_shifts_sign_and_detector():
    clean = torch.linspace(-2.0, -1.0, 20)
    energies = {"PGD": {"clean_energy": clean, "adv_energy": clean - 5.0, "accuracy": 0.1},
                "HE-PGD": {"clean_energy": clean, "adv_energy": clean + 5.0, "accuracy": 0.6}}
    shifts = rdc.energy_shifts(energies)
    assert rdc.energy_reversal(energies, "PGD", "HE-PGD")["holds"] is True
    assert rdc.energy_reversal(energies, "HE-PGD", "PGD")["holds"] is False
    assert abs(shifts["PGD"]["shift"] + 5.0) < 1e-6 and shifts["PGD"]["auroc"] == 1.0   # lower energy: caught
    assert abs(shifts["HE-PGD"]["shift"] - 5.0) < 1e-6 and shifts["HE-PGD"]["auroc"] == 0.0
    assert list(rdc.energy_samples(energies)) == ["clean", "PGD", "HE-PGD"]


def test_a_diffusion_classifier_is_a_valid_stand_in_only_when_its_clean_interval_clears_the_bar():
    assert rdc.valid_stand_in(0.995, 1000, 0.98)["holds"] is True          # [99.0, 99.8] above 98
    assert rdc.valid_stand_in(0.985, 500, 0.98)["holds"] is None           # [96.9, 99.3] straddles it
    weak = rdc.valid_stand_in(0.90, 500, 0.98)
    assert weak["holds"] is False and weak["clean"].n == 500 and weak["clean"].value == 0.9
