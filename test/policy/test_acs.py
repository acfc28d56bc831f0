import itertools

import numpy as np
import pytest

from bac_ros.policy.acs import (bubbling_union, forecast_similarity, optimal_forecast_steps, optimal_update_steps,
                              top_error_blocks, uniform_steps)


def objective(sim, steps):
    k = sim.shape[0]
    bounds = list(steps) + [k]
    return sum(sim[c, c:bounds[m + 1]].sum() for m, c in enumerate(steps))


def brute_force(sim, m, force_last=False):
    k = sim.shape[0]
    best, arg = -np.inf, None
    for rest in itertools.combinations(range(1, k), m - 1):
        steps = (0, *rest)
        if force_last and k > 1 and steps[-1] != k - 1:
            continue
        v = objective(sim, steps)
        if v > best:
            best, arg = v, list(steps)
    return best, arg


@pytest.mark.parametrize("seed", range(12))
def test_dp_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 9))
    sim = rng.uniform(-1, 1, size=(k, k))
    for m in range(1, k + 1):
        steps = optimal_update_steps(sim, m)
        best, arg = brute_force(sim, m)
        assert steps == arg, (k, m)
        assert objective(sim, steps) == pytest.approx(best)
        assert len(steps) == m and steps[0] == 0 and steps == sorted(set(steps))


@pytest.mark.parametrize("seed", range(6))
def test_force_last_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(3, 9))
    sim = rng.uniform(0, 1, size=(k, k))
    for m in range(2, k + 1):
        steps = optimal_update_steps(sim, m, force_last=True)
        best, arg = brute_force(sim, m, force_last=True)
        assert steps[-1] == k - 1
        assert objective(sim, steps) == pytest.approx(best)
        assert steps == arg


def test_similarity_structure_drives_choice():
    # Features are constant within [0, 4) and within [4, 10): two updates should land at 0 and 4.
    k = 10
    group = np.array([0] * 4 + [1] * 6)
    sim = np.where(group[:, None] == group[None, :], 1.0, 0.0)
    assert optimal_update_steps(sim, 2) == [0, 4]
    assert optimal_update_steps(sim, k) == list(range(k))
    assert optimal_update_steps(sim, 1) == [0]


@pytest.mark.parametrize("bad, m, msg", [
    (np.ones((3, 4)), 2, "square"),
    (np.ones(3), 1, "square"),
    (np.array([[1.0, np.nan], [0.0, 1.0]]), 1, "NaN"),
    (np.ones((4, 4)), 0, "num_updates"),
    (np.ones((4, 4)), 5, "num_updates"),
    (np.ones((4, 4)), True, "num_updates"),
    (np.ones((4, 4)), 2.0, "num_updates"),
])
def test_optimal_update_steps_rejects_bad_input(bad, m, msg):
    with pytest.raises(ValueError, match=msg):
        optimal_update_steps(bad, m)


def test_uniform_steps():
    assert uniform_steps(100, 10) == list(range(0, 100, 10))
    assert uniform_steps(20, 6) == [0, 3, 6, 10, 13, 16]
    assert uniform_steps(5, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        uniform_steps(5, 6)


def _steps():
    return {"L0.sa": [0, 5], "L0.ca": [0, 3], "L0.ffn": [0, 2],
            "L1.sa": [0, 6], "L1.ca": [0, 7], "L1.ffn": [0, 4, 8],
            "L2.sa": [0, 1], "L2.ca": [0, 9], "L2.ffn": [0, 6]}


def test_bubbling_union_hand_case():
    steps = _steps()
    errors = {b: 0.0 for b in steps}
    errors.update({"L0.ca": 3.0, "L1.sa": 2.0, "L2.ffn": 1.0})
    before = {b: list(s) for b, s in steps.items()}
    out = bubbling_union(steps, errors, top_n=3)
    assert steps == before  # pure
    # L0.ca: own + FFNs of layers 0, 1, 2
    assert out["L0.ca"] == [0, 2, 3, 4, 6, 8]
    # L1.sa: own + FFNs of layers 1, 2 (not L0.ffn's step 2)
    assert out["L1.sa"] == [0, 4, 6, 8]
    # L2.ffn: own + itself = unchanged
    assert out["L2.ffn"] == [0, 6]
    # untouched blocks
    for b in steps:
        if b not in ("L0.ca", "L1.sa"):
            assert out[b] == steps[b]


def test_bubbling_union_top_n_zero_and_errors():
    steps = _steps()
    errors = {b: float(i) for i, b in enumerate(steps)}
    assert bubbling_union(steps, errors, 0) == steps
    assert top_error_blocks(errors, 2) == ["L2.ffn", "L2.ca"]
    with pytest.raises(ValueError, match="no error"):
        bubbling_union(steps, {"L0.sa": 1.0}, 2)
    with pytest.raises(ValueError):
        bubbling_union(steps, errors, -1)


def forecast_objective(feats, steps):
    """Summed cosine of what each step uses under `reuse: forecast`, computed from the features directly
    (the runtime's rule: copy until a block has two outputs, then extrapolate from its last two)."""
    n, k, _ = feats.shape
    total = 0.0
    for t in range(k):
        done = [c for c in steps if c <= t]
        c = done[-1]
        if len(done) == 1:
            f = feats[:, c]
        else:
            p = done[-2]
            f = feats[:, c] + (feats[:, c] - feats[:, p]) * (t - c) / (c - p)
        cos = (f * feats[:, t]).sum(-1) / (np.linalg.norm(f, axis=-1) * np.linalg.norm(feats[:, t], axis=-1))
        total += cos.mean()
    return total


@pytest.mark.parametrize("seed", range(6))
def test_forecast_dp_matches_brute_force_on_features(seed):
    """The forecast-aware ACS from Gram matrices against every step set scored on the features themselves."""
    rng = np.random.default_rng(200 + seed)
    n, k, d = 3, int(rng.integers(3, 8)), 5
    # smooth trajectories with curvature, so that forecasting and copying score differently
    t = np.arange(k)[None, :, None]
    feats = rng.normal(size=(n, 1, d)) + rng.normal(size=(n, 1, d)) * t + rng.normal(size=(n, 1, d)) * t ** 2 / k \
        + 0.3 * rng.normal(size=(n, k, d))
    gram = np.einsum("nid,njd->nij", feats, feats)
    sim = np.einsum("nid,njd->ij", feats / np.linalg.norm(feats, axis=-1, keepdims=True),
                    feats / np.linalg.norm(feats, axis=-1, keepdims=True)) / n
    fsim = forecast_similarity(gram)
    for force_last in (False, True):
        for m in range(2 if force_last else 1, k + 1):
            steps = optimal_forecast_steps(sim, fsim, m, force_last)
            cands = [(0, *r) for r in itertools.combinations(range(1, k), m - 1)
                     if not force_last or (m > 1 and r[-1] == k - 1)]
            best = max(forecast_objective(feats, c) for c in cands)
            assert len(steps) == m and steps[0] == 0 and steps == sorted(set(steps))
            assert not force_last or steps[-1] == k - 1
            assert forecast_objective(feats, steps) == pytest.approx(best), (k, m, force_last)


def test_forecast_scoring_finds_the_exact_forecast_where_features_move_linearly():
    # A block whose output moves along a straight line: a forecast from any two updates is exact there, and
    # the copy of any update is not (the copy-scored objective stays below k).
    k, d = 12, 4
    direction, start = np.ones(d), np.array([5.0, -3.0, 2.0, 1.0])
    feats = (start + np.arange(k)[:, None] * direction)[None]
    gram = np.einsum("nid,njd->nij", feats, feats)
    xn = feats / np.linalg.norm(feats, axis=-1, keepdims=True)
    sim = np.einsum("nid,njd->ij", xn, xn)
    steps = optimal_forecast_steps(sim, forecast_similarity(gram), 3)
    assert forecast_objective(feats, steps) == pytest.approx(k)  # every step's forecast is exact
    copy_steps = optimal_update_steps(sim, 3)
    assert sum(sim[c, c:e].sum() for c, e in zip(copy_steps, copy_steps[1:] + [k])) < k - 1e-6
