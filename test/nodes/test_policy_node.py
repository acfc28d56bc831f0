"""policy_node as a process."""
import json
import math

import numpy as np
import pytest

msgs = pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")


def test_policy_node_refuses_a_wrong_schedule(tmp_path):
    """A schedule for another model: the node does not start and says why."""
    import subprocess
    import sys

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "bac-schedule/1", "method": "bac", "model": {"n_layer": 9},
                               "sampler": {"type": "ddim", "num_inference_steps": 20}, "blocks": {"L0.sa": [0]}}))
    r = subprocess.run([sys.executable, "-m", "bac_ros.nodes.policy_node", "--ros-args", "-p", f"schedule:={bad}"],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                        "ROS_DOMAIN_ID": "201"})
    assert r.returncode == 2
    assert "model.n_layer" in r.stderr


def test_policy_node_on_a_robot_refuses_the_shipped_simulation_policy_unless_named():
    """Issue 36: with a real robot (no simulated clock) `checkpoint: auto` would play the policy trained on our
    simulated cube. The node stops (exit 2) with the reason and what to do instead."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "bac_ros.nodes.policy_node", "--ros-args", "-p", "schedule:=bac_s7"],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                        "ROS_DOMAIN_ID": "203"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "simulated" in r.stderr and "checkpoint:=shipped" in r.stderr and "bac train" in r.stderr, r.stderr


@pytest.mark.slow
def test_policy_node_infers_on_its_own_thread_and_stops_cleanly():
    """policy_node as a process: an observation in -> a chunk out stamped with it; a reset clears the
    history and the next observation still gets its chunk; the drift guard's shadow checks show in
    /diagnostics, run only while controller_node says it plays the policy, and a reset restarts the guard;
    Ctrl-C ends it without a traceback."""
    import os
    import signal
    import time

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String
    from std_srvs.srv import Trigger
    from trajectory_msgs.msg import JointTrajectory
    from visualization_msgs.msg import MarkerArray

    from bac_ros.robot.model import Q_HOME

    from bac_ros.nodes.runtime import LATCHED_QOS

    from support import node_process

    with node_process("policy_node", 205, "-p", "schedule:=bac_s7", "-p", "checkpoint:=shipped",
                      "-p", "drift_check_every:=1") as (proc, ctx):
        node = rclpy.create_node("feeder", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        chunks, markers = [], []
        node.create_subscription(JointTrajectory, "/bac/action_chunk", chunks.append, 10)
        node.create_subscription(MarkerArray, "/bac/markers", markers.append, 10)
        diags = []
        node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diags.extend(
            {kv.key: kv.value for kv in st.values} for st in m.status if "policy_node" in st.name), 10)
        img_pub = node.create_publisher(Image, "/camera/color/image_raw", 5)
        js_pub = node.create_publisher(JointState, "/joint_states", 5)
        state_pub = node.create_publisher(String, "/bac/controller_state", LATCHED_QOS)
        source_pub = node.create_publisher(String, "/bac/source", LATCHED_QOS)
        reset = node.create_client(Trigger, "/bac/policy/reset")
        assert reset.wait_for_service(timeout_sec=60.0), "policy_node did not come up"
        rgb = np.zeros((96, 96, 3), np.uint8)

        def observe(stamp: float) -> JointTrajectory:
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline:
                js_pub.publish(msgs.vector_to_joint_state(Q_HOME, np.zeros(7), 0.08, stamp))
                img_pub.publish(msgs.array_to_image(rgb, stamp))
                ex.spin_once(timeout_sec=0.1)
                got = [c for c in chunks if abs(msgs.to_sec(c.header.stamp) - stamp) < 1e-6]
                if got:
                    return got[0]
            raise AssertionError(f"no chunk for the observation at {stamp}")

        def diagnosed(check, timeout: float = 10.0) -> dict:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if diags and check(diags[-1]):
                    return diags[-1]
                ex.spin_once(timeout_sec=0.1)
            raise AssertionError(f"/diagnostics never showed it: {diags[-1:]}")

        def call_reset() -> None:
            fut = reset.call_async(Trigger.Request())
            ex.spin_until_future_complete(fut, timeout_sec=10.0)
            assert fut.result().success

        def controller(state: str) -> None:
            state_pub.publish(String(data=f"{state}: as the test says"))
            source_pub.publish(String(data='{"source": "policy", "since": 0.0, "interventions": 0}'))

        controller("running")  # controller_node plays the policy's chunks: the guard checks
        first = observe(100.0)
        assert len(first.points) >= 8
        # the measured path beside a plan needs two joint states or more; a backend loaded from the cache can
        # answer the very first one, so the plan drawn is that of a second observation
        first = observe(100.1)
        for _ in range(20):
            ex.spin_once(timeout_sec=0.05)
        # rviz: the plan, the measured path beside it (the states observed) and the controller's state
        drawn = {(mk.ns, mk.id): mk for mk in markers[-1].markers}
        assert {ns for ns, _ in drawn} == {"bac_chunk", "bac_executed", "bac_state"}, set(drawn)
        assert len(drawn["bac_chunk", 0].points) == len(first.points) and len(drawn["bac_executed", 0].points) >= 2
        assert "running: as the test says" in drawn["bac_state", 0].text
        call_reset()
        observe(101.0)
        checked = diagnosed(lambda d: int(d.get("drift_checks", 0)) >= 2 and d["drift_ratio_last"] != "nan")
        assert checked["drift_watching"] == "true" and checked["drift_state"] in ("ok", "warn", "dense")
        assert float(checked["drift_ratio_last"]) > 0
        # the statistic, its threshold (the shipped schedule's closed-loop reference) and the state
        assert float(checked["drift_cusum"]) >= 0 and float(checked["drift_threshold"]) >= 1.0
        # the observation distance beside it (the shipped schedule carries its reference)
        assert float(checked["drift_observation_threshold"]) >= 1.0
        assert math.isfinite(float(checked["drift_observation_z_last"]))
        assert checked["schedule_active"] == "bac(S=7)"  # watch (the shipped default) never switches
        # inference time on the wall clock and on the inference thread's CPU clock, which cannot run ahead of it
        cpu_ms, wall_ms = float(checked["inference_cpu_ms_p50"]), float(checked["inference_ms_p50"])
        assert 0 < cpu_ms <= wall_ms * 1.01 + 0.1, (cpu_ms, wall_ms)

        controller("ready")  # homing, a reset, the world between episodes: chunks go on, checks do not
        diagnosed(lambda d: d["drift_watching"] == "false")
        before = int(diags[-1]["drift_checks"])
        for stamp in (102.0, 103.0, 104.0):
            observe(stamp)
        call_reset()
        after = diagnosed(lambda d: int(d["chunks"]) >= 5 and d["drift_cusum"] == "0.000")
        assert int(after["drift_checks"]) == before and after["drift_state"] == "ok"

        controller("running")
        observe(105.0)
        diagnosed(lambda d: int(d["drift_checks"]) > before)
        node.destroy_node()
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-2000:]
    assert out.count("Traceback") == out.count("Exception ignored in"), out[-2000:]


def test_prefix_stitching_follows_the_controllers_takeovers():
    """stitch prefix: policy_node mirrors which of its chunks controller_node plays (bac/first_command) and holds
    the next plan to what the arm executes until that plan takes over; nothing held when another source's chunk
    took over, when the controller does not play, or after a reset."""
    import rclpy
    from sensor_msgs.msg import TimeReference
    from std_srvs.srv import Trigger

    from bac_ros.robot.streaming import Chunk, held_point
    from bac_ros.nodes import messages as msgs
    from bac_ros.nodes.policy_node import PolicyNode

    rclpy.init(domain_id=221, args=["--ros-args", "-p", "schedule:=bac_s7", "-p", "checkpoint:=shipped", "-p",
                                    "backend:=eager", "-p", "drift_guard:='off'", "-p", "stitch:=prefix"])
    node = PolicyNode()
    try:
        dt = node.policy.cfg.action_dt
        ramp = np.arange(16)[:, None] * 0.01 * np.ones((1, 8))
        ours = Chunk(10.0, ramp, dt)
        with node._mirror_lock:
            node._published.append(ours)
            node._mirror.offer(ours)
        node._publish_s.extend([0.1] * 3)  # observation -> publication
        node._controller["state"] = "running"

        def took_over(planned: float, at: float) -> None:
            msg = TimeReference()
            msg.header.stamp, msg.time_ref = msgs.to_time(at), msgs.to_time(planned)
            node.on_first_command(msg)

        took_over(10.0, 10.05)  # ours took over 50 ms after its observation: it plays until 10.0 + (1 + 8) dt
        s = 10.101
        held = node._prefix(s)  # arrives at 10.201, before ours' commit ends (10.3): takes over then
        until = 10.0 + 9 * dt
        assert len(held) == int((until + dt / 2 - s) / dt) + 1
        np.testing.assert_allclose(held, [held_point(ramp, 10.0, dt, s + (i + 0.5) * dt) for i in range(len(held))])
        node._controller["state"] = "ready"
        assert node._prefix(s) is None  # the controller holds: nothing of ours plays
        node._controller["state"] = "running"
        took_over(9.9, 10.2)  # a teleoperator's chunk took over
        assert node._prefix(s) is None
        took_over(10.0, 10.25)
        assert node._prefix(s) is not None
        node.on_reset(Trigger.Request(), Trigger.Response())
        assert node._prefix(s) is None
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
