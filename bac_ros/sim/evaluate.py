"""Closed-loop policy episodes on the grasp world, in two modes.

sync:      the world waits: its physics is paused while the policy observes and infers, then the
           n_action_steps actions are sent on the sim clock at dt, exactly as the expert's were recorded.
           Pure policy quality: slow inference (or a loaded machine) costs wall time, not success.
realtime:  the world runs on while the policy infers on each new observation; a thread plays the chunks
           through the same `ChunkExecutor` and limits as controller_node (config/grasp.yaml): point i
           is held from stamp + i*dt until the next falls due, as in sync mode; points whose turn has
           passed are dropped, as on a real arm.
           An observer thread samples camera + joints every dt (as the camera does for policy_node).
           Slow inference means stale chunks and fewer corrections, so it can cost success.
Both modes keep time on the sim clock (the robot's time): franky-sim runs at or below real time (it waits
for late torque commands; the rate is each episode's link realtime_factor), so a wall-clock schedule would
play the actions faster, in robot time, than the demonstrations were recorded. Inference latency in
real-time mode therefore costs its wall time x that factor of robot time.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass, field

from ..core.runner import PolicyRunner
from ..core.settings import from_mapping, node_parameters
from ..core.streaming import Chunk, ChunkExecutor, ChunkRules, ObservationWindow
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
    velocity_stops: int = 0  # the arm stopped because a joint moved faster than its limit (see FR3Arm.check)
    workspace_refusals: int = 0  # targets refused at the TCP workspace box (see ArmLimits.workspace)


class _Observer(threading.Thread):
    """Samples camera + joint state every dt of sim time into an `ObservationWindow` (stamped with sim time)."""

    def __init__(self, world: WorldProcess, arm: FR3Arm, hist: ObservationWindow, dt: float):
        super().__init__(daemon=True, name="observer")
        self.world, self.arm, self.hist, self.dt = world, arm, hist, dt
        self._halt = threading.Event()

    def run(self) -> None:
        next_t = self.world.time()
        while not self._halt.is_set():
            t, image, state = observe(self.world, self.arm)
            self.hist.push(t, image, state)
            next_t = max(next_t + self.dt, t)  # fell behind: no burst
            self.world.wait_until(next_t, halt=self._halt)

    def stop(self) -> None:
        self._halt.set()


def _infer(runner: PolicyRunner, hist: ObservationWindow):
    """-> (plan, inference ms, stamp of the newest observation used). The plan is every predicted point
    from the current step on (`PolicyRunner.select_action`): sync mode plays the first n_action_steps (the
    next point gives the last one its velocity), real-time mode n_action_steps from the first still due.
    The drift guard's shadow check, if one is due, waits for `runner.settle()` after the chunk went out (as
    policy_node runs it): its full inference is not counted in the chunk's time, and it delays the next one."""
    images, states, stamp = hist.window()
    t0 = time.perf_counter()
    plan = runner.select_action(images, states)
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
    """The controller's rules (config/grasp.yaml) unless given, with the episode's commit."""
    rules = rules or from_mapping(ChunkRules, node_parameters("controller_node"))
    return dataclasses.replace(rules, commit_steps=commit_steps)


class _ChunkPlayer(threading.Thread):
    """Plays the chunks on the sim clock through a `ChunkExecutor`, ticking every 2 ms of wall time."""

    def __init__(self, world: WorldProcess, arm: FR3Arm, executor: ChunkExecutor):
        super().__init__(daemon=True, name="chunk-player")
        self.world, self.arm, self.executor = world, arm, executor
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def submit(self, chunk: Chunk) -> None:
        with self._lock:
            self.executor.offer(chunk, self.world.time())

    def run(self) -> None:
        while not self._halt.is_set():
            now = self.world.time()
            with self._lock:
                drive(self.executor, self.arm, now)
            self._halt.wait(0.002)

    def stop(self) -> None:
        self._halt.set()


def run_realtime(world: WorldProcess, arm: FR3Arm, runner: PolicyRunner, seed: int, max_time: float = 12.0,
                 commit_steps: int | None = None, rules: ChunkRules | None = None,
                 latency_s: float | None = None) -> PolicyEpisode:
    """`commit_steps`: see `RecedingHorizon`; None: the policy's n_action_steps. `rules`: as `run_sync`.
    `latency_s`: None: the world runs on while the policy infers, so the latency is this machine's compute
    time. A number: the world is paused while the policy infers, and the chunk is handed to the player
    `latency_s` of robot time after its observation: a machine whose inference takes that long (a GPU,
    the robot's PC, or the machine an earlier result was measured on), on any machine."""
    cfg = runner.policy.cfg
    commit_steps = cfg.n_action_steps if commit_steps is None else commit_steps
    executor, hist, ep, before = _begin(world, arm, runner, seed, _rules(rules, commit_steps))
    player = _ChunkPlayer(world, arm, executor)
    observer = _Observer(world, arm, hist, cfg.action_dt)
    t_start = world.time()
    executor.start(t_start)
    t, image, state = observe(world, arm)
    hist.push(t, image, state)
    observer.start()
    player.start()
    last_stamp = None
    try:
        while world.time() - t_start < max_time:
            if hist.newest_stamp == last_stamp:  # no new observation since the last inference (as policy_node)
                time.sleep(0.002)
                continue
            if latency_s is not None:
                world.pause()
            try:
                actions, ms, stamp = _infer(runner, hist)
            finally:
                if latency_s is not None:
                    world.resume()
            if latency_s is not None:
                world.wait_until(stamp + latency_s)
            last_stamp = stamp
            ep.inference_ms.append(ms)
            ep.chunks += 1
            player.submit(Chunk(stamp, actions, cfg.action_dt))
            runner.settle()
            if world.status()["success"]:
                ep.success, ep.time_to_success = True, world.time() - t_start
                break
    finally:
        player.stop()
        observer.stop()
        player.join(2)
        observer.join(2)
    ep.pause_timeouts = world.status()["pause_timeouts"]
    return _end(ep, arm, executor, before)
