"""`bac demo`: the launch file's graph without launch_ros. Starts the same executables with the same YAML
(`graph.spec`), runs seeded episodes over real ROS 2 (DDS on loopback) for each method on the same seeds,
records every episode (recorder_node: one MCAP bag each, and the index), and reports success, control Hz,
inference Hz, latency and smoothness per method, then the operators' comparison from the recordings
(`bac compare`). Every process it started is stopped, by PID.

Methods: a schedule for policy_node (`bac_s7`, `full`); `teleop`: the scripted operator at the teleop input
(operator_node -> teleop_node -> the controller's teleop source), as a person at a SpaceMouse; `shared`: the
default schedule, with the scripted operator watching and taking over when the arm strays (interventions);
`expert`: this process streams the scripted expert's plan as chunks into the same controller.
"""
from __future__ import annotations

import csv
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.paths import CONFIG_DIR
from ..analysis.motion import mean_smoothness, smoothness
from ..analysis.stats import percentiles
from ..robot.fr3_arm import HomingError
from ..sim.episode import home_with_fallback
from .client import GraphClient
from .processes import Processes
from .spec import grasp_graph

EXPERT, TELEOP, SHARED = "expert", "teleop", "shared"
CONTROLLER, POLICY = "bac: controller_node", "bac: policy_node"
BACKEND_BUILD_S = 600.0  # s: ONNX export + session of a schedule and its shadow check on two busy cores (~90 s seen)


@dataclass
class MethodEpisodes:
    """What one method's episodes left behind, for its row."""
    successes: list[bool] = field(default_factory=list)
    windows: list[tuple[float, float]] = field(default_factory=list)  # (start, end), graph clock
    wall_s: list[float] = field(default_factory=list)
    travels: list[float] = field(default_factory=list)  # how far the arm moved from its start (rad)
    smooth: list[dict] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)  # the simulated FR3's torque-link summary per episode
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds per process
    drift_alarms: list[int] = field(default_factory=list)  # the drift guard's switches to dense, per episode


def isolated_ros_env() -> dict:
    """Environment for a graph of its own: a domain id from the PID and discovery on this host only."""
    domain = str(random.Random(os.getpid()).randint(120, 200))
    return {**os.environ, "ROS_DOMAIN_ID": domain, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
            "ROS_LOCALHOST_ONLY": "1", "PYTHONUNBUFFERED": "1"}


class Demo:
    """One graph on the simulated FR3 at `hostname`, episodes per method on the same seeds."""

    def __init__(self, log_dir: Path, params_file: Path | None = None, seed_start: int = 0,
                 episode_time: float = 12.0, hostname: str = "127.0.0.1", overrides: dict | None = None,
                 shared_schedule: str | None = None):
        self.log_dir, self.params = Path(log_dir), params_file or CONFIG_DIR / "grasp.yaml"
        self.shared_schedule = shared_schedule  # the shared row's policy schedule (None: the parameter file's)
        self.seed_start, self.episode_time, self.hostname = seed_start, episode_time, hostname
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for f in self.log_dir.glob("*.log"):
            f.unlink()
        env = isolated_ros_env()
        os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                               "ROS_LOCALHOST_ONLY")})
        self.procs = Processes(self.log_dir, env)
        self.graph: GraphClient | None = None
        self.specs = {}  # the nodes started once per method (policy, teleop, operator), by name
        self.policy_schedule: str | None = None  # the schedule of the policy_node running now (None: none runs)
        self.overrides = overrides or {}  # node -> parameters on top of the spec's (e.g. the operator's)
        self.episodes_dir = self.log_dir / "episodes"

    # ---- the graph -------------------------------------------------------------------------------------
    def start(self) -> None:
        """The launch file's nodes (`grasp_graph`) in its order, the controller first (it retries until the
        simulated FR3 listens); policy_node later, once per method."""
        import rclpy

        rclpy.init()
        self.graph = GraphClient("bac_demo", check=self.procs.check)
        extra = {"sim_node": {"seed_start": self.seed_start, "episode_time_s": self.episode_time},
                 "metrics_node": {"log_dir": str(self.log_dir)}, "recorder_node": {"out_dir": str(self.episodes_dir)}}
        for spec in grasp_graph(use_sim=True, sim_hostname=self.hostname, mode="shared", teleop_input="twist",
                                operator="drive"):
            if spec.name in ("policy_node", "teleop_node", "operator_node"):
                self.specs[spec.name] = spec  # started for the methods that use them
            else:
                self.procs.start(spec.executable, self.params, {**spec.parameters, **extra.get(spec.name, {})})
        self.graph.wait_for(lambda: self.graph.controller_state.startswith(("ready", "running")), 90,
                            "controller_node did not connect")

    def stop(self) -> None:
        import rclpy

        if self.graph is not None:
            self.graph.close()
            self.graph = None
        rclpy.try_shutdown()
        self.procs.stop_all()

    # ---- methods and episodes --------------------------------------------------------------------------
    def run_method(self, label: str, schedule: str, episodes: int) -> dict:
        """`episodes` seeded episodes of one method (a schedule, or TELEOP, SHARED, EXPERT): one row."""
        g = self.graph
        g.set_param("/sim_node", "seed_start", self.seed_start)  # every method sees the same seeds
        g.set_param("/recorder_node", "label", label)
        g.stream_as("policy_node" if schedule == EXPERT else None)  # the expert's chunks: from this process
        g.diagnostics.pop(POLICY, None)
        started = []
        self._policy_for(label, None if schedule in (EXPERT, TELEOP) else
                         schedule if schedule != SHARED else self.shared_schedule or self._default_schedule())
        if schedule in (TELEOP, SHARED):
            started.append(self.start_node("teleop_node", {}))
            started.append(self.start_node("operator_node", {"mode": "drive" if schedule == TELEOP else "intervene"}))
        done = MethodEpisodes()
        counts0 = g.counters(CONTROLLER)
        for _ in range(episodes):
            self.episode(label, schedule, done)
        if done.drift_alarms:
            done.drift_alarms.append(self._drift_switches(time.monotonic()))
        alarms = np.diff(done.drift_alarms).tolist()
        diag = g.diagnostics.get(POLICY, {})
        g.stream_as(None)
        for name in started:
            self.procs.stop(name)
        return {"method": label, "schedule": schedule, "episodes": episodes,
                "success_rate": sum(done.successes) / max(1, episodes),
                "inference_hz": float(diag.get("inference_hz", "nan")),
                "inference_ms_p95": float(diag.get("inference_ms_p95", "nan")),
                "arm_travel_rad": float(np.mean(done.travels)) if done.travels else 0.0,
                "smoothness": mean_smoothness(done.smooth),
                # how well the simulated FR3 kept 1 kHz with this graph on this machine
                "sim_realtime_factor": float(np.mean([k["realtime_factor"] for k in done.links])),
                "torque_command_success_rate": float(min(k["success_rate"] for k in done.links)),
                # what the controller counted during this method's episodes (diagnostics deltas)
                "controller": {k: v - counts0.get(k, 0) for k, v in g.counters(CONTROLLER).items()},
                # where the time goes: each process's share of one core while the episodes ran
                "cpu_percent": {k: round(100 * v / sum(done.wall_s), 1) for k, v in sorted(done.cpu.items())},
                # the drift guard (policy_node checks only while its chunks play): alarms per episode
                "drift_alarms_per_episode": alarms,
                "drift_alarm_episodes": sum(a > 0 for a in alarms) if alarms else None,
                "windows": done.windows}

    def wait_for_policy(self, label: str) -> None:
        """Until policy_node reports, its compiled backend built (episodes are timed on the backend they run)."""
        g = self.graph
        g.wait_for(lambda: POLICY in g.diagnostics, 120, "policy_node did not report")
        if g.diagnostics[POLICY].get("backend_building") == "true":
            print(f"  {label}: waiting for policy_node's compiled backend (built once, then cached)", flush=True)
            g.wait_for(lambda: g.diagnostics[POLICY].get("backend_building") != "true", BACKEND_BUILD_S,
                       "policy_node's compiled backend was not built")

    def _default_schedule(self) -> str:
        from ..core.settings import node_parameters

        return str(node_parameters("policy_node", self.params).get("schedule"))

    def _policy_for(self, label: str, schedule: str | None) -> None:
        """policy_node running `schedule` (None: none running). One that runs it already stays up (its episodes
        start with bac/policy/reset, as within a method): the bac and shared rows share it."""
        if schedule == self.policy_schedule:
            return
        if self.policy_schedule is not None:
            self.procs.stop("policy_node")
            self.policy_schedule = None
        if schedule is not None:
            self.start_node("policy_node", {"schedule": schedule})
            self.policy_schedule = schedule
            self.wait_for_policy(label)

    def start_node(self, name: str, overrides: dict) -> str:
        """Start one of the nodes started per method (policy, teleop, operator) with the spec's parameters."""
        spec = self.specs[name]
        self.procs.start(spec.executable, self.params, {**spec.parameters, **overrides, **self.overrides.get(name, {})})
        return name

    def _home(self) -> None:
        """Home through the controller; when the arm cannot get there, the simulator puts it there and the
        controller homes again (`home_with_fallback`, the harness's rule)."""
        g = self.graph

        def home():
            if g.call("bac/home", must_succeed=False) != "home":
                raise HomingError("the controller could not bring the arm home")

        def put_home():
            g.call("bac/recover", must_succeed=False)  # a robot error faults the controller
            g.call("bac/sim/home")

        home_with_fallback(home, put_home)

    def _drift_switches(self, since: float) -> int | None:
        """policy_node's drift guard switches so far, from diagnostics sent after `since` (monotonic s: the
        controller no longer played the policy, so no check was pending); None without a guard."""
        g = self.graph
        g.wait_for(lambda: g.diagnostics_wall.get(POLICY, 0.0) > since, 5.0, "policy_node's diagnostics")
        diag = g.diagnostics[POLICY]
        return int(diag["drift_switches"]) if "drift_switches" in diag else None

    def _wait_until_done(self, episode: int, stall_s: float = 30.0) -> None:
        """Until sim_node reports the episode done. A slow machine slows the simulator (docs/control.md, the
        graph's time base): only an episode clock that stops for `stall_s` of wall time is an error, not a
        long episode."""
        g = self.graph
        progress, since = -1.0, time.monotonic()
        while True:
            ep = g.episode or {}
            if ep.get("episode") == episode:
                if ep["done"]:
                    return
                if ep["elapsed_s"] > progress:
                    progress, since = ep["elapsed_s"], time.monotonic()
            if time.monotonic() - since > stall_s:
                raise RuntimeError(f"sim_node's episode {episode} did not advance for {stall_s:.0f} s "
                                   f"(at {progress:.1f} s; controller: {g.controller_state})")
            self.procs.check()
            time.sleep(0.05)

    def episode(self, label: str, method: str, done: MethodEpisodes) -> None:
        """One seeded, recorded episode of `method`, its figures added to `done`."""
        from ..sim.expert import ExpertChunks

        g = self.graph
        homing = time.monotonic()
        self._home()
        reset = json.loads(g.call("bac/reset"))  # the reset starts the episode's clock: it comes last
        if method not in (EXPERT, TELEOP):
            switches = self._drift_switches(homing)  # the last episode's alarms are all in by now
            if switches is not None:
                done.drift_alarms.append(switches)
            g.call("bac/policy/reset")
        g.call("bac/take_over" if method == TELEOP else "bac/hand_back")  # who drives
        # the controller held home since bac/home; from now on it plays chunks planned from observations of
        # this episode only (none of the previous cube, none of the teleport)
        g.call("bac/start")
        g.call("bac/record/start")
        if method == EXPERT:
            g.wait_for(lambda: g.q is not None, 30, "no joint states")
            g.every_tick(ExpertChunks(g.publish_chunk, reset["cube"], g.q, g.now()).tick)
        g.record()
        t0, w0, cpu0 = g.now(), time.monotonic(), self.procs.cpu_seconds()
        self._wait_until_done(reset["episode"])
        g.every_tick(None)
        ep = g.episode
        # the bag closes with the simulator's verdict (on a real arm a person gives it)
        g.call_set_bool("bac/record/stop", bool(ep["success"]))
        done.windows.append((t0, g.now()))
        done.wall_s.append(time.monotonic() - w0)
        cpu1 = self.procs.cpu_seconds()
        for k in cpu1.keys() & cpu0.keys():
            done.cpu[k] = done.cpu.get(k, 0.0) + cpu1[k] - cpu0[k]
        done.successes.append(bool(ep["success"]))
        done.links.append(ep["link"])
        trace, commands = g.recorded()
        qs = np.stack([q[:7] for _, q in trace]) if trace else np.zeros((1, 7))
        done.travels.append(float(np.abs(qs - qs[0]).max()))
        if len(trace) > 8:
            done.smooth.append(smoothness(np.array([t for t, _ in trace]), qs))
        cube = ep.get("cube") or [float("nan")] * 3
        print(f"  {label}: seed {reset['seed']} {'success' if ep['success'] else 'fail'} ({ep['elapsed_s']:.1f} s; "
              f"cube ends at x {cube[0]:.3f} y {cube[1]:.3f} z {cube[2]:.3f} m, fingers "
              f"{ep.get('fingers_m', float('nan')) * 1e3:.0f} mm)", flush=True)
        if not ep["success"] and trace:  # for the diagnosis: the controller's counts, the motion
            path = self.log_dir / f"failed_{label}_episode{ep['episode']}.npz"
            np.savez(path, t=np.array([t for t, _ in trace]), q=np.stack([q for _, q in trace]),
                     cube=np.asarray(cube), command_t=np.array([t for t, _ in commands]),
                     command_q=np.stack([q for _, q in commands]) if commands else np.zeros((0, 8)))
            print(f"    controller: {g.diagnostics.get(CONTROLLER)}; torque link: {ep['link']}; "
                  f"joint trace: {path}", flush=True)


def run(episodes: int, methods: list[tuple[str, str]], log_dir: Path, params_file: Path | None = None,
        seed_start: int = 0, episode_time: float = 12.0, hostname: str = "127.0.0.1",
        overrides: dict | None = None, shared_schedule: str | None = None) -> list[dict]:
    """`methods`: (label, method) pairs, e.g. [("bac", "bac_s7"), ("full", "full"), ("teleop", TELEOP)].
    Rows as `Demo.run_method`'s, with control Hz and latency from the metrics logs; every episode is
    recorded under `log_dir/episodes/`."""
    demo = Demo(log_dir, params_file, seed_start, episode_time, hostname, overrides, shared_schedule)
    rows = []
    try:
        demo.start()
        rows = [demo.run_method(label, method, episodes) for label, method in methods]
    finally:
        demo.stop()
    for r in rows:
        r.update(summarise(Path(log_dir), r.pop("windows")))
    return rows


def _in_windows(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in windows)


def summarise(log_dir: Path, windows: list[tuple[float, float]]) -> dict:
    """Control Hz and latency within one method's episodes (`windows`: (start, end) on the graph's clock),
    from the metrics node's CSVs."""
    with (log_dir / "control.csv").open() as f:
        control = [(float(r["time"]), float(r["control_hz"])) for r in csv.DictReader(f)]
    with (log_dir / "latency.csv").open() as f:
        latency = [(float(r["obs_stamp"]), float(r["obs_to_chunk_ms"]), float(r["obs_to_command_ms"]))
                   for r in csv.DictReader(f)]
    # a control sample covers the second before it: count it when that whole second is inside an episode
    hz = [h for t, h in control if _in_windows(t, windows) and _in_windows(t - 1.0, windows)]
    return {"control_hz": float(np.median(hz)) if hz else float("nan"),
            "latency_ms": percentiles([c for t, _, c in latency if _in_windows(t, windows)]),
            "obs_to_chunk_ms": percentiles([c for t, c, _ in latency if _in_windows(t, windows) and np.isfinite(c)])}


def format_rows(rows: list[dict]) -> str:
    """The demo's table, the CPU split and a legend."""
    from ..analysis.render import GRAPH_COLUMNS, markdown, slow_clock_note

    lines = [markdown(rows, GRAPH_COLUMNS)]
    names = sorted({k for r in rows for k in r.get("cpu_percent", {})})
    if names:
        cpu_rows = [{"process": k, **{r["method"]: r["cpu_percent"].get(k, float("nan")) for r in rows}}
                    for k in names]
        cpu_rows.append({"process": f"total (of {os.cpu_count()} cores)",
                         **{r["method"]: sum(r["cpu_percent"].values()) for r in rows}})
        lines += ["", "CPU % of one core while the episodes ran:",
                  markdown(cpu_rows, [("process", lambda r: r["process"], "")]
                           + [(r["method"], lambda c, m=r["method"]: c[m], ".0f") for r in rows])]
    guarded = [r for r in rows if r.get("drift_alarm_episodes") is not None]
    if guarded:
        lines += ["", "drift guard: " + "; ".join(
            f"{r['method']} alarmed in {r['drift_alarm_episodes']} of {len(r['drift_alarms_per_episode'])} episodes"
            for r in guarded) + " (switches to dense, or would-switch in watch; checked only while the policy plays)"]
    note = slow_clock_note(rows, "method", "sim_realtime_factor")
    if note:
        lines += ["", note]
    lines += ["", "latency: observation stamp -> first command sent (expert: chunk stamp -> first command); "
              "vel. reversals/s: joint-velocity sign changes per second of motion, summed over joints; jerk rms in "
              "rad/s^3; sim RT: simulated seconds per wall second (below 1: the simulated FR3 waited for late torque "
              "commands on this machine). Control Hz, latency and smoothness are on the graph's clock, the "
              "simulator's (/clock); inference Hz is wall-clock compute."]
    return "\n".join(lines)
