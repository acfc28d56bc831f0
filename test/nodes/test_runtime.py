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
