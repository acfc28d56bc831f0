"""metrics_node: control frequency and latency, logged separately (CSV + /diagnostics).

control.csv   time, commands sent to the robot in the last second (= control Hz)
latency.csv   per chunk: observation stamp, chunk received, first command sent, and the two latencies
              observation -> chunk published (inference + transport) and observation -> first command.
All times are the ROS clock: the wall clock on a real arm, the simulator's /clock with use_sim_time (then
"per second" is per second of robot time).
"""
from __future__ import annotations

import csv
import sys
from collections import deque
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import JointState, TimeReference
from trajectory_msgs.msg import JointTrajectory

from .messages import to_sec
from .params import Param, declare_params
from .runtime import Reporter, diagnostics, guarded, now_s, run_node

LATENCY_FIELDS = ["obs_stamp", "chunk_received", "first_command", "obs_to_chunk_ms", "obs_to_command_ms"]


PARAMETERS = [Param("log_dir", "runs/metrics", "folder of control.csv and latency.csv")]


class MetricsNode(Node):
    """See the module docstring. Threads: the executor only."""

    def __init__(self):
        super().__init__("metrics_node")
        out = Path(declare_params(self, PARAMETERS).log_dir)
        self.reporter = Reporter(self)
        out.mkdir(parents=True, exist_ok=True)
        self._control_f = (out / "control.csv").open("w", newline="")
        self._latency_f = (out / "latency.csv").open("w", newline="")
        self.control = csv.writer(self._control_f)
        self.control.writerow(["time", "control_hz"])
        self.latency = csv.DictWriter(self._latency_f, LATENCY_FIELDS)
        self.latency.writeheader()
        self._commands: deque = deque()
        self._chunks: dict[float, float] = {}
        self._lat_cmd: deque = deque(maxlen=2000)
        self.create_subscription(JointState, "bac/command", self.on_command, 50)
        self.create_subscription(JointTrajectory, "bac/action_chunk", self.on_chunk, 10)
        self.create_subscription(TimeReference, "bac/first_command", self.on_first_command, 10)
        # absolute, as everywhere in ROS: diagnostic_aggregator listens there
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(1.0, self.tick)
        self.get_logger().info(f"logging to {out}")

    @guarded()
    def on_command(self, msg: JointState) -> None:
        self._commands.append(to_sec(msg.header.stamp))

    @guarded()
    def on_chunk(self, msg: JointTrajectory) -> None:
        self._chunks[to_sec(msg.header.stamp)] = now_s(self)
        if len(self._chunks) > 500:
            self._chunks.pop(next(iter(self._chunks)))

    @guarded()
    def on_first_command(self, msg: TimeReference) -> None:
        obs, sent = to_sec(msg.time_ref), to_sec(msg.header.stamp)
        received = self._chunks.get(obs, float("nan"))
        self._lat_cmd.append((sent - obs) * 1e3)
        self.latency.writerow({"obs_stamp": f"{obs:.6f}", "chunk_received": f"{received:.6f}",
                               "first_command": f"{sent:.6f}", "obs_to_chunk_ms": f"{(received - obs) * 1e3:.3f}",
                               "obs_to_command_ms": f"{(sent - obs) * 1e3:.3f}"})

    @guarded()
    def tick(self) -> None:
        now = now_s(self)
        while self._commands and self._commands[0] < now - 1.0:
            self._commands.popleft()
        hz = len(self._commands)
        self.control.writerow([f"{now:.3f}", hz])
        self._control_f.flush()
        self._latency_f.flush()
        lat = np.array(self._lat_cmd) if self._lat_cmd else np.array([np.nan])
        values = {"control_hz": hz, **dict(self.reporter.counts), **{f"obs_to_command_ms_p{q}": f"{np.nanpercentile(lat, q):.1f}" for q in (50, 95, 99)}}
        self.diag_pub.publish(diagnostics(self, "bac: metrics_node", f"control {hz} Hz", values))

    def shutdown(self) -> None:
        self._control_f.close()
        self._latency_f.close()


def main(args=None) -> int:
    return run_node(MetricsNode, "metrics_node", args=args)

if __name__ == "__main__":
    sys.exit(main())
