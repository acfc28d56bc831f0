"""Source identity: a publisher discovery has not named yet is never remembered as unknown, its chunk waits
for the name; a wrong publisher never plays. Pure first, then controller_node as a process with publishers
that start after it and publish at once (before discovery settles), on both chunk topics."""
import time

import numpy as np
import pytest

from bac_ros.nodes.senders import Pending, SenderIdentity


class FakeDiscovery:
    """Names the publisher only after `unknown_for` look-ups (as discovery does while node info is in flight)."""

    def __init__(self, unknown_for: int, name: str = "teleop_node", namespace: str = "/"):
        self.calls, self.unknown_for, self.name, self.namespace = 0, unknown_for, name, namespace

    def __call__(self):
        self.calls += 1
        return [(b"gid-1", "_NODE_NAME_UNKNOWN_" if self.calls <= self.unknown_for else self.name, self.namespace)]


def test_an_unknown_name_is_asked_again_not_remembered():
    clock = [0.0]
    disc = FakeDiscovery(unknown_for=3)
    ident = SenderIdentity(disc, refresh_s=0.05, clock=lambda: clock[0])
    for _ in range(3):
        assert ident.name(b"gid-1") is None
        assert ident.name(b"gid-1") is None  # within refresh_s: no new look-up
        clock[0] += 0.05
    assert ident.name(b"gid-1") == ("teleop_node", "/")
    calls = disc.calls
    assert ident.name(b"gid-1") == ("teleop_node", "/") and disc.calls == calls  # a known name is kept


def test_names_match_plainly_or_fully_qualified():
    assert SenderIdentity.matches(("policy_node", "/lab"), "policy_node")
    assert SenderIdentity.matches(("policy_node", "/lab"), "/lab/policy_node")
    assert not SenderIdentity.matches(("policy_node", "/other"), "/lab/policy_node")
    assert not SenderIdentity.matches(("intruder", "/"), "policy_node")
    assert SenderIdentity.matches(("policy_node", "/"), "/policy_node")


def test_a_pending_message_is_released_when_named_and_dropped_after_the_timeout():
    clock = [0.0]
    disc = FakeDiscovery(unknown_for=1)
    ident = {"teleop": SenderIdentity(disc, refresh_s=0.0, clock=lambda: clock[0])}
    pending = Pending(timeout_s=2.0, clock=lambda: clock[0])
    pending.hold("teleop", b"gid-1", "first")
    pending.hold("teleop", b"gid-1", "second")  # the newest replaces it
    assert list(pending.take(ident)) == [] and len(pending) == 1  # look-up 1: not named yet
    assert list(pending.take(ident)) == [("teleop", ("teleop_node", "/"), "second")] and len(pending) == 0

    never = {"teleop": SenderIdentity(lambda: [(b"gid-2", "_NODE_NAME_UNKNOWN_", "/")], clock=lambda: clock[0])}
    pending.hold("teleop", b"gid-2", "orphan")
    clock[0] += 1.0
    assert list(pending.take(never)) == []
    clock[0] += 1.5
    assert list(pending.take(never)) == [("teleop", None, "orphan")]
    pending.hold("teleop", b"gid-2", "x")
    pending.discard("teleop", b"gid-3")
    assert len(pending) == 1
    pending.discard("teleop", b"gid-2")
    assert len(pending) == 0
    small = Pending(limit=2, clock=lambda: clock[0])
    for k in range(5):  # a flood of new publishers: bounded, the newest kept
        small.hold("policy", bytes([k]), k)
    assert len(small) == 2


@pytest.mark.slow
def test_publishers_that_start_after_the_controller_are_never_locked_out():
    """controller_node starts first (no robot: it keeps connecting, and its executor refuses chunks as planned
    before /bac/start, which proves they got past the identity check); then `policy_node` and `teleop_node`
    publishers are created and publish at once, and an `intruder` publishes on the policy topic. No chunk of
    the right nodes is refused for its source; every intruder chunk is."""
    pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from trajectory_msgs.msg import JointTrajectory

    from bac_ros.nodes.messages import chunk_to_trajectory
    from bac_ros.robot.model import Q_HOME

    from support import node_process

    with node_process("controller_node", 216, "-p", "robot_ip:=127.0.0.99", "-p", "realtime_mode:=ignore",
                      "-p", "connect_timeout_s:=600.0") as (_, ctx):
        watcher = rclpy.create_node("watcher", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(watcher)
        diag = {}
        watcher.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.update(
            {kv.key: kv.value for st in m.status if st.name == "bac: controller_node" for kv in st.values}), 10)
        deadline = time.monotonic() + 60
        while not diag and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
        assert diag, "controller_node did not report"
        # the publishers start now, and publish at once: discovery has not named them yet
        nodes = {name: rclpy.create_node(name, context=ctx) for name in ("policy_node", "teleop_node", "intruder")}
        pubs = {"policy_node": nodes["policy_node"].create_publisher(JointTrajectory, "bac/action_chunk", 10),
                "teleop_node": nodes["teleop_node"].create_publisher(JointTrajectory, "bac/teleop_chunk", 10),
                "intruder": nodes["intruder"].create_publisher(JointTrajectory, "bac/action_chunk", 10)}
        plan = np.tile(np.r_[Q_HOME, 0.08], (4, 1))
        sent = 0
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            stamp = time.time()
            for pub in pubs.values():
                pub.publish(chunk_to_trajectory(plan, stamp, 1 / 30))
            sent += 1
            ex.spin_once(timeout_sec=1 / 30)
        t_end = time.monotonic() + 3.0  # two diagnostics periods
        while time.monotonic() < t_end:
            ex.spin_once(timeout_sec=0.1)
        count = lambda key: int(diag.get(key, 0))  # noqa: E731
        # every chunk of both right publishers got past the identity check: the policy's reached the executor
        # (refused there: nothing plays before start), the teleoperator's were set aside (the policy plays)
        assert count("chunks_refused_before_start") >= sent - 5, diag
        assert count("chunks_ignored_teleop") >= sent - 5, diag
        assert count("chunks_refused_unidentified") == 0, diag
        # the intruder's chunks: refused for their source, each one (those that waited for its name too)
        assert sent - 5 <= count("chunks_refused_source") <= sent, diag


def test_the_controller_plays_a_chunk_that_came_before_discovery_named_its_sender(monkeypatch):
    """controller_node in this process, its discovery look-up answering `_NODE_NAME_UNKNOWN_` for the first
    look-ups (the start-up race that once refused a whole teleoperated run): the chunk waits, then plays;
    the same publisher's later chunks play directly; an intruder's never do."""
    pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")
    import rclpy
    from rclpy.parameter import Parameter

    from bac_ros.nodes.controller_node import ControllerNode
    from bac_ros.nodes.messages import chunk_to_trajectory
    from bac_ros.robot.model import Q_HOME

    class Endpoint:
        def __init__(self, gid, name):
            self.endpoint_gid, self.node_name, self.node_namespace = gid, name, "/"

    looked_up = {"n": 0}

    def publishers(self, topic):
        looked_up["n"] += 1
        known = looked_up["n"] > 2
        return [Endpoint(list(b"teleop-gid"), "teleop_node" if known else "_NODE_NAME_UNKNOWN_"),
                Endpoint(list(b"intruder-gid"), "intruder" if known else "_NODE_NAME_UNKNOWN_")]

    monkeypatch.setattr(ControllerNode, "get_publishers_info_by_topic", publishers)
    rclpy.init(domain_id=218)
    node = ControllerNode.__new__(ControllerNode)
    try:
        ControllerNode.__init__(node)
        node.set_parameters([Parameter("use_sim_time", value=False)])
        node.source = "teleop"  # the teleoperator plays: its chunks go to the executor
        executor = node.chunk_executor
        played = lambda: sum(v for k, v in executor.counts.items() if k.startswith("refused_"))  # noqa: E731
        refused = lambda: node.reporter.counts["chunks_refused_source"]  # noqa: E731
        from rclpy.serialization import serialize_message

        chunk = serialize_message(chunk_to_trajectory(np.tile(np.r_[Q_HOME, 0.08], (2, 1)), 1.0, 1 / 30))
        info = lambda gid: {"publisher_gid": {"data": list(gid)}}  # noqa: E731
        node.on_chunk(chunk, info(b"teleop-gid"), "teleop")  # look-up 1: unknown -> waits
        node.on_chunk(chunk, info(b"intruder-gid"), "teleop")  # unknown too -> waits beside it
        assert played() == refused() == 0 and node.reporter.counts["chunks_pending_identity"] == 2
        time.sleep(0.06)
        node.settle_pending()  # look-up 2: still unknown; nothing is decided, nothing remembered
        assert played() == refused() == 0 and len(node._pending) == 2
        time.sleep(0.06)
        # look-up 3: named. The teleoperator's chunk reaches the executor (which refuses it only because nothing
        # plays before /bac/start and no robot is there); the intruder's is refused for its source
        node.settle_pending()
        assert played() == 1 and refused() == 1 and len(node._pending) == 0
        node.on_chunk(chunk, info(b"teleop-gid"), "teleop")  # named now: straight on
        assert played() == 2 and refused() == 1
        # 10 MB from the source (100 000 points): refused by its size, never deserialised (1 s of the control
        # executor before); 10 MB from the intruder: refused for its sender, unread too
        import bac_ros.nodes.controller_node as controller_module

        read = []
        monkeypatch.setattr(controller_module, "deserialize_message", lambda *a: read.append(a) or 1 / 0)
        huge = bytes(10_000_000)
        node.on_chunk(huge, info(b"teleop-gid"), "teleop")
        node.on_chunk(huge, info(b"intruder-gid"), "teleop")
        assert read == [] and executor.counts["refused_points"] == 1 and refused() == 2
    finally:
        node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
