import dataclasses

import numpy as np
import pytest
import torch

from bac_ros.core.drift import DriftGuard, DriftSettings, GuardedDenoiser, measure_reuse_error, reference
from bac_ros.core.schedule import Schedule


def _predict(policy, img, st, den, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(img.shape[0], policy.cfg.horizon, policy.cfg.action_dim, generator=g)
    return policy.predict(img, st, den, noise, torch.Generator().manual_seed(seed + 1))


def _schedule(cfg, steps, ref=None):
    s = Schedule.create(cfg, "acs-blockwise", {b: steps for b in cfg.block_ids}, num_updates=len(steps),
                        calibration={"observations": 2})
    if ref is not None:
        s.calibration["reuse_error"] = {"mean": ref, "p95": ref, "observations": 2}
    return s


def test_monitor_changes_nothing_and_measures_what_was_reused(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    sparse = _schedule(cfg, [0, 4, 7])
    plain = _predict(tiny_policy, img, st, tiny_policy.denoiser(sparse))
    den = tiny_policy.denoiser(sparse, monitor=True)
    assert torch.equal(plain, _predict(tiny_policy, img, st, den))
    assert den.meter.count == 2 * len(cfg.block_ids)  # steps 4 and 7 of every block: each replaces a reuse
    # the same quantity by hand: recompute with a recorder and compare consecutive computed outputs
    outs = {}
    rec = tiny_policy.denoiser(sparse)
    rec.recorder = lambda k, j, y: outs.setdefault(j, []).append(y)
    _predict(tiny_policy, img, st, rec)
    expect = np.mean([float((y[i + 1] - y[i]).norm() / y[i + 1].norm()) for y in outs.values() for i in range(2)])
    assert den.meter.value == pytest.approx(expect, rel=1e-5)
    # a denser schedule reuses over shorter gaps: a smaller error per recompute
    dense = tiny_policy.denoiser(_schedule(cfg, list(range(8))), monitor=True)
    _predict(tiny_policy, img, st, dense)
    assert 0 < dense.meter.value < den.meter.value


def test_forecast_meter_measures_the_forecast_error(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    copy = _schedule(cfg, [0, 2, 4, 6, 7])
    forecast = dataclasses.replace(copy, reuse="forecast")
    a, b = tiny_policy.denoiser(copy, monitor=True), tiny_policy.denoiser(forecast, monitor=True)
    _predict(tiny_policy, img, st, a)
    _predict(tiny_policy, img, st, b)
    assert a.meter.count == b.meter.count and a.meter.value != b.meter.value


def test_guard_warns_switches_and_settles_back():
    g = DriftGuard(DriftSettings(drift_warn_ratio=2.0, drift_switch_ratio=3.0, drift_window=3, drift_settle=4))
    assert [g.observe(r) for r in (1.0, 1.2, 0.9)] == ["ok"] * 3
    assert [g.observe(r) for r in (2.5, 2.5)] == ["ok", "warn"]  # the median of the last 3: one high is not enough
    assert [g.observe(r) for r in (5.0, 5.0)] == ["warn", "dense"] and g.switches == 1
    assert [g.observe(r) for r in (1.0, 1.0, 2.5, 1.0, 1.0, 1.0)] == ["dense"] * 6  # a relapse restarts the count
    assert g.observe(1.0) == "ok"
    assert g.observe(float("nan")) == "ok"  # nothing measured: nothing changes


def test_guard_settings_are_validated():
    with pytest.raises(ValueError, match="drift_switch_ratio"):
        DriftSettings(drift_warn_ratio=3.0, drift_switch_ratio=2.0)
    with pytest.raises(ValueError, match="drift_window"):
        DriftSettings(drift_window=0)


def test_guarded_denoiser_runs_dense_while_the_ratio_is_high(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    # references far below what the tiny random model shows: every ratio is high -> dense after `window`
    fast_s, dense_s = _schedule(cfg, [0, 4, 7], ref=1e-6), _schedule(cfg, list(range(8)), ref=1e-6)
    fast, dense = tiny_policy.denoiser(fast_s, monitor=True), tiny_policy.denoiser(dense_s, monitor=True)
    guarded = GuardedDenoiser(fast, dense, DriftGuard(DriftSettings(drift_window=2, drift_settle=2)))
    outs = [_predict(tiny_policy, img, st, guarded) for _ in range(4)]
    guarded.settle()
    assert [d for d, _, _ in guarded.history] == [False, False, True, True]
    assert torch.equal(outs[0], _predict(tiny_policy, img, st, tiny_policy.denoiser(fast_s)))
    assert torch.equal(outs[3], _predict(tiny_policy, img, st, tiny_policy.denoiser(dense_s)))
    # watch only: the state changes, the schedule never does
    watch = GuardedDenoiser(tiny_policy.denoiser(fast_s, monitor=True), None,
                            DriftGuard(DriftSettings(drift_window=2)))
    for _ in range(4):
        _predict(tiny_policy, img, st, watch)
    watch.settle()
    assert [d for d, _, _ in watch.history] == [False] * 4 and watch.guard.state == "dense"


def test_guard_needs_monitored_runtimes_and_references(tiny_policy):
    cfg = tiny_policy.cfg
    with pytest.raises(ValueError, match="monitor=True"):
        GuardedDenoiser(tiny_policy.denoiser(_schedule(cfg, [0, 4], ref=0.1)))
    with pytest.raises(ValueError, match="reuse_error"):
        reference(_schedule(cfg, [0, 4]))
    with pytest.raises(ValueError, match="static schedule"):
        tiny_policy.denoiser(Schedule.create(cfg, "teacache", {}, num_updates=3,
                                             teacache={"threshold": 0.2, "mean_updates": 3.0}), monitor=True)


def test_measured_reference_reads_one_on_its_own_observations(tiny_policy, tiny_obs):
    s = _schedule(tiny_policy.cfg, [0, 3, 5, 7])
    img, st = tiny_obs
    ref = measure_reuse_error(tiny_policy, s, img, st)
    assert ref["observations"] == img.shape[0] and 0 < ref["mean"] <= ref["p95"]
    s.calibration["reuse_error"] = ref
    watch = GuardedDenoiser(tiny_policy.denoiser(s, monitor=True))
    for i in range(img.shape[0]):
        _predict(tiny_policy, img[i:i + 1], st[i:i + 1], watch, seed=i)
    watch.settle()
    assert np.mean([r for _, r, _ in watch.history]) == pytest.approx(1.0, abs=0.25)
