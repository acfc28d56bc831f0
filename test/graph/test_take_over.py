"""A take-over mid-grasp, over the real graph (slow): the scripted expert's plan streams as the policy's chunks
until the fingers hold the cube; a person takes over (teleop_node, no input: it holds the arm) and the gripper
stays closed on the cube; they hand back, the plan plays on, the gripper never opens, and the cube is lifted."""
import json

import numpy as np
import pytest


@pytest.mark.slow
def test_a_take_over_and_a_hand_back_mid_grasp_keep_the_gripper_closed(tmp_path):
    from bac_ros.graph import demo
    from bac_ros.robot.model import GRIPPER_MAX_WIDTH
    from bac_ros.sim.expert import ExpertChunks

    d = demo.Demo(tmp_path, hostname="127.0.0.9", episode_time=20.0)
    try:
        d.start()
        g = d.graph
        d.start_node("teleop_node", {})
        g.stream_as("policy_node")  # the plan plays as the policy's chunks
        d._home()
        reset = json.loads(g.call("bac/reset"))
        g.call("bac/hand_back")
        g.call("bac/start")
        g.wait_for(lambda: g.q is not None, 30, "no joint states")
        expert = ExpertChunks(g.publish_chunk, reset["cube"], g.q, g.now())
        g.record()
        g.every_tick(expert.tick)
        # mid-grasp: the fingers have closed on the 44 mm cube, which still rests on the table
        g.wait_for(lambda: (ep := g.episode) and ep["fingers_m"] < 0.047, 120, "the fingers did not close")
        g.every_tick(None)
        t_take = g.now()
        g.call("bac/take_over")
        g.wait_for(lambda: g.now() > t_take + 1.5, 60, "the clock did not advance")
        held = g.episode["fingers_m"]
        t_back = g.now()
        g.call("bac/hand_back")
        g.every_tick(expert.tick)  # the plan goes on: lift and hold
        g.wait_for(lambda: g.episode["done"], 300, "the episode did not end")
        g.every_tick(None)
        _, commands = g.recorded()
        ep = g.episode
    finally:
        d.stop()
    t = np.array([s for s, _ in commands])
    width = np.array([c[7] for _, c in commands])
    teleop = (t > t_take) & (t < t_back)
    assert teleop.sum() > 10, "the teleoperator's targets did not play"
    assert np.all(width[t > t_take] < GRIPPER_MAX_WIDTH / 2), "the gripper was commanded open after the take-over"
    assert 0.03 < held < 0.047, f"the fingers let go of the cube while the person held the arm ({held:.3f} m)"
    assert ep["success"], ep  # handed back, the plan lifted the cube it still held
