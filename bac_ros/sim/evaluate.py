"""Closed-loop policy episodes on the grasp world, in two modes.

sync:      the world waits: its physics is paused while the policy observes and infers, then the
           n_action_steps actions are sent on the sim clock at dt, exactly as the expert's were recorded.
           Pure policy quality: slow inference (or a loaded machine) costs wall time, not success.
realtime:  the graph without ROS, as a robot runs it: the world's camera renders a frame every dt of sim time with
           the arm's state of the same tick (sim_node's camera and controller_node's joint states); the policy
           infers on the newest observation whenever it is free and a new one is in (policy_node); a control loop
           at controller_node's rate of robot time plays the chunks through the same `ChunkExecutor` and envelope
           (config/grasp.yaml). The clock is read from shared memory, never through a round trip, so points go out
           when due. Live, the latency is this machine's compute time at the world's speed; with `latency_s`, a
           computer whose inference takes that long: the world holds while the policy infers, and the chunk
           reaches the controller `latency_s` of robot time after the policy started (docs/control.md).
Both modes keep time on the sim clock (the robot's time): franky-sim runs at or below real time (it waits
for late torque commands; the rate is each episode's link realtime_factor), so a wall-clock schedule would
play the actions faster, in robot time, than the demonstrations were recorded.
"""
from __future__ import annotations

import dataclasses
import statistics
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..policy.runner import PolicyRunner
from ..core.settings import from_mapping, node_parameters
from ..robot.streaming import (CONTROL_RATE_HZ, ENSEMBLE_CHUNKS, STITCHES, Chunk, ChunkExecutor, ChunkRules,
                              ObservationWindow, stitch_of)
from ..robot.fr3_arm import FR3Arm, drive
from .episode import observe, pause_and_observe, reset
from .world import WorldProcess


@dataclass
class PolicyEpisode:
    seed: int
    success: bool
    time_to_success: float | None
    inference_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    dropped_points: int = 0
    # sync, or realtime with latency_s: inferences that outlasted WorldConfig.max_pause_s (the world stepped on)
    pause_timeouts: int = 0
    late_ms: list[float] = field(default_factory=list)  # sync: sim ms each point was sent after its time
    # realtime: per chunk, robot ms from its observation to the controller (obs_to_chunk) and to its first
    # command (latency: when it took over), as metrics_node measures them in the graph
    latency_ms: list[float] = field(default_factory=list)
    obs_to_chunk_ms: list[float] = field(default_factory=list)
    realtime_factor: float | None = None  # realtime: sim seconds per wall second over the episode (the world's speed)
    # realtime: smoothness within ±2 action steps of each chunk switch (`switch_smoothness`)
    switches: int = 0
    switch_jump_rad: float | None = None  # median over switches of the plans' gap there (ChunkExecutor.switch_gap, rad)
    switch_reversals: float | None = None  # joint velocity reversals per switch
    switch_jerk: float | None = None  # median over switches of the RMS jerk (rad/s^3), the worst joint
    velocity_stops: int = 0  # the arm stopped because a joint moved faster than its limit (see FR3Arm.check)
    workspace_refusals: int = 0  # targets refused at the TCP workspace box (see ArmLimits.workspace)


class _Camera(threading.Thread):
    """The world's camera stream (`WorldProcess.camera`: a frame every dt of sim time, rendered by the physics
    thread with the arm's state of the same tick, as sim_node's camera and controller_node's joint states reach
    policy_node) into an `ObservationWindow`."""

    def __init__(self, world: WorldProcess, hist: ObservationWindow):
        super().__init__(daemon=True, name="camera")
        self.world, self.hist = world, hist
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            frame = self.world.frame(0.05)
            if frame is not None:
                self.hist.push(*frame)

    def stop(self) -> None:
        self._halt.set()


def _infer(runner: PolicyRunner, hist: ObservationWindow, prefix=None):
    """-> (plan, inference ms, stamp of the newest observation used). The plan is every predicted point
    from the current step on (`PolicyRunner.select_action`): sync mode plays the first n_action_steps (the
    next point gives the last one its velocity), real-time mode n_action_steps from the first still due.
    `prefix(stamp)`: the points the plan must start with, for an observation of `stamp` (None: free).
    The drift guard's shadow check, if one is due, waits for `runner.settle()` after the chunk went out (as
    policy_node runs it): its full inference is not counted in the chunk's time, and it delays the next one."""
    images, states, stamp = hist.window()
    t0 = time.perf_counter()
    plan = runner.select_action(images, states, prefix(stamp) if prefix is not None else None)
    return plan, (time.perf_counter() - t0) * 1e3, stamp


def run_sync(world: WorldProcess, arm: FR3Arm, runner: PolicyRunner, seed: int, max_time: float = 12.0,
             rules: ChunkRules | None = None) -> PolicyEpisode:
    """The world waits for every inference: the physics is paused from the observation until the chunk's
    first point is sent, and every point is sent on the sim clock (step k at t0 + k*dt), as the expert's
    were recorded, through the controller's `ChunkExecutor` (`rules`, default config/grasp.yaml's with
    commit = n_action_steps). No method's speed, and no load on the machine, changes what the arm does."""
    cfg = runner.policy.cfg
    dt, n = cfg.action_dt, cfg.n_action_steps
    executor, hist, ep, before = _begin(world, arm, runner, seed, _rules(rules, n))
    k = 0  # action steps executed
    try:
        t0, image, state = pause_and_observe(world, arm)
        executor.start(t0)
        hist.push(t0, image, state)
        while k * dt < max_time:
            plan, ms, _ = _infer(runner, hist)  # paused at step k
            ep.inference_ms.append(ms)
            ep.chunks += 1
            # stamped with the step's nominal time, so that point i falls due exactly at step k + i
            executor.offer(Chunk(t0 + k * dt, plan, dt), t0 + k * dt)
            runner.settle()  # still paused: sync mode stays a measure of the policy alone
            for i in range(n):
                now = t0 + k * dt
                if i > 0:
                    now = world.wait_until(now)
                    ep.late_ms.append((now - t0 - k * dt) * 1e3)
                    if i >= n - (cfg.n_obs_steps - 1):  # observations the next inference uses
                        t, image, state = observe(world, arm)
                        hist.push(t, image, state)
                drive(executor, arm, now)
                if i == 0:
                    world.resume()
                k += 1
            world.wait_until(t0 + k * dt)
            t, image, state = pause_and_observe(world, arm)
            hist.push(t, image, state)
            status = world.status()
            ep.pause_timeouts = status["pause_timeouts"]
            if status["success"]:
                ep.success, ep.time_to_success = True, k * dt
                break
    finally:
        world.resume()
    return _end(ep, arm, executor, before)


def _begin(world, arm, runner, seed: int, rules: ChunkRules):
    """An episode's start, the same in both modes: the arm home and the cube placed, the runner's noise from the
    seed, a fresh executor and observation window; the arm's counters before it."""
    reset(world, arm, seed)
    runner.reset(seed)
    hist = ObservationWindow(runner.policy.cfg.n_obs_steps)
    ep = PolicyEpisode(seed=seed, success=False, time_to_success=None)
    return ChunkExecutor(rules), hist, ep, (arm.velocity_stops, arm.workspace_refusals)


def _end(ep: PolicyEpisode, arm, executor, before) -> PolicyEpisode:
    ep.velocity_stops = arm.velocity_stops - before[0]
    ep.workspace_refusals = arm.workspace_refusals - before[1]
    ep.dropped_points = executor.counts["points_stale"]
    return ep


def _rules(rules: ChunkRules | None, commit_steps: int) -> ChunkRules:
    """The controller's rules (config/grasp.yaml) unless given, with the episode's commit and one chunk at a
    time (no ensembling)."""
    rules = rules or controller_rules()
    return dataclasses.replace(rules, commit_steps=commit_steps, ensemble_chunks=1)


def controller_rules() -> ChunkRules:
    """controller_node's chunk rules as config/grasp.yaml sets them."""
    return from_mapping(ChunkRules, node_parameters("controller_node"))


class _ChunkPlayer(threading.Thread):
    """controller_node's control loop: a tick every 1/`rate_hz` s of robot time (the sim clock, read from shared
    memory), each through the `ChunkExecutor` and the arm's envelope (`drive`); a chunk `submit`ted is offered
    at once, as a subscription callback would, not at the next tick."""

    def __init__(self, world: WorldProcess, arm: FR3Arm, executor: ChunkExecutor, rate_hz: float):
        super().__init__(daemon=True, name="chunk-player")
        self.world, self.arm, self.executor, self.period = world, arm, executor, 1.0 / rate_hz
        self._lock = threading.Lock()
        self._pending: list[Chunk] = []
        self._halt = threading.Event()
        # robot ms from a chunk's observation to its offer (controller_node's receipt), and to the first
        # command sent from it (when it took over): the graph's obs_to_chunk_ms and latency (metrics_node)
        self.obs_to_chunk_ms: list[float] = []
        self.latency_ms: list[float] = []
        # per tick: (robot s, measured joints (7,), a chunk took over (its first command), the gap at a switch (rad))
        self.trace: list[tuple[float, np.ndarray, bool, float | None]] = []

    def submit(self, chunk: Chunk) -> None:
        with self._lock:
            self._pending.append(chunk)

    def continuation(self, stamp: float, dt: float, arrival: float, room: int) -> np.ndarray | None:
        """`ChunkExecutor.continuation`, between two ticks."""
        with self._lock:
            return self.executor.continuation(stamp, dt, arrival, room)

    def idle(self) -> bool:
        """Every chunk submitted has been offered."""
        with self._lock:
            return not self._pending

    def _release(self, now: float) -> None:
        for chunk in self._pending:
            self.obs_to_chunk_ms.append((now - chunk.planned_from) * 1e3)
            self.executor.offer(chunk, now)
        self._pending.clear()

    def run(self) -> None:
        next_tick = self.world.time()
        while not self._halt.is_set():
            now = self.world.time()
            with self._lock:
                self._release(now)
            if now < next_tick - 1e-9:  # the sim clock never runs ahead of the wall clock: no oversleeping
                time.sleep(max(min(next_tick - now, 0.002), 0.0002))  # a new chunk waits at most 2 ms
                continue
            next_tick = max(next_tick + self.period, now)  # fell behind (a paused world): no burst
            with self._lock:
                drive(self.executor, self.arm, now)
            if (chunk := self.executor.took_over) is not None:
                self.latency_ms.append((now - chunk.planned_from) * 1e3)
            self.trace.append((now, self.arm.joint_positions(), chunk is not None, self.executor.switch_gap))

    def stop(self) -> None:
        self._halt.set()


def run_realtime(world: WorldProcess, arm: FR3Arm, runner: PolicyRunner, seed: int, max_time: float = 12.0,
                 commit_steps: int | None = None, rules: ChunkRules | None = None,
                 latency_s: float | None = None, control_rate_hz: float = CONTROL_RATE_HZ,
                 stitch: str | None = None) -> PolicyEpisode:
    """The graph without ROS: camera frames every dt of sim time (`_Camera`), the policy inferring on the newest
    observation whenever it is free and a new one is in (as policy_node), the chunks played by controller_node's
    loop at `control_rate_hz` of robot time (`_ChunkPlayer`). `commit_steps`: see `RecedingHorizon`; None: the
    policy's n_action_steps. `rules`: as `run_sync`.
    `latency_s`: None: the world runs on while the policy infers, so the latency is this machine's compute time
    (at the world's speed, below real time on a busy machine). A number: a computer whose inference takes that
    long, on any machine: the world holds while the policy infers at the instant it became free, runs on, and
    holds again `latency_s` of robot time later while the chunk reaches the controller; the next inference
    starts then (on the newest frame, or the next one when none is new).
    `stitch`: how a new chunk takes over from the one playing. switch: at once, from its first point still due;
    prefix: the same, but denoised to continue what the arm will still execute of the playing chunk until it
    takes over (`ChunkExecutor.continuation`, at the latency expected: `latency_s`, or live the median of the last
    chunks'); ensemble: every chunk takes over at once (commit 0) and the target is the mean of the targets of
    the chunks that cover now (temporal ensembling: the rules' `ensemble_chunks`, or `ENSEMBLE_CHUNKS`). None:
    what the controller's rules make (`stitch_of`: config/grasp.yaml ships ensemble)."""
    rules = rules or controller_rules()
    stitch = stitch or stitch_of(rules)
    if stitch not in STITCHES:
        raise ValueError(f"stitch must be one of {STITCHES}, got {stitch!r}")
    cfg = runner.policy.cfg
    if stitch == "ensemble":
        count = rules.ensemble_chunks if rules.ensemble_chunks > 1 else ENSEMBLE_CHUNKS
        rules = dataclasses.replace(rules, commit_steps=0, ensemble_chunks=count)
    else:
        rules = _rules(rules, cfg.n_action_steps if commit_steps is None else commit_steps)
    room = cfg.horizon - cfg.n_obs_steps  # points a prefix may hold: all of the future but its last
    executor, hist, ep, before = _begin(world, arm, runner, seed, rules)
    player = _ChunkPlayer(world, arm, executor, control_rate_hz)
    camera = _Camera(world, hist)
    world.camera(cfg.action_dt)
    camera.start()
    try:
        _wait(lambda: hist.ready(), "the first camera frame")
    except RuntimeError:
        camera.stop()
        world.camera(None)
        raise
    t_start = world.time()
    executor.start(t_start)
    player.start()
    last_stamp, held = None, world.run_until(t_start) if latency_s is not None else t_start
    try:
        while world.time() - t_start < max_time:
            if latency_s is not None:  # the world holds from the instant the policy is free and a frame is new
                _wait_for_frames(world, hist)
                while hist.newest_stamp == last_stamp:
                    held = world.run_until(world.next_frame_time)
                    _wait_for_frames(world, hist)
            elif hist.newest_stamp == last_stamp:  # no new observation since the last inference (as policy_node)
                time.sleep(0.0005)
                continue
            prefix = None
            if stitch == "prefix":
                recent = player.obs_to_chunk_ms[-5:]

                def prefix(stamp):  # noqa: E306 - the arrival expected for an observation of `stamp`
                    arrival = held + latency_s if latency_s is not None else \
                        stamp + (statistics.median(recent) / 1e3 if recent else 0.0)
                    return player.continuation(stamp, cfg.action_dt, arrival, room)
            actions, ms, stamp = _infer(runner, hist, prefix)
            last_stamp = stamp
            ep.inference_ms.append(ms)
            ep.chunks += 1
            chunk = Chunk(stamp, actions, cfg.action_dt)
            if latency_s is None:
                player.submit(chunk)
                runner.settle()
            else:  # the world holds again when the chunk comes out: it reaches the controller at that instant
                runner.settle()
                held = world.run_until(held + latency_s)
                player.submit(chunk)
                _wait(player.idle, "the controller taking the chunk")
            if world.status()["success"]:
                ep.success, ep.time_to_success = True, world.time() - t_start
                break
    finally:
        world.resume()
        player.stop()
        camera.stop()
        player.join(2)
        camera.join(2)
        world.camera(None)
    status = world.status()
    ep.pause_timeouts, ep.realtime_factor = status["pause_timeouts"], status["link"]["realtime_factor"]
    ep.latency_ms, ep.obs_to_chunk_ms = player.latency_ms, player.obs_to_chunk_ms
    smooth = switch_smoothness(player.trace, 2 * cfg.action_dt)
    ep.switches, ep.switch_jump_rad, ep.switch_reversals, ep.switch_jerk = (
        smooth["switches"], smooth["jump_rad"], smooth["reversals"], smooth["jerk"])
    return _end(ep, arm, executor, before)


def switch_smoothness(trace: list, window_s: float, moving: float = 0.05) -> dict:
    """How the arm moves around chunk switches (every chunk's first command but the episode's first), from a
    control loop's trace of (robot s, measured joints, first command of a chunk, `ChunkExecutor.switch_gap`):
    `jump_rad`: the median over switches of the gap between the new plan's target and the old one's at the
    switch (what the arm is asked to jump); `reversals`: joint velocity sign changes (both sides faster than `moving` rad/s) within
    ±`window_s` of a switch, per switch; `jerk`: the median over switches of the RMS jerk (rad/s^3, finite
    differences of the measured joints) within ±`window_s`, the worst joint. None where there is no switch."""
    out = {"switches": 0, "jump_rad": None, "reversals": None, "jerk": None}
    if len(trace) < 5:
        return out
    t = np.array([r[0] for r in trace])
    q = np.stack([r[1] for r in trace])
    keep = np.concatenate([[True], np.diff(t) > 1e-6])  # a tick per instant
    t, q = t[keep], q[keep]
    firsts = [i for i, r in enumerate(trace) if r[2]][1:]
    if not firsts:
        return out
    v = np.diff(q, axis=0) / np.diff(t)[:, None]
    tv = (t[1:] + t[:-1]) / 2
    a = np.diff(v, axis=0) / np.diff(tv)[:, None]
    ta = (tv[1:] + tv[:-1]) / 2
    j = np.diff(a, axis=0) / np.diff(ta)[:, None]
    tj = (ta[1:] + ta[:-1]) / 2
    jumps, reversals, jerks = [], [], []
    for i in firsts:
        ts = trace[i][0]
        gap = next((r[3] for r in reversed(trace[:i + 1]) if r[3] is not None), None)  # set on the switch's tick
        if gap is not None:
            jumps.append(gap)
        w = (tv >= ts - window_s) & (tv <= ts + window_s)
        vs = v[w]
        flips = (np.sign(vs[1:]) != np.sign(vs[:-1])) & (np.abs(vs[1:]) > moving) & (np.abs(vs[:-1]) > moving)
        reversals.append(int(flips.sum()))
        wj = (tj >= ts - window_s) & (tj <= ts + window_s)
        if wj.any():
            jerks.append(float(np.max(np.sqrt(np.mean(j[wj] ** 2, axis=0)))))
    out.update(switches=len(firsts), jump_rad=float(np.median(jumps)) if jumps else None,
               reversals=float(np.mean(reversals)), jerk=float(np.median(jerks)) if jerks else None)
    return out


def _wait(done, what: str, timeout: float = 5.0) -> None:
    """Poll `done()` until true; RuntimeError naming `what` after `timeout` s of wall time."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come within {timeout:.0f} s")
        time.sleep(0.0002)


def _wait_for_frames(world: WorldProcess, hist: ObservationWindow) -> None:
    """While the world holds: every frame rendered up to now is in the window (it may still be in the pipe)."""
    last = world.last_frame_time
    _wait(lambda: hist.newest_stamp is not None and hist.newest_stamp >= last - 1e-9, f"the frame of {last:.3f} s")
