import numpy as np
import pytest

from robgen_lib.core.stats import bootstrap, paired, proportion


@pytest.mark.parametrize("k, n, low, high", [
    (0, 10, 0.0, 0.2775),        # Wilson 95 %: z^2 / (n + z^2) at k = 0
    (5, 10, 0.2366, 0.7634),
    (10, 10, 0.7225, 1.0),
    (13, 32, 0.2552, 0.5774),
    (300, 359, 0.7942, 0.8708),
])
def test_wilson_interval_matches_the_formula(k, n, low, high):
    e = proportion(k, n)
    assert e.value == pytest.approx(k / n) and e.n == n
    assert (e.low, e.high) == pytest.approx((low, high), abs=5e-4)
    z = 1.959963984540054
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert (e.low, e.high) == pytest.approx((centre - half, centre + half), abs=1e-7)


def test_a_proportion_from_flags_and_its_print():
    e = proportion([True, False, True, True])
    assert (e.value, e.n) == (0.75, 4)
    assert str(e).startswith("75.0 % [") and str(e).endswith("n = 4")
    with pytest.raises(ValueError):
        proportion(5, 3)


def test_bootstrap_of_a_mean_covers_it_at_the_expected_width():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    e = bootstrap(x)
    assert e.low < 2.0 < e.high and e.low < x.mean() < e.high
    assert e.width == pytest.approx(2 * 1.96 / np.sqrt(400), rel=0.2)
    assert bootstrap(x, seed=3).value == e.value           # the point estimate does not resample
    assert bootstrap(np.ones(50)).width == 0.0              # a constant sample: a point


def test_paired_difference_and_mcnemar():
    rng = np.random.default_rng(0)
    a = rng.random(300) < 0.8
    b = a.copy()
    b[:60] = False                                          # B is wrong on 60 more images than A
    e = paired(a, b)
    assert e.value == pytest.approx(a.mean() - b.mean())
    assert e.low > 0 and e.p_value < 1e-6
    assert str(e).startswith(f"{100 * e.value:+.1f} points [+") and "n = 300, McNemar p = " in str(e)
    same = paired(a, a)
    assert same.value == 0 and same.p_value == 1.0
    with pytest.raises(ValueError):
        paired(a, a[:10])


@pytest.mark.parametrize("low, high, bar, below, expected", [
    (0.6, 0.8, 0.5, False, True),
    (0.3, 0.45, 0.5, False, False),
    (0.4, 0.6, 0.5, False, None),       # straddles: inconclusive
    (0.3, 0.5, 0.5, False, False),      # a tie at the bar never counts for the claim
    (0.1, 0.3, 0.5, True, True),
    (0.5, 0.7, 0.5, True, False),
    (0.45, 0.55, 0.5, True, None),
])
def test_the_inconclusive_rule(low, high, bar, below, expected):
    """The book's one rule on an interval (robgen_lib.book.judge), margin 0."""
    from robgen_lib.book.judge import Test, decide_test
    from robgen_lib.core.stats import Estimate

    outcome, _ = decide_test(Test("superiority", bar, below=below, margin=0.0),
                             Estimate((low + high) / 2, low, high, 100))
    assert outcome is expected


def test_newcombe_difference_of_two_independent_rates():
    from robgen_lib.core.stats import difference

    # Newcombe (1998), method 10, example (a): 56/70 vs 48/80 -> 0.2 [0.0524, 0.3339]
    d = difference(proportion(56, 70), proportion(48, 80))
    assert d.value == pytest.approx(0.2)
    assert (d.low, d.high) == pytest.approx((0.0524, 0.3339), abs=5e-4)


def _table(both, only_a, only_b, neither):
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither, bool)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither, bool)
    return a, b


def test_paired_interval_is_newcombes_and_reduces_to_the_unpaired_one_without_correlation():
    from robgen_lib.core.stats import difference

    a, b = _table(4, 2, 6, 3)                    # ad = bc: phi = 0, the unpaired hybrid score interval
    e, u = paired(a, b), difference(proportion(6, 15), proportion(10, 15))
    assert (e.value, e.low, e.high) == pytest.approx((u.value, u.low, u.high))
    one = paired(*_table(3, 0, 1, 28))           # 3 vs 4 of 32 images, one image differs
    assert one.low < -0.1 < one.value < one.high  # far wider than a bootstrap of one image (-9.4 points)
    tie = paired(*_table(13, 0, 0, 19))          # the same 13 of 32 right: a tie, decided for neither side
    from robgen_lib.book.judge import Test, decide_test

    assert tie.low < 0 < tie.high and decide_test(Test("direction", margin=0.0), tie)[0] is None
