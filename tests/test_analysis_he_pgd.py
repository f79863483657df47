"""Chapter 2's analysis: energy shape of an attack, the λ sweep's choice, and detection reports."""
import torch

from robgen_lib.book.analysis import he_pgd


def test_energy_shape_measures_the_shift_after_the_asked_step():
    clean = torch.linspace(0.0, 1.0, 100)
    path = {"steps": [-1, 0, 10], "energy": [clean, clean, clean - 5.0], "mean_energy": [0.5, 0.5, -4.5]}
    s = he_pgd.energy_shape(path, 10)
    assert s["shift"] == -5.0 and s["overlap"] == 0.0 and s["ks"] == 1.0
    assert he_pgd.energy_shape(path, 0)["overlap"] == 1.0


def test_lambda_sweep_and_the_point_closest_to_the_data():
    r = lambda shift, acc: {"clean_energy": torch.zeros(4), "adv_energy": torch.full((4,), shift), "accuracy": acc}
    pts = he_pgd.lambda_sweep({0.0: r(-3.0, 0.0), 1.0: r(0.5, 0.1), 2.0: r(-0.25, 0.4)})
    assert [p[2] for p in pts] == ["λ=0", "λ=1", "λ=2"] and pts[1][1] == 0.9
    assert he_pgd.closest_to_data(pts)[2] == "λ=2"


def test_detectors_fitted_on_held_out_energies_catch_a_shift_both_ways():
    g = torch.Generator().manual_seed(0)
    clean = torch.randn(400, generator=g)
    held = {"clean_energy": clean, "adv_energy": clean - 4.0}
    dets = {"m": he_pgd.fit_detectors(held)}
    attacked = {("m", "down"): {"clean_energy": clean, "adv_energy": clean - 4.0, "accuracy": 0.0},
                ("m", "up"): {"clean_energy": clean, "adv_energy": clean + 4.0, "accuracy": 0.0}}
    rep = he_pgd.detection(dets, attacked)
    assert rep[("m", "down", "one-sided")].tpr > 0.95 and rep[("m", "up", "one-sided")].tpr < 0.05
    assert rep[("m", "up", "two-sided")].auroc > rep[("m", "up", "one-sided")].auroc
    assert he_pgd.highest_tpr(rep, "m", "up") == rep[("m", "up", "two-sided")].tpr


def test_the_three_claims_decide_on_intervals():
    import numpy as np
    from types import SimpleNamespace

    assert he_pgd.fools_as_well(0.0, 0.0, 359)["holds"] is True
    assert he_pgd.fools_as_well(0.0, 0.2, 359)["holds"] is False
    assert he_pgd.fools_as_well(0.0, 0.02, 100)["holds"] is None
    rng = np.random.default_rng(0)
    clean = rng.normal(-10, 1, 300)
    pgd, he = clean - 5 + rng.normal(0, 1, 300), clean + 0.2 + rng.normal(0, 1, 300)
    assert he_pgd.closer_to_data(clean, pgd, he)["holds"] is True
    assert he_pgd.closer_to_data(clean, he, pgd)["holds"] is False
    r = {"pgd": {"clean_energy": clean, "adv_energy": pgd}, "he": {"clean_energy": clean, "adv_energy": he}}
    caught, missed = SimpleNamespace(tpr=0.95, auroc=0.99), SimpleNamespace(tpr=0.1, auroc=0.45)
    out = he_pgd.evades_detector(r["pgd"], r["he"], caught, missed)
    assert out["holds"] is True and out["informative"]
    assert not he_pgd.evades_detector(r["pgd"], r["he"], SimpleNamespace(tpr=0.5, auroc=0.65), missed)["informative"]


def test_catches_again_and_evades_better_decide_on_intervals():
    from types import SimpleNamespace as R
    blind, sharp = R(tpr=0.05, auroc=0.1), R(tpr=0.9, auroc=0.95)
    assert he_pgd.catches_again(blind, sharp, 359)["holds"] is True
    assert he_pgd.catches_again(blind, R(tpr=0.9, auroc=0.7), 359)["holds"] is False   # not a working detector
    assert he_pgd.catches_again(R(tpr=0.5, auroc=0.9), R(tpr=0.52, auroc=0.9), 100)["holds"] is None
    assert he_pgd.evades_better(0.1, 0.9, 0.99, 359)["holds"] is True
    assert he_pgd.evades_better(0.1, 0.9, 0.5, 359)["holds"] is False                   # does not fool
