"""What every node's main() shares: init, start-up errors as a clear exit, spin, orderly shutdown;
the node clock in seconds; and the /diagnostics message they publish."""
from __future__ import annotations

import sys
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node


def now_s(node: Node) -> float:
    """The node's clock in seconds: the wall clock, or the simulator's /clock with use_sim_time."""
    return node.get_clock().now().nanoseconds * 1e-9


def steady_timer(node: Node, period_s: float, callback, callback_group=None):
    """A timer on the wall (steady) clock, whatever the node's clock. A loop that must run at a rate reads
    the node's clock inside (the simulator's with use_sim_time). Measured in the graph: timers on the
    simulator's clock fired ~42 times per simulated second instead of 100 while the expert's chunks
    streamed (83 with a policy), and the arm held instead of following."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, callback_group=callback_group,
                             clock=Clock(clock_type=ClockType.STEADY_TIME))


def diagnostics(node: Node, name: str, message: str, values: dict, level=DiagnosticStatus.OK,
                hardware_id: str = "") -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


def run_node(make: Callable[[], Node], name: str, threads: int = 1, args=None,
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
    executor = MultiThreadedExecutor(num_threads=threads)
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
