"""Closed-loop policy episodes on the grasp world, in two modes.

sync:      the world waits: its physics is paused while the policy observes and infers, then the
           n_action_steps actions are sent on the sim clock at dt, exactly as the expert's were recorded.
           Pure policy quality: slow inference (or a loaded machine) costs wall time, not success.
realtime:  the world runs on while the policy infers on each new observation; an executor thread plays the
           newest chunk (with `commit_steps`, a chunk plays that many steps before the newest takes over:
           `RecedingHorizon`, as controller_node does); point i is held from stamp + i*dt until the next
           falls due, as in sync mode; points whose turn has passed are dropped, as on a real arm.
           An observer thread samples camera + joints every dt (as the camera does for policy_node).
           Slow inference means stale chunks and fewer corrections, so it can cost success.
Both modes keep time on the sim clock (the robot's time): franky-sim runs at or below real time (it waits
for late torque commands; the rate is each episode's link realtime_factor), so a wall-clock schedule would
play the actions faster, in robot time, than the demonstrations were recorded. Inference latency in
real-time mode therefore costs its wall time x that factor of robot time.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.policy import DiffusionPolicy
from ..core.streaming import RecedingHorizon, chunk_velocity, current_index
from .arm import Arm
from .episode import observe, reset
from .world import WorldProcess


@dataclass
class PolicyEpisode:
    seed: int
    success: bool
    time_to_success: float | None
    inference_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    dropped_points: int = 0
    pause_timeouts: int = 0  # sync: inferences that outlasted WorldConfig.max_pause_s (the world stepped on)
    late_ms: list[float] = field(default_factory=list)  # sync: sim ms each point was sent after its time
    velocity_stops: int = 0  # the arm stopped because a joint moved faster than its limit (see Arm)


class _History:
    """The last n_obs_steps observations (image (H, W, 3) uint8, state (8,)); thread-safe."""

    def __init__(self, n: int):
        self.images: deque = deque(maxlen=n)
        self.states: deque = deque(maxlen=n)
        self.stamp = 0.0
        self._lock = threading.Lock()

    def push(self, image: np.ndarray, state: np.ndarray, stamp: float) -> None:
        with self._lock:
            if not self.images:  # pad a fresh episode with its first observation
                for _ in range(self.images.maxlen - 1):
                    self.images.append(image)
                    self.states.append(state)
            self.images.append(image)
            self.states.append(state)
            self.stamp = stamp

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(images (1, n, 3, H, W) uint8, states (1, n, 8), stamp of the newest)."""
        with self._lock:
            images, states, stamp = np.stack(self.images), np.stack(self.states), self.stamp
        img = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(0)
        return img, torch.from_numpy(states).float().unsqueeze(0), stamp


class _Observer(threading.Thread):
    """Samples camera + joint state every dt of sim time into a `_History` (stamped with sim time)."""

    def __init__(self, world: WorldProcess, arm: Arm, hist: _History, dt: float):
        super().__init__(daemon=True, name="observer")
        self.world, self.arm, self.hist, self.dt = world, arm, hist, dt
        self._halt = threading.Event()

    def run(self) -> None:
        next_t = self.world.time()
        while not self._halt.is_set():
            t, image, state = observe(self.world, self.arm)
            self.hist.push(image, state, t)
            next_t = max(next_t + self.dt, t)  # fell behind: no burst
            self.world.wait_until(next_t, halt=self._halt)

    def stop(self) -> None:
        self._halt.set()


def _infer(policy: DiffusionPolicy, denoiser, hist: _History, generator: torch.Generator,
           noise_seed: int | None = None):
    """-> (plan, inference ms, stamp of the newest observation used). The plan is every predicted point
    from the current step on (`DiffusionPolicy.future`): sync mode plays the first n_action_steps (the
    next point gives the last one its velocity), real-time mode n_action_steps from the first still due.
    `noise_seed`: every inference starts from the same noise (the policy becomes a function of the
    observation); None: fresh noise each time."""
    if noise_seed is not None:
        generator.manual_seed(noise_seed)
    img, st, stamp = hist.tensors()
    t0 = time.perf_counter()
    traj = policy.predict(img, st, denoiser, generator=generator)
    ms = (time.perf_counter() - t0) * 1e3
    return policy.future(traj)[0].numpy(), ms, stamp


def _send(arm: Arm, plan: np.ndarray, i: int, dt: float) -> None:
    """Point i of a plan, with the plan's velocity from there to the next point as feed-forward."""
    arm.command(plan[i, :7], chunk_velocity(plan[:, :7], 0.0, dt, i * dt), dt=dt)
    arm.gripper_command(float(plan[i, 7]))


def _pause_and_observe(world: WorldProcess, arm: Arm) -> tuple[float, np.ndarray, np.ndarray]:
    """Pause the world and observe it. The gripper width is read first, while the physics still runs: franky
    takes it from the gripper's next state packet, which a paused world never sends."""
    width = arm.gripper_width()
    t = world.pause()
    _, image = world.render()
    return t, image, np.concatenate([arm.joint_positions(), [width]])


def run_sync(world: WorldProcess, arm: Arm, policy: DiffusionPolicy, denoiser, seed: int,
             max_time: float = 12.0, fixed_noise: bool = False) -> PolicyEpisode:
    """The world waits for every inference: the physics is paused from the observation until the chunk's
    first point is sent, and every point is sent on the sim clock (step k at t0 + k*dt), as the expert's
    were recorded. No method's speed, and no load on the machine, changes what the arm does."""
    cfg = policy.cfg
    dt, n = cfg.action_dt, cfg.n_action_steps
    reset(world, arm, seed)
    gen = torch.Generator().manual_seed(seed)
    hist = _History(cfg.n_obs_steps)
    ep = PolicyEpisode(seed=seed, success=False, time_to_success=None)
    stops = arm.velocity_stops
    k = 0  # action steps executed
    try:
        t0, image, state = _pause_and_observe(world, arm)
        hist.push(image, state, t0)
        while k * dt < max_time:
            plan, ms, _ = _infer(policy, denoiser, hist, gen, seed if fixed_noise else None)  # paused at step k
            ep.inference_ms.append(ms)
            ep.chunks += 1
            for i in range(n):
                if i > 0:
                    ep.late_ms.append((world.wait_until(t0 + k * dt) - t0 - k * dt) * 1e3)
                    if i >= n - (cfg.n_obs_steps - 1):  # observations the next inference uses
                        t, image, state = observe(world, arm)
                        hist.push(image, state, t)
                _send(arm, plan, i, dt)
                if i == 0:
                    world.resume()
                k += 1
            world.wait_until(t0 + k * dt)
            t, image, state = _pause_and_observe(world, arm)
            hist.push(image, state, t)
            status = world.status()
            ep.pause_timeouts = status["pause_timeouts"]
            if status["success"]:
                ep.success, ep.time_to_success = True, k * dt
                break
    finally:
        world.resume()
    ep.velocity_stops = arm.velocity_stops - stops
    return ep


class _ChunkPlayer(threading.Thread):
    """Plays the newest chunk on the sim clock: point i is sent at stamp + i*dt (`current_index`); points
    whose turn has passed are dropped; a chunk plays at most n_exec points from the one due when it took
    over, then holds (no newer chunk came)."""

    def __init__(self, world: WorldProcess, arm: Arm, dt: float, n_exec: int, commit_steps: int = 0):
        super().__init__(daemon=True, name="chunk-player")
        self.world, self.arm, self.dt, self.n_exec = world, arm, dt, n_exec
        self._lock = threading.Lock()
        self._horizon = RecedingHorizon(commit_steps)
        self._halt = threading.Event()
        self.dropped = 0
        self.sent = 0
        self._playing = None  # the chunk being played, to count the points it lost to latency once
        self._last_i = None

    def submit(self, stamp: float, actions: np.ndarray) -> None:
        with self._lock:
            self._horizon.offer((stamp, actions, self.dt))

    def tick(self, now: float) -> None:
        """Send the point whose turn it is at sim time `now`, once; hold when the chunk ran out."""
        with self._lock:
            chunk = self._horizon.current(now)
        if chunk is None:
            return
        stamp, actions, _ = chunk
        i = current_index(stamp, self.dt, now)
        if chunk is not self._playing:
            self._playing, self._last_i = chunk, None
            self.dropped += self._horizon.first_index
        if i < min(self._horizon.first_index + self.n_exec, len(actions) - 1):  # the last point: velocity only
            if i != self._last_i:
                _send(self.arm, actions, i, self.dt)
                self.sent += 1
                self._last_i = i
        elif self._last_i != -1:
            self.arm.hold()  # the chunk ran out before a new one came
            self._last_i = -1

    def run(self) -> None:
        while not self._halt.is_set():
            self.tick(self.world.time())
            self._halt.wait(0.002)

    def stop(self) -> None:
        self._halt.set()


def run_realtime(world: WorldProcess, arm: Arm, policy: DiffusionPolicy, denoiser, seed: int,
                 max_time: float = 12.0, commit_steps: int | None = None, fixed_noise: bool = False) -> PolicyEpisode:
    """`commit_steps`: see `RecedingHorizon`; None: the policy's n_action_steps."""
    cfg = policy.cfg
    commit_steps = cfg.n_action_steps if commit_steps is None else commit_steps
    reset(world, arm, seed)
    gen = torch.Generator().manual_seed(seed)
    hist = _History(cfg.n_obs_steps)
    ep = PolicyEpisode(seed=seed, success=False, time_to_success=None)
    stops = arm.velocity_stops
    player = _ChunkPlayer(world, arm, cfg.action_dt, cfg.n_action_steps, commit_steps)
    observer = _Observer(world, arm, hist, cfg.action_dt)
    t_start = world.time()
    t, image, state = observe(world, arm)
    hist.push(image, state, t)
    observer.start()
    player.start()
    last_stamp = None
    try:
        while world.time() - t_start < max_time:
            if hist.stamp == last_stamp:  # no new observation since the last inference (as policy_node)
                time.sleep(0.002)
                continue
            actions, ms, stamp = _infer(policy, denoiser, hist, gen, seed if fixed_noise else None)
            last_stamp = stamp
            ep.inference_ms.append(ms)
            ep.chunks += 1
            player.submit(stamp, actions)
            if world.status()["success"]:
                ep.success, ep.time_to_success = True, world.time() - t_start
                break
    finally:
        player.stop()
        observer.stop()
        player.join(2)
        observer.join(2)
    ep.dropped_points = player.dropped
    ep.velocity_stops = arm.velocity_stops - stops
    return ep
