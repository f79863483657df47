"""Chapter 1's claims on toy evidence: the exact identity, the seed-spread claim's check."""
from robgen_lib.book.claims import claims_of
from robgen_lib.book.judge import judge
from robgen_lib.core.stats import Estimate, difference, proportion

CLAIMS = claims_of("energy")


def test_the_identity_is_judged_on_the_exact_gap():
    point = lambda g: Estimate(g, g, g, 359, percent=False)
    assert judge(CLAIMS["energy-identity"], point(2e-15), "m")[1].holds is True
    assert judge(CLAIMS["energy-identity"], point(3e-3), "m")[1].holds is False


def test_the_seed_spread_is_not_informative_for_a_detector_near_chance():
    works = CLAIMS["energy-detector-works"]
    gap = difference(proportion(314, 359), proportion(254, 359))
    _, near_chance = judge(works, Estimate(0.53, 0.49, 0.57, 500, percent=False), "m", fields={"stable_eps": "0.4"})
    assert near_chance.holds is False
    v, o = judge(CLAIMS["energy-detector-seeds"], gap, "m", checks={works.id: near_chance},
                 fields={"stable_eps": "0.4"})
    assert not o.informative and "energy-detector-works failed" in v.status
    _, working = judge(works, Estimate(0.91, 0.88, 0.94, 359, percent=False), "m")
    assert judge(CLAIMS["energy-detector-seeds"], gap, "m", checks={works.id: working})[1].holds is True
