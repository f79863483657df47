"""Chapter 2's analysis: energy shape of an attack, the λ sweep's choice, detection reports, and the
estimates (with their intervals) that the claims are judged on."""
import numpy as np
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


def _energies(seed=0, n=300):
    rng = np.random.default_rng(seed)
    clean = rng.normal(-10, 1, n)
    return clean, clean - 5 + rng.normal(0, 1, n), clean + 0.2 + rng.normal(0, 1, n)   # clean, PGD, HE-PGD


def test_fools_as_well_is_the_difference_of_two_wilson_rates():
    f = he_pgd.fools_as_well(0.0, 0.0, 359)
    assert f["difference"].value == 0 and f["difference"].low < 0 < f["difference"].high and f["difference"].points
    assert f["he"].n == 359 and f["pgd"].high < 0.02
    far = he_pgd.fools_as_well(0.0, 0.2, 359)["difference"]
    assert abs(far.value - 0.2) < 1e-3 and far.low > 0.1
    assert he_pgd.fools_as_well(0.0, 0.02, 100)["difference"].width > he_pgd.fools_as_well(0.0, 0.02, 1000)["difference"].width


def test_closer_to_data_measures_both_gaps_with_their_signs():
    clean, pgd, he = _energies()
    c = he_pgd.closer_to_data(clean, pgd, he)
    assert c["shift_gap"].high < 0 and c["overlap_gap"].low > 0 and c["shift_gap"].n == 300
    swapped = he_pgd.closer_to_data(clean, he, pgd)
    assert swapped["shift_gap"].low > 0 and swapped["overlap_gap"].high < 0
    assert abs(c["shift_gap"].value - (abs(np.mean(he - clean)) - abs(np.mean(pgd - clean)))) < 1e-9


def test_detector_estimates_auroc_and_operating_rates():
    clean, pgd, he = _energies(1)
    held = {"clean_energy": torch.tensor(clean), "adv_energy": torch.tensor(pgd)}
    dets = he_pgd.fit_detectors(held)
    attacked = {("m", "PGD"): {"clean_energy": clean, "adv_energy": pgd, "accuracy": 0.0},
                ("m", "HE"): {"clean_energy": clean, "adv_energy": he, "accuracy": 0.0}}
    rep = he_pgd.detection({"m": dets}, attacked)
    catch = he_pgd.catches_pgd(dets["one-sided"], attacked[("m", "PGD")], rep[("m", "PGD", "one-sided")])
    assert catch["AUROC"].low > 0.95 and catch["FPR"].n == 300 and catch["TPR"].value > 0.9
    assert abs(catch["AUROC"].value - rep[("m", "PGD", "one-sided")].auroc) < 1e-9
    fprs = he_pgd.operating_fprs(rep, "m", "HE", 300)
    assert set(fprs) == {"one-sided FPR", "two-sided FPR"}
    assert fprs["one-sided FPR"].value == round(rep[("m", "HE", "one-sided")].fpr * 300) / 300
    e = he_pgd.evades_detector(attacked[("m", "PGD")], attacked[("m", "HE")], rep[("m", "PGD", "one-sided")],
                               rep[("m", "HE", "one-sided")])
    assert e["TPR drop"].low > 0.5 and e["AUROC drop"].low > 0.3 and e["tpr_pgd"].value > e["tpr_he"].value
    again = he_pgd.catches_again(rep[("m", "HE", "one-sided")], rep[("m", "HE", "two-sided")], dets["two-sided"],
                                 attacked[("m", "HE")])
    assert again["two"].value == rep[("m", "HE", "two-sided")].tpr and again["AUROC"].low <= again["AUROC"].value
    assert abs(again["TPR gain"].value - (again["two"].value - again["one"].value)) < 1e-12


def test_evades_better_measures_the_tpr_margin_and_the_fooling_rate():
    e = he_pgd.evades_better(0.1, 0.9, 0.99, 359)
    assert e["TPR margin"].low > 0.7 and e["fooling"].low > 0.95 and e["matching"].n == 359
    worse = he_pgd.evades_better(0.9, 0.1, 0.5, 359)
    assert worse["TPR margin"].high < 0 and worse["fooling"].high < 0.6
