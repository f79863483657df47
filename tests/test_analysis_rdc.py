"""Chapter 4's analysis: the sweeps and the setting they pick, the T′ trade-off, the cost of
one pass against K passes, the gradient-masking checks and the energy shifts."""
import torch

from robgen_lib.book.analysis import rdc
from robgen_lib.methods.diffusion import Denoiser, DiffusionClassifier


def _robust(rows, threat="linf"):
    """{(setting, threat): robust result} from {setting: (clean, robust)}."""
    return {(s, threat): {"clean_accuracy": c, "robust_accuracy": r} for s, (c, r) in rows.items()}


def test_sweep_keeps_the_order_and_takes_clean_accuracy_from_a_separate_run_where_given():
    results = {**_robust({4: (0.5, 0.0), 16: (0.9, 0.2)}), (4, "l2"): {"clean_accuracy": 0.1, "robust_accuracy": 0.1}}
    sw = rdc.sweep(results)
    assert sw == {"settings": [4, 16], "clean": [0.5, 0.9], "robust": [0.0, 0.2]}
    assert rdc.sweep(results, {4: 0.6, 16: 0.95})["clean"] == [0.6, 0.95]
    assert rdc.percent_curves(sw, "robust") == {"clean": [50.0, 90.0], "robust": [0.0, 20.0]}


def test_best_setting_breaks_a_tie_toward_the_first_setting():
    sw = rdc.sweep(_robust({0.0: (1.0, 0.1), 0.05: (1.0, 0.4), 0.1: (1.0, 0.4), 0.2: (1.0, 0.3)}))
    assert rdc.best_setting(sw) == (0.05, 0.4)
    assert rdc.best_setting(rdc.sweep(_robust({0.1: (1.0, 0.5), 0.2: (1.0, 0.4)}))) == (0.1, 0.5)


def test_timestep_tradeoff_needs_robust_accuracy_to_gain_more_than_clean():
    # clean +0.3, robust +0.1: fewer timesteps cost clean accuracy more than robust accuracy
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.6, 0.0), 8: (0.8, 0.05), 16: (0.9, 0.1)})), 4, 16)
    assert (t["clean_low"], t["robust_high"]) == (0.6, 0.1) and not t["robust_gains_more"]
    t = rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.88, 0.1), 16: (0.9, 0.4)})), 4, 16)
    assert t["robust_gains_more"]
    # robust accuracy that does not rise never counts, however flat clean accuracy is
    assert not rdc.timestep_tradeoff(rdc.sweep(_robust({4: (0.9, 0.2), 16: (0.8, 0.2)})), 4, 16)["robust_gains_more"]


def test_one_pass_cuts_the_evaluations_by_k_with_the_same_logits():
    torch.manual_seed(0)
    den = Denoiser(1, num_classes=3, base=8, multi_head=True).eval()
    multi, single = (DiffusionClassifier(den, 2, one_pass=p) for p in (True, False))
    cost = rdc.head_cost(multi, single, torch.rand(4, 1, 8, 8))
    assert cost[rdc.MULTI_HEAD]["evaluations"] == 2 and cost[rdc.SINGLE_HEAD]["evaluations"] == 6
    saving = rdc.head_savings(cost, num_classes=3)
    assert saving["ratio"] == 3 and saving["same_logits"] and saving["cut_by_k"]
    assert not rdc.head_savings(cost, num_classes=10)["cut_by_k"]


def test_head_savings_refuses_different_logits():
    cost = {rdc.MULTI_HEAD: {"evaluations": 16.0, "ms": 1.0, "logits": torch.zeros(2, 10)},
            rdc.SINGLE_HEAD: {"evaluations": 160.0, "ms": 5.0, "logits": torch.full((2, 10), 1e-3)}}
    saving = rdc.head_savings(cost, 10)
    assert saving["ratio"] == 10 and saving["speedup"] == 5 and not saving["same_logits"] and not saving["cut_by_k"]


def test_a_stronger_attack_that_raises_accuracy_fails_and_one_that_lowers_it_much_is_conditional():
    base = _robust({"RDC": (1.0, 0.5)})
    same = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.45)}), "RDC")
    assert same["holds"]
    lower = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.3)}), "RDC")
    assert not lower["holds"] and lower["only_when"] == \
        "the stronger attack is counted (it lowers accuracy by more than 10 points)"
    higher = rdc.stronger_attack(base, _robust({"RDC": (1.0, 0.6)}), "RDC")
    assert not higher["holds"] and higher["only_when"] is None
    assert rdc.highest_robust_accuracy(_robust({"a": (1.0, 0.0), "b": (1.0, 0.03)}, "huge")) == 0.03


def test_energy_shifts_sign_and_detector():
    clean = torch.linspace(-2.0, -1.0, 20)
    energies = {"PGD": {"clean_energy": clean, "adv_energy": clean - 5.0, "accuracy": 0.1},
                "HE-PGD": {"clean_energy": clean, "adv_energy": clean + 5.0, "accuracy": 0.6}}
    shifts = rdc.energy_shifts(energies)
    assert abs(shifts["PGD"]["shift"] + 5.0) < 1e-6 and shifts["PGD"]["auroc"] == 1.0   # lower energy: caught
    assert abs(shifts["HE-PGD"]["shift"] - 5.0) < 1e-6 and shifts["HE-PGD"]["auroc"] == 0.0
    assert list(rdc.energy_samples(energies)) == ["clean", "PGD", "HE-PGD"]
