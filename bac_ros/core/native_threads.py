"""Daemon threads that may be inside native code when the process ends (torch's exporter building a backend,
franky connecting or closing an arm's links): they cannot be stopped, and finalising the interpreter around one
aborts the process after a clean shutdown ("terminate called without an active exception", exit -6; once -11 in
CI, controller_node retrying an absent robot). A node's exit (`nodes.runtime`) ends the process directly while
one is alive. Free of rclpy, so that the policy runner can use it."""
from __future__ import annotations

import threading
import weakref
from typing import Callable

_THREADS: "weakref.WeakSet[threading.Thread]" = weakref.WeakSet()


def start_native_thread(target: Callable, name: str, *args) -> threading.Thread:
    """Start `target(*args)` on a daemon thread named `name`, known to `any_alive`."""
    thread = threading.Thread(target=target, args=args, daemon=True, name=name)
    _THREADS.add(thread)
    thread.start()
    return thread


def any_alive() -> bool:
    return any(t.is_alive() for t in list(_THREADS))
