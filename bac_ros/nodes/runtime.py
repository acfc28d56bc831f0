"""What every node's main() shares: init, start-up errors as a clear exit, spin, orderly shutdown;
the node clock in seconds; and the /diagnostics message they publish.

Every node spins on rclpy's SingleThreadedExecutor; work that blocks (inference, homing the arm) runs on a
thread of its own or on a side node with its own executor (`spin_in_background`): rclpy's
MultiThreadedExecutor polls while its pool runs a callback, which costs a core's share per node that follows
the simulator's /clock (docs/control.md)."""
from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections import Counter
from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile

from ..core import native_threads

LATCHED_QOS = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)  # the last message, for late joiners


def now_s(node: Node) -> float:
    """The node's clock in seconds: the wall clock, or the simulator's /clock with use_sim_time."""
    return node.get_clock().now().nanoseconds * 1e-9


def steady_timer(node: Node, period_s: float, callback):
    """A timer on the wall (steady) clock, whatever the node's clock. A loop that must run at a rate reads
    the node's clock inside (the simulator's with use_sim_time): a timer on the simulator's clock fires
    only as fast as the node takes in /clock, and fell well short of its rate in the graph (docs/control.md)."""
    from rclpy.clock import Clock, ClockType

    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


class Pace:
    """A loop that must run at a rate of the graph's clock (the simulator's with use_sim_time, slower than the
    wall clock on a loaded machine) polls `due(now)` from a faster steady timer: True at most once per
    `period_s` of that clock, without a burst after a stall."""

    def __init__(self, period_s: float):
        self.period, self._next = period_s, None

    def due(self, now: float) -> bool:
        if self._next is not None and now < self._next - 2 * self.period:
            self._next = None  # the clock went back (a restarted simulator)
        if self._next is not None and now < self._next - 1e-9:
            return False
        late = self._next is None or now - self._next > self.period
        self._next = (now if late else self._next) + self.period
        return True


def diagnostics(node: Node, name: str, message: str, values: dict, level=DiagnosticStatus.OK,
                hardware_id: str = "") -> DiagnosticArray:
    status = DiagnosticStatus(level=level, name=name, message=message, hardware_id=hardware_id)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


class Reporter:
    """Counted, rate-limited warnings: the one way every node reports rejected input and faults. Counts go
    to /diagnostics; the log gets at most one line per key every `period_s` (wall clock), with the count.
    (rclpy's own `throttle_duration_sec` refuses a call site whose filters change between calls: seen
    crashing controller_node when a velocity-stop warning followed a throttled rejection.)"""

    def __init__(self, node: Node, period_s: float = 2.0):
        self.node, self.period = node, period_s
        self.counts: Counter = Counter()
        self._last: dict[str, float] = {}

    def count(self, key: str, message: str | None = None, level: str = "warn") -> None:
        self.counts[key] += 1
        if message is not None:
            self.warn(key, message, level)

    def warn(self, key: str, message: str, level: str = "warn") -> None:
        """Log `message` (rate-limited per key) without counting: for events counted elsewhere. It never
        raises: rclpy refuses a call site whose severity changes between calls, so each severity has its own
        (a drift guard's info followed by an inference error through one call site killed a thread)."""
        now = time.monotonic()
        if now - self._last.get(key, -float("inf")) < self.period:
            return
        self._last[key] = now
        n = self.counts.get(key, 0)
        log_at(self.node.get_logger(), level, message + (f" ({n} so far)" if n > 1 else ""))


def log_at(logger, level: str, message: str) -> None:
    """One rclpy call site per severity (see `Reporter.warn`); a logging failure is printed, never raised."""
    try:
        if level == "error":
            logger.error(message)
        elif level == "info":
            logger.info(message)
        else:
            logger.warning(message)
    except Exception as e:  # noqa: BLE001 - logging must not end a node
        print(f"[{level}] {message} (rclpy logging failed: {e!r})", file=sys.stderr)


def guarded(reporter_attr: str = "reporter"):
    """Decorator for a node method used as a callback: an exception is counted and logged
    (`callback_failed_<name>`), never raised into the executor (which would end the node)."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except Exception as e:  # noqa: BLE001 - bad input must not stop the node
                if not self.context.ok():
                    return None
                getattr(self, reporter_attr).count(f"callback_failed_{fn.__name__}", f"{fn.__name__}: {e!r}", "error")
                return None
        return call
    return wrap


def guarded_service(reporter_attr: str = "reporter"):
    """Decorator for a service callback `(self, request, response)`: an exception is counted and logged
    (`callback_failed_<name>`) and answered as a failure with its message (a response with `success` and
    `message`), never raised into the executor."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(self, request, response):
            try:
                return fn(self, request, response)
            except Exception as e:  # noqa: BLE001 - a failed service must not stop the node
                if self.context.ok():
                    getattr(self, reporter_attr).count(f"callback_failed_{fn.__name__}", f"{fn.__name__}: {e!r}",
                                                       "error")
                response.success, response.message = False, f"{fn.__name__} failed: {e}"
                return response
        return call
    return wrap


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


class ServiceUnavailable(TimeoutError):
    """No server for the service came up in time."""


def call_service(client, request, timeout_s: float, poll: Callable[[], None] | None = None):
    """`request` to `client`'s service (its node spun on another thread): the response. ServiceUnavailable when no
    server came up, TimeoutError when it did not answer, within `timeout_s` of wall time in all. `poll` is
    called while waiting (it may raise to give up: a graph that died)."""
    deadline = time.monotonic() + timeout_s
    while not client.wait_for_service(timeout_sec=max(0.0, min(0.5, deadline - time.monotonic()))):
        if poll is not None:
            poll()
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{client.srv_name}: no server within {timeout_s:.0f} s")
    future = client.call_async(request)
    while not future.done():
        if poll is not None:
            poll()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{client.srv_name}: no answer within {timeout_s:.0f} s")
        time.sleep(0.005)
    return future.result()


def run_node(make: Callable[[], Node], name: str, args=None,
             startup_errors: tuple[type[BaseException], ...] = (Exception,)) -> int:
    """Init, build the node (an error while starting -> message on stderr, exit code 2), spin until
    Ctrl-C / shutdown, then call the node's `shutdown()` if it has one and destroy it."""
    rclpy.init(args=args)
    try:
        node = make()
    except KeyboardInterrupt:  # Ctrl-C while starting (a slow import, a model loading) is a shutdown too
        rclpy.try_shutdown()
        return _exit(0)
    except startup_errors as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return _exit(2)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001 - Ctrl-C can invalidate the context while the executor waits (RCLError)
        if rclpy.ok():
            raise
    finally:
        if hasattr(node, "shutdown"):
            node.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    error = getattr(node, "exit_error", None)  # a node may end itself (e.g. no robot within its timeout)
    if error:
        print(f"{name}: error: {error}", file=sys.stderr)
    return _exit(2 if error else 0)


def _exit(code: int) -> int:
    """`code`, or the process ended now with it while a thread of ours may still be inside native code
    (`native_threads`): finalising the interpreter around it would abort the process."""
    if native_threads.any_alive():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code
