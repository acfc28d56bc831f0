"""policy_node: camera + joint_states -> the cached DP-T -> bac/action_chunk (stamped with the newest observation
used), bac/markers (for rviz: the chunk's TCP path, the TCP's measured path of the last seconds beside it, and the
controller's state), diagnostics (inference Hz, latencies, refusals)."""
from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState, TimeReference
from std_msgs.msg import String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from ..drift.guard import DriftMode, DriftSettings, DriftState
from ..policy.inference import BACKENDS
from ..policy.runner import DRIFT_MODES, RATE_HZ
from ..policy.schedule import Method
from ..core.images import check_roi, to_policy_size
from ..robot.streaming import PLAYBACKS, Chunk, ObservationAligner, RecedingHorizon, Source
from ..robot.kinematics import Kinematics
from ..robot.model import GRIPPER_MAX_WIDTH, Q_HIGH, Q_LOW
from .messages import (ControllerState, chunk_to_trajectory, controller_state_of, image_to_array,
                       joint_state_to_vector, source_of, to_sec, to_time)
from .params import Param, declare_params, from_settings, settings_from
from .runtime import LATCHED_QOS, Reporter, diagnostics, guarded, guarded_service, now_s, run_node, steady_timer

DRIFT_WATCH = ("playing", "always")
STITCH = ("switch", "prefix")

PARAMETERS = [
    Param("config", "cpu", "policy config: a name in config/ (cpu, cpu_ddpm100, paper) or a YAML path"),
    Param("checkpoint", "auto", "checkpoint folder; auto: the one shipped for the config (trained in the simulated "
          "world; on a robot, i.e. without use_sim_time, the node refuses it: name your own, or 'shipped' to run it on "
          "purpose; none shipped: the node stops, naming the config); none: untrained weights (tests only: never on an "
          "arm)"),
    Param("schedule", "", "caching schedule: a name in schedules/<model>/ (e.g. bac_s7), a path, or full (no "
          "caching); required (config/grasp.yaml names the default)"),
    Param("backend", "onnx", "how the policy runs: onnx (ONNX Runtime, the whole inference compiled once per "
          "schedule and cached; eager until the first build is done), eager (PyTorch op by op), cuda-graph "
          "(device cuda)", choices=BACKENDS),
    Param("device", "cpu", "where the policy runs: cpu, or cuda[:N] (a CUDA build of torch)"),
    Param("num_threads", 1, "torch and ONNX Runtime intra-op threads", (1, 256)),
    Param("image_topic", "camera/color/image_raw", "camera topic (sensor_msgs/Image)"),
    Param("image_roi", (0, 0, 0, 0), "crop of each camera frame before it is resized to the policy's input: x, y, "
          "width, height (px); width 0: the whole frame. The same as `bac dataset --image-roi` for the demonstrations "
          "the policy learned from"),
    Param("joint_states_topic", "joint_states", "joint state topic (sensor_msgs/JointState)"),
    Param("rate_hz", RATE_HZ, "at most this many inferences a second (Hz)", (0.1, 1000.0)),
    Param("obs_tolerance_s", 0.03, "a camera frame and the nearest joint state further apart than this (s) are "
          "dropped", (0.0, 1.0)),
    Param("max_future_s", 0.25, "joint states and images stamped further ahead of the node's clock (s) are "
          "refused", (0.0, 10.0)),
    Param("base_frame", "fr3_link0", "frame of the chunk markers"),
    Param("seed", 0, "seed of the initial noise", (0, 2 ** 31 - 1)),
    Param("fixed_noise", False, "every inference starts from the noise of seed (the policy becomes a function of "
          "its observation)"),
    Param("stitch", "switch", "how a new chunk takes over from the one the controller plays: switch (at once, from its "
          "first point still due); prefix (denoised to continue what the arm will still execute of the playing chunk "
          "until it takes over, as bac/first_command reports takeovers; docs/control.md)", choices=STITCH),
    Param("commit_steps", -1, "controller_node's commit_steps, for prefix stitching (-1: the policy's "
          "n_action_steps, the controller's default)", (-1, 1000)),
    Param("drift_guard", "watch", "the drift guard: off; watch (its signal on /diagnostics, a warning when it rises); "
          "guard (also runs dense_schedule while the signal stays high)", choices=DRIFT_MODES),
    Param("dense_schedule", "", "the guard's dense schedule (a cached schedule with drift references, e.g. bac_s12)"),
    Param("drift_watch_when", "playing", "when the guard checks: playing (only while controller_node plays this "
          "node's chunks, as its bac/controller_state and bac/source say: homing, resets and a person's turn are "
          "not what the guard was calibrated on), always (a graph without controller_node)", choices=DRIFT_WATCH),
] + from_settings(DriftSettings)


class PolicyNode(Node):
    """See the module docstring. Threads: the executor takes the observations; inference (and the drift guard's
    shadow check after each published chunk) runs on a thread of its own; a compiled backend is built on
    another, eager running meanwhile."""

    KEEP_CHECKS = 100  # the drift guard's last checks kept in memory (a node runs for hours)

    EXECUTED_S = 3.0  # s of the measured TCP path drawn beside each chunk's plan

    def __init__(self):
        super().__init__("policy_node")
        self.params = p = declare_params(self, PARAMETERS)
        if not p.schedule:
            raise ValueError("parameter schedule is not set: pass config/grasp.yaml (--params-file) or "
                             "-p schedule:=...")
        self.reporter = Reporter(self)
        self._load_policy()
        self._init_state()
        self._create_interfaces()
        self._worker = threading.Thread(target=self._infer_loop, daemon=True, name="inference")
        self._worker.start()
        self.get_logger().info(f"policy {self.policy.cfg.name} ({self.policy.weights_id}) on {self.policy.device}, "
                               f"schedule {self.method}, {p.rate_hz:.0f} Hz, drift guard {p.drift_guard}, backend "
                               f"{p.backend}" + (" (building; eager until then)" if self.runner.building else ""))

    def _load_policy(self) -> None:
        """Weights, schedule and runner; what cannot be loaded stops the node (exit 2, one line)."""
        import torch

        from ..policy.config import PolicyConfig
        from ..policy.diffusion import DiffusionPolicy, resolve_checkpoint, resolve_device
        from ..policy.schedule import find_schedule

        p = self.params
        torch.set_num_threads(p.num_threads)
        cfg = PolicyConfig.load(p.config)
        self.schedule = find_schedule(p.schedule, cfg)  # ScheduleError stops the node
        if p.checkpoint in ("", "auto") and not self.get_parameter("use_sim_time").value:
            raise ValueError(
                "checkpoint 'auto' is the policy shipped with bac_ros, trained on our simulated cube (franky-sim), and "
                "this node runs on a robot's clock (use_sim_time false): name your own checkpoint (checkpoint:=<dir> "
                "from `bac train` on your demonstrations: README, 'The lab loop'), or checkpoint:=shipped to run the "
                "simulation policy on purpose")
        self.policy = DiffusionPolicy.build(cfg, resolve_checkpoint(cfg, p.checkpoint)).to(resolve_device(p.device))
        self.method = self.schedule.label if self.schedule else Method.FULL
        self.runner = self._runner(p.backend, p.num_threads, p.drift_guard, p.dense_schedule,
                                   settings_from(DriftSettings, p))

    def _init_state(self) -> None:
        cfg = self.policy.cfg
        self._drift_state = DriftState.OK
        self._drift_lock = threading.Lock()  # the guard: checked on the inference thread, reset by the service
        self._controller = {"state": None, "source": None}  # what controller_node last said it plays
        self.image_size = cfg.encoder.image_shape[1]
        check_roi(self.params.image_roi, "parameter image_roi")
        self.aligner = ObservationAligner(cfg.n_obs_steps, self.params.obs_tolerance_s)
        self._last_used_stamp = None
        self.inference_ms: deque = deque(maxlen=300)
        self.inference_cpu_ms: deque = deque(maxlen=300)  # the inference thread's CPU time: what waiting for a core hides
        self.published = 0
        self.stitched = 0  # chunks held to what the arm executes until they take over (stitch prefix)
        self._t_start = time.monotonic()
        self.kin = Kinematics.fr3()
        self._obs_lock = threading.Lock()  # the aligner: filled by the executor, read by the inference thread
        self._new_obs = threading.Event()
        self._stop = threading.Event()
        self._period = 1.0 / self.params.rate_hz
        # prefix stitching: this node's chunks as controller_node plays them (its takeovers on bac/first_command)
        commit = cfg.n_action_steps if self.params.commit_steps < 0 else self.params.commit_steps
        self._mirror = RecedingHorizon(commit)
        self._published: deque = deque(maxlen=64)  # Chunk, newest last
        self._publish_s: deque = deque(maxlen=9)  # node-clock s from an observation to its chunk's publication
        self._mirror_lock = threading.Lock()  # the takeover callback vs the inference thread
        self._executed: deque = deque(maxlen=2000)  # (stamp, q1..q7) measured: the executed path beside the plan

    def _create_interfaces(self) -> None:
        self.create_subscription(Image, self.params.image_topic, self.on_image, 5)
        self.create_subscription(JointState, self.params.joint_states_topic, self.on_joint_state, 50)
        self.chunk_pub = self.create_publisher(JointTrajectory, "bac/action_chunk", 5)
        self.marker_pub = self.create_publisher(MarkerArray, "bac/markers", 2)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # absolute: the aggregator's
        steady_timer(self, 1.0, self.publish_diagnostics)  # the wall clock: reported even if /clock stops
        self.create_service(Trigger, "bac/policy/reset", self.on_reset)
        self.create_subscription(String, "bac/controller_state", self.on_controller_state, LATCHED_QOS)
        self.create_subscription(String, "bac/source", self.on_source, LATCHED_QOS)
        self.create_subscription(TimeReference, "bac/first_command", self.on_first_command, 20)  # prefix stitching

    def _runner(self, backend: str, threads: int, mode: str, dense: str, settings: DriftSettings):
        """The policy's runner on `backend` (compiled ones: loaded at once when cached, else built in the
        background with eager meanwhile), behind the drift guard unless it is off or there is no cache to watch.
        What the guard lacks stops the node in `guard` mode; in `watch` (the default) it is a warning."""
        from ..policy.runner import PolicyRunner

        kwargs = dict(threads=threads, seed=self.params.seed, fixed_noise=self.params.fixed_noise, background=True,
                      on_built=self._on_built, inference_period_s=1.0 / self.params.rate_hz,
                      keep_checks=self.KEEP_CHECKS)
        if mode != DriftMode.OFF and self.schedule is not None and not self.schedule.is_dynamic:
            try:
                return PolicyRunner(self.policy, self.schedule, backend, drift=mode, dense_schedule=dense,
                                    drift_settings=settings, **kwargs)
            except ValueError as e:
                if mode != DriftMode.WATCH:
                    raise ValueError(f"parameter drift_guard {mode!r}: {e}") from None
                self.get_logger().warning(f"drift guard off: {e}")
        return PolicyRunner(self.policy, self.schedule, backend, **kwargs)

    def _on_built(self, error: str | None) -> None:
        if error is None:
            self.inference_cpu_ms.clear()
            self.inference_ms.clear()  # the figures /diagnostics reports are the compiled backend's from here
            self.reporter.count("backend_ready", f"compiled backend ready for {self.method}: inference runs there now",
                                "info")
        else:
            self.reporter.count("backend_failed", f"compiled backend failed ({error}): staying on eager", "error")

    @property
    def drift_watching(self) -> bool:
        """Whether the guard checks now (`drift_watch_when`)."""
        c = self._controller
        return self.params.drift_watch_when == "always" or (c["state"] == ControllerState.RUNNING
                                                             and c["source"] == Source.POLICY)

    def _watch_drift(self) -> None:
        """After a chunk is published: the pending shadow check (one full inference every drift_check_every),
        and the guard's state changes logged."""
        with self._drift_lock:
            check = self.runner.settle(check=self.drift_watching)
        guarded = self.runner.guard
        if guarded is None or check is None:
            return
        s = guarded.status()
        state = s.state
        if state != self._drift_state:
            action = {DriftState.OK: "back on the fast schedule" if guarded.dense is not None else "back in range",
                      DriftState.WARN: "observations drive the cached features further than in calibration",
                      DriftState.DENSE: f"running {s.schedule}" if guarded.dense is not None else
                      "would switch to a dense schedule (watch only)"}[state]
            why = {"observation": f"observation distance z {check.observation_z:.2f}, its CUSUM past "
                                  f"{s.observation_threshold:.1f}",
                   "shadow": f"shadow CUSUM past {s.shadow_threshold:.1f}"}.get(check.alarm, (
                       f"CUSUM shadow {s.shadow_cusum:.1f} of {s.shadow_threshold:.1f}, observation "
                       f"{s.observation_cusum:.1f} of {s.observation_threshold:.1f}"))
            self.reporter.count(f"drift_{state}", f"drift guard {self._drift_state} -> {state} ({why}; shadow "
                                f"check {check.ratio:.2f}x its reference median): {action}",
                                "info" if state == DriftState.OK else "warn")
            self._drift_state = state

    # ---- inputs ----------------------------------------------------------------------------------
    def _refuse_stamp(self, kind: str, stamp: float) -> bool:
        """A stamp ahead of this node's clock (another clock's?) would hide every later input: refused."""
        now = now_s(self)
        if stamp > now + self.params.max_future_s or stamp <= 0:
            self.reporter.count(f"{kind}_refused_stamp", f"{kind} stamped {stamp:.3f} s refused: the clock is at "
                                f"{now:.3f} s (a wall-clock stamp in a sim-time graph?)")
            return True
        return False

    def _accept(self, kind: str, convert, msg):
        """`convert(msg)` and its stamp, or None (refused and counted: malformed, or stamped ahead of the clock)."""
        try:
            value = convert(msg)
        except ValueError as e:
            self.reporter.count(f"{kind}_refused_malformed", f"{kind.replace('_', ' ')} refused: {e}")
            return None
        stamp = to_sec(msg.header.stamp)
        return None if self._refuse_stamp(kind, stamp) else (value, stamp)

    @guarded()
    def on_joint_state(self, msg: JointState) -> None:
        if (got := self._accept("joint_states", joint_state_to_vector, msg)) is None:
            return
        state, stamp = got
        tol = 0.1  # rad past a limit (sensor noise, a limit margin in the model) before it is impossible
        if (np.any(state[:7] < Q_LOW - tol) or np.any(state[:7] > Q_HIGH + tol)
                or not -0.005 <= state[7] <= GRIPPER_MAX_WIDTH + 0.01):
            self.reporter.count("joint_states_refused_limits",
                                f"joint state outside the FR3's joint limits refused: {np.round(state, 3).tolist()}")
            return
        with self._obs_lock:
            self.aligner.add_state(stamp, state)
            self._executed.append((stamp, state[:7]))

    @guarded()
    def on_image(self, msg: Image) -> None:
        if (got := self._accept("images", image_to_array, msg)) is None:
            return
        rgb, stamp = got
        rgb = to_policy_size(rgb, self.image_size, self.params.image_roi)
        with self._obs_lock:
            self.aligner.add_image(stamp, rgb)
        self._new_obs.set()

    @guarded_service()
    def on_reset(self, _req, resp):
        """Forget the observation history (a new episode: no frame of the last one may be planned on)."""
        cfg = self.policy.cfg
        with self._obs_lock:
            self.aligner = ObservationAligner(cfg.n_obs_steps, self.aligner.tolerance)
            self._last_used_stamp = None
        with self._mirror_lock:
            self._mirror.clear()
            self._published.clear()
        with self._drift_lock:  # each episode's guard starts afresh, as in bac eval
            if self.runner.guard is not None:
                self.runner.guard.reset()
                if self._drift_state != DriftState.OK:
                    self.get_logger().info(f"drift guard {self._drift_state} -> ok: a new episode")
                self._drift_state = DriftState.OK
        resp.success, resp.message = True, "observation history and drift guard cleared"
        return resp

    @guarded()
    def on_controller_state(self, msg: String) -> None:
        self._controller["state"] = controller_state_of(msg)
        self._controller["state_text"] = msg.data

    @guarded()
    def on_source(self, msg: String) -> None:
        self._controller["source"] = source_of(msg)

    @guarded()
    def on_first_command(self, msg: TimeReference) -> None:
        """A chunk took over at the controller (header stamp: when; time_ref: the observation it was planned
        from): one of ours, or another source's (then none of ours plays)."""
        planned, at = to_sec(msg.time_ref), to_sec(msg.header.stamp)
        with self._mirror_lock:
            ours = next((c for c in reversed(self._published) if abs(c.stamp - planned) < 1e-6), None)
            if ours is None:
                self._mirror.clear()
            else:
                self._mirror.take(ours, at)

    def _prefix(self, stamp: float) -> np.ndarray | None:
        """Prefix stitching's points for an observation of `stamp` (None: switch, or nothing of ours plays)."""
        if self.params.stitch != "prefix" or self._controller["state"] != ControllerState.RUNNING:
            return None
        cfg = self.policy.cfg
        arrival = stamp + (float(np.median(self._publish_s)) if self._publish_s else 0.0)
        with self._mirror_lock:
            if self._mirror.playing is None or self._mirror.playing.end < stamp:
                return None
            return self._mirror.continuation(PLAYBACKS["hold"], stamp, cfg.action_dt, arrival,
                                             cfg.horizon - cfg.n_obs_steps)

    # ---- inference -------------------------------------------------------------------------------
    def _infer_loop(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self._new_obs.wait(0.1)
            self._new_obs.clear()
            started = time.monotonic()
            try:
                self.infer()
            except Exception as e:  # noqa: BLE001 - reported; the node keeps serving the next observation
                if not self.context.ok():
                    return
                self.reporter.count("inference_failed", f"inference failed: {e!r}", "error")
            self._stop.wait(max(0.0, started + self._period - time.monotonic()))

    def infer(self) -> None:
        with self._obs_lock:
            window = self.aligner.observations
            if not window.ready() or window.newest_stamp == self._last_used_stamp:
                return
            images, states, stamp = window.window()
            self._last_used_stamp = stamp
        t0, cpu0 = time.perf_counter(), time.thread_time()
        # the controller plays n_action_steps from the first point still due
        prefix = self._prefix(stamp)
        actions = self.runner.select_action(images, states, prefix)
        self.stitched += prefix is not None
        self.inference_ms.append((time.perf_counter() - t0) * 1e3)
        self.inference_cpu_ms.append((time.thread_time() - cpu0) * 1e3)
        dt = self.policy.cfg.action_dt
        self.chunk_pub.publish(chunk_to_trajectory(actions, stamp, dt))
        self._publish_s.append(now_s(self) - stamp)
        with self._mirror_lock:
            chunk = Chunk(stamp, np.asarray(actions, float), dt)
            self._published.append(chunk)
            self._mirror.offer(chunk)
        self.published += 1
        self.publish_markers(actions, stamp)
        self._watch_drift()  # after publishing: the shadow check delays the next inference, not this chunk

    def publish_markers(self, actions: np.ndarray, stamp: float) -> None:
        path = self.kin.fk_path(actions[:, :7])
        m = Marker(ns="bac_chunk", id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.header.frame_id, m.header.stamp = self.params.base_frame, to_time(stamp)
        m.scale.x = 0.006
        m.color.r, m.color.g, m.color.b, m.color.a = 0.1, 0.8, 0.2, 1.0
        m.pose.orientation.w = 1.0
        m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in path]
        end = Marker(ns="bac_chunk", id=1, type=Marker.SPHERE, action=Marker.ADD)
        end.header = m.header
        end.pose.position = m.points[-1]
        end.pose.orientation.w = 1.0
        end.scale.x = end.scale.y = end.scale.z = 0.02
        closed = actions[-1, 7] < 0.04
        end.color.r, end.color.g, end.color.b, end.color.a = (0.9, 0.2, 0.1, 1.0) if closed else (0.1, 0.4, 0.9, 1.0)
        # beside the plan: where the TCP went in the last EXECUTED_S (measured), and what the controller is doing
        with self._obs_lock:
            went = [q for t, q in self._executed if t >= stamp - self.EXECUTED_S]
        done = Marker(ns="bac_executed", id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
        done.header, done.pose.orientation.w, done.scale.x = m.header, 1.0, 0.004
        done.color.r, done.color.g, done.color.b, done.color.a = 0.95, 0.55, 0.1, 1.0
        if len(went) >= 2:
            done.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in self.kin.fk_path(np.stack(went))]
        text = Marker(ns="bac_state", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.header, text.pose.orientation.w, text.scale.z = m.header, 1.0, 0.04
        text.pose.position = Point(x=0.0, y=0.0, z=1.2)
        text.color.r = text.color.g = text.color.b = text.color.a = 1.0
        text.text = f"{self.method} | controller {self._controller.get('state_text', 'not heard from')}"
        self.marker_pub.publish(MarkerArray(markers=[m, end, done, text]))

    @guarded()
    def publish_diagnostics(self) -> None:
        ms = np.array(self.inference_ms)
        p50, p95 = np.percentile(ms, [50, 95]) if ms.size else (float("nan"), float("nan"))  # none yet: nan
        age = (now_s(self) - self._last_used_stamp) * 1e3 if self._last_used_stamp else float("nan")
        hz = self.published / max(1e-6, time.monotonic() - self._t_start)
        values = {"method": self.method, "backend": self.runner.backend,
                  "backend_building": str(self.runner.building).lower(),
                  "inference_hz": f"{1e3 / p50:.2f}",
                  "chunks_per_s": f"{hz:.2f}", "inference_ms_p50": f"{p50:.2f}",
                  "inference_ms_p95": f"{p95:.2f}",
                  "inference_cpu_ms_p50": f"{np.median(self.inference_cpu_ms) if self.inference_cpu_ms else float('nan'):.2f}",
                  "obs_age_ms": f"{age:.1f}",
                  "obs_pairs_dropped": str(self.aligner.dropped), "chunks": str(self.published),
                  "chunks_stitched": str(self.stitched),
                  **self._drift_values(), **{k: str(v) for k, v in sorted(self.reporter.counts.items())}}
        self.diag_pub.publish(diagnostics(self, "bac: policy_node", f"{hz:.1f} Hz", values, hardware_id=self.method))

    def _drift_values(self) -> dict:
        guarded = self.runner.guard
        if guarded is None:
            return {}
        s = guarded.status()
        return {"drift_state": str(s.state), "drift_cusum": f"{s.shadow_cusum:.3f}",
                "drift_threshold": f"{s.shadow_threshold:.3f}", "drift_z_last": f"{s.shadow_z:.3f}",
                "drift_ratio_last": f"{s.shadow_ratio:.3f}", "drift_observation_cusum": f"{s.observation_cusum:.3f}",
                "drift_observation_threshold": f"{s.observation_threshold:.3f}",
                "drift_observation_z_last": f"{s.observation_z:.3f}", "drift_alarm_signal": s.alarm_signal,
                "drift_reuse_ratio_last": f"{s.reuse_ratio:.3f}", "drift_checks": str(s.checks),
                "drift_switches": str(s.switches), "drift_watching": str(self.drift_watching).lower(),
                "schedule_active": s.schedule}

    def shutdown(self) -> None:
        self._stop.set()
        self._worker.join(2.0)
        if self.params.stitch == "prefix":
            self.get_logger().info(f"stitch prefix: {self.stitched} of {self.published} chunks held to the playing one")


def main(args=None) -> int:
    # ScheduleError / ConfigError / CheckpointError (ValueErrors) or a missing file: the node does not start.
    return run_node(PolicyNode, "policy_node", args=args, startup_errors=(ValueError, OSError))

if __name__ == "__main__":
    sys.exit(main())
