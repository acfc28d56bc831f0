"""The scripted expert: its plan, and its plan streamed as chunks."""
import numpy as np
import pytest

from bac_ros.robot.model import Q_HOME


def test_expert_plan_only_pauses_while_the_fingers_close():
    from bac_ros.sim.expert import ExpertConfig, plan_grasp
    from bac_ros.sim.world import CubePose

    dt, cfg = 1 / 30, ExpertConfig()
    plan = plan_grasp(CubePose(0.5, 0.1, 0.3), Q_HOME, dt, cfg=cfg)
    moving = np.linalg.norm(np.diff(plan.tcp, axis=0), axis=1) > 2e-4  # 6 mm/s
    hold_start = len(plan.q) - round(cfg.t_hold / dt)
    still, longest = 0, 0
    for m in moving[:hold_start - 1]:
        still = 0 if m else still + 1
        longest = max(longest, still)
    # the close phase and a step of each ramp may stand still; the min-jerk plan with its 0.8 s close: 28 steps
    assert longest <= round(cfg.t_close / dt) + 2, longest
    assert moving[:3].any(), "the plan should leave home at once"
    assert plan.ik_error < 1e-3
    closed = np.flatnonzero(plan.gripper < 0.04)
    assert closed[0] == round(cfg.t_approach / dt) + round(cfg.t_descend / dt) and closed[-1] == len(plan.q) - 1
    with pytest.raises(ValueError, match="ramp"):
        ExpertConfig(ramp=0.7)


def test_expert_source_streams_each_step_once_and_stops_at_the_plan_end():
    from bac_ros.sim.expert import ExpertChunks

    sent = []
    src = ExpertChunks(lambda a, stamp, dt: sent.append((stamp, len(a))), [0.5, 0.0, 0.2], Q_HOME, now=10.0)
    n, dt = len(src.actions), src.dt
    t = 10.0
    while t < 10.0 + (n + 30) * dt:  # ticks at 100 Hz, well past the plan's end
        src.tick(t)
        t += 0.01
    stamps = [s for s, _ in sent]
    assert len(sent) == n  # every step once, nothing after the last
    assert np.allclose(np.diff(stamps), dt) and stamps[0] == pytest.approx(src.t0)
    assert sent[0][1] == 16 and sent[-1][1] == 1  # 16-point chunks, shorter at the end
