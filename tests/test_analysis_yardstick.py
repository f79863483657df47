"""Chapter 6's analysis: the worst case of two evaluations, the drops behind the masking
question, and the comparisons its claims are judged on (paired gaps, ties broken by cost,
top sets in any order)."""
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
    flags = [torch.arange(n) < round(r * n) for r in (own, worst, independent)]
    return {"clean": clean, "own": own, "apgd-ce": independent, "apgd-dlr": independent, "square": independent,
            "independent": independent, "worst": worst, "own_robust": flags[0], "worst_robust": flags[1],
            "independent_robust": flags[2], "n": n}


def test_worst_case_counts_an_image_only_if_it_survives_both_evaluations():
    own = {("m", "linf"): _own(1.0, [True, True, False, True])}
    ind = {("m", "linf"): _independent([True, True, True, False], [True, False, True, False],
                                       [True, False, True, False])}
    r = yardstick.side_by_side(own, ind)[("m", "linf")]
    assert (r["own"], r["apgd-ce"], r["apgd-dlr"], r["square"], r["independent"]) == (0.75, 0.75, 0.5, 0.5, 0.5)
    assert r["worst"] == 0.25   # image 0 only: image 2 falls to the book's PGD, 1 and 3 to the independent attacks


def verdict_of(claim_id, evidence, **knobs):
    """The word chapter 6's declared claim gets on ``evidence`` under the book's rule."""
    from robgen_lib.book.claims import claims_of
    from robgen_lib.book.judge import judge

    return judge(claims_of("yardstick")[claim_id], evidence, "m", knobs=knobs)[0].status


def test_masking_is_judged_on_every_drop_against_the_tolerance():
    res = {("a", "linf"): _row(0.8, 0.5), ("a", "l2"): _row(0.5, 0.5),
           ("b", "linf"): _row(0.5, 0.38), ("b", "l2"): _row(0.9, 0.9)}
    d = yardstick.drops(res)
    assert d[("a", "linf")].value == pytest.approx(0.3) and d[("a", "l2")].value == 0
    assert verdict_of("yardstick-no-artefact", d, mask_gap=0.15) == "does not hold"      # a: 30 points
    assert verdict_of("yardstick-no-artefact", d, mask_gap=0.4) == "holds"
    assert verdict_of("yardstick-no-artefact", {k: v for k, v in d.items() if k[0] == "b"}, mask_gap=0.15) \
        == "inconclusive"                                                                 # b: 12 points, ±
    text = yardstick.masking_text(d, 0.15, {"linf": "ℓ∞", "l2": "ℓ2"})
    assert "above the bar): a; undecided: b;" in text and "(a, ℓ∞)" in text
    assert "**masking**" in yardstick.attack_tables(res, {"linf": "ℓ∞ ε = 0.1"}, mask_gap=0.15).data


def test_beating_the_baseline_is_judged_on_each_paired_gap():
    res = {("cnn", "linf"): _row(0, 0, worst=0.5), ("g1", "linf"): _row(0, 0, worst=0.5),
           ("g2", "linf"): _row(0, 0, worst=0.8)}
    family = {"cnn": "discriminative", "g1": "generative", "g2": "generative"}
    vs = yardstick.versus_baseline(res, family, {"linf": "ℓ∞"}, baseline="cnn")
    assert vs["gaps"][("g1", "linf")].value == 0 and vs["gaps"][("g2", "linf")].value == pytest.approx(0.3)
    assert verdict_of("yardstick-vs-cnn", vs["gaps"]) == "inconclusive (near the bar)"   # a tie is no win
    assert verdict_of("yardstick-vs-cnn", {k: g for k, g in vs["gaps"].items() if k[0] == "g2"}) == "holds"
    assert vs["text"].startswith("ℓ∞: g1 50.0 % [")


def test_most_robust_prefers_the_cheaper_model_on_a_tie_and_compares_the_families_best():
    res = {("dear", "linf"): _row(0, 0, worst=0.7), ("cheap", "linf"): _row(0, 0, worst=0.7),
           ("weak", "linf"): _row(0, 0, worst=0.1)}
    costs = {"dear": {"evaluations": 16}, "cheap": {"evaluations": 1}, "weak": {"evaluations": 1}}
    family = {"dear": "generative", "cheap": "discriminative", "weak": "generative"}
    best = yardstick.most_robust(res, costs, family, {"linf": "ℓ∞"})
    assert best["best"] == {"linf": "cheap"} and best["text"].startswith("ℓ∞: cheap 70.0 % (best generative dear")
    assert best["gaps"]["linf"].value == 0 and verdict_of("yardstick-most-robust", best["gaps"]) == "inconclusive"
    res[("weak", "linf")] = _row(0, 0, worst=0.2)
    best = yardstick.most_robust(res, costs, {**family, "dear": "discriminative"}, {"linf": "ℓ∞"})
    assert verdict_of("yardstick-most-robust", best["gaps"]) == "does not hold"      # weak (20 %) vs cheap (70 %)


def test_top_agreement_compares_sets_and_asks_whether_the_top_three_is_settled():
    res = {(n, "linf"): _row(own, ind) for n, own, ind in
           [("a", 0.9, 0.7), ("b", 0.8, 0.8), ("c", 0.7, 0.6), ("d", 0.1, 0.65)]}
    for r in res.values():
        r["independent_robust"] = torch.arange(r["n"]) < round(r["independent"] * r["n"])
    top = yardstick.top_agreement(res, "linf")
    assert top["own"] == ["a", "b", "c"] and top["independent"] == ["b", "a", "d"] and not top["agree"]
    assert yardstick.top_agreement(res, "linf", k=2)["agree"]
    # own: c 70 % vs d 10 % is clear; independent: d 65 % vs c 60 % on 400 images is not
    assert top["separation"].value == pytest.approx(0.05)
    assert verdict_of("yardstick-top-agree", {"same three": top["agree"], "settled": top["separation"]}) \
        == "does not hold"
    two = yardstick.top_agreement(res, "linf", k=2)
    assert verdict_of("yardstick-top-agree", {"same three": two["agree"], "settled": two["separation"]}) == "holds"


def test_labels_step_and_detector_score():
    assert yardstick.threat_label({"norm": "linf", "eps": 8 / 255}) == "ℓ∞ ε = 8/255"
    assert yardstick.threat_label({"norm": "l2", "eps": 0.5}) == "ℓ2 ε = 0.5"
    assert yardstick.pgd_step_size(0.1, 20) == pytest.approx(0.0125)
    clean = torch.linspace(-2.0, -1.0, 20)
    assert yardstick.energy_auroc({"clean_energy": clean, "adv_energy": clean - 5}) == pytest.approx(1.0)
    assert yardstick.energy_auroc({"clean_energy": clean, "adv_energy": clean + 5}) == pytest.approx(0.0)
