"""The grasp world: seeded poses, scoring, the torque link, and (slow) a real world with the expert."""
import time

import numpy as np
import pytest

from bac_ros.sim.world import CommandLink, LiftScore, WorldConfig, sample_cube_pose, world_overrides


def test_cube_poses_are_seeded_and_in_range():
    cfg = WorldConfig()
    a, b, c = sample_cube_pose(cfg, 7), sample_cube_pose(cfg, 7), sample_cube_pose(cfg, 8)
    assert a == b and a != c
    for seed in range(200):
        p = sample_cube_pose(cfg, seed)
        assert cfg.x_range[0] <= p.x <= cfg.x_range[1] and cfg.y_range[0] <= p.y <= cfg.y_range[1]
        assert cfg.yaw_range[0] <= p.yaw <= cfg.yaw_range[1]


def test_world_overrides_parse_or_name_the_key():
    kw = world_overrides(["camera_pos=1.0,0.1,0.65", "camera_fovy=52", "cube_rgba=0.1,0.3,0.9,1",
                          "table_rgba=0.3,0.3,0.3,1"])
    assert kw == {"camera_pos": (1.0, 0.1, 0.65), "camera_fovy": 52.0, "cube_rgba": (0.1, 0.3, 0.9, 1.0),
                  "table_rgba": (0.3, 0.3, 0.3, 1.0)}
    assert WorldConfig(**kw).camera_pos == (1.0, 0.1, 0.65)
    for bad, msg in [("camera_pos=1,2", "3 numbers"), ("colour=1", "KEY=VALUE"), ("camera_fovy", "KEY=VALUE"),
                     ("camera_fovy=wide", "comma list"), ("hostname=1", "KEY=VALUE")]:
        with pytest.raises(ValueError, match=msg):
            world_overrides([bad])


def test_lift_score():
    s = LiftScore(rest_z=0.04, lift=0.05, hold=1.0)
    assert not s.update(0.0, 0.04)
    assert not s.update(0.5, 0.10)  # lifted from 0.5 s
    assert not s.update(1.2, 0.10)
    assert not s.update(1.3, 0.08)  # dropped below 0.09: the hold restarts
    assert not s.update(1.4, 0.095)
    assert not s.update(2.3, 0.10)
    assert s.update(2.4, 0.10)
    assert s.update(3.0, 0.0)  # success sticks until reset
    s.reset()
    assert not s.success


def test_command_link_counts_stale_ticks_and_longest_gap():
    link = CommandLink()
    assert link.summary()["success_rate"] == 1.0 and link.summary()["torque_ticks"] == 0
    for i, fresh in enumerate([True, False, False, True, False, True, True, True]):
        link.update(fresh, i * 0.001)
    s = link.summary()
    assert s["torque_ticks"] == 8 and s["success_rate"] == 1 - 3 / 8 and s["longest_stale_ms"] == 2
    link.reset()
    assert link.summary()["longest_stale_ms"] == 0


@pytest.mark.slow
def test_world_and_expert_episode():
    """A real world process + franky client: seeded reset, camera, and the expert lifting the cube."""
    from bac_ros.robot.fr3_arm import FR3Arm
    from bac_ros.sim.episode import run_expert
    from bac_ros.sim.world import WorldProcess

    cfg = WorldConfig(hostname="127.0.0.5")
    with WorldProcess(cfg) as world, FR3Arm(cfg.hostname) as arm:
        pose = world.reset(3)
        assert (cfg.x_range[0] <= pose.x <= cfg.x_range[1] and cfg.y_range[0] <= pose.y <= cfg.y_range[1]
                and cfg.yaw_range[0] <= pose.yaw <= cfg.yaw_range[1])
        assert world.reset(4) != pose and world.reset(3) == pose  # a seed is one scene
        st = world.status()
        np.testing.assert_allclose(st["cube"][:2], [pose.x, pose.y], atol=1e-3)
        t, img = world.render()
        assert img.shape == (96, 96, 3) and img.dtype == np.uint8 and img.std() > 5
        # pause: the physics stops (sim clock frozen) until resume; the client keeps its connection
        t_pause = world.pause()
        time.sleep(0.2)
        assert world.time() == t_pause
        world.resume()
        assert world.wait_until(t_pause + 0.1) >= t_pause + 0.1 and world.status()["pause_timeouts"] == 0
        r = run_expert(world, arm, 3, 1 / 30)
        assert r.success, r.info
        assert len(r.steps) > 100 and r.steps[-1].t_sim > r.steps[0].t_sim
        # recorded on the sim clock: one observation per dt of robot time, whatever the machine's load
        gaps = np.diff([s.t_sim for s in r.steps])
        assert abs(gaps.mean() - 1 / 30) < 0.002 and gaps.max() < 0.1, (gaps.mean(), gaps.max())
        assert arm.commands_sent >= len(r.steps) and not arm.errors
        # the world waited for late torque commands rather than stepping on stale ones
        link = world.status()["link"]
        assert link["torque_ticks"] > 1000 and link["success_rate"] > 0.99, link


@pytest.mark.slow
def test_the_world_holds_at_an_instant_with_that_ticks_frame_in():
    """`run_until`: the clock (shared memory) stops at the asked instant, after the camera frame of that tick;
    frames come one camera period of sim time apart with the arm's state of their own tick."""
    from bac_ros.sim.world import WorldProcess

    import threading

    period = 1 / 30
    with WorldProcess(WorldConfig(hostname="127.0.0.8")) as world:
        frames, halt = [], threading.Event()

        def read():  # as the harness's camera thread
            while not halt.is_set():
                if (f := world.frame(0.05)) is not None:
                    frames.append(f)

        reader = threading.Thread(target=read)
        reader.start()
        world.camera(period)
        t0 = world.time()
        target = t0 + 0.3
        held = world.run_until(target)
        assert target - 1e-9 <= held <= target + 0.0021  # the tick that reaches it (1 ms ticks), or the next
        time.sleep(0.1)
        assert world.time() == held  # holding: the clock does not move
        halt.set()
        reader.join()
        stamps = np.array([s for s, _, _ in frames])
        # the stream starts on the tick that follows the request: the clock a client reads is the sim's own from the
        # start (franky-sim's warm-up runs it 0.1 s before the first tick)
        assert stamps[0] <= t0 + 0.0011 and len(frames) >= 9, (stamps, t0, held)
        assert stamps[-1] <= held + 1e-9 and stamps[-1] == world.last_frame_time, (stamps, t0, held)
        np.testing.assert_allclose(np.diff(stamps), period, atol=0.0011)
        assert all(img.shape == (96, 96, 3) and state.shape == (8,) for _, img, state in frames)
        assert world.next_frame_time > held
        again = world.run_until(world.next_frame_time)  # resumes, then holds at the next frame
        assert world.frame(1.0)[0] == pytest.approx(again, abs=1e-9)
        world.camera(None)
        world.resume()
        assert world.frame(0.3) is None
