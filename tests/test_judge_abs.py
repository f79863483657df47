"""Chapter 5's claims on toy evidence: the floor in front of the ℓ∞ comparisons, the headroom
in front of the certified gain, the ceiling in front of the out-of-domain AUROCs, the power of
the decision-based attack, and the seeds the comparisons of trained models need."""
from robgen_lib.book.claims import claims_of
from robgen_lib.book.judge import Seeds, judge
from robgen_lib.core.stats import Estimate, paired, proportion

CLAIMS = claims_of("abs")


def run(claim_id, evidence, checks=None):
    """(the verdict word, the outcome) of ``claim_id`` on ``evidence``."""
    v, o = judge(CLAIMS[claim_id], evidence, "m", checks=checks or {})
    return v.status, o


def gap(value, half=0.05, n=359):
    return Estimate(value, value - half, value + half, n, points=True)


def test_zero_against_zero_in_linf_is_not_counted_as_evidence():
    at_floor = proportion(0, 359)                     # the more robust of the two keeps nothing
    status, floor = run("abs-linf-floor-at", at_floor)
    assert status == "failed" and floor.holds is False
    tie = Seeds({s: paired([False] * 359, [False] * 359) for s in range(3)})   # 0 % vs 0 %: a gap of exactly 0
    status, _ = run("abs-linf", tie, {"abs-linf-floor-at": floor})
    assert status == "not informative (prerequisite abs-linf-floor-at failed)"
    status, kept = run("abs-linf-floor-at", proportion(240, 359))
    assert status == "passed"
    assert run("abs-linf", tie, {"abs-linf-floor-at": kept})[0] == "not reproduced"


def test_the_generative_claim_needs_each_pair_off_the_floor():
    off = proportion(200, 359)
    status, check = run("abs-linf-floor-standard", {"ABS": proportion(0, 359), "E-ABS-style": off})
    assert status == "failed"
    parts = {f"{g}, {t}": gap(0.3) for g in ("ABS", "E-ABS-style") for t in ("ℓ2", "ℓ∞")}
    status, _ = run("abs-generative", Seeds({s: parts for s in range(3)}), {"abs-linf-floor-standard": check})
    assert status.startswith("not informative (prerequisite abs-linf-floor-standard failed")
    _, check = run("abs-linf-floor-standard", {"ABS": off, "E-ABS-style": off})
    assert run("abs-generative", Seeds({s: parts for s in range(3)}), {"abs-linf-floor-standard": check})[0] \
        == "reproduced"


def test_a_baseline_near_100_percent_leaves_no_room_for_the_certified_gain():
    status, room = run("abs-certified-headroom", proportion(193, 200))     # 96.5 %: at most 3.5 points to gain
    assert status == "failed"
    assert run("abs-certified", Seeds({s: gap(0.02) for s in range(3)}), {"abs-certified-headroom": room})[0] \
        == "not informative (prerequisite abs-certified-headroom failed)"
    status, room = run("abs-certified-headroom", proportion(31, 64))       # 48 %: room to gain 10 points
    assert status == "passed"
    assert run("abs-certified", Seeds({s: gap(0.34, 0.1) for s in range(3)}),
               {"abs-certified-headroom": room})[0] == "reproduced"


def test_two_aurocs_at_the_ceiling_cannot_be_ranked():
    status, ceiling = run("abs-ood-not-at-ceiling", Estimate(0.998, 0.996, 0.999, 359, percent=False))
    assert status == "failed"
    assert run("abs-ood", Estimate(-0.001, -0.002, 0.0, 359, percent=False), {"abs-ood-not-at-ceiling": ceiling})[0] \
        == "not informative (prerequisite abs-ood-not-at-ceiling failed)"
    status, room = run("abs-ood-not-at-ceiling", Estimate(0.80, 0.77, 0.84, 359, percent=False))
    assert status == "passed"
    assert run("abs-ood", Estimate(0.05, 0.03, 0.07, 359, percent=False), {"abs-ood-not-at-ceiling": room})[0] \
        == "reproduced"


def test_a_weak_decision_based_attack_makes_the_masking_question_not_informative():
    status, power = run("abs-decision-power", {"ℓ2": gap(0.44), "ℓ∞": gap(0.84)})   # the book's quick run
    assert status == "failed"
    excess = {f"{g}, {t}": gap(-0.09, 0.03) for g in ("ABS", "E-ABS-style") for t in ("ℓ2", "ℓ∞")}
    assert run("abs-not-masked-decision", excess, {"abs-decision-power": power})[0] \
        == "not informative (prerequisite abs-decision-power failed)"
    _, power = run("abs-decision-power", {"ℓ2": gap(0.0, 0.03), "ℓ∞": gap(0.01, 0.03)})
    assert run("abs-not-masked-decision", excess, {"abs-decision-power": power})[0] == "holds"


def test_comparisons_of_trained_models_need_three_seeds():
    trained = [c.id for c in CLAIMS.values() if c.seeds > 1]
    assert set(trained) == {"abs-l2", "abs-linf", "abs-generative", "abs-similarity-clean", "abs-similarity",
                            "abs-certified"}
    assert run("abs-l2", gap(-0.06, 0.04))[0] == "not informative (one training seed; the rule needs 3)"
    assert run("abs-l2", Seeds({0: gap(-0.1, 0.04), 1: gap(-0.08, 0.04), 2: gap(-0.07, 0.04)}))[0] \
        == "not reproduced"
