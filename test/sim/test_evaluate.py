"""The evaluation harness: homing with the simulator's help, and (slow) one short episode per mode."""
import pytest
import torch

from bac_ros.sim.world import WorldConfig


@pytest.mark.slow
def test_closed_loop_smoke():
    """One short episode per mode with an untrained policy: the loop runs and reports inference."""
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.diffusion import DiffusionPolicy
    from bac_ros.policy.runner import PolicyRunner
    from bac_ros.policy.schedule import Schedule
    from bac_ros.robot.fr3_arm import FR3Arm
    from bac_ros.sim.evaluate import run_realtime, run_sync
    from bac_ros.sim.world import WorldProcess

    torch.manual_seed(0)
    policy = DiffusionPolicy.build(PolicyConfig.load("cpu"))
    cfg = WorldConfig(hostname="127.0.0.6")
    with WorldProcess(cfg) as world, FR3Arm(cfg.hostname) as arm:
        t0 = world.time()
        ep = run_sync(world, arm, PolicyRunner(policy, Schedule.full(policy.cfg)), seed=1, max_time=1.0)
        assert ep.chunks >= 3 and len(ep.inference_ms) == ep.chunks and not ep.success
        # the world was left running (pause timeouts are not asserted: they count inferences over 0.5 s of
        # wall time, which a loaded machine produces - seen at 716 ms with an evaluation beside it)
        assert world.time() > t0
        ep = run_realtime(world, arm, PolicyRunner(policy, None), seed=1, max_time=3.0)
        assert ep.chunks >= 2
        assert arm.commands_sent > 30
        assert len(ep.latency_ms) >= 1 and ep.realtime_factor > 0


@pytest.mark.slow
def test_fixed_latency_delivers_each_chunk_that_long_after_the_policy_started():
    """An emulated 50 ms computer: the world holds while the policy infers, whatever this machine's speed, so each
    chunk reaches the controller 50 ms of robot time after the inference began, on an observation at most one
    camera period older than that (policy_node takes the newest frame when it is free)."""
    from bac_ros.policy.config import PolicyConfig
    from bac_ros.policy.diffusion import DiffusionPolicy
    from bac_ros.policy.runner import PolicyRunner
    from bac_ros.robot.fr3_arm import FR3Arm
    from bac_ros.sim.evaluate import run_realtime
    from bac_ros.sim.world import WorldProcess

    torch.manual_seed(0)
    policy = DiffusionPolicy.build(PolicyConfig.load("cpu"))
    dt_ms = policy.cfg.action_dt * 1e3
    cfg = WorldConfig(hostname="127.0.0.7")
    with WorldProcess(cfg) as world, FR3Arm(cfg.hostname) as arm:
        ep = run_realtime(world, arm, PolicyRunner(policy, None), seed=2, max_time=1.5, latency_s=0.05,
                          stitch="switch")
        # prefix-conditioned stitching: every chunk starts with what the arm plays until it takes over, so the
        # plans meet at every switch (an untrained policy's plans are far apart otherwise)
        stitched = run_realtime(world, arm, PolicyRunner(policy, None), seed=2, max_time=1.5, latency_s=0.05,
                                stitch="prefix")
    assert ep.switches >= 2 and ep.switch_jump_rad > 0.01
    assert stitched.switches >= 2
    assert stitched.pause_timeouts > 0 or stitched.switch_jump_rad < 1e-5, stitched.switch_jump_rad
    lat = ep.obs_to_chunk_ms
    assert len(lat) >= 15, lat
    assert min(ep.latency_ms) >= 50 - 1e-6
    # exact to the 1 ms tick unless an inference outlasted the world's hold (max_pause_s of wall time: a machine
    # overloaded several times over), when the world stepped on while the policy thought
    assert ep.pause_timeouts > 0 or (min(lat) >= 50 - 1e-6 and max(lat) <= 50 + dt_ms + 2.001), lat


def test_home_with_fallback_asks_the_simulator_only_when_homing_fails():
    from bac_ros.robot.fr3_arm import HomingError
    from bac_ros.sim.episode import home_with_fallback

    calls = []

    def home_failing(times):
        def home():
            calls.append("home")
            if calls.count("home") <= times:
                raise HomingError("stuck")
        return home

    assert home_with_fallback(home_failing(0), lambda: calls.append("put")) == 0 and calls == ["home"]
    calls.clear()
    assert home_with_fallback(home_failing(2), lambda: calls.append("put")) == 2
    assert calls == ["home", "put", "home", "put", "home"]
    calls.clear()
    with pytest.raises(HomingError):
        home_with_fallback(home_failing(9), lambda: calls.append("put"), attempts=3)
    assert calls.count("put") == 3 and calls.count("home") == 4


def test_smoothness_at_switches_from_a_control_trace():
    """`switch_smoothness`: the plans' gap at each switch (the executor's), velocity reversals and jerk within the
    window around switches, from the measured joints; the episode's first chunk is not a switch."""
    import numpy as np

    from bac_ros.sim.evaluate import switch_smoothness

    t = np.arange(0.0, 1.0, 0.01)
    q = np.zeros((len(t), 7))
    q[:, 0] = np.where(t < 0.5, t, 1.0 - t)  # joint 1 turns back at 0.5 s (1 rad/s each way)
    firsts = {0: None, 20: 0.02, 50: 0.04}  # tick -> gap at that chunk's first command
    trace = [(float(t[i]), q[i], i in firsts, firsts.get(i)) for i in range(len(t))]
    out = switch_smoothness(trace, window_s=0.067)
    assert out["switches"] == 2 and out["jump_rad"] == pytest.approx(0.03)
    assert out["reversals"] == pytest.approx(0.5)  # the turn is within the window of the switch at 0.5 s only
    assert out["jerk"] > 0
    smooth = switch_smoothness([(float(t[i]), np.outer(t, np.ones(7))[i], i in firsts, firsts.get(i))
                                for i in range(len(t))], window_s=0.067)
    assert smooth["reversals"] == 0 and smooth["jerk"] == pytest.approx(0.0, abs=1e-6)
    assert switch_smoothness(trace[:3], 0.067)["switches"] == 0
