"""Chapter 1's analysis: which attack settings lower the energy (and the "reproduced only
when" condition built from them), the detector's operating points, the budget chosen on
held-out energies, AUROC with its interval, and the spread over training seeds."""
import numpy as np
import torch

from robgen_lib.book.analysis import energy
from robgen_lib.core.energy import auroc
from robgen_lib.core.stats import Estimate

CLEAN = torch.linspace(-10.0, -9.0, 50)


def _path(shifts, steps):
    energies = [CLEAN] + [CLEAN + s for s in shifts]
    return {"steps": steps, "energy": energies, "mean_energy": [float(e.mean()) for e in energies],
            "accuracy": [1.0] * len(energies)}


def _sweep(shifts, eps):
    energies = [CLEAN] + [CLEAN + s for s in shifts]
    return {"eps": eps, "energy": energies, "mean_energy": [float(e.mean()) for e in energies]}


def _noisy(shift, seed):
    return CLEAN + shift + 0.1 * torch.randn(len(CLEAN), generator=torch.Generator().manual_seed(seed))


def test_every_setting_lower_puts_the_largest_shift_below_zero():
    path = _path([-0.5, -1.0, -5.0], [-1, 0, 5, 10])     # clean, random start, 5 and 10 steps
    sh = energy.energy_shift(path, _sweep([-1.0, -3.0], [0.0, 0.1, 0.2]), steps=10, hist_steps=5, eps=0.1)
    assert sh["n"] == 4 and sh["n_lower"] == 4 and sh["n_higher"] == 0
    assert sh["largest"].high < 0 and abs(sh["largest"].value + 1.0) < 1e-6     # 5 steps and ε = 0.1 shift by −1
    assert set(sh["by_step"]) == {5, 10} and set(sh["by_eps"]) == {0.1, 0.2}
    assert sh["only_when"] == "the attack is strong enough: >= 5 steps at ε = 0.1, or ε >= 0.1 at 10 steps"


def test_weak_settings_that_raise_the_energy_give_a_condition_and_a_largest_shift_above_zero():
    # 5 steps raise the energy, 10 lower it; the small ε raises it, the large lowers it
    path = {**_path([0.0, 0.0, 0.0], [-1, 0, 5, 10]), "energy": [CLEAN, CLEAN, _noisy(1.0, 1), _noisy(-3.0, 2)]}
    sweep = {**_sweep([0.0, 0.0], [0.0, 0.1, 0.25]), "energy": [CLEAN, _noisy(1.0, 3), _noisy(-3.0, 4)]}
    sh = energy.energy_shift(path, sweep, steps=10, hist_steps=10, eps=0.1)
    assert sh["n_lower"] == 2 and sh["n_higher"] == 2
    assert sh["largest"].low > 0.9 and sh["largest"].n == len(CLEAN) and sh["largest_at"] in ("5 steps", "ε = 0.1")
    assert sh["only_when"] == "the attack is strong enough: >= 10 steps at ε = 0.1, or ε >= 0.25 at 10 steps"


def test_no_condition_when_no_budget_ever_lowers_the_energy():
    path = _path([0.0, +1.0, +2.0], [-1, 0, 5, 10])
    sh = energy.energy_shift(path, _sweep([+1.0, +3.0], [0.0, 0.1, 0.2]), steps=10, hist_steps=10, eps=0.1)
    assert sh["n_lower"] == 0 and sh["only_when"] is None and sh["hist_shift"].low > 0


def test_largest_and_smallest_bound_the_extreme_quantity():
    a, b = Estimate(0.1, -0.2, 0.4, 30, False), Estimate(0.3, 0.1, 0.35, 20, False)
    big, small = energy.largest([a, b]), energy.smallest([a, b])
    assert (big.value, big.low, big.high, big.n) == (0.3, 0.1, 0.4, 20)
    assert (small.value, small.low, small.high) == (0.1, -0.2, 0.35)


def test_operating_points_are_wilson_rates_and_conditions_follow_the_given_test():
    study = {"tpr": [0.99, 0.5], "fpr": [0.005, 0.3], "auroc": [0.99, 0.6]}
    budgets = {"eps": [0.1, 0.3], "TPR": [0.4, 0.995], "FPR": [0.2, 0.0], "AUROC": [0.6, 0.99]}
    op = energy.operating_points(study, budgets, [0.5, 1.0], 1000)
    assert op["index"] == 1 and op["tpr"].n == 1000 and op["tpr"].value == 0.5 and op["fpr"].value == 0.3
    assert op["tpr"].low < 0.5 < op["tpr"].high and op["best_auroc"] == 0.99
    assert set(op["by_temperature"]) == {0.5, 1.0} and op["by_eps"][0.3]["TPR"].value == 0.995
    passes = lambda r: r["TPR"].low > 0.9 and r["FPR"].high < 0.05
    assert energy.conditions(op, passes) == "T is in {0.5} or ε >= 0.3"
    assert energy.conditions(op, lambda r: False) is None


def test_auroc_of_matches_the_rank_definition_with_ties():
    rng = np.random.default_rng(0)
    neg, pos = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)   # many ties
    assert abs(energy.auroc_of(neg, pos) - auroc(neg, pos)) < 1e-12
    batch = energy.auroc_of(np.stack([neg, neg]), np.stack([pos, neg[:30]]))
    assert batch.shape == (2,) and abs(batch[0] - auroc(neg, pos)) < 1e-12
    assert energy.auroc_of([0.0, 1.0], [2.0, 3.0]) == 1.0 and energy.auroc_of([2.0], [1.0]) == 0.0


def test_auroc_estimate_is_paired_and_covers_its_value():
    rng = np.random.default_rng(1)
    clean = rng.normal(0, 1, 200)
    e = energy.auroc_estimate(clean, clean + 1.0 + rng.normal(0, 1, 200))
    assert e.n == 200 and e.low <= e.value <= e.high and 0.6 < e.value < 0.9 and not e.percent
    assert energy.auroc_estimate(clean, clean + 10).low == 1.0


def test_heldout_aurocs_and_the_working_budget():
    sweep = {"eps": [0.0, 0.1, 0.3, 0.5], "energy": [CLEAN, CLEAN + 0.1, CLEAN - 5.0, CLEAN - 5.0]}
    a = energy.heldout_aurocs(sweep)
    assert a["eps"] == [0.1, 0.3, 0.5] and a["AUROC"][0] < 0.5 and a["AUROC"][1] == a["AUROC"][2] == 1.0
    assert energy.working_budget(a) == 0.3                    # a tie goes to the smaller budget


def test_seed_spread_is_the_range_of_tpr_and_the_lowest_auroc():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(100, generator=g)

    def run(tpr, shift):
        return {"tpr": [tpr], "fpr": [0.1], "auroc": [0.7], "test_clean_energy": clean,
                "test_adv_energy": clean - shift + 0.5 * torch.randn(100, generator=g)}

    spread = energy.seed_spread({0: run(0.5, 3.0), 1: run(0.8, 0.5), 2: run(0.6, 3.0)}, 359)
    assert spread["n"] == 3 and abs(spread["spread"] - 0.3) < 1e-12
    assert spread["gap"].low > 0 and spread["highest"].value == round(0.8 * 359) / 359
    low = spread["lowest_auroc"]
    assert low.n == 100 and low.low <= low.value <= low.high and 0.6 < low.value < 0.9   # the seed shifted by 0.5
    close = energy.seed_spread({0: run(0.5, 1.0), 1: run(0.55, 1.0)}, 100)
    assert close["gap"].low < 0 < close["gap"].high


def test_overlap_interval_covers_the_overlap():
    sh = energy.energy_shift(_path([0.0, -0.5, -1.0], [-1, 0, 5, 10]), _sweep([-1.0], [0.0, 0.1]), steps=10,
                             hist_steps=5, eps=0.1)
    assert sh["overlap_ci"].low <= sh["overlap"] <= sh["overlap_ci"].high
    assert abs(sh["shift_ci"].value + 1.0) < 1e-6 and abs(sh["hist_shift"].value + 0.5) < 1e-6
