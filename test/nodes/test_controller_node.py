"""controller_node in this process, without a robot: what a node may never let happen to itself. Who may drive
the arm is fixed at start-up; a service whose work raises answers a failure and the node lives; one fault
starts at most one reconnect thread."""
import threading
import time

import pytest

pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")
from bac_ros.nodes.messages import ControllerState  # noqa: E402


@pytest.fixture
def controller():
    import rclpy

    from bac_ros.nodes.controller_node import ControllerNode

    rclpy.init(domain_id=219, args=["--ros-args", "-p", "robot_ip:=127.0.0.99", "-p", "realtime_mode:=ignore",
                                    "-p", "connect_timeout_s:=600.0"])
    node = ControllerNode()
    try:
        yield node
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


def test_the_sources_are_read_only_after_start(controller):
    from rclpy.parameter import Parameter

    for name, value in (("chunk_source", "intruder"), ("teleop_source", "intruder"), ("max_velocity_factor", 1.0),
                        ("auto_recover", True)):
        result = controller.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and "read-only" in result.reason, name
    assert controller.senders == {"policy": "policy_node", "teleop": "teleop_node"}


def test_a_service_whose_work_raises_answers_a_failure_and_the_node_lives(controller):
    from std_srvs.srv import Trigger

    class Broken:
        def restart_tracker(self, *a, **k):
            raise RuntimeError("the robot went away mid-call")

        def stop(self):
            pass

    controller.arm, controller.state = Broken(), ControllerState.READY
    resp = controller.on_home(Trigger.Request(), Trigger.Response())
    assert not resp.success and "went away" in resp.message
    controller.arm, controller.state = None, ControllerState.FAULTED
    resp = controller.on_recover(Trigger.Request(), Trigger.Response())
    assert not resp.success  # nothing to recover with: said, not raised
    controller.arm = None
    resp = controller.on_take_over(Trigger.Request(), Trigger.Response())
    assert resp.success and controller.source == "teleop"


def test_one_fault_starts_at_most_one_reconnect_thread(controller):
    controller._closing.set()  # the start-up connect loop ends
    controller._connector.join(10)
    started = []

    def connect(deadline):  # stands in for the reconnect loop: a thread that keeps trying for a while
        t = threading.Thread(target=time.sleep, args=(2.0,), daemon=True)
        t.start()
        started.append(t)
        return t

    controller._connect_in_background = connect
    controller._connector = None
    for _ in range(3):  # three callbacks report the lost robot, one after the other
        controller.arm, controller.state = type("Gone", (), {"stop": lambda self: None})(), ControllerState.RUNNING
        controller._fault(RuntimeError("UDP receive: Timeout"), "control")
    assert len(started) == 1 and controller.state == "faulted" and "robot lost" in controller.reason


def test_an_internal_error_is_said_as_such_and_keeps_the_robot(controller):
    """Issue 35: a ValueError in homing (its speed above the lab's factor) was reported as "robot lost" and the arm
    dropped. A programming error keeps the connection, with its own reason and counter; /bac/recover clears it."""
    controller._closing.set()
    controller._connector.join(10)
    started = []
    controller._connect_in_background = lambda deadline: started.append(deadline)
    arm = type("Arm", (), {"stop": lambda self: None})()
    controller.arm, controller.state = arm, ControllerState.RUNNING
    controller._fault(ValueError("speed_factor must be in (0, 0.1], got 0.25"), "homing")
    assert controller.state == "faulted" and controller.arm is arm and not started
    assert controller.reason == "internal error in homing: ValueError: speed_factor must be in (0, 0.1], got 0.25"
    controller.state = ControllerState.RUNNING
    controller._fault(RuntimeError("UDP receive: Timeout"), "control")  # the link: the robot is gone
    assert "robot lost" in controller.reason and controller.arm is None and len(started) == 1


def test_shutdown_waits_for_the_connect_attempt(controller, monkeypatch):
    """The process must not end around a thread inside franky (CI: exit -11 on SIGINT while it retried)."""
    import bac_ros.nodes.controller_node as module

    controller._closing.set()  # the start-up connect loop ends
    controller._connector.join(10)
    controller._closing.clear()
    attempts = []

    def slow_arm(*a, **k):  # an attempt still inside the connect call when shutdown begins
        attempts.append(time.monotonic())
        time.sleep(1.0)
        raise RuntimeError("Connection to FCI refused")

    monkeypatch.setattr(module, "FR3Arm", slow_arm)
    controller._connector = controller._connect_in_background(deadline=None)
    while not attempts:
        time.sleep(0.01)
    controller.shutdown()
    assert not controller._connector.is_alive()
    assert len(attempts) == 1  # no retry once shutting down
    controller.shutdown()  # a second call (run_node's, after the node's own) does nothing


def test_auto_recover_clears_a_robot_error_and_then_holds(controller):
    """Issue 35: with auto_recover the chunk was driven again 10 ms after a reflex (0.72 rad in 0.7 s) where the
    parameter says it holds. After the recovery the controller is ready and holding: nothing plays until
    /bac/start."""
    import numpy as np

    from bac_ros.robot.streaming import Chunk
    from bac_ros.robot.model import Q_HOME
    from support import fake_arm

    controller._closing.set()
    controller._connector.join(10)
    arm, robot = fake_arm(auto_recover=True)
    controller.arm, controller.state = arm, ControllerState.RUNNING
    controller.chunk_executor.start(controller.get_clock().now().nanoseconds * 1e-9)
    now = controller.get_clock().now().nanoseconds * 1e-9
    plan = np.tile(np.r_[Q_HOME + 0.3, 0.04], (30, 1))
    assert controller.chunk_executor.offer(Chunk(now, plan, 1 / 30), now) is None
    robot.t += 0.01
    controller.control_tick()
    assert len(robot.sent) == 1  # playing
    robot.raise_next.append(RuntimeError("cartesian reflex"))
    robot.t += 0.01
    controller.control_tick()  # the reflex: recovered by itself, then holding
    assert arm.auto_recoveries == 1 and robot.recovered == 1
    assert controller.state == "ready" and "recovered by itself" in controller.reason
    n = len(robot.sent)
    for _ in range(20):
        robot.t += 0.01
        controller.control_tick()
    assert len(robot.sent) == n  # the chunk is not driven again


def test_a_stop_holds_in_every_state_and_ends_a_homing(controller):
    """bac/stop: running or ready -> ready (a hold every tick, homing told to end); faulted or connecting: it
    succeeds and changes nothing (nothing plays). A stop that comes while /bac/home restarts the torque loop,
    before the motion begins, still ends that homing (it was lost when the motion cleared its own flag)."""
    from std_srvs.srv import Trigger

    from bac_ros.robot.streaming import CommandKind
    from bac_ros.robot.fr3_arm import MotionStopped

    class Homing:
        press_stop = True

        def restart_tracker(self):  # a person presses stop meanwhile
            if self.press_stop:
                assert controller.on_stop(Trigger.Request(), Trigger.Response()).success

        def move_home(self, q, duration, stop):
            if stop.is_set():
                raise MotionStopped("homing stopped on request")

        def stop(self):
            pass

    arm = Homing()
    controller.arm, controller.state = arm, ControllerState.RUNNING
    controller.chunk_executor.start(0.0)
    resp = controller.on_stop(Trigger.Request(), Trigger.Response())
    assert resp.success and controller.state == "ready" and "bac/stop" in controller.reason
    assert controller.chunk_executor.tick(1.0, robot_t=1.0).kind is CommandKind.HOLD
    resp = controller.on_home(Trigger.Request(), Trigger.Response())
    assert not resp.success and resp.message == "homing stopped by bac/stop", resp.message
    assert controller.state == "ready" and "stopped by bac/stop while homing" in controller.reason
    arm.press_stop = False
    resp = controller.on_home(Trigger.Request(), Trigger.Response())  # the next homing: that stop is spent
    assert resp.success and controller.reason == "at home; holding", resp.message
    controller.state, controller.reason = ControllerState.FAULTED, "robot error in control: reflex"
    resp = controller.on_stop(Trigger.Request(), Trigger.Response())
    assert resp.success and "nothing plays" in resp.message and controller.state == "faulted"
    controller.arm = None


@pytest.mark.parametrize("name, value", [("joint_damping", "[100.0, 100.0, 100.0, 100.0, 40.0, 40.0]"),
                                         ("joint_stiffness", "[600.0, 600.0, 600.0, 0.0, 250.0, 150.0, 50.0]"),
                                         ("joint_damping", "[100.0, 100.0, -1.0, 100.0, 40.0, 40.0, 20.0]")])
def test_joint_gains_need_seven_values_in_range(name, value):
    """The torque loop's impedance: 7 stiffnesses > 0 and 7 dampings >= 0, or the node does not start."""
    import rclpy

    from bac_ros.nodes.controller_node import ControllerNode

    rclpy.init(domain_id=219, args=["--ros-args", "-p", "robot_ip:=127.0.0.99", "-p", "realtime_mode:=ignore",
                                    "-p", f"{name}:={value}"])
    try:
        with pytest.raises(ValueError, match="joint_stiffness needs 7 values > 0 and joint_damping 7 values >= 0"):
            ControllerNode()
    finally:
        rclpy.try_shutdown()


def test_the_joint_gains_reach_the_arm(controller):
    from bac_ros.robot.fr3_arm import DEFAULT_DAMPING, DEFAULT_STIFFNESS

    assert list(controller._arm_args["stiffness"]) == list(DEFAULT_STIFFNESS)
    assert list(controller._arm_args["damping"]) == list(DEFAULT_DAMPING)
