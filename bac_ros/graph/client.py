"""`GraphClient`: this process's node in the grasp graph, for the commands that drive episodes over ROS 2
(`bac demo`): it calls the graph's services, sets parameters, publishes chunks, and keeps the latest
episode outcome, diagnostics, controller state, joint states and commands."""
from __future__ import annotations

import json
import threading
import time
from typing import Callable

import numpy as np

from ..nodes.messages import chunk_to_trajectory, to_sec
from ..nodes.runtime import now_s, spin_in_background, steady_timer

SERVICES = ("bac/home", "bac/recover", "bac/sim/home", "bac/reset", "bac/policy/reset", "bac/start", "bac/take_over",
            "bac/hand_back", "bac/stop", "bac/record/start")  # std_srvs/Trigger
SET_BOOL_SERVICES = ("bac/record/stop",)  # std_srvs/SetBool


class GraphClient:
    """An rclpy node on the graph's clock (the simulator's: use_sim_time), spun on its own thread: a loop
    that spun it between its own checks fell behind on a busy machine (its clock 0.3 s late, joint states
    missing for up to 0.9 s). `check` is called while waiting (e.g. to notice a child process that died).
    Call `close` when done; rclpy must be initialised (in `context`, or the default one)."""

    def __init__(self, name: str = "bac_demo", check: Callable[[], None] = lambda: None, context=None):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.parameter import Parameter
        from rclpy.qos import DurabilityPolicy, QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import String
        from std_srvs.srv import SetBool, Trigger
        self.check = check
        self.node = rclpy.create_node(name, context=context,
                                      parameter_overrides=[Parameter("use_sim_time", value=True)])
        self._lock = threading.Lock()
        self.episode: dict | None = None  # the latest sim_node outcome (bac/episode)
        self.diagnostics: dict[str, dict] = {}  # status name -> its key/values
        self.diagnostics_wall: dict[str, float] = {}  # status name -> when it last came (monotonic s)
        self.diagnostics_level: dict[str, tuple[int, str]] = {}  # status name -> (its latest level, message)
        self.controller_state = ""
        self.source = ""  # the latest bac/source (JSON)
        self.q: np.ndarray | None = None  # latest measured joints
        self._trace: list | None = None  # (stamp, q + gripper width) while recording
        self._commands: list = []  # (stamp, target + gripper) the controller sent while recording
        self._tick: Callable[[float], None] | None = None
        n = self.node
        n.create_subscription(String, "bac/episode", lambda m: setattr(self, "episode", json.loads(m.data)), 10)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 20)
        n.create_subscription(String, "bac/controller_state", lambda m: setattr(self, "controller_state", m.data),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        n.create_subscription(String, "bac/source", lambda m: setattr(self, "source", m.data),
                              QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        n.create_subscription(JointState, "joint_states", self._on_joints, 50)
        n.create_subscription(JointState, "bac/command", self._on_command, 50)
        self._chunk_node = self._chunk_pub = None  # `stream_as`
        self._clients = {name: n.create_client(Trigger, name) for name in SERVICES}
        self._clients.update({name: n.create_client(SetBool, name) for name in SET_BOOL_SERVICES})
        steady_timer(n, 0.01, self._on_tick)
        self._stop_spinning = spin_in_background(n, f"{name}-spin")

    # ---- state ---------------------------------------------------------------------------------------
    def now(self) -> float:
        """The graph's clock (s)."""
        return now_s(self.node)

    def _on_diagnostics(self, msg) -> None:
        for s in msg.status:
            self.diagnostics[s.name] = {kv.key: kv.value for kv in s.values}
            self.diagnostics_wall[s.name] = time.monotonic()
            self.diagnostics_level[s.name] = (ord(s.level) if isinstance(s.level, bytes) else int(s.level), s.message)

    def _on_joints(self, msg) -> None:
        q = np.asarray(msg.position[:8])
        self.q = q[:7]
        with self._lock:
            if self._trace is not None:
                self._trace.append((to_sec(msg.header.stamp), q))

    def _on_command(self, msg) -> None:
        with self._lock:
            if self._trace is not None:
                self._commands.append((to_sec(msg.header.stamp), np.asarray(msg.position[:8])))

    def record(self) -> None:
        """Start keeping joint states and commands (one episode)."""
        with self._lock:
            self._trace, self._commands = [], []

    def recorded(self) -> tuple[list, list]:
        """Stop keeping them; returns (joint trace, commands), each a list of (stamp, 8 values)."""
        with self._lock:
            out = (self._trace or [], self._commands)
            self._trace, self._commands = None, []
        return out

    def counters(self, status: str) -> dict[str, int]:
        """The integer counters of a node's latest diagnostics (`bac: controller_node`, ...)."""
        return {k: int(v) for k, v in self.diagnostics.get(status, {}).items() if str(v).isdigit()}

    def count(self, status: str, key: str) -> int:
        """One counter of a node's latest diagnostics (0 before it reported it)."""
        return self.counters(status).get(key, 0)

    # ---- acting on the graph -------------------------------------------------------------------------
    def wait_for(self, ready: Callable[[], object], timeout: float, what: str):
        """Poll `ready()` until it returns something truthy (returned); RuntimeError "`what` within ..."."""
        deadline = time.monotonic() + timeout
        while not (got := ready()):
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what} within {timeout:.0f} s (controller: {self.controller_state})")
            time.sleep(0.05)
        return got

    def call(self, service: str, timeout: float = 30.0, must_succeed: bool = True, request=None) -> str:
        """Call a std_srvs/Trigger service of the graph (or another, with its `request`); returns its message
        (RuntimeError when it failed and `must_succeed`, else the failure is printed and '' returned)."""
        from std_srvs.srv import Trigger

        from ..nodes.runtime import ServiceUnavailable, call_service

        try:
            r = call_service(self._clients[service], request if request is not None else Trigger.Request(), timeout,
                             self.check)
        except ServiceUnavailable:
            raise RuntimeError(f"service {service} did not come up within {timeout:.0f} s") from None
        except TimeoutError:
            r = None
        if r is not None and r.success:
            return r.message
        msg = f"{service} failed: {r.message if r is not None else 'no answer in time'}"
        if must_succeed:
            raise RuntimeError(msg)
        print(f"  {msg}", flush=True)
        return ""

    def call_set_bool(self, service: str, value: bool, timeout: float = 30.0, must_succeed: bool = True) -> str:
        """Call a std_srvs/SetBool service (e.g. bac/record/stop with the episode's success)."""
        from std_srvs.srv import SetBool

        return self.call(service, timeout, must_succeed, request=SetBool.Request(data=bool(value)))

    def set_param(self, node_name: str, name: str, value: int | str) -> None:
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters

        from ..nodes.runtime import call_service

        c = self.node.create_client(SetParameters, f"{node_name}/set_parameters")
        pv = (ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str)
              else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(value)))
        try:
            r = call_service(c, SetParameters.Request(parameters=[Parameter(name=name, value=pv)]), 30.0, self.check)
        except TimeoutError as e:
            raise RuntimeError(f"setting {node_name} {name}: {e}") from None
        if not r.results[0].successful:
            raise RuntimeError(f"setting {node_name} {name} failed: {r.results[0].reason}")

    def stream_as(self, node_name: str | None) -> None:
        """Publish chunks on bac/action_chunk as a node named `node_name` from now on (the controller plays
        only the node its `chunk_source` names, fixed at its start: the demo's expert streams as policy_node
        while no policy_node runs); None: stop, and the node goes."""
        from trajectory_msgs.msg import JointTrajectory

        if self._chunk_node is not None:
            self._chunk_node.destroy_node()
            self._chunk_node = self._chunk_pub = None
        if node_name is not None:
            import rclpy

            self._chunk_node = rclpy.create_node(node_name, context=self.node.context,
                                                 use_global_arguments=False)
            self._chunk_pub = self._chunk_node.create_publisher(JointTrajectory, "bac/action_chunk", 5)

    def publish_chunk(self, actions: np.ndarray, stamp: float, dt: float) -> None:
        if self._chunk_pub is None:
            raise RuntimeError("publish_chunk needs stream_as(node name) first")
        self._chunk_pub.publish(chunk_to_trajectory(actions, stamp, dt))

    def every_tick(self, fn: Callable[[float], None] | None) -> None:
        """Call `fn(graph time)` every 10 ms of wall time (e.g. to stream chunks), or stop with None."""
        self._tick = fn

    def _on_tick(self) -> None:
        fn = self._tick
        if fn is not None:
            fn(self.now())

    def close(self) -> None:
        self.stream_as(None)
        self._stop_spinning()
        self.node.destroy_node()
