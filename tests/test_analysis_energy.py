"""Chapter 1's analysis: which attack settings count as lowering the energy, and when the
verdict's "reproduced only when" condition is offered."""
import torch

from robgen_lib.book.analysis import energy

CLEAN = torch.linspace(-10.0, -9.0, 50)


def _path(shifts, steps):
    energies = [CLEAN] + [CLEAN + s for s in shifts]
    return {"steps": steps, "energy": energies, "mean_energy": [float(e.mean()) for e in energies],
            "accuracy": [1.0] * len(energies)}


def _sweep(shifts, eps):
    energies = [CLEAN] + [CLEAN + s for s in shifts]
    return {"eps": eps, "energy": energies, "mean_energy": [float(e.mean()) for e in energies]}


def test_every_setting_lower_reproduces_and_needs_no_condition():
    path = _path([-0.5, -1.0, -5.0], [-1, 0, 5, 10])     # clean, random start, 5 and 10 steps
    sh = energy.energy_shift(path, _sweep([-1.0, -3.0], [0.0, 0.1, 0.2]), steps=10, hist_steps=5, eps=0.1)
    assert sh["all_lower"] and sh["n"] == 4 and sh["n_lower"] == 4 and sh["n_higher"] == 0
    assert sh["only_when"] is None or "strong enough" in sh["only_when"]


def test_weak_settings_that_raise_the_energy_give_a_condition_not_a_pass():
    # 5 steps raise the energy, 10 lower it; the small ε raises it, the large lowers it
    path = _path([0.0, +1.0, -3.0], [-1, 0, 5, 10])
    sh = energy.energy_shift(path, _sweep([+1.0, -3.0], [0.0, 0.1, 0.25]), steps=10, hist_steps=10, eps=0.1)
    assert not sh["all_lower"] and sh["n_lower"] == 2 and sh["n_higher"] == 2
    assert sh["only_when"] == "the attack is strong enough: >= 10 steps at ε = 0.1, or ε >= 0.25 at 10 steps"


def test_no_condition_when_no_budget_ever_lowers_the_energy():
    path = _path([0.0, +1.0, +2.0], [-1, 0, 5, 10])
    sh = energy.energy_shift(path, _sweep([+1.0, +3.0], [0.0, 0.1, 0.2]), steps=10, hist_steps=10, eps=0.1)
    assert sh["n_lower"] == 0 and sh["only_when"] is None and not sh["hist_lower"]


def test_the_detector_bar_is_decided_on_intervals_and_where_it_is_met():
    assert energy.detects(0.99, 0.01, 1000) is True
    assert energy.detects(0.9, 0.05, 359) is None              # at the bar: the intervals straddle it
    assert energy.detects(0.5, 0.01, 359) is False and energy.detects(0.99, 0.3, 359) is False
    study = {"tpr": [0.99, 0.5], "fpr": [0.005, 0.3], "auroc": [0.99, 0.6]}
    budgets = {"eps": [0.1, 0.3], "TPR": [0.4, 0.995], "FPR": [0.2, 0.0], "AUROC": [0.6, 0.99]}
    op = energy.operating_points(study, budgets, [0.5, 1.0], 1000)
    assert op["passes"] is False and op["index"] == 1 and op["only_when"] == "T is in {0.5} or ε >= 0.3"
    assert op["tpr"].n == 1000 and op["tpr"].value == 0.5


def test_seed_spread_is_the_range_of_tpr_and_moves_only_beyond_its_noise():
    runs = {s: {"tpr": [t], "fpr": [0.1], "auroc": [0.7]} for s, t in enumerate([0.5, 0.8, 0.6])}
    spread = energy.seed_spread(runs, 359)
    assert spread["n"] == 3 and abs(spread["spread"] - 0.3) < 1e-12 and spread["moves"] is True
    close = {s: {"tpr": [t], "fpr": [0.1], "auroc": [0.7]} for s, t in enumerate([0.5, 0.55])}
    assert energy.seed_spread(close, 100)["moves"] is None
    assert not spread["works"] and energy.seed_spread({0: {"tpr": [0.9], "fpr": [0.1], "auroc": [0.95]}}, 9)["works"]


def test_overlap_interval_covers_the_overlap():
    sh = energy.energy_shift(_path([0.0, -0.5, -1.0], [-1, 0, 5, 10]), _sweep([-1.0], [0.0, 0.1]), steps=10,
                             hist_steps=5, eps=0.1)
    assert sh["overlap_ci"].low <= sh["overlap"] <= sh["overlap_ci"].high
    assert abs(sh["shift_ci"].value + 1.0) < 1e-6


def test_working_budget_is_the_epsilon_of_the_best_auroc():
    budgets = {"eps": [0.1, 0.3, 0.5], "AUROC": [0.6, 0.95, 0.95], "TPR": [0, 0, 0], "FPR": [0, 0, 0]}
    assert energy.working_budget(budgets) == 0.3             # a tie goes to the smaller budget
