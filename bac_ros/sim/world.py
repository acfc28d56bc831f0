"""The FR3 grasp world on franky-sim: table, a cube at a seeded pose, a fixed RGB camera, scoring.

The world owns the simulator and its libfranka protocol server (robot + gripper on `hostname`, TCP ports
1337/1338). Nothing here moves the arm: a client does that through `franky`, exactly as with a real FR3.
"""
from __future__ import annotations

import math
import os
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

import mujoco  # noqa: E402

CUBE_HALF = 0.022  # m
TABLE_TOP = 0.02  # a 2 cm slab on the floor in front of the robot base
LIFT_HEIGHT = 0.05  # success: cube centre this far above its resting height ...
HOLD_TIME = 1.0  # ... for this long (sim seconds)


@dataclass(frozen=True)
class WorldConfig:
    hostname: str = "127.0.0.1"
    image_size: int = 96
    x_range: tuple[float, float] = (0.40, 0.62)  # cube centre, robot base frame (m)
    y_range: tuple[float, float] = (-0.22, 0.22)
    # The cube looks the same every 90 degrees, so a cube at +45 and one at -45 degrees are one cube, yet the
    # wrist would turn to opposite ends for them: demonstrations near that edge contradict each other.
    # Yaw stays 5 degrees clear of it; the wrist still has to match 80 degrees of yaw.
    yaw_range: tuple[float, float] = (-math.radians(40), math.radians(40))
    camera_pos: tuple[float, float, float] = (1.0, 0.0, 0.6)
    camera_target: tuple[float, float, float] = (0.5, 0.0, 0.06)
    camera_fovy: float = 48.0
    cube_rgba: tuple[float, float, float, float] = (0.85, 0.1, 0.1, 1.0)
    table_rgba: tuple[float, float, float, float] = (0.55, 0.45, 0.35, 1.0)
    episode_time: float = 12.0  # sim seconds
    # franky-sim applies the last torque again when the client's command is late. A real FR3's real-time
    # loop makes that rare (and a long gap stops it with communication_constraints_violation); on a shared
    # 2-core machine it is not rare, and a stale impedance torque held for tens of ms throws the arm around.
    # So a tick in torque mode waits up to this long for the client's command: the sim slows, it never
    # integrates a torque nobody computed for that state. 0 restores franky-sim's behaviour.
    max_command_wait_ms: float = 25.0
    # pause() stops the physics (sync evaluation: the world waits for the policy). libfranka's UDP receive
    # times out after 1 s without a state, so a pause ends by itself after this long (counted in `status`).
    max_pause_s: float = 0.5


def world_overrides(items: list[str]) -> dict:
    """`--world` options (`camera_pos=1.0,0.1,0.65`, `cube_rgba=0.1,0.3,0.9,1`, `camera_fovy=52`) -> WorldConfig
    keyword arguments; ValueError naming the key for an unknown field or a value of the wrong length."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(WorldConfig)}
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or key not in fields or key == "hostname":
            raise ValueError(f"--world {item!r}: expected KEY=VALUE with KEY one of "
                             f"{sorted(k for k in fields if k != 'hostname')}")
        default = fields[key].default
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise ValueError(f"--world {key}: {text!r} is not a comma list of numbers") from None
        if isinstance(default, tuple):
            if len(values) != len(default):
                raise ValueError(f"--world {key}: {len(default)} numbers expected, got {len(values)}")
            out[key] = values
        else:
            if len(values) != 1:
                raise ValueError(f"--world {key}: one number expected, got {len(values)}")
            out[key] = type(default)(values[0])
    return out


class WorldCall(StrEnum):
    """What `WorldProcess` asks of the world's process over its pipe."""
    RESET = "reset"
    RENDER = "render"
    PLACE_ARM = "place_arm"
    PAUSE = "pause"
    RESUME = "resume"
    CAMERA = "camera"
    STATUS = "status"
    STOP = "stop"


@dataclass
class CubePose:
    x: float
    y: float
    yaw: float


class LiftScore:
    """Success = the cube centre at least LIFT_HEIGHT above its resting height for HOLD_TIME without a break."""

    def __init__(self, rest_z: float, lift: float = LIFT_HEIGHT, hold: float = HOLD_TIME):
        self.rest_z, self.lift, self.hold = rest_z, lift, hold
        self.reset()

    def reset(self) -> None:
        self.lifted_since: float | None = None
        self.success = False

    def update(self, t: float, z: float) -> bool:
        if not self.success:
            if z < self.rest_z + self.lift:
                self.lifted_since = None
            elif self.lifted_since is None:
                self.lifted_since = t
            elif t - self.lifted_since >= self.hold:
                self.success = True
        return self.success


class CommandLink:
    """How fresh the client's torque commands were over the episode, per 1 kHz tick (a real FR3 reports
    this as control_command_success_rate), the longest run of ticks stepped on a stale torque, and sim
    seconds per wall second (below 1 when the world waited for a late client)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.ticks = self.stale = self.longest_stale = self._run = 0
        self._t0 = None  # (wall, sim) at the first torque tick

    def update(self, fresh: bool, t_sim: float) -> None:
        if self._t0 is None:
            self._t0 = (time.perf_counter(), t_sim)
        self._t1 = (time.perf_counter(), t_sim)
        self.ticks += 1
        if fresh:
            self._run = 0
        else:
            self.stale += 1
            self._run += 1
            self.longest_stale = max(self.longest_stale, self._run)

    def summary(self) -> dict:
        wall = self._t1[0] - self._t0[0] if self._t0 else 0.0
        rt = (self._t1[1] - self._t0[1]) / wall if wall > 0 else 1.0
        return {"torque_ticks": self.ticks, "success_rate": round(1.0 - self.stale / max(1, self.ticks), 4),
                "longest_stale_ms": self.longest_stale, "realtime_factor": round(rt, 3)}


class SharedClock:
    """What a client process reads of the world without a round trip through the pipe (shared memory, one writer
    each): the sim clock (s, written every tick), the last camera frame's time and the next one's, the sim time at which the
    world pauses itself (`pause_at`, inf: never; after that tick's frame) and how many pauses have begun."""

    def __init__(self, ctx):
        self.time = ctx.Value("d", 0.0, lock=False)
        self.next_frame = ctx.Value("d", math.inf, lock=False)
        self.last_frame = ctx.Value("d", -math.inf, lock=False)
        self.pause_at = ctx.Value("d", math.inf, lock=False)
        self.pauses = ctx.Value("q", 0, lock=False)


def sample_cube_pose(cfg: WorldConfig, seed: int) -> CubePose:
    rng = np.random.default_rng(seed)
    return CubePose(float(rng.uniform(*cfg.x_range)), float(rng.uniform(*cfg.y_range)),
                    float(rng.uniform(*cfg.yaw_range)))


def _look_at_quat(pos, target) -> str:
    """MuJoCo camera orientation (w x y z) that looks from `pos` at `target`, image up ~ world +z."""
    fwd = np.asarray(target, float) - np.asarray(pos, float)
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    rot = np.stack([right, up, -fwd], axis=1)  # camera x, y, z (looks along -z) in world
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, rot.flatten())
    return " ".join(f"{v:.6f}" for v in quat)


class GraspWorld:
    """Use as a context manager: starts the simulator and its server thread, stops both on exit."""

    def __init__(self, cfg: WorldConfig = WorldConfig()):
        from franky_sim import SimulationServer
        from franky_sim.franka_robot_server import ControlMode
        from franky_sim.mujoco_simulator import MujocoSimulator

        self.cfg = cfg
        self.lock = threading.Lock()
        self.sim = MujocoSimulator()
        self.sim.init()
        self.robot = self.sim.add_robot()
        self._build_scene()
        world = self

        class _LockedServer(SimulationServer):
            def run_once(self, realtime=True):  # one physics tick under the world's lock
                if not world._running.is_set():
                    world._hold()
                with world.lock:
                    fresh = world._poll_commands()
                if fresh is False:
                    deadline = time.perf_counter() + world.cfg.max_command_wait_ms * 1e-3
                    while fresh is False and time.perf_counter() < deadline:
                        time.sleep(0.0001)
                        with world.lock:
                            fresh = world._poll_commands()
                with world.lock:
                    self.sim.step()
                    for rs in self.robot_servers:
                        rs.send_state()
                world._after_tick(fresh)
                if realtime:
                    world._pace()

        self.server = _LockedServer(self.sim, hostname_candidates=[cfg.hostname])
        self._gl = threading.local()  # a renderer per thread: an EGL context belongs to the thread that made it
        self._frames = None  # (period s, callback, next frame's sim time): the camera triggered by the sim clock
        self._cube_rest_z = CUBE_HALF + TABLE_TOP
        self.score = LiftScore(self._cube_rest_z)
        self.link = CommandLink()
        self._torque_mode = ControlMode.TORQUE
        self._t_wall_next = None
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._holding = threading.Event()  # set by the server thread once it has stopped stepping
        self.pause_timeouts = 0
        self.shared: SharedClock | None = None  # the clock and pauses a client process reads without a round trip

    # ---- scene -----------------------------------------------------------------------------------
    def _build_scene(self) -> None:
        wb, cfg = self.sim.worldbody, self.cfg
        scene = self.sim.scene
        quality = scene.find("visual/quality")
        if quality is not None:  # shadows and multisampling cost ~40x at this resolution
            quality.set("shadowsize", "0")
            quality.set("offsamples", "0")
        ET.SubElement(wb, "geom", name="table", type="box", pos=f"0.52 0 {TABLE_TOP - 0.01}", size="0.3 0.4 0.01",
                      rgba=" ".join(map(str, cfg.table_rgba)), friction="1 0.005 0.0001")
        cube = ET.SubElement(wb, "body", name="cube", pos=f"0.5 0 {CUBE_HALF}")
        ET.SubElement(cube, "freejoint", name="cube_joint")
        ET.SubElement(cube, "geom", name="cube_geom", type="box", size=f"{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}",
                      rgba=" ".join(map(str, cfg.cube_rgba)), mass="0.05", friction="1.5 0.01 0.001", condim="4")
        ET.SubElement(wb, "camera", name="scene_cam", pos=" ".join(map(str, cfg.camera_pos)),
                      quat=_look_at_quat(cfg.camera_pos, cfg.camera_target), fovy=str(cfg.camera_fovy))

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "GraspWorld":
        self.server.init()
        m = self.sim.model
        joint = lambda name: mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)  # noqa: E731
        cube = joint("cube_joint")
        self._cube_qpos, self._cube_qvel = int(m.jnt_qposadr[cube]), int(m.jnt_dofadr[cube])
        self._cube_body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, "cube")
        arm = [joint(f"robot0_fr3_joint{i + 1}") for i in range(7)]
        fingers = [j for j in (joint("robot0_finger_joint1"), joint("robot0_finger_joint2")) if j >= 0]
        self._arm_qpos, self._arm_qvel = m.jnt_qposadr[arm], m.jnt_dofadr[arm]
        self._finger_qpos, self._finger_qvel = m.jnt_qposadr[fingers], m.jnt_dofadr[fingers]
        if self.shared is not None:  # franky-sim's warm-up has already run the clock (0.1 s) before the first tick
            self.shared.time.value = self.time
        self.server.run_async(realtime=True)
        return self

    def stop(self) -> None:
        self.server.cleanup()
        self.close_renderer()
        self.sim.cleanup()

    def close_renderer(self) -> None:
        """Free this thread's offscreen GL context (EGL contexts are per thread)."""
        renderer = getattr(self._gl, "renderer", None)
        if renderer is not None:
            renderer.close()
            self._gl.renderer = None

    def trigger_camera(self, period_s: float | None, callback=None) -> None:
        """Render a frame every `period_s` of sim time, in the physics thread right after the tick that reaches
        it, and hand `callback(stamp, rgb)` each one: a camera triggered by the simulator's clock, so frames
        are exactly one period of robot time apart however slowly the machine runs the simulation (a camera
        thread polling the clock dropped frames under load). The callback must return quickly. None: no more
        frames."""
        self._frames = None if period_s is None else (period_s, callback, self.time)
        if period_s is None and self.shared is not None:
            self.shared.next_frame.value = math.inf

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _pace(self) -> None:
        now = time.perf_counter()
        if self._t_wall_next is None or now - self._t_wall_next > 0.05:
            self._t_wall_next = now  # fell behind: do not try to catch up in a burst
        self._t_wall_next += 0.001
        delay = self._t_wall_next - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    # ---- pause (sync evaluation) -------------------------------------------------------------------
    def pause(self, timeout: float = 0.5) -> float:
        """Stop stepping at the next tick boundary; returns the sim time it stopped at."""
        self._holding.clear()
        self._running.clear()
        if not self._holding.wait(timeout):
            raise RuntimeError(f"the simulator did not pause within {timeout} s")
        return self.time

    def resume(self) -> None:
        self._running.set()

    def _hold(self) -> None:
        self._holding.set()
        if self.shared is not None:
            self.shared.pauses.value += 1
        if not self._running.wait(self.cfg.max_pause_s):
            self.pause_timeouts += 1  # a client would lose its connection: step on
            self._running.set()
        self._holding.clear()
        self._t_wall_next = None  # pace from now on; no catch-up burst

    # ---- episode ---------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """Sim clock (s)."""
        return float(self.sim.data.time)

    def place_cube(self, pose: CubePose) -> None:
        with self.lock:
            d = self.sim.data
            a = self._cube_qpos
            d.qpos[a:a + 3] = (pose.x, pose.y, self._cube_rest_z)
            d.qpos[a + 3:a + 7] = (math.cos(pose.yaw / 2), 0.0, 0.0, math.sin(pose.yaw / 2))
            d.qvel[self._cube_qvel:self._cube_qvel + 6] = 0.0
            mujoco.mj_forward(self.sim.model, d)
            self.score.reset()
            self.link.reset()
            self.pause_timeouts = 0

    def place_arm(self, q: np.ndarray) -> None:
        """Put the arm at joint positions `q`, at rest, fingers open. A simulator-only reset, for when the arm
        cannot get home under its own control (seen after an episode that ended with the arm tangled
        with the cube and table)."""
        with self.lock:
            m, d = self.sim.model, self.sim.data
            d.qpos[self._arm_qpos] = np.asarray(q, float)[:7]
            d.qvel[self._arm_qvel] = 0.0
            d.qpos[self._finger_qpos] = 0.04
            d.qvel[self._finger_qvel] = 0.0
            a = self._cube_qpos  # the cube out of the way; reset() places it
            d.qpos[a:a + 3] = (0.5, 0.0, self._cube_rest_z)
            d.qvel[self._cube_qvel:self._cube_qvel + 6] = 0.0
            mujoco.mj_forward(m, d)

    def arm_state_now(self) -> np.ndarray:
        """(8,) the arm's joint positions and finger opening at this instant (what the FR3 reports), call under
        `lock` or from the physics thread."""
        d = self.sim.data
        return np.concatenate([d.qpos[self._arm_qpos], [d.qpos[self._finger_qpos].sum()]])

    def finger_width(self) -> float:
        """Opening between the fingers (m), from the simulator state."""
        with self.lock:
            return float(self.sim.data.qpos[self._finger_qpos].sum())

    def cube_position(self) -> np.ndarray:
        with self.lock:
            return self.sim.data.xpos[self._cube_body].copy()

    def cube_yaw(self) -> float:
        with self.lock:
            w, x, y, z = self.sim.data.xquat[self._cube_body]
        return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))

    def _poll_commands(self) -> bool | None:
        """Take the clients' commands. When the arm is torque-controlled: whether a torque came this tick;
        otherwise None (there is nothing to wait for)."""
        for rs in self.server.robot_servers:
            rs.process_commands()
        rs = self.server.robot_servers[0]  # franky-sim keeps these private; read-only here
        if rs._FrankaRobotServer__control_mode is not self._torque_mode:
            return None
        return bool(rs._FrankaRobotServer__has_new_command)

    def _after_tick(self, fresh: bool | None) -> None:
        t = float(self.sim.data.time)
        self.score.update(t, self.sim.data.xpos[self._cube_body][2])
        if fresh is not None:
            self.link.update(fresh, t)
        if self._frames is not None:
            period, callback, due = self._frames
            if t < due - period:  # the clock went back (a reset): start again from now
                due = t
            if t >= due - 1e-9:
                callback(*self.render_stamped())
                self._frames = (period, callback, max(due + period, t - period))
                if self.shared is not None:
                    self.shared.last_frame.value = t
        if self.shared is not None:
            self.shared.time.value = t
            if self._frames is not None:
                self.shared.next_frame.value = self._frames[2]
            if t >= self.shared.pause_at.value - 1e-9:  # after this tick's frame: the observation is in
                self.shared.pause_at.value = math.inf
                self._holding.clear()
                self._running.clear()

    @property
    def success(self) -> bool:
        return self.score.success

    # ---- camera ----------------------------------------------------------------------------------
    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB from the fixed scene camera."""
        return self.render_stamped()[1]

    def render_stamped(self) -> tuple[float, np.ndarray]:
        """(sim time the frame shows, (H, W, 3) uint8 RGB): the time is read with the scene, under the
        lock the physics steps under, not before the call (a busy process can step on in between)."""
        renderer = getattr(self._gl, "renderer", None)
        if renderer is None:
            n = self.cfg.image_size
            renderer = self._gl.renderer = mujoco.Renderer(self.sim.model, n, n)
            self._gl.option = mujoco.MjvOption()
        with self.lock:
            renderer.update_scene(self.sim.data, camera="scene_cam", scene_option=self._gl.option)
            t = float(self.sim.data.time)
        return t, renderer.render().copy()


# ---- the world in its own process --------------------------------------------------------------------
# The simulator steps in Python at 1 kHz; in its own process it does not compete with the policy for the
# GIL. The client drives the arm over libfranka as usual and uses this small RPC for the rest.

def _serve(conn, cfg: WorldConfig, shared: SharedClock | None = None, frames=None) -> None:
    import queue
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    world = GraspWorld(cfg)
    world.shared = shared
    # The physics thread never waits on the pipe (a client that stops reading would stop the world and its
    # libfranka link): it queues, a thread sends, and frames a full queue cannot take are dropped.
    outbox: queue.Queue = queue.Queue(maxsize=64)  # 2 s of frames

    def send_frame(stamp, rgb):  # the physics thread, right after rendering: the state of the same tick
        try:
            outbox.put_nowait((stamp, rgb, world.arm_state_now()))
        except queue.Full:
            pass

    def sender():
        while (item := outbox.get()) is not None:
            try:
                frames.send(item)
            except (BrokenPipeError, OSError):
                return

    threading.Thread(target=sender, daemon=True, name="frames").start()
    world.start()
    conn.send(("ready", None))
    def reset(seed):
        pose = sample_cube_pose(cfg, seed)
        world.place_cube(pose)
        return pose

    calls = {WorldCall.RESET: reset,
             WorldCall.RENDER: lambda _: world.render_stamped(),
             WorldCall.PLACE_ARM: world.place_arm,
             WorldCall.PAUSE: lambda _: world.pause(),
             WorldCall.RESUME: lambda _: world.resume(),
             # frames every `arg` s of sim time to the frame pipe; None: off
             WorldCall.CAMERA: lambda arg: world.trigger_camera(None if arg is None else float(arg), send_frame),
             WorldCall.STATUS: lambda _: {"time": world.time, "success": world.success, "cube": world.cube_position(),
                                          "cube_yaw": world.cube_yaw(), "link": world.link.summary(),
                                          "pause_timeouts": world.pause_timeouts}}
    try:
        while True:
            cmd, arg = conn.recv()
            if cmd == WorldCall.STOP:
                break
            try:
                if cmd not in calls:
                    raise ValueError(f"unknown world command {cmd!r}")
                conn.send(("ok", calls[cmd](arg)))  # a WorldCall is its string
            except Exception as e:  # noqa: BLE001 - reported to the client, which raises it
                conn.send(("error", repr(e)))
    finally:
        outbox.put(None)
        world.stop()
        conn.send(("stopped", None))


class WorldProcess:
    """`GraspWorld` in a child process: start(), reset(seed), render(), status(), time(), pause(), resume(),
    wait_until(t), stop(); for real-time evaluation a camera stream (`camera`, `frame`) and a hold at an
    instant of sim time (`run_until`). The clock is read from shared memory, the rest goes through a pipe."""

    def __init__(self, cfg: WorldConfig = WorldConfig(), start_timeout: float = 60.0):
        self.cfg, self._timeout = cfg, start_timeout
        self._proc = self._conn = self._frames = self._shared = None
        self._frames_since = -math.inf
        self._lock = threading.Lock()  # one request in flight on the pipe, whichever thread asks

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> "WorldProcess":
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._frames, frames_child = ctx.Pipe(duplex=False)
        self._shared = SharedClock(ctx)
        self._proc = ctx.Process(target=_serve, args=(child, self.cfg, self._shared, frames_child), daemon=True,
                                 name="grasp-world")
        self._proc.start()
        deadline = time.monotonic() + self._timeout
        while not self._conn.poll(0.2):
            if not self._proc.is_alive() or time.monotonic() > deadline:
                code = self._proc.exitcode
                self.stop()
                raise RuntimeError(f"grasp world did not start (exit code {code}; timeout {self._timeout:.0f} s)")
        self._conn.recv()
        return self

    def _call(self, cmd: WorldCall, arg=None):
        with self._lock:
            self._conn.send((cmd, arg))
            if not self._conn.poll(30.0):
                raise RuntimeError(f"grasp world did not answer '{cmd}' within 30 s")
            status, out = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"grasp world failed on '{cmd}': {out}")
        return out

    def reset(self, seed: int) -> CubePose:
        return self._call(WorldCall.RESET, seed)

    def render(self) -> tuple[float, np.ndarray]:
        """(sim time, (H, W, 3) uint8 RGB)."""
        return self._call(WorldCall.RENDER)

    def status(self) -> dict:
        return self._call(WorldCall.STATUS)

    def time(self) -> float:
        """Sim clock (s), as of the last tick."""
        return self._shared.time.value

    def camera(self, period_s: float | None) -> None:
        """Frames every `period_s` of sim time, rendered by the physics thread on the tick that reaches each one,
        with the arm's state of that tick (`frame`); None stops them and drops those not yet read."""
        self._frames_since = self.time()  # frames sent before (a stream stopped earlier) are not this one's
        self._call(WorldCall.CAMERA, period_s)
        if period_s is None:
            while self._frames.poll():
                self._frames.recv()

    def frame(self, timeout: float) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The next camera frame (sim time, (H, W, 3) uint8 RGB, (8,) joints + finger opening) of the stream
        started last, or None when none came within `timeout` s of wall time."""
        deadline = time.monotonic() + timeout
        while self._frames.poll(max(0.0, deadline - time.monotonic())):
            frame = self._frames.recv()
            if frame[0] >= self._frames_since - 1e-9:
                return frame
        return None

    @property
    def last_frame_time(self) -> float:
        """When the camera's last frame was rendered (sim s)."""
        return self._shared.last_frame.value

    @property
    def next_frame_time(self) -> float:
        """When the camera's next frame falls due (sim s; inf: no camera)."""
        return self._shared.next_frame.value

    def run_until(self, t_sim: float, timeout: float = 10.0) -> float:
        """Let the world run (resuming it if it holds) until its clock reaches `t_sim`, the frame of that tick
        rendered, then hold it there (at the next tick if `t_sim` has passed); returns the sim time it holds at.
        Resume with `resume()`: a hold ends by itself after `WorldConfig.max_pause_s`."""
        pauses = self._shared.pauses.value
        self._shared.pause_at.value = t_sim
        self.resume()
        deadline = time.monotonic() + timeout
        while self._shared.pauses.value == pauses:
            if time.monotonic() > deadline or not self._proc.is_alive():
                self._shared.pause_at.value = math.inf
                raise RuntimeError(f"the simulator did not pause at {t_sim:.3f} s within {timeout} s")
            time.sleep(0.0002)
        return self.time()

    def place_arm(self, q) -> None:
        """Simulator-only: the arm at joint positions `q`, at rest, fingers open."""
        self._call(WorldCall.PLACE_ARM, [float(v) for v in q])

    def pause(self) -> float:
        """Stop the physics (at most `WorldConfig.max_pause_s`); returns the sim time it stopped at."""
        return self._call(WorldCall.PAUSE)

    def resume(self) -> None:
        self._call(WorldCall.RESUME)

    def wait_until(self, t_sim: float, poll_s: float = 0.002, halt: threading.Event | None = None) -> float:
        """Block until the sim clock reaches `t_sim` (it may run slower than the wall clock), or `halt` is
        set; returns the sim time."""
        while True:
            t = self.time()
            if t >= t_sim or (halt is not None and halt.is_set()):
                return t
            if halt is not None:
                halt.wait(min(t_sim - t, poll_s))
            else:
                time.sleep(min(t_sim - t, poll_s))

    def stop(self) -> None:
        if self._proc is None:
            return
        try:
            if self._proc.is_alive():
                self._conn.send((WorldCall.STOP, None))
                self._proc.join(10)
        except (BrokenPipeError, OSError):
            pass
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._proc = None
        for conn in (self._conn, self._frames):
            if conn is not None:
                conn.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
