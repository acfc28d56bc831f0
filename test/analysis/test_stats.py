"""The statistics of success claims, against cases computed by hand (and published worked examples)."""
import math

import numpy as np
import pytest

from bac_ros.analysis.stats import (compare_paired, compare_unpaired, fisher_exact, kaplan_meier, mcnemar_exact,
                                newcombe_paired, newcombe_unpaired, verdict, wilson_interval)


def test_wilson_interval_at_the_edges():
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    for n in range(1, 201):  # all or none: the interval holds the rate exactly (30/30 once rounded below 1)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0


def test_mcnemar_exact_by_hand():
    # 1 vs 6 discordant pairs: 2 * P(X <= 1), X ~ Bin(7, 1/2) = 2 * 8 / 128
    assert mcnemar_exact(1, 6) == pytest.approx(16 / 128)
    assert mcnemar_exact(6, 1) == mcnemar_exact(1, 6)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)
    assert mcnemar_exact(3, 3) == 1.0  # a tie: capped at 1
    assert mcnemar_exact(0, 0) == 1.0  # no discordant pair (e.g. all succeed)


def test_fisher_exact_by_hand():
    # [[3, 1], [1, 3]]: tables with 4 successes of 8, 4 per side; P(k) = C(4,k) C(4,4-k) / C(8,4)
    probs = {k: math.comb(4, k) * math.comb(4, 4 - k) / 70 for k in range(5)}
    assert fisher_exact(3, 4, 1, 4) == pytest.approx(probs[0] + probs[1] + probs[3] + probs[4])  # 34/70
    assert fisher_exact(10, 10, 10, 10) == 1.0  # all succeed
    assert fisher_exact(0, 10, 10, 10) == pytest.approx(2 / math.comb(20, 10))


def test_newcombe_intervals_match_the_published_examples():
    # Newcombe 1998, paired: a = 36 both, b = 12, c = 2, d = 0 (n = 50): method 10 gives 0.0569 to 0.3404
    assert newcombe_paired(36, 2, 12, 0) == pytest.approx((0.0569, 0.3404), abs=1e-4)
    # Newcombe 1998, unpaired: 56/70 vs 48/80: method 10 gives 0.0524 to 0.3339
    assert newcombe_unpaired(48, 80, 56, 70) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def test_paired_comparison_table_and_verdicts():
    a = [1, 1, 1, 1, 0, 0, 1, 1, 0, 1]
    b = [1, 1, 1, 0, 1, 0, 1, 1, 1, 1]
    c = compare_paired("full", "bac", a, b, margin=0.05)
    assert c.table == (6, 1, 2, 1) and c.success_a == 7 and c.success_b == 8 and c.paired
    assert c.difference == pytest.approx(0.1) and c.p_value == pytest.approx(mcnemar_exact(1, 2)) == 1.0
    assert c.verdict == "too few episodes to tell"  # 10 seeds cannot resolve 5 points
    same = compare_paired("full", "bac", [1] * 20, [1] * 20)
    assert same.table == (20, 0, 0, 0) and same.p_value == 1.0 and same.difference == 0.0
    assert same.ci[0] < -0.05 < 0 < same.ci[1] and same.verdict == "too few episodes to tell"
    big = compare_paired("full", "bac", [1] * 400, [1] * 398 + [0, 0])
    assert big.ci[0] > -0.05 and big.verdict == "non-inferior"
    worse = compare_paired("full", "bac", [1] * 200, [1] * 100 + [0] * 100)
    assert worse.verdict == "inferior" and worse.p_value < 1e-20
    with pytest.raises(ValueError, match="same"):
        compare_paired("a", "b", [1, 0], [1])


def test_unpaired_comparison_and_verdict_rules():
    c = compare_unpaired("teleop", "policy", 18, 20, 12, 20)
    assert not c.paired and c.table is None and c.test == "Fisher exact"
    assert c.p_value == pytest.approx(fisher_exact(18, 20, 12, 20)) and c.difference == pytest.approx(-0.3)
    # the interval excludes 0 but Fisher's p is 0.065: the test does not reject, so no side is called worse
    assert -0.05 < c.ci[1] < 0 and c.p_value > 0.05 and c.verdict == "too few episodes to tell"
    assert compare_unpaired("teleop", "policy", 20, 20, 10, 20).verdict == "inferior"
    assert verdict((-0.04, 0.1), 0.05, 1.0) == "non-inferior"
    assert verdict((0.01, 0.2), 0.05, 0.01) == "non-inferior and better"
    assert verdict((0.01, 0.2), 0.05, 0.06) == "non-inferior"  # the interval clears 0, the test does not
    assert verdict((-0.3, -0.06), 0.05, 0.001) == "inferior" and verdict((-0.3, -0.06), 0.05, 0.07) == "too few episodes to tell"
    assert verdict((-0.1, 0.1), 0.05, 1.0) == "too few episodes to tell"
    assert verdict((-0.3, -0.01), 0.05, 0.01) == "worse" and verdict((-0.3, -0.01), 0.05, 0.2) == "too few episodes to tell"


def test_five_paired_episodes_call_no_side_worse():
    """The demo's rows: teleop 5/5, BAC 2/5 on the same seeds. Newcombe's interval excludes 0, McNemar's exact p
    is 2 * 0.5**3 = 0.25: too few episodes, not worse."""
    c = compare_paired("teleop", "bac", [1] * 5, [1, 1, 0, 0, 0])
    assert c.table == (2, 3, 0, 0) and c.p_value == pytest.approx(0.25) and c.ci[1] < 0
    assert c.verdict == "too few episodes to tell"


def test_kaplan_meier_censors_failures_where_they_ended():
    # successes at 5, 6, 7 s; two failures censored at the 12 s limit: 3/5 succeed, half by 7 s
    km = kaplan_meier([5, 7, 12, 12, 6], [1, 1, 0, 0, 1])
    np.testing.assert_allclose(km.success_by, [0.2, 0.4, 0.6])
    assert km.median == 7.0 and km.at(4.0) == 0.0
    assert km.at(6.5) == pytest.approx(0.4) and km.at(20) == pytest.approx(0.6)
    # a method that succeeds rarely but fast: its median is not reached, where a median over successes says 3 s
    rare = kaplan_meier([3, 12, 12, 12, 12], [1, 0, 0, 0, 0])
    assert math.isnan(rare.median) and rare.at(12) == pytest.approx(0.2)
    # an episode stopped early (a person ended it at 4 s, failed) leaves the risk set there
    km = kaplan_meier([4, 5, 8, 12], [0, 1, 1, 0])
    np.testing.assert_allclose(km.success_by, [1 / 3, 1 - (2 / 3) * (1 / 2)])
