"""What every node's main() shares: init, start-up errors as a clear exit, spin, orderly shutdown;
the node clock in seconds; and the /diagnostics message they publish.

Every node spins on rclpy's SingleThreadedExecutor; work that blocks (inference, homing the arm) runs on a
thread of its own or on a side node with its own executor (`spin_in_background`). rclpy's
MultiThreadedExecutor polls while its pool runs a callback: measured on this 2-core machine, a node that
only follows the simulator's /clock at 250 Hz costs 27-53 % of a core with it (1-3 threads) against 5-8 %
single-threaded, and the graph ran three such nodes."""
from __future__ import annotations

import sys
import threading
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def now_s(node: Node) -> float:
    """The node's clock in seconds: the wall clock, or the simulator's /clock with use_sim_time."""
    return node.get_clock().now().nanoseconds * 1e-9


def steady_timer(node: Node, period_s: float, callback):
    """A timer on the wall (steady) clock, whatever the node's clock. A loop that must run at a rate reads
    the node's clock inside (the simulator's with use_sim_time): a timer on the simulator's clock fires
    only as fast as the node takes in /clock. Measured in the graph while nodes still ran rclpy's
    MultiThreadedExecutor: ~42 firings per simulated second instead of 100 while the expert's chunks
    streamed (83 with a policy), and the arm held instead of following."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def diagnostics(node: Node, name: str, message: str, values: dict, level=DiagnosticStatus.OK,
                hardware_id: str = "") -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def spin_in_background(node: Node, name: str) -> Callable[[], None]:
    """Spin `node` on its own single-threaded executor in a daemon thread; returns the function that stops
    the executor and waits for the thread."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)

    def spin():
        try:
            executor.spin()
        except ExternalShutdownException:
            pass
        except Exception:  # noqa: BLE001 - Ctrl-C can invalidate the context while the executor waits
            if node.context.ok():
                raise

    thread = threading.Thread(target=spin, daemon=True, name=name)
    thread.start()

    def stop() -> None:
        executor.shutdown(timeout_sec=1.0)
        thread.join(2.0)

    return stop


def run_node(make: Callable[[], Node], name: str, args=None,
             startup_errors: tuple[type[BaseException], ...] = (Exception,)) -> int:
    """Init, build the node (an error while starting -> message on stderr, exit code 2), spin until
    Ctrl-C / shutdown, then call the node's `shutdown()` if it has one and destroy it."""
    rclpy.init(args=args)
    try:
        node = make()
    except startup_errors as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if hasattr(node, "shutdown"):
            node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
