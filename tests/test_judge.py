"""The book's one decision rule (robgen_lib.book.judge): kinds, prerequisites, seeds, power, near the bar."""
import pytest

from robgen_lib.book.judge import BOOK, CHECK, Claim, Outcome, Seeds, Test, judge, multiplicity, outcome
from robgen_lib.book.report import Verdict
from robgen_lib.core.stats import Estimate, paired


def gap(value, low, high, n=100):
    return Estimate(value, low, high, n, points=True)


def claim(*tests, **kw):
    return Claim(kw.pop("id", "c"), kw.pop("sentence", "a claim"), "a gap", tuple(tests),
                 paper=kw.pop("paper", "paper 1 %"), **kw)


def word(c, evidence, **kw):
    return judge(c, evidence, "measured", **kw)[0].status


@pytest.mark.parametrize("evidence, expected", [
    (gap(0.20, 0.10, 0.30), "reproduced"),
    (gap(-0.20, -0.30, -0.10), "not reproduced"),
    (gap(0.05, -0.05, 0.15), "inconclusive"),
    (gap(0.04, 0.03, 0.05), "not reproduced"),   # a tie with the bar never counts for the claim
])
def test_superiority_holds_only_when_the_whole_interval_is_beyond_the_bar(evidence, expected):
    assert word(claim(Test("superiority", 0.05, margin=0.0)), evidence) == expected


def test_a_claim_below_a_bar_turns_the_interval():
    c = claim(Test("superiority", 0.2, below=True, margin=0.0), points=False)
    assert word(c, Estimate(0.1, 0.05, 0.15, 50, percent=False)) == "reproduced"
    assert word(c, Estimate(0.5, 0.3, 0.6, 50, percent=False)) == "not reproduced"


def test_non_inferiority_allows_a_loss_up_to_the_bar():
    c = claim(Test("non-inferiority", 0.1, margin=0.0))
    assert word(c, gap(0.0, -0.04, 0.04)) == "reproduced"
    assert word(c, gap(-0.2, -0.25, -0.15)) == "not reproduced"
    assert word(c, gap(0.0, -0.12, 0.12)) == "not informative (n = 100 is too small for a ±10-point bar)"


def test_equivalence_needs_the_interval_inside_the_band():
    c = claim(Test("equivalence", 0.1, margin=0.0))
    assert word(c, gap(0.0, -0.05, 0.05)) == "reproduced"
    assert word(c, gap(0.3, 0.2, 0.38)) == "not reproduced"
    assert word(c, gap(0.05, -0.02, 0.12)) == "inconclusive"


def test_an_interval_wider_than_the_band_is_not_informative_whatever_it_shows():
    # 0/16 against 0/16: the paired interval is about ±19 points, a ±10-point band can never hold it
    e = paired([False] * 16, [False] * 16)
    assert e.width >= 0.2
    status = word(claim(Test("equivalence", 0.1)), e)
    assert status == "not informative (n = 16 is too small for a ±10-point bar)"


def test_a_bound_within_the_margin_of_the_bar_is_inconclusive_near_the_bar():
    c = claim(Test("superiority", 0.05))   # margin 2 points
    assert word(c, gap(0.10, 0.06, 0.14)) == "inconclusive (near the bar)"
    assert word(c, gap(0.00, -0.04, 0.04)) == "inconclusive (near the bar)"   # fails by 1 point only
    assert word(c, gap(0.20, 0.08, 0.30)) == "reproduced"


def test_every_part_must_hold_and_one_failing_part_decides():
    c = claim(Test("direction", name="gap"), Test("fact", name="same"))
    assert word(c, {"gap": gap(0.2, 0.1, 0.3), "same": True}) == "reproduced"
    assert word(c, {"gap": gap(0.2, 0.1, 0.3), "same": False}) == "not reproduced"
    assert word(c, {"gap": gap(0.0, -0.1, 0.1), "same": True}) == "inconclusive"
    with pytest.raises(KeyError, match="no evidence for"):
        word(c, {"gap": gap(0.2, 0.1, 0.3)})


def test_one_test_over_a_dict_of_estimates_applies_to_each():
    c = claim(Test("direction", margin=0.0))
    assert word(c, {"a": gap(0.2, 0.1, 0.3), "b": gap(0.1, 0.05, 0.2)}) == "reproduced"
    assert word(c, {"a": gap(0.2, 0.1, 0.3), "b": gap(-0.1, -0.2, -0.05)}) == "not reproduced"


def test_a_failed_or_undecided_prerequisite_makes_the_claim_not_informative():
    c = claim(Test("direction"), needs=("stand-in",))
    good = gap(0.3, 0.2, 0.4)
    assert word(c, good, checks={"stand-in": Outcome(True)}) == "reproduced"
    assert word(c, good, checks={"stand-in": Outcome(False)}) == "not informative (prerequisite stand-in failed)"
    assert word(c, good, checks={"stand-in": Outcome(None)}).startswith("not informative (prerequisite stand-in not")
    with pytest.raises(KeyError, match="has not judged"):
        word(c, good)


def test_claims_that_compare_trained_models_need_their_seeds_and_agreeing_seeds():
    c = claim(Test("direction"), seeds=3)
    yes, no = gap(0.3, 0.2, 0.4), gap(-0.3, -0.4, -0.2)
    assert word(c, yes) == "not informative (one training seed; the rule needs 3)"
    assert word(c, Seeds({0: yes, 1: yes})).startswith("not informative (2 training seed")
    assert word(c, Seeds({0: yes, 1: yes, 2: yes})) == "reproduced"
    assert word(c, Seeds({0: yes, 1: no, 2: yes})) == "inconclusive (the seeds disagree)"


def test_words_follow_the_claims_role_and_only_when():
    book = Claim("b", "a question", "m", (Test("direction"),), role=BOOK)
    check = Claim("k", "a check", "m", (Test("direction"),), role=CHECK)
    yes, no = gap(0.3, 0.2, 0.4), gap(-0.3, -0.4, -0.2)
    assert (word(book, yes), word(book, no)) == ("holds", "does not hold")
    assert (word(check, yes), word(check, no)) == ("passed", "failed")
    assert word(claim(Test("direction")), no, only_when="the attack is strong") == \
        "reproduced only when the attack is strong"


def test_a_knob_named_bar_takes_the_runs_value():
    c = claim(Test("superiority", "mask_gap", margin=0.0))
    assert outcome(c, gap(0.2, 0.15, 0.25), knobs={"mask_gap": 0.1}).holds is True
    assert outcome(c, gap(0.2, 0.15, 0.25), knobs={"mask_gap": 0.3}).holds is False
    assert c.bar({"mask_gap": 0.1}) == "10 points" and c.rule({"mask_gap": 0.1}) == "above 10 points"


def test_the_printed_verdict_carries_the_id_and_parses_back():
    v, _ = judge(claim(Test("direction"), id="x-y", sentence="at ε = {eps}"), gap(0.3, 0.2, 0.4), "m",
                 fields={"eps": "0.1"})
    (back,) = Verdict.parse_all(f"noise\n{v}\n")
    assert back == v and back.id == "x-y" and back.sentence == "at ε = 0.1"


def test_declarations_are_checked():
    with pytest.raises(ValueError, match="paper's number"):
        Claim("c", "s", "m", (Test("direction"),))            # a paper claim without the paper's number
    with pytest.raises(ValueError, match="unknown kind"):
        Test("bigger")
    with pytest.raises(ValueError, match="distinct names"):
        Claim("c", "s", "m", (Test("direction"), Test("fact")), paper="p")


def test_multiplicity_counts_the_decided_paper_claims():
    vs = [Verdict("a", "p", "m", "reproduced"), Verdict("b", "p", "m", "inconclusive"),
          Verdict("c", "- (this book's question)", "m", "holds")]
    text = multiplicity(vs)
    assert "2 claims of the papers, 1 of them decisively" in text and "0.1" in text
