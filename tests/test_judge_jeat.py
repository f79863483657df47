"""Chapter 3's claims on toy evidence: the headroom check in front of every claim about sample
quality, and the scores a failed quality claim is reproduced "only when judged by"."""
from robgen_lib.book.claims import claims_of
from robgen_lib.book.claims.jeat import SCORES, judged_by
from robgen_lib.book.judge import Seeds, judge
from robgen_lib.core.stats import Estimate

CLAIMS = claims_of("jeat")
QUALITY = ("jeat-robust-generates", "jeat-noise-trend", "jeat-noise-vs-attack", "jeat-generates", "jeat-real-is")


def gain(value, half=0.05):
    return Estimate(value, value - half, value + half, 500)


def gains(*values):
    """Evidence of a quality claim: one gain per score of SCORES."""
    return dict(zip(SCORES, (gain(v) for v in values)))


def run(claim_id, evidence, checks, only_when=None):
    return judge(CLAIMS[claim_id], evidence, "m", checks=checks, only_when=only_when)[0].status


def test_every_claim_about_sample_quality_needs_headroom():
    assert all(CLAIMS[c].needs == ("jeat-headroom",) for c in QUALITY)
    assert [t.name for t in CLAIMS["jeat-headroom"].tests] == list(SCORES)
    assert "fid-style (pixel scorer)" not in SCORES              # the seeds match the pixels by construction


def test_seeds_that_outscore_the_generator_make_the_quality_claims_not_informative():
    _, no_room = judge(CLAIMS["jeat-headroom"], gains(0.1, -0.9, 0.5, -0.8, 0.1), "m")
    assert no_room.holds is False                               # FID-style: the seeds are closer to the data
    everywhere_better = Seeds({s: gains(0.3, 0.3, 0.3, 0.3, 0.3) for s in range(3)})
    status = run("jeat-robust-generates", everywhere_better, {"jeat-headroom": no_room})
    assert status == "not informative (prerequisite jeat-headroom failed)"
    _, room = judge(CLAIMS["jeat-headroom"], gains(0.1, 0.2, 0.5, 0.3, 0.1), "m")
    assert run("jeat-robust-generates", everywhere_better, {"jeat-headroom": room}) == "reproduced"


def test_a_failed_quality_claim_names_the_scores_that_gain_when_they_outnumber_the_others():
    claim, checks = CLAIMS["jeat-noise-vs-attack"], {"jeat-headroom": judge(CLAIMS["jeat-headroom"],
                                                                            gains(*[0.3] * 5), "m")[1]}
    mostly = gains(0.3, -0.3, 0.3, 0.3, 0.0)                    # 3 gain, 1 loses, 1 undecided
    assert judged_by(claim, mostly) == ("judged by is-style (standard scorer), is-style (robust scorer), "
                                        "fid-style (robust scorer)")
    assert run("jeat-noise-vs-attack", mostly, checks, judged_by(claim, mostly)).startswith(
        "reproduced only when judged by is-style (standard scorer)")
    assert judged_by(claim, gains(0.3, -0.3, -0.3, 0.3, 0.0)) is None          # as many lose as gain
    assert judged_by(claim, gains(0.06, -0.3, 0.3, 0.3, 0.0)).count(",") == 1  # a gain near the bar is not named


def test_over_seeds_the_scores_must_be_the_same_in_every_seed():
    claim = CLAIMS["jeat-generates"]
    first = gains(0.3, 0.3, 0.3, -0.3, 0.0)
    same = judged_by(claim, Seeds({0: first, 1: gains(0.3, 0.3, 0.3, -0.3, 0.0)}))
    assert same == judged_by(claim, first) and same.startswith("judged by is-style (standard scorer)")
    assert judged_by(claim, Seeds({0: first, 1: gains(-0.3, 0.3, 0.3, 0.3, 0.0)})) is None
