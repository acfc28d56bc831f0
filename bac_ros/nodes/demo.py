"""`bac demo`: the launch file's graph without launch_ros. Starts the same executables with the same YAML
(sim_node, controller_node, metrics_node, then policy_node once per method), runs seeded episodes over
real ROS 2 (DDS on loopback), prints success, control Hz, inference Hz, latency and smoothness per method,
and stops every process it started, by PID.

The method `expert` has no policy_node: this process streams the scripted expert's plan for the episode's
cube as 16-point chunks at the action rate into the same controller, so the smoothness of the policy's
motion can be read against the expert's on the same seeds, measured the same way (/joint_states)."""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..core.config import CONFIG_DIR
from ..core.motion import mean_smoothness, smoothness

NODES = ("sim_node", "controller_node", "metrics_node", "policy_node")
EXPERT = "expert"


def executable(name: str) -> str:
    """The node's console script: beside this Python (venv, colcon lib/bac_ros) or on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"executable '{name}' not found: install the package (make setup / colcon build)")
    return found


class ExpertSource:
    """The scripted expert's plan for one cube, streamed as chunks (point i due at t0 + i*dt)."""

    def __init__(self, publish, cube: list[float], q_start: np.ndarray, now: float, dt: float = 1.0 / 30.0,
                 chunk_len: int = 16):
        from ..sim.expert import plan_grasp
        from ..sim.world import CubePose

        plan = plan_grasp(CubePose(*cube), q_start, dt)
        self.actions = np.concatenate([plan.q, plan.gripper[:, None]], axis=1)
        self.publish, self.dt, self.chunk_len = publish, dt, chunk_len
        self.t0 = now + 0.05
        self.next_i = 0

    def tick(self, now: float) -> None:
        i = int((now - self.t0) // self.dt)
        if i < self.next_i or self.next_i >= len(self.actions):  # not due yet, or the plan's end was sent
            return
        i = min(max(i, 0), len(self.actions) - 1)
        self.publish(self.actions[i:i + self.chunk_len], self.t0 + i * self.dt, self.dt)
        self.next_i = i + 1


class Processes:
    """Children started here, stopped here: SIGINT, then SIGKILL after a grace period."""

    def __init__(self, log_dir: Path, env: dict):
        self.log_dir, self.env = log_dir, env
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, params_file: Path, overrides: dict | None = None) -> subprocess.Popen:
        cmd = [executable(name), "--ros-args", "--params-file", str(params_file)]
        for k, v in (overrides or {}).items():
            cmd += ["-p", f"{k}:={v}"]
        log = (self.log_dir / f"{name}.log").open("a")
        p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.procs[name] = p
        return p

    def stop(self, name: str, grace: float = 8.0) -> None:
        p = self.procs.pop(name, None)
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGINT)
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    def cpu_seconds(self) -> dict[str, float]:
        """User + system CPU seconds of each running child (all its threads), and of this process."""
        tick = os.sysconf("SC_CLK_TCK")
        out = {"demo (this process)": sum(os.times()[:2])}
        for name, p in self.procs.items():
            try:
                fields = Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
                out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
            except (OSError, IndexError, ValueError):
                pass
        return out

    def check(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                tail = (self.log_dir / f"{name}.log").read_text()[-1500:]
                raise RuntimeError(f"{name} exited with code {p.returncode}:\n{tail}")

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def _counts(diag: dict) -> dict[str, int]:
    """The integer counters of a diagnostics key/value dict."""
    return {k: int(v) for k, v in diag.items() if str(v).isdigit()}


def _wait(fut, timeout: float) -> None:
    """Wait for a future that the executor thread completes."""
    deadline = time.monotonic() + timeout
    while not fut.done() and time.monotonic() < deadline:
        time.sleep(0.005)


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan")}
    a = np.asarray(values)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)}


def _in_windows(t: float, windows: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in windows)


def summarise(log_dir: Path, windows: dict[str, list[tuple[float, float]]]) -> dict[str, dict]:
    """Control Hz and latency per method, from the metrics node's CSVs, within that method's episodes
    (`windows`: (start, end) of each episode on the graph's clock, the simulator's)."""
    with (log_dir / "control.csv").open() as f:
        control = [(float(r["time"]), float(r["control_hz"])) for r in csv.DictReader(f)]
    with (log_dir / "latency.csv").open() as f:
        latency = [(float(r["obs_stamp"]), float(r["obs_to_chunk_ms"]), float(r["obs_to_command_ms"]))
                   for r in csv.DictReader(f)]
    out = {}
    for method, wins in windows.items():
        # a control sample covers the second before it: count it when that whole second is inside an episode
        hz = [h for t, h in control if _in_windows(t, wins) and _in_windows(t - 1.0, wins)]
        lat_cmd = [c for t, _, c in latency if _in_windows(t, wins)]
        lat_chunk = [c for t, c, _ in latency if _in_windows(t, wins) and np.isfinite(c)]
        out[method] = {"control_hz": float(np.median(hz)) if hz else float("nan"),
                       "latency_ms": _percentiles(lat_cmd), "obs_to_chunk_ms": _percentiles(lat_chunk)}
    return out


def run(episodes: int, methods: list[tuple[str, str]], log_dir: Path, params_file: Path | None = None,
        seed_start: int = 0, episode_time: float = 12.0, hostname: str = "127.0.0.1") -> list[dict]:
    """`methods`: (label, schedule parameter) pairs, e.g. [("bac", "grasp_dpt_cpu_bac_s7"), ("full", "full")]."""
    params_file = params_file or CONFIG_DIR / "grasp.yaml"
    log_dir.mkdir(parents=True, exist_ok=True)
    for f in log_dir.glob("*.log"):
        f.unlink()
    domain = str(random.Random(os.getpid()).randint(120, 200))  # keep this graph apart from others on the host
    env = {**os.environ, "ROS_DOMAIN_ID": domain, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
           "ROS_LOCALHOST_ONLY": "1", "PYTHONUNBUFFERED": "1"}
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY")})
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import String
    from std_srvs.srv import Trigger

    procs = Processes(log_dir, env)
    rclpy.init()
    from rclpy.parameter import Parameter as RosParameter

    from .runtime import now_s, spin_in_background, steady_timer

    # The graph keeps the simulator's time (sim_node publishes /clock); so does this node.
    sim_time = {"use_sim_time": "true"}
    node = rclpy.create_node("bac_demo", parameter_overrides=[RosParameter("use_sim_time", value=True)])
    # Callbacks (/clock at 250 Hz, /joint_states at 100 Hz, the expert's timer) run on their own thread:
    # spin_once between this loop's checks fell behind on a busy machine (seen: its clock 0.3 s late and
    # joint states missing for up to 0.9 s), and the expert's plan then started in the past.
    stop_spinning = spin_in_background(node, "demo-spin")
    latest = {"episode": None, "policy_diag": None, "controller_diag": {}}
    node.create_subscription(String, "/bac/episode", lambda m: latest.__setitem__("episode", json.loads(m.data)), 10)

    def on_diag(msg):
        for s in msg.status:
            if s.name == "bac: policy_node":
                latest["policy_diag"] = {kv.key: kv.value for kv in s.values}
            elif s.name == "bac: controller_node":
                latest["controller_diag"] = {kv.key: kv.value for kv in s.values}

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 20)
    from rclpy.qos import DurabilityPolicy, QoSProfile

    node.create_subscription(String, "/bac/controller_state", lambda m: latest.__setitem__("controller", m.data),
                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    joints = {"q": None, "trace": None}  # latest position; (stamp, q + gripper width) samples of the episode

    def on_joints(msg):
        q = np.asarray(msg.position[:8])
        joints["q"] = q[:7]
        if joints["trace"] is not None:
            joints["trace"].append((to_sec(msg.header.stamp), q))

    from sensor_msgs.msg import JointState
    from trajectory_msgs.msg import JointTrajectory

    from .messages import chunk_to_trajectory, to_sec

    node.create_subscription(JointState, "/joint_states", on_joints, 50)
    commands: list = []  # (stamp, target + gripper) the controller sent during the running episode

    def on_command(msg):
        if joints["trace"] is not None:
            commands.append((to_sec(msg.header.stamp), np.asarray(msg.position[:8])))

    node.create_subscription(JointState, "/bac/command", on_command, 50)
    chunk_pub = node.create_publisher(JointTrajectory, "/bac/action_chunk", 5)
    expert = {"source": None}  # the expert's chunks, stamped on the graph's (sim) clock

    def expert_tick():
        src = expert["source"]
        if src is not None:
            src.tick(now_s(node))

    steady_timer(node, 0.01, expert_tick)
    clients = {name: node.create_client(Trigger, name)
               for name in ("/bac/home", "/bac/recover", "/bac/sim/home", "/bac/reset", "/bac/policy/reset",
                            "/bac/start")}

    def call(name: str, timeout: float = 30.0, must_succeed: bool = True) -> str:
        c = clients[name]
        deadline = time.monotonic() + timeout
        while not c.wait_for_service(timeout_sec=0.5):
            procs.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"service {name} did not come up within {timeout:.0f} s")
        fut = c.call_async(Trigger.Request())
        _wait(fut, timeout)
        if not fut.done() or not fut.result().success:
            msg = f"{name} failed: {fut.result().message if fut.done() else 'timeout'}"
            if must_succeed:
                raise RuntimeError(msg)
            print(f"  {msg}", flush=True)
        return fut.result().message if fut.done() else ""

    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    def set_param(node_name: str, name: str, value: int | str) -> None:
        c = node.create_client(SetParameters, f"{node_name}/set_parameters")
        if not c.wait_for_service(timeout_sec=30.0):
            raise RuntimeError(f"{node_name} has no parameter service")
        pv = (ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value) if isinstance(value, str)
              else ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=int(value)))
        fut = c.call_async(SetParameters.Request(parameters=[Parameter(name=name, value=pv)]))
        _wait(fut, 10.0)
        if not fut.done() or not fut.result().results[0].successful:
            raise RuntimeError(f"setting {node_name} {name} failed")

    rows = []
    windows: dict[str, list[tuple[float, float]]] = {}
    try:
        # The controller first: it retries until the simulated FR3 listens (the launch file's order does not
        # matter either).
        procs.start("controller_node", params_file, {"robot_ip": hostname, "realtime_mode": "ignore", **sim_time})
        procs.start("sim_node", params_file, {"seed_start": seed_start, "episode_time_s": episode_time,
                                              "hostname": hostname})
        procs.start("metrics_node", params_file, {"log_dir": str(log_dir), **sim_time})
        deadline = time.monotonic() + 90
        while not str(latest.get("controller", "")).startswith(("ready", "running")):
            procs.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"controller_node did not connect: {latest.get('controller')}")
            time.sleep(0.1)
        for label, schedule in methods:
            set_param("/sim_node", "seed_start", seed_start)  # every method sees the same seeds
            # only the selected source's chunks play: this process's for the expert, else the policy's
            set_param("/controller_node", "chunk_source", "bac_demo" if schedule == EXPERT else "policy_node")
            latest["policy_diag"] = None
            if schedule != EXPERT:
                procs.start("policy_node", params_file, {"schedule": schedule, **sim_time})
                deadline = time.monotonic() + 120
                while latest["policy_diag"] is None:
                    time.sleep(0.2)
                    procs.check()
                    if time.monotonic() > deadline:
                        raise RuntimeError("policy_node did not report within 120 s")
            successes, wins, wall, travels, smooth, links = [], [], [], [], [], []
            counts0 = _counts(latest["controller_diag"])
            cpu: dict[str, float] = {}  # CPU seconds per process over this method's episodes
            for _ in range(episodes):
                # home through the controller; if the arm cannot get there, the sim puts it there and the
                # controller homes again from there (a fresh torque loop). The reset comes last: it starts
                # the episode's clock.
                if call("/bac/home", must_succeed=False) != "home":
                    for attempt in range(1, 4):  # seen: the first home after a simulator reset failing too
                        call("/bac/recover", must_succeed=False)  # a robot error faults the controller
                        call("/bac/sim/home")
                        if call("/bac/home", must_succeed=attempt == 3) == "home":
                            break
                reset = json.loads(call("/bac/reset"))
                seed, source = reset["seed"], None
                if schedule != EXPERT:
                    call("/bac/policy/reset")
                # the controller held home since /bac/home; from now on it plays chunks planned from
                # observations of this episode only (none of the previous cube, none of the teleport)
                call("/bac/start")
                if schedule == EXPERT:
                    while joints["q"] is None:
                        time.sleep(0.1)
                    source = ExpertSource(lambda a, stamp, dt: chunk_pub.publish(chunk_to_trajectory(a, stamp, dt)),
                                          reset["cube"], joints["q"], now_s(node))
                    expert["source"] = source
                commands.clear()
                joints["trace"] = []
                t0, w0 = now_s(node), time.monotonic()
                cpu0 = procs.cpu_seconds()
                while True:
                    time.sleep(0.02)
                    procs.check()
                    ep = latest["episode"]
                    if ep and ep["episode"] == reset["episode"] and ep["done"]:
                        break
                    if time.monotonic() - w0 > 4 * episode_time + 10:  # the sim may run well below real time
                        raise RuntimeError("no episode outcome from sim_node")
                expert["source"] = None
                wins.append((t0, now_s(node)))
                wall.append(time.monotonic() - w0)
                cpu1 = procs.cpu_seconds()
                for k in cpu1.keys() & cpu0.keys():
                    cpu[k] = cpu.get(k, 0.0) + cpu1[k] - cpu0[k]
                successes.append(bool(ep["success"]))
                links.append(ep["link"])
                trace, joints["trace"] = joints["trace"], None
                qs = np.stack([q[:7] for _, q in trace]) if trace else np.zeros((1, 7))
                travels.append(float(np.abs(qs - qs[0]).max()))  # how far the arm moved from its start (rad)
                if len(trace) > 8:
                    smooth.append(smoothness(np.array([t for t, _ in trace]), qs))
                cube = ep.get("cube") or [float("nan")] * 3
                print(f"  {label}: seed {seed} {'success' if ep['success'] else 'fail'} ({ep['elapsed_s']:.1f} s; "
                      f"cube ends at x {cube[0]:.3f} y {cube[1]:.3f} z {cube[2]:.3f} m, fingers "
                      f"{ep.get('fingers_m', float('nan')) * 1e3:.0f} mm)", flush=True)
                if not ep["success"] and trace:  # for the diagnosis: the controller's counts, the motion
                    path = log_dir / f"failed_{label}_episode{ep['episode']}.npz"
                    sent = list(commands)
                    np.savez(path, t=np.array([t for t, _ in trace]), q=np.stack([q for _, q in trace]),
                             cube=np.asarray(cube), command_t=np.array([t for t, _ in sent]),
                             command_q=np.stack([q for _, q in sent]) if sent else np.zeros((0, 8)))
                    print(f"    controller: {latest['controller_diag']}; torque link: {ep['link']}; "
                          f"joint trace: {path}", flush=True)
            diag = latest["policy_diag"] or {}
            procs.stop("policy_node")
            windows[label] = wins
            rows.append({"method": label, "schedule": schedule, "episodes": episodes,
                         "success_rate": sum(successes) / max(1, episodes),
                         "inference_hz": float(diag.get("inference_hz", "nan")),
                         "inference_ms_p95": float(diag.get("inference_ms_p95", "nan")),
                         "arm_travel_rad": float(np.mean(travels)) if travels else 0.0,
                         "smoothness": mean_smoothness(smooth),
                         # how well the simulated FR3 kept 1 kHz with this graph on this machine
                         "sim_realtime_factor": float(np.mean([k["realtime_factor"] for k in links])),
                         "torque_command_success_rate": float(min(k["success_rate"] for k in links)),
                         # what the controller counted during this method's episodes (diagnostics deltas)
                         "controller": {k: v - counts0.get(k, 0)
                                        for k, v in _counts(latest["controller_diag"]).items()},
                         # where the time goes: each process's share of one core while the episodes ran
                         "cpu_percent": {k: round(100 * v / sum(wall), 1)
                                         for k, v in sorted(cpu.items())}})
    finally:
        stop_spinning()
        node.destroy_node()
        rclpy.try_shutdown()
        procs.stop_all()
    stats = summarise(log_dir, windows)
    for r in rows:
        r.update(stats[r["method"]])
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'method':<8}{'episodes':>9}{'success':>9}{'control Hz':>12}{'inference Hz':>14}"
            f"{'latency ms p50/p95/p99':>26}{'vel. reversals/s':>18}{'jerk rms':>10}{'sim RT':>8}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat, sm = r["latency_ms"], r["smoothness"]
        lines.append(f"{r['method']:<8}{r['episodes']:>9}{r['success_rate']:>9.0%}{r['control_hz']:>12.1f}"
                     f"{r['inference_hz']:>14.1f}{lat['p50']:>10.1f} /{lat['p95']:>6.1f} /{lat['p99']:>6.1f}"
                     f"{sm['zero_crossings_per_s']:>18.2f}{sm['jerk_rms']:>10.1f}{r['sim_realtime_factor']:>8.2f}")
    names = sorted({k for r in rows for k in r.get("cpu_percent", {})})
    if names:
        lines.append("")
        lines.append(f"{'CPU % of one core':<20}" + "".join(f"{r['method']:>10}" for r in rows))
        for k in names:
            lines.append(f"{k:<20}" + "".join(f"{r['cpu_percent'].get(k, float('nan')):>10.0f}" for r in rows))
        lines.append(f"{'total (of ' + str(os.cpu_count()) + ' cores)':<20}"
                     + "".join(f"{sum(r['cpu_percent'].values()):>10.0f}" for r in rows))
        lines.append("")
    lines.append("latency: observation stamp -> first command sent (expert: chunk stamp -> first command); "
                 "vel. reversals/s: joint-velocity sign changes per second of motion, summed over joints; "
                 "jerk rms in rad/s^3; sim RT: simulated seconds per wall second (below 1: the simulated FR3 "
                 "waited for late torque commands on this machine). Control Hz, latency and smoothness are on "
                 "the graph's clock, the simulator's (/clock); inference Hz is wall-clock compute.")
    return "\n".join(lines)
