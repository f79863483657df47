"""Chapter 2's claims on toy evidence: the premise of "closer to the data", and the
detectors' operating points that the detector claims rest on."""
from robgen_lib.book.claims import claims_of
from robgen_lib.book.judge import judge
from robgen_lib.core.stats import Estimate, difference, proportion

CLAIMS = claims_of("he_pgd")


def _energy(v, lo, hi):
    return Estimate(v, lo, hi, 500, percent=False)


def test_closer_to_data_is_not_informative_when_pgd_raises_the_energy():
    _, premise = judge(CLAIMS["he_pgd-pgd-lowers"], _energy(7.7, 7.0, 8.4), "m", fields={"hist_steps": 20})
    assert premise.holds is False
    evidence = {"shift": _energy(9.5, 9.1, 9.9), "overlap": _energy(-0.4, -0.44, -0.34)}
    v, o = judge(CLAIMS["he_pgd-closer"], evidence, "m", checks={"he_pgd-pgd-lowers": premise},
                 fields={"hist_steps": 20})
    assert not o.informative and "he_pgd-pgd-lowers failed" in v.status
    _, lowers = judge(CLAIMS["he_pgd-pgd-lowers"], _energy(-1.5, -2.0, -0.9), "m")
    assert judge(CLAIMS["he_pgd-closer"], evidence, "m", checks={"he_pgd-pgd-lowers": lowers})[1].holds is False


def test_a_threshold_that_flags_every_clean_image_makes_the_detector_claims_not_informative():
    # the mnist profile: one-sided FPR 0.96, two-sided 1.00 on the standard model
    fprs = {"one-sided FPR": proportion(481, 500), "two-sided FPR": proportion(500, 500)}
    _, usable = judge(CLAIMS["he_pgd-detectors-usable-standard"], fprs, "m")
    assert usable.holds is False
    again = {"TPR gain": difference(proportion(500, 500), proportion(3, 500)),
             "AUROC": Estimate(0.99, 0.98, 1.0, 500, percent=False)}
    checks = {"he_pgd-detectors-usable-standard": usable}
    assert not judge(CLAIMS["he_pgd-two-sided-standard"], again, "m", checks=checks)[1].informative
    fine = {"one-sided FPR": proportion(93, 359), "two-sided FPR": proportion(144, 359)}   # the quick profile
    _, usable = judge(CLAIMS["he_pgd-detectors-usable-standard"], fine, "m")
    assert usable.holds is True
    assert judge(CLAIMS["he_pgd-two-sided-standard"], again, "m",
                 checks={"he_pgd-detectors-usable-standard": usable})[1].holds is True


def test_evading_needs_a_detector_that_catches_pgd():
    weak = {"AUROC": Estimate(0.31, 0.28, 0.34, 500, percent=False), "FPR": proportion(481, 500)}
    _, catches = judge(CLAIMS["he_pgd-catches-pgd"], weak, "m", fields={"eps": "0.3"})
    assert catches.holds is False
    evidence = {"TPR drop": difference(proportion(477, 500), proportion(3, 500)),
                "AUROC drop": Estimate(0.3, 0.27, 0.34, 500, percent=False)}
    assert not judge(CLAIMS["he_pgd-evades"], evidence, "m", checks={"he_pgd-catches-pgd": catches})[1].informative


def test_fooling_as_well_is_an_equivalence_with_a_power_check():
    wide = difference(proportion(0, 40), proportion(0, 40))      # too few images for a ±2-point bar
    assert not judge(CLAIMS["he_pgd-fools"], wide, "m", fields={"steps": 40})[1].informative
    far = difference(proportion(500, 5000), proportion(0, 5000))
    assert judge(CLAIMS["he_pgd-fools"], far, "m", fields={"steps": 40})[1].holds is False
    # the quick profile (0 % under both, 359 images): ±1.1 points, inside the ±2-point band by more than
    # the claim's half-point margin
    same = difference(proportion(0, 359), proportion(0, 359))
    assert judge(CLAIMS["he_pgd-fools"], same, "m", fields={"steps": 40})[1].holds is True
    edge = Estimate(0.0, -0.017, 0.017, 359, points=True)
    assert judge(CLAIMS["he_pgd-fools"], edge, "m", fields={"steps": 40})[1].why == "near the bar"
