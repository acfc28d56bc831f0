"""Exact statistics for success claims (no ROS, no scipy): intervals, paired and unpaired exact tests, a
non-inferiority verdict, and the Kaplan-Meier estimate of time to success.

- `wilson_interval`: a success rate's score interval (sound at 0 and n successes, and for small n).
- Two methods on the same seeds: the 2x2 table of (A succeeded, B succeeded) pairs, the exact McNemar test
  (a two-sided binomial test on the discordant pairs), and Newcombe's score interval for the paired
  difference (Newcombe 1998, method 10). Different episodes (a real arm has no seeds): Fisher's exact test
  and Newcombe's hybrid score interval for independent rates (method 10 of the unpaired paper).
- `verdict`: B against A at a margin δ from the 95 % interval of p_B − p_A and the exact test: non-inferior
  (lower bound > −δ); better, inferior (upper bound < −δ) or worse (upper bound < 0) only when the exact test
  also rejects at 5 %; otherwise too few episodes to tell.
- `kaplan_meier`: time to success with failures censored where they ended (the episode limit): a method
  that succeeds rarely but quickly does not look fastest, as a median over successes alone would make it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054


def percentiles(values, qs=(50, 95, 99)) -> dict[str, float]:
    """{"p50": …, …} of `values` (NaN each when there are none)."""
    a = np.asarray(list(values), float)
    return {f"p{q}": float(np.percentile(a, q)) if a.size else float("nan") for q in qs}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for the default z)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half))  # it holds p; rounding may not


def _binom_pmf(k: int, n: int, p: float) -> float:
    return math.comb(n, k) * p ** k * (1 - p) ** (n - k)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs (A succeeded alone, B succeeded alone):
    twice the smaller binomial tail at p = 1/2, at most 1; 1 without discordant pairs."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(_binom_pmf(k, n, 0.5) for k in range(min(only_a, only_b) + 1))
    return min(1.0, 2.0 * tail)


def fisher_exact(a_succ: int, a_n: int, b_succ: int, b_n: int) -> float:
    """Two-sided Fisher exact p-value for two independent success counts: the probability, given the
    margins, of every table no more likely than the one observed."""
    total, succ = a_n + b_n, a_succ + b_succ
    lo, hi = max(0, succ - b_n), min(succ, a_n)

    def prob(k: int) -> float:
        return math.comb(a_n, k) * math.comb(b_n, succ - k) / math.comb(total, succ)

    observed = prob(a_succ)
    return min(1.0, sum(p for k in range(lo, hi + 1) if (p := prob(k)) <= observed * (1 + 1e-7)))


def newcombe_unpaired(a_succ: int, a_n: int, b_succ: int, b_n: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p_B − p_A for independent samples (Newcombe's hybrid score interval)."""
    pa, pb = a_succ / a_n, b_succ / b_n
    la, ua = wilson_interval(a_succ, a_n, z)
    lb, ub = wilson_interval(b_succ, b_n, z)
    d = pb - pa
    return (d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2), d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2))


def newcombe_paired(both: int, only_a: int, only_b: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval of p_B − p_A for paired samples (Newcombe's method 10: the Wilson intervals of both
    rates, combined with the pairs' correlation)."""
    n = both + only_a + only_b + neither
    a, b = both + only_a, both + only_b  # successes of A, of B
    pa, pb = a / n, b / n
    la, ua = wilson_interval(a, n, z)
    lb, ub = wilson_interval(b, n, z)
    d = pb - pa
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = 0.0 if margins == 0 else (both * neither - only_a * only_b) / math.sqrt(margins)
    low = d - math.sqrt(max(0.0, (pb - lb) ** 2 - 2 * phi * (pb - lb) * (ua - pa) + (ua - pa) ** 2))
    high = d + math.sqrt(max(0.0, (ub - pb) ** 2 - 2 * phi * (ub - pb) * (pa - la) + (pa - la) ** 2))
    return max(-1.0, low), min(1.0, high)


@dataclass(frozen=True)
class Comparison:
    """B against A: counts, the difference p_B − p_A with its 95 % interval, the exact test and the verdict."""
    a: str
    b: str
    paired: bool
    n_a: int
    n_b: int
    success_a: int
    success_b: int
    table: tuple[int, int, int, int] | None  # paired: (both, only A, only B, neither)
    difference: float
    ci: tuple[float, float]
    test: str  # "McNemar exact" or "Fisher exact"
    p_value: float
    margin: float
    verdict: str

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


ALPHA = 0.05  # the exact tests' level, two-sided: the same as the 95 % intervals'


def verdict(ci: tuple[float, float], margin: float, p_value: float, alpha: float = ALPHA) -> str:
    """B against A at margin δ from the 95 % interval of p_B − p_A and the exact test's p: non-inferior (the
    interval's lower bound above −δ), and better only when the test also rejects equality; inferior (the whole
    interval below −δ) or worse (below 0) only when the test rejects; otherwise too few episodes to tell. An
    interval and a test may disagree near their edges (they are different calculations): a side is called
    better or worse only when both say so."""
    low, high = ci
    rejects = p_value < alpha
    if low > -margin:
        return "non-inferior" + (" and better" if low > 0 and rejects else "")
    if high < -margin and rejects:
        return "inferior"
    if high < 0 and rejects:
        return "worse"
    return "too few episodes to tell"


def compare_paired(a: str, b: str, succeeded_a, succeeded_b, margin: float = 0.05) -> Comparison:
    """Two methods on the same seeds (index i of both lists: the same seed)."""
    sa, sb = np.asarray(succeeded_a, bool), np.asarray(succeeded_b, bool)
    if sa.shape != sb.shape or not sa.size:
        raise ValueError(f"paired outcomes need the same (non-zero) number of seeds, got {sa.size} and {sb.size}")
    both, only_a = int(np.sum(sa & sb)), int(np.sum(sa & ~sb))
    only_b, neither = int(np.sum(~sa & sb)), int(np.sum(~sa & ~sb))
    n = sa.size
    ci, p = newcombe_paired(both, only_a, only_b, neither), mcnemar_exact(only_a, only_b)
    return Comparison(a, b, True, n, n, int(sa.sum()), int(sb.sum()), (both, only_a, only_b, neither),
                      (int(sb.sum()) - int(sa.sum())) / n, ci, "McNemar exact", p, margin, verdict(ci, margin, p))


def compare_unpaired(a: str, b: str, success_a: int, n_a: int, success_b: int, n_b: int,
                     margin: float = 0.05) -> Comparison:
    """Two methods on different episodes."""
    if n_a <= 0 or n_b <= 0:
        raise ValueError("each side needs at least one episode")
    ci, p = newcombe_unpaired(success_a, n_a, success_b, n_b), fisher_exact(success_a, n_a, success_b, n_b)
    return Comparison(a, b, False, n_a, n_b, success_a, success_b, None, success_b / n_b - success_a / n_a, ci,
                      "Fisher exact", p, margin, verdict(ci, margin, p))


@dataclass(frozen=True)
class Survival:
    """Kaplan-Meier estimate of the time to success: `success_by[i]` = the share succeeded by `times[i]`."""
    times: np.ndarray
    success_by: np.ndarray

    def at(self, t: float) -> float:
        """Share of episodes that succeeded within `t` seconds."""
        i = np.searchsorted(self.times, t, side="right") - 1
        return float(self.success_by[i]) if i >= 0 else 0.0

    @property
    def median(self) -> float:
        """The time by which half the episodes succeeded; nan when fewer than half ever did."""
        hit = np.flatnonzero(self.success_by >= 0.5 - 1e-12)
        return float(self.times[hit[0]]) if hit.size else float("nan")


def kaplan_meier(durations, succeeded) -> Survival:
    """`durations` (s): time to success for a successful episode, the time it ended (censored) otherwise."""
    t, e = np.asarray(durations, float), np.asarray(succeeded, bool)
    if t.shape != e.shape or not t.size:
        raise ValueError("need as many (> 0) durations as outcomes")
    times = np.unique(t[e])
    surv, out = 1.0, []
    for u in times:
        at_risk = np.sum(t >= u)
        surv *= 1.0 - np.sum((t == u) & e) / at_risk
        out.append(1.0 - surv)
    return Survival(times, np.array(out))
