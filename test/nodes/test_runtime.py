"""What every node's main() shares."""
import pytest

pytest.importorskip("rclpy", reason="rclpy not importable")


def test_spin_in_background_serves_while_the_caller_blocks():
    """The controller's /bac/home lives on a side node spun this way: it must answer while the main
    thread is busy, and stop cleanly."""
    import threading

    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_srvs.srv import Trigger

    from bac_ros.nodes.runtime import spin_in_background

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=204)
    try:
        side = rclpy.create_node("side", context=ctx)
        served = []
        side.create_service(Trigger, "/t/home", lambda _q, r: (served.append(threading.current_thread().name),
                                                               setattr(r, "success", True), r)[-1])
        stop = spin_in_background(side, "side-spin")
        caller = rclpy.create_node("caller", context=ctx)
        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(caller)
        client = caller.create_client(Trigger, "/t/home")
        assert client.wait_for_service(timeout_sec=10.0)
        fut = client.call_async(Trigger.Request())
        ex.spin_until_future_complete(fut, timeout_sec=10.0)
        assert fut.result() is not None and fut.result().success and served == ["side-spin"]
        stop()
        assert not any(t.name == "side-spin" for t in threading.enumerate())
        side.destroy_node()
        caller.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)


def test_pace_fires_once_per_period_of_the_graph_clock_without_bursts():
    from bac_ros.nodes.runtime import Pace

    pace = Pace(0.1)
    fired = [t for t in [i * 0.01 for i in range(100)] if pace.due(t)]  # polled at 100 Hz for 1 s
    assert len(fired) == 10 and fired[0] == 0.0
    assert all(abs(b - a - 0.1) < 0.011 for a, b in zip(fired, fired[1:]))
    assert pace.due(5.0) and not pace.due(5.05) and pace.due(5.1)  # after a stall: no burst to catch up
    assert pace.due(1.0)  # a clock that went back (a restarted simulator) starts again


def test_a_reporter_key_may_change_severity_without_raising():
    """rclpy refuses a call site whose severity changes ("Logger severity cannot be changed between calls"):
    the drift guard's info "back in range" followed by an error through one call site killed policy_node's
    inference thread. Every severity in turn, through one key and through one reporter, raises nothing."""
    import rclpy

    from bac_ros.nodes.runtime import Reporter

    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=204)
    try:
        node = rclpy.create_node("reporter_test", context=ctx)
        rep = Reporter(node, period_s=0.0)
        for level in ("info", "error", "warn", "info", "error"):
            rep.count("drift", f"message at {level}", level)
        assert rep.counts["drift"] == 5
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)
