import dataclasses

import numpy as np
import pytest
import torch

from bac_ros.drift.guard import DriftGuard, DriftSettings
from bac_ros.drift.guarded import GuardedInference
from bac_ros.drift.reference import SHADOW_STATISTIC, reference, shadow_deviation
from bac_ros.policy.calibrate import measure_reference
from bac_ros.policy.inference import build, draw_noise
from bac_ros.policy.schedule import Schedule
from support import tiny_config


def _predict(policy, img, st, den, seed=0):
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(img.shape[0], policy.cfg.horizon, policy.cfg.action_dim, generator=g)
    return policy.predict(img, st, den, noise, torch.Generator().manual_seed(seed + 1))


def _schedule(cfg, steps, ref=None):
    s = Schedule.create(cfg, "acs-blockwise", {b: steps for b in cfg.block_ids}, num_updates=len(steps),
                        calibration={"observations": 2})
    if ref is not None:
        s.calibration["reuse_error"] = {"mean": 0.1, "p95": 0.1, "observations": 2}
        s.calibration["shadow_deviation"] = {"statistic": SHADOW_STATISTIC, "median": ref, "mean": ref, "p95": ref,
                                             "observations": 2}
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


def test_cusum_by_hand():
    from bac_ros.drift.reference import cusum

    assert cusum([1.0, 2.0, -5.0, 0.5, 3.0], k=0.5).tolist() == [0.5, 2.0, 0.0, 0.0, 2.5]


def test_guard_warns_switches_and_settles_back_with_hysteresis():
    g = DriftGuard(DriftSettings(drift_cusum_k=0.5, drift_settle=3))
    h = 4.0
    assert [g.observe(z, h) for z in (0.0, 1.0, -2.0)] == ["ok"] * 3  # S: 0, 0.5, 0
    assert [g.observe(z, h) for z in (1.5, 1.5, 1.0)] == ["ok", "ok", "warn"]  # S: 1, 2 (not > h/2), 2.5
    assert g.cusum == 2.5
    assert [g.observe(z, h) for z in (0.0, 0.0, 0.0, 0.0)] == ["warn"] * 4  # S: 2, 1.5, 1, 0.5 - no flicker
    assert g.observe(-1.0, h) == "ok" and g.cusum == 0.0  # only at 0
    assert [g.observe(z, h) for z in (3.0, 3.0)] == ["warn", "dense"] and g.switches == 1  # S 2.5 (warn), 5 > 4
    assert [g.observe(z, h) for z in (0.0, 0.0, 2.0, 0.0, 0.0)] == ["dense"] * 5  # z >= k restarts the count
    assert g.observe(0.0, h) == "ok" and g.cusum == 0.0
    assert g.observe(float("nan"), h) == "ok"  # nothing measured: nothing changes
    g.reset()
    assert g.state == "ok" and g.switches == 1


def test_the_threshold_floor_is_what_standard_normal_checks_would_need():
    from statistics import NormalDist

    from bac_ros.drift.reference import normal_threshold

    norm = NormalDist()

    # one check per episode: an alarm is z - k > h, so h = the normal quantile minus k (Monte Carlo, 20000 draws)
    assert normal_threshold(0.5, (1,), 0.05) == pytest.approx(norm.inv_cdf(0.95) - 0.5, abs=0.03)
    assert normal_threshold(0.5, (1,), 0.01) == pytest.approx(norm.inv_cdf(0.99) - 0.5, abs=0.05)
    # fixed seed: the same h every time; more checks per episode or a lower rate: a higher h
    assert normal_threshold.__wrapped__(0.5, (3, 4), 0.05) == normal_threshold(0.5, (3, 4), 0.05)
    h = [normal_threshold(0.5, (n,), 0.05) for n in (1, 3, 10, 40)]
    assert h == sorted(h) and h[-1] > 4.0
    assert normal_threshold(0.5, (10,), 0.01) > h[2] and normal_threshold(1.0, (10,), 0.05) < h[2]


def test_the_threshold_is_read_off_the_closed_loop_episodes():
    from bac_ros.drift.reference import DEFAULT_THRESHOLD, SignalReference, closed_loop_reference, shadow_reference

    # ln deviations: mean 0, sd 1 by construction; one episode drifts up at its end
    calm = [[0.0, 1.0, -1.0, 0.0]] * 19
    loop = closed_loop_reference([[float(np.exp(v)) for v in ep] for ep in calm + [[0.0, 2.0, 3.0, 3.0]]],
                                 list(range(20)), 0.25)
    assert loop["checks"] == 80 and loop["episodes_run"] == 20 and len(loop["episodes"]) == 20
    assert loop["inference_period_s"] == 0.25
    ref = SignalReference(loop["median"], 0.0, 1.0, "closed loop", tuple(tuple(e) for e in loop["episodes"]), 0.25)
    # a check every inference (k = 0.5): calm episodes peak at 0.5, the drifting one at 1.5 + 2.5 + 2.5 = 6.5
    peaks = ref.peaks(0.5, 1)
    assert sorted(peaks.tolist()) == pytest.approx([0.5] * 19 + [6.5], abs=1e-3)
    # 19 of 20 at 0.5: raised to what standard normal z would need in episodes of 4 checks
    assert ref.threshold(0.5, 1, 0.05) == pytest.approx(2.2, abs=0.1)
    assert ref.threshold(0.5, 1, 0.01) == pytest.approx(6.5, abs=1e-3)  # only the drifting episode's peak
    # a check every 2nd inference: each episode is seen twice (both phases)
    assert ref.peaks(0.5, 2).size == 40
    # the guard's checks spaced in robot time: every 8th of inferences 1/32 s apart is one reference inference
    # (0.25 s); every 8th of 0.25 s apart is every 8th reference inference; unrecorded: the sync period
    assert ref.stride(8, 1 / 32, 0.5) == 1 and ref.stride(8, 0.25, 0.5) == 8 and ref.stride(1, 0.001, 0.5) == 1
    assert dataclasses.replace(ref, period_s=0.0).stride(8, 0.25, 0.5) == 4
    # without closed-loop episodes: a log-normal read off the demonstrations' median and p95, h = the default
    s = _schedule(tiny_config(), [0, 4], ref=0.01)
    s.calibration["shadow_deviation"]["p95"] = 0.01 * np.exp(1.645 * 0.8)
    demo = shadow_reference(s)
    assert demo.source == "demonstrations" and demo.log_sd == pytest.approx(0.8)
    assert demo.z(0.01 * np.exp(1.6)) == pytest.approx(2.0) and demo.threshold(0.5, 10, 0.05) == DEFAULT_THRESHOLD
    s.calibration["shadow_closed_loop"] = loop
    assert shadow_reference(s).source == "closed loop" and shadow_reference(s).median == loop["median"]
    assert len(shadow_reference(s).episodes) == 20 and loop["episode_success"] == [True] * 20
    # the drifting episode failed: h is read off the 19 the schedule solved (an alarm there is no false alarm)
    failed = closed_loop_reference([[float(np.exp(v)) for v in ep] for ep in calm + [[0.0, 2.0, 3.0, 3.0]]],
                                   list(range(20)), 0.25, [True] * 19 + [False])
    assert failed["episodes_run"] == 20 and failed["episode_success"] == [True] * 19 + [False]
    s.calibration["shadow_closed_loop"] = {**failed, "log_mean": 0.0, "log_sd": 1.0}
    assert len(shadow_reference(s).episodes) == 19
    # 0.5, raised to the normal floor for episodes of 4 checks at 1 %
    assert shadow_reference(s).threshold(0.5, 1, 0.01) == pytest.approx(3.2, abs=0.1)
    with pytest.raises(ValueError, match="one success flag"):
        closed_loop_reference([[1.0, 2.0]], [0], 0.25, [True, False])


def test_the_guards_threshold_follows_how_often_it_checks_in_robot_time(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    sync = cfg.n_action_steps * cfg.action_dt
    s = _schedule(cfg, [0, 4, 7], ref=0.01)
    # ln deviations with mean 0, sd 1: calm episodes with two consecutive spikes (z = 4) each
    episodes = [[0.0] * 10 + [4.0, 4.0] + [0.0] * 28] * 20
    s.calibration["shadow_closed_loop"] = {"statistic": SHADOW_STATISTIC, "median": 1.0, "log_mean": 0.0,
                                           "log_sd": 1.0, "episodes": episodes, "inference_period_s": sync}
    fast = build(tiny_policy, s, monitor=True)
    settings = DriftSettings(drift_check_every=cfg.n_action_steps, drift_false_alarm_rate=0.05)
    guarded = GuardedInference(tiny_policy, fast, build(tiny_policy, None), None, DriftGuard(settings))
    # checked once a chunk's worth of sync inferences: no phase sees both spikes, h = 4 - k
    assert guarded.stride == cfg.n_action_steps and guarded.threshold == pytest.approx(3.5)
    # inferring every dt (policy_node), every n_action_steps-th is checked once per reference inference: the
    # checks meet both spikes, and h rises to what that spacing shows on the reference
    guarded.pace(cfg.action_dt)
    assert guarded.stride == 1 and guarded.threshold == pytest.approx(7.0)
    guarded.pace(sync)
    assert guarded.every == cfg.n_action_steps and guarded.threshold == pytest.approx(3.5)
    # sync inferences with checks spaced as policy_node's (bac eval): every inference is checked, as the
    # robot's checks meet every reference inference, and h is the robot's
    guarded.pace(sync, check_period_s=cfg.n_action_steps * cfg.action_dt)
    assert guarded.every == 1 and guarded.stride == 1 and guarded.threshold == pytest.approx(7.0)
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    for _ in range(3):
        _run(guarded, tiny_policy, img, st)
        assert guarded.settle() is not None


def test_the_shadow_deviation_is_the_joint_targets_and_a_reference_says_what_it_measured():
    from bac_ros.drift.reference import shadow_reference

    cached, full = torch.zeros(1, 16, 8), torch.zeros(1, 16, 8)
    full[0, 8:, 7] = 2.0  # the gripper closes half the horizon later: not drift
    assert shadow_deviation(cached, full) == 0.0
    full[0, :, :7] = 0.5
    assert shadow_deviation(cached, full) == pytest.approx(0.25)
    s = _schedule(tiny_config(), [0, 4], ref=0.01)
    assert reference(s) == 0.01
    del s.calibration["shadow_deviation"]["statistic"]  # measured before arm-mse: on the whole action
    with pytest.raises(ValueError, match="gripper included.*--reference"):
        reference(s)
    with pytest.raises(ValueError, match="gripper included"):
        shadow_reference(s)


def test_guard_settings_are_validated():
    with pytest.raises(ValueError, match="drift_false_alarm_rate"):
        DriftSettings(drift_false_alarm_rate=0.9)
    with pytest.raises(ValueError, match="drift_check_every"):
        DriftSettings(drift_check_every=0)
    with pytest.raises(ValueError, match="drift_signals must be one of shadow, shadow,observation"):
        DriftSettings(drift_signals="observation")  # the shadow deviation is what says the cache went wrong


def _run(inference, policy, img, st, seed=0):
    """One inference from the noise of `seed`: (sample, future actions)."""
    return inference(img.float() / 255.0 if img.dtype == torch.uint8 else img, st,
                     draw_noise(policy, torch.Generator().manual_seed(seed)))


def test_guarded_inference_runs_dense_while_the_shadow_check_deviates(tiny_policy, tiny_obs):
    cfg = tiny_policy.cfg
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    # references far below what the tiny random model shows: the first check's CUSUM is far past the threshold
    fast_s, dense_s = _schedule(cfg, [0, 4, 7], ref=1e-12), _schedule(cfg, list(range(8)), ref=1e-12)
    fast, dense = build(tiny_policy, fast_s, monitor=True), build(tiny_policy, dense_s, monitor=True)
    settings = DriftSettings(drift_check_every=1, drift_settle=2)
    guarded = GuardedInference(tiny_policy, fast, build(tiny_policy, None), dense, DriftGuard(settings))
    outs = []
    for _ in range(4):
        outs.append(_run(guarded, tiny_policy, img, st)[1])
        guarded.settle()
    # fast (alarm) -> dense, exact: calm -> dense, calm again: settled -> fast (alarm again)
    assert [c.dense for c in guarded.history] == [False, True, True, False]
    assert [c.state for c in guarded.history] == ["dense", "dense", "ok", "dense"]
    ratios = [c.ratio for c in guarded.history]
    assert min(ratios[0], ratios[3]) > 1e3 and guarded.guard.switches == 2
    assert ratios[1:3] == [0.0, 0.0]  # the dense schedule here updates every block every step: exact
    # the guard changes which schedule runs, never what a schedule computes
    assert torch.equal(outs[0], _run(build(tiny_policy, fast_s), tiny_policy, img, st)[1])
    assert torch.equal(outs[1], _run(build(tiny_policy, dense_s), tiny_policy, img, st)[1])
    # watch only, a check every 2nd inference: the state changes, the schedule never does
    watch = GuardedInference(tiny_policy, build(tiny_policy, fast_s, monitor=True), build(tiny_policy, None), None,
                             DriftGuard(DriftSettings(drift_check_every=2)))
    for _ in range(4):
        _run(watch, tiny_policy, img, st)
        watch.settle()
    assert [c.dense for c in watch.history] == [False, False] and watch.guard.state == "dense"
    # what policy_node reports: a snapshot; a node keeps only its last checks, the count goes on
    s = guarded.status()
    assert (s.state, s.checks, s.switches, s.schedule) == ("dense", 4, 2, dense_s.label)
    assert s.shadow_ratio == ratios[3] and s.alarm_signal == "shadow" and s.shadow_cusum == 0.0  # reset at the switch
    kept = GuardedInference(tiny_policy, fast, build(tiny_policy, None), None, DriftGuard(settings), keep_checks=2)
    for _ in range(3):
        _run(kept, tiny_policy, img, st)
        kept.settle()
    assert len(kept.history) == 2 and kept.status().checks == 3


def test_guard_needs_references_and_ddim(tiny_policy):
    cfg = tiny_policy.cfg
    with pytest.raises(ValueError, match="shadow_deviation"):
        reference(_schedule(cfg, [0, 4]))
    with pytest.raises(ValueError, match="shadow_deviation"):
        GuardedInference(tiny_policy, build(tiny_policy, _schedule(cfg, [0, 4])), build(tiny_policy, None))
    with pytest.raises(ValueError, match="static schedule"):
        tiny_policy.denoiser(Schedule.create(cfg, "teacache", {}, num_updates=3,
                                             teacache={"threshold": 0.2, "mean_updates": 3.0}), monitor=True)
    from bac_ros.policy.diffusion import DiffusionPolicy

    from support import tiny_config
    ddpm = DiffusionPolicy.build(tiny_config(sampler=dict(type="ddpm", num_train_timesteps=50,
                                                          num_inference_steps=8)), seed=1)
    s = _schedule(ddpm.cfg, [0, 4], ref=0.1)
    with pytest.raises(ValueError, match="deterministic sampler"):
        GuardedInference(ddpm, build(ddpm, s), build(ddpm, None))


def test_guarded_inference_builds_the_guard_or_names_what_is_missing(tiny_policy):
    from bac_ros.policy.runner import guarded_inference

    s = _schedule(tiny_policy.cfg, [0, 4], ref=0.1)
    watch = guarded_inference(tiny_policy, s, "watch")
    assert isinstance(watch, GuardedInference) and watch.dense is None and watch.fast.schedule is s
    with pytest.raises(ValueError, match="watch or guard"):
        guarded_inference(tiny_policy, s, "sometimes")
    with pytest.raises(ValueError, match="not full"):
        guarded_inference(tiny_policy, s, "guard", "full")
    with pytest.raises(ValueError, match="no schedule"):
        guarded_inference(tiny_policy, s, "guard", "bac_s99")


def test_shadow_check_measures_what_the_reference_measures(tiny_policy, tiny_obs):
    """The run-time check and the calibration reference are one measurement: on the reference's own
    observation and noise the ratio is 1."""
    s = _schedule(tiny_policy.cfg, [0, 3, 5, 7])
    img, st = tiny_obs[0][:1], tiny_obs[1][:1]
    ref, = measure_reference(tiny_policy, [s], img, st, seed=3)
    assert ref["shadow_deviation"]["observations"] == 1 and ref["shadow_deviation"]["median"] > 0
    assert ref["reuse_error"]["mean"] > 0
    s.calibration.update(ref)
    watch = GuardedInference(tiny_policy, build(tiny_policy, s, monitor=True), build(tiny_policy, None), None,
                             DriftGuard(DriftSettings(drift_check_every=1)))
    _run(watch, tiny_policy, img, st, seed=3)
    (check,) = [watch.settle()]
    assert check.ratio == pytest.approx(1.0, rel=1e-5) and check.reuse == pytest.approx(1.0, rel=1e-5)


def test_the_harness_runs_the_shadow_check_after_the_chunk_not_inside_its_inference(tiny_policy, tiny_cfg):
    """bac eval times `_infer`; the check's full inference belongs to no chunk (policy_node runs it after
    publishing), so `_infer` leaves it pending and `settle` runs it."""
    import numpy as np

    from bac_ros.policy.runner import PolicyRunner
    from bac_ros.robot.streaming import ObservationWindow
    from bac_ros.sim.evaluate import _infer

    cfg = tiny_policy.cfg
    s = _schedule(cfg, [0, 4, 7], ref=1e-3)
    runner = PolicyRunner(tiny_policy, s, drift="watch", drift_settings=DriftSettings(drift_check_every=1))
    hist = ObservationWindow(cfg.n_obs_steps)
    size = cfg.encoder.image_shape[1]
    hist.push(0.0, np.zeros((size, size, 3), np.uint8), np.zeros(cfg.encoder.state_dim, np.float32))
    plan, ms, _ = _infer(runner, hist)
    assert plan.shape[1] == cfg.action_dim and ms > 0
    assert runner.guard.history == [] and runner.guard._pending is not None  # checked, the check still pending
    runner.settle()
    assert len(runner.guard.history) == 1 and runner.guard._pending is None
    _infer(runner, hist)  # its own check waits for settle again
    assert len(runner.guard.history) == 1 and runner.guard._pending is not None
    state, cusum = runner.guard.guard.state, runner.guard.guard.cusum
    assert runner.settle(check=False) is None  # observations the guard must not judge (policy_node: the
    assert runner.guard._pending is None and len(runner.guard.history) == 1  # controller plays no policy)
    assert (runner.guard.guard.state, runner.guard.guard.cusum) == (state, cusum)
    assert PolicyRunner(tiny_policy, None).settle() is None  # no guard: nothing to run


def test_the_observation_distance_is_a_mahalanobis_distance_scored_on_episodes_left_out():
    from bac_ros.drift.reference import OBSERVATION_STATISTIC, observation_closed_loop, observation_reference

    rng = np.random.default_rng(0)
    scale = np.array([1.0, 10.0, 0.1, 1.0])  # features of very different spreads: whitened, each counts alike
    calm = [(rng.standard_normal((30, 4)) * scale).tolist() for _ in range(10)]
    loop = observation_closed_loop(calm, list(range(10)), 0.25)
    assert loop["statistic"] == OBSERVATION_STATISTIC and loop["folds"] == 5 and loop["checks"] == 300
    s = _schedule(tiny_config(), [0, 4], ref=0.01)
    s.calibration["observation_closed_loop"] = loop
    obs = observation_reference(s)
    assert obs.distance(np.asarray(loop["mean"])) == pytest.approx(0.0, abs=1e-12)
    # one standard deviation along any feature is a squared distance of about 1, whatever its scale
    for i in range(4):
        assert obs.distance(np.asarray(loop["mean"]) + np.eye(4)[i] * scale[i]) == pytest.approx(1.0, rel=0.2)
    # scored on episodes left out of the fit: larger than the fit's own distances (which overfit), and z ~ 0
    inside = [np.log(obs.distance(np.asarray(f))) for ep in calm for f in ep]
    assert loop["log_mean"] > np.mean(inside)
    fresh = rng.standard_normal((200, 4)) * scale
    z = [obs.signal.z(obs.distance(f)) for f in fresh]
    assert abs(np.mean(z)) < 0.25
    # a moved camera: every feature half a standard deviation off -> z well above the CUSUM's allowance
    assert np.mean([obs.signal.z(obs.distance(f + 0.5 * scale * 3)) for f in fresh]) > 1.0
    with pytest.raises(ValueError, match="another observation encoder"):
        obs.distance(np.zeros(5))
    with pytest.raises(ValueError, match="two episodes"):
        observation_closed_loop(calm[:1], [0], 0.25)
    s.calibration["observation_closed_loop"] = {**loop, "statistic": "pixels"}
    with pytest.raises(ValueError, match="observation_closed_loop was measured on 'pixels'"):
        observation_reference(s)
    del s.calibration["observation_closed_loop"]
    assert observation_reference(s) is None  # measured before it existed: the shadow deviation alone


def test_either_signal_raises_the_alarm_and_both_must_be_calm_to_settle():
    g = DriftGuard(DriftSettings(drift_cusum_k=0.5, drift_settle=2))
    h = 4.0
    # the shadow deviation calm, the observations far off: the observation CUSUM alarms alone
    assert [g.observe(0.0, h, 3.0, h) for _ in range(2)] == ["warn", "dense"]  # S_obs 2.5 > h / 2, then 5 > h
    assert g.alarm_signal == "observation" and g.switches == 1
    # on the dense schedule: both calm for drift_settle checks in a row; the observations alone keep it dense
    assert [g.observe(0.0, h, 1.0, h) for _ in range(3)] == ["dense"] * 3
    assert [g.observe(0.0, h, 0.0, h), g.observe(float("nan"), h, 0.0, h)] == ["dense", "ok"]
    assert g.sums == {"shadow": 0.0, "observation": 0.0}
    # the shadow deviation raises it as before; no observation reference (nan) changes nothing
    assert [g.observe(z, h) for z in (3.0, 3.0)] == ["warn", "dense"] and g.alarm_signal == "shadow"
    assert g.observe(float("nan"), h) == "dense"  # nothing measured: nothing changes


def test_the_guard_measures_the_observation_distance_at_each_check(tiny_policy, tiny_obs):
    from bac_ros.drift.reference import observation_closed_loop, observation_features

    cfg = tiny_policy.cfg
    img, st = tiny_obs[0], tiny_obs[1]
    # the reference: the tiny policy's features of its own observations, 2 per episode
    feats = [observation_features(tiny_policy, img[i:i + 1], st[i:i + 1]).tolist() for i in range(img.shape[0])]
    assert len(feats[0]) == cfg.n_obs_steps * (cfg.encoder.image_feature_dim + cfg.encoder.state_dim)
    s = _schedule(cfg, [0, 4, 7], ref=1e-3)
    s.calibration["observation_closed_loop"] = observation_closed_loop(
        [feats[i:i + 2] for i in range(0, len(feats) - 1, 2)], [0], 0.25)
    settings = DriftSettings(drift_check_every=1)
    watch = GuardedInference(tiny_policy, build(tiny_policy, s, monitor=True), build(tiny_policy, None), None,
                             DriftGuard(settings))
    # two signals, each at half the false-alarm rate
    assert watch.observed is not None and np.isfinite(watch.observation_threshold)
    shadow_only = GuardedInference(tiny_policy, build(tiny_policy, s, monitor=True), build(tiny_policy, None), None,
                                   DriftGuard(dataclasses.replace(settings, drift_signals="shadow")))
    assert shadow_only.observed is None and shadow_only.observation_threshold == float("inf")
    assert watch.threshold >= shadow_only.threshold  # half the rate for the shadow deviation: h no lower
    for guarded in (watch, shadow_only):
        _run(guarded, tiny_policy, img[:1], st[:1])
        guarded.settle()
    check, alone = watch.history[0], shadow_only.history[0]
    assert check.distance == pytest.approx(watch.observed.distance(np.asarray(feats[0])), rel=1e-6)
    assert check.observation_z == pytest.approx(watch.observed.signal.z(check.distance))
    assert check.observation_cusum == watch.guard.sums["observation"] and check.features is None
    assert np.isnan(alone.distance) and alone.deviation == check.deviation  # the shadow check is the same
    watch.record_features = True  # a reference being measured: the features of each check are kept
    _run(watch, tiny_policy, img[:1], st[:1])
    assert watch.settle().features == pytest.approx(feats[0], abs=1e-4)
