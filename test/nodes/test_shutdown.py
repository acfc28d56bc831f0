"""Every node exits 0 on SIGINT (Ctrl-C, and what `ros2 launch` sends at shutdown), without a traceback: under
launch, metrics_node once ended with "process has died ... exit code 1" (RCLError: the context is not valid)."""
import os
import signal
import time

import pytest

pytest.importorskip("bac_ros.nodes.messages", reason="rclpy / ROS 2 messages not importable")

NODES = {
    "controller_node": ["-p", "robot_ip:=127.0.0.99", "-p", "connect_timeout_s:=600.0"],
    "policy_node": ["-p", "schedule:=bac_s7", "-p", "backend:=eager", "-p", "checkpoint:=shipped"],
    "teleop_node": [],
    "recorder_node": [],
    "metrics_node": [],
    "operator_node": [],
    "sim_node": ["-p", "hostname:=127.0.0.11"],
}


@pytest.mark.slow
@pytest.mark.parametrize("node", sorted(NODES))
def test_sigint_ends_the_node_with_exit_0(node, tmp_path):
    import rclpy
    from support import node_process

    extra = ["-p", f"out_dir:={tmp_path}"] if node == "recorder_node" else \
        ["-p", f"log_dir:={tmp_path}"] if node == "metrics_node" else []
    from bac_ros.graph.interfaces import INTERFACES

    # constructed: the name shows as soon as the node exists, its publishers only once its constructor is done
    last = {"/" + e.name.lstrip("/") for e in INTERFACES[node] if e.kind == "publishes" and e.name != "(topics)"}
    with node_process(node, 221 + sorted(NODES).index(node), *NODES[node], *extra) as (proc, ctx):
        watcher = rclpy.create_node("watcher", context=ctx)
        deadline = time.monotonic() + 90

        def up() -> bool:
            if node not in watcher.get_node_names():
                return False
            return last <= {t for t, _ in watcher.get_publisher_names_and_types_by_node(node, "/")}

        while not up() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            time.sleep(0.2)
        assert up(), f"{node} did not come up"
        time.sleep(2.0)  # its timers, threads and subscriptions running
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out[-3000:]
    assert "Traceback" not in out.replace("Exception ignored in", ""), out[-3000:]



def test_ctrl_c_while_a_node_is_built_is_a_shutdown():
    """Ctrl-C before the constructor is done (`ros2 launch` stopped during a slow start: the model loading) ends
    the node with exit 0 and leaves rclpy shut down, not a KeyboardInterrupt traceback."""
    import rclpy

    from bac_ros.nodes.runtime import run_node

    def make():
        raise KeyboardInterrupt

    assert run_node(make, "starting_node", args=["--ros-args"]) == 0
    assert not rclpy.ok()


def test_a_thread_inside_franky_at_exit_does_not_crash_the_process():
    """`run_node`'s exit ends the process with its code while a native thread of ours is alive: finalising
    the interpreter around a thread inside franky.Robot() aborts it (measured: 20 of 20 runs, exit 134)."""
    import subprocess
    import sys

    pytest.importorskip("franky")
    script = """
import sys, time, franky
from bac_ros.core.native_threads import start_native_thread
from bac_ros.nodes.runtime import _exit
def connect():
    while True:
        try:
            franky.Robot("127.0.0.99", realtime_config=franky.RealtimeConfig.Ignore)
        except Exception:
            pass
start_native_thread(connect, "connect")
start_native_thread(connect, "connect")
time.sleep(0.2)
sys.exit(_exit(3))
"""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3, proc.stderr[-2000:]
