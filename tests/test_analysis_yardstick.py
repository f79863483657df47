"""Chapter 6's analysis: the worst case of two evaluations, the masking flag, and the
comparisons its verdicts make (strict wins, ties broken by cost, top sets in any order)."""
import pytest
import torch

from robgen_lib.book.analysis import yardstick

T = torch.tensor


def _own(clean, robust):
    robust = T(robust)
    return {"clean_accuracy": clean, "robust_accuracy": float(robust.float().mean()), "robust": robust}


def _independent(ce, dlr, square):
    return {"apgd-ce": T(ce), "apgd-dlr": T(dlr), "square": T(square),
            "robust_accuracy": float(T(square).float().mean())}


def _row(own, independent, worst=None, clean=1.0, n=400):
    """A side-by-side row on ``n`` images: the first own·n robust to the book's PGD, the first
    worst·n (default: the independent rate) robust to everything."""
    worst = independent if worst is None else worst
    flags = [torch.arange(n) < round(r * n) for r in (own, worst)]
    return {"clean": clean, "own": own, "apgd-ce": independent, "apgd-dlr": independent, "square": independent,
            "independent": independent, "worst": worst, "own_robust": flags[0], "worst_robust": flags[1], "n": n}


def test_worst_case_counts_an_image_only_if_it_survives_both_evaluations():
    own = {("m", "linf"): _own(1.0, [True, True, False, True])}
    ind = {("m", "linf"): _independent([True, True, True, False], [True, False, True, False],
                                       [True, False, True, False])}
    r = yardstick.side_by_side(own, ind)[("m", "linf")]
    assert (r["own"], r["apgd-ce"], r["apgd-dlr"], r["square"], r["independent"]) == (0.75, 0.75, 0.5, 0.5, 0.5)
    assert r["worst"] == 0.25   # image 0 only: image 2 falls to the book's PGD, 1 and 3 to the independent attacks


def test_masking_flags_drops_whose_interval_clears_the_gap():
    res = {("a", "linf"): _row(0.8, 0.5), ("a", "l2"): _row(0.5, 0.5),
           ("b", "linf"): _row(0.5, 0.38), ("b", "l2"): _row(0.9, 0.9)}
    m = yardstick.masking(res, 0.15)
    assert m["flagged"] == ["a"] and m["undecided"] == ["b"] and m["holds"] is False   # b: 12 points, ±
    assert (m["model"], m["threat"]) == ("a", "linf") and m["largest_drop"].value == pytest.approx(0.3)
    clear = yardstick.masking(res, 0.4)
    assert clear["flagged"] == [] and clear["undecided"] == [] and clear["holds"] is True
    assert "**masking**" in yardstick.attack_tables(res, {"linf": "ℓ∞ ε = 0.1"}, mask_gap=0.15).data


def test_beating_the_baseline_is_decided_on_the_paired_gap():
    res = {("cnn", "linf"): _row(0, 0, worst=0.5), ("g1", "linf"): _row(0, 0, worst=0.5),
           ("g2", "linf"): _row(0, 0, worst=0.8)}
    vs = yardstick.versus_baseline(res, {"cnn": "discriminative", "g1": "generative", "g2": "generative"},
                                   {"linf": "ℓ∞"}, baseline="cnn")
    assert vs["beats"] == {("g1", "linf"): False, ("g2", "linf"): True}   # a tie is no win
    assert (vs["n_beat"], vs["n_pairs"], vs["all_beat"], vs["holds"]) == (1, 2, False, False)
    assert vs["text"].startswith("ℓ∞: g1 50.0 % [")


def test_most_robust_prefers_the_cheaper_model_on_a_tie():
    res = {("dear", "linf"): _row(0, 0, worst=0.7), ("cheap", "linf"): _row(0, 0, worst=0.7),
           ("weak", "linf"): _row(0, 0, worst=0.1)}
    costs = {"dear": {"evaluations": 16}, "cheap": {"evaluations": 1}, "weak": {"evaluations": 1}}
    best = yardstick.most_robust(res, costs, {"linf": "ℓ∞"})
    assert best["best"] == {"linf": "cheap"} and best["text"] == "ℓ∞: cheap 70.0 %"


def test_top_agreement_compares_sets_not_orders():
    res = {(n, "linf"): _row(own, ind) for n, own, ind in
           [("a", 0.9, 0.7), ("b", 0.8, 0.8), ("c", 0.7, 0.6), ("d", 0.1, 0.65)]}
    top = yardstick.top_agreement(res, "linf")
    assert top["own"] == ["a", "b", "c"] and top["independent"] == ["b", "a", "d"] and not top["agree"]
    assert yardstick.top_agreement(res, "linf", k=2)["agree"]


def test_labels_step_and_detector_score():
    assert yardstick.threat_label({"norm": "linf", "eps": 8 / 255}) == "ℓ∞ ε = 8/255"
    assert yardstick.threat_label({"norm": "l2", "eps": 0.5}) == "ℓ2 ε = 0.5"
    assert yardstick.pgd_step_size(0.1, 20) == pytest.approx(0.0125)
    clean = torch.linspace(-2.0, -1.0, 20)
    assert yardstick.energy_auroc({"clean_energy": clean, "adv_energy": clean - 5}) == pytest.approx(1.0)
    assert yardstick.energy_auroc({"clean_energy": clean, "adv_energy": clean + 5}) == pytest.approx(0.0)
