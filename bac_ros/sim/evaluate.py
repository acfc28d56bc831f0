"""Closed-loop policy episodes on the grasp world, in two modes.

sync:      observe -> infer (the arm holds still meanwhile, for a fixed 0.12 s or the inference time if
           longer, the same for every method) -> execute the n_action_steps actions at dt.
           Pure policy quality: slow inference costs wall time, not success.
realtime:  inference runs on each new observation while an executor thread plays the newest chunk on the wall
           clock; points whose time has passed (stamp + i*dt < now) are dropped, as on a real arm.
           An observer thread samples camera + joints every dt (as the camera does for policy_node), so
           the observation history is spaced as in training whatever the inference time.
           Slow inference means stale chunks and fewer corrections, so it can cost success.
Both stamp observations and chunks with the wall clock (time.monotonic); franky-sim runs at ~1.0x
real time here (measured in `GraspWorld._pace`).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..core.policy import DiffusionPolicy
from ..core.streaming import chunk_velocity, due_index
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
    """Samples camera + joint state every dt into a `_History`."""

    def __init__(self, world: WorldProcess, arm: Arm, hist: _History, dt: float):
        super().__init__(daemon=True, name="observer")
        self.world, self.arm, self.hist, self.dt = world, arm, hist, dt
        self._halt = threading.Event()

    def run(self) -> None:
        next_t = time.monotonic()
        while not self._halt.is_set():
            _, image, state = observe(self.world, self.arm)
            self.hist.push(image, state, time.monotonic())
            next_t += self.dt
            delay = next_t - time.monotonic()
            if delay < 0:
                next_t, delay = time.monotonic(), 0.0  # fell behind: no burst
            self._halt.wait(delay)

    def stop(self) -> None:
        self._halt.set()


def _infer(policy: DiffusionPolicy, denoiser, hist: _History, generator: torch.Generator):
    """-> (executable actions, inference ms, stamp of the newest observation used)."""
    img, st, stamp = hist.tensors()
    t0 = time.perf_counter()
    traj = policy.predict(img, st, denoiser, generator=generator)
    ms = (time.perf_counter() - t0) * 1e3
    return policy.executable(traj)[0].numpy(), ms, stamp


def _send(arm: Arm, actions: np.ndarray, i: int, dt: float) -> None:
    """Point i of a chunk, with the chunk's velocity from there to the next point as feed-forward."""
    arm.command(actions[i, :7], chunk_velocity(actions[:, :7], 0.0, dt, i * dt), dt=dt)
    arm.gripper_command(float(actions[i, 7]))


def run_sync(world: WorldProcess, arm: Arm, policy: DiffusionPolicy, denoiser, seed: int,
             max_time: float = 12.0, sync_rest_s: float = 0.12) -> PolicyEpisode:
    cfg = policy.cfg
    dt = cfg.action_dt
    reset(world, arm, seed)
    gen = torch.Generator().manual_seed(seed)
    hist = _History(cfg.n_obs_steps)
    ep = PolicyEpisode(seed=seed, success=False, time_to_success=None)
    executed = 0
    _, image, state = observe(world, arm)
    hist.push(image, state, time.monotonic())
    while executed * dt < max_time:
        t_plan = time.monotonic()
        actions, ms, _ = _infer(policy, denoiser, hist, gen)
        ep.inference_ms.append(ms)
        ep.chunks += 1
        # The arm rests for the same time at every re-plan whatever the method's speed, so every method
        # sees the same arm dynamics (a longer rest lets the arm settle more: a difference that is not
        # the policy's).
        time.sleep(max(0.0, t_plan + sync_rest_s - time.monotonic()))
        next_tick = time.monotonic()
        for i in range(len(actions)):
            _send(arm, actions, i, dt)
            executed += 1
            next_tick += dt
            time.sleep(max(0.0, next_tick - time.monotonic()))
            if i >= len(actions) - cfg.n_obs_steps:  # the observations the next inference uses
                _, image, state = observe(world, arm)
                hist.push(image, state, time.monotonic())
        if world.status()["success"]:
            ep.success, ep.time_to_success = True, executed * dt
            break
    return ep


class _ChunkPlayer(threading.Thread):
    """Plays the newest chunk on the wall clock: point i is due at stamp + i*dt; past points are dropped."""

    def __init__(self, arm: Arm, dt: float):
        super().__init__(daemon=True, name="chunk-player")
        self.arm, self.dt = arm, dt
        self._lock = threading.Lock()
        self._chunk: tuple[float, np.ndarray] | None = None
        self._halt = threading.Event()
        self.dropped = 0
        self.sent = 0

    def submit(self, stamp: float, actions: np.ndarray) -> None:
        with self._lock:
            self._chunk = (stamp, actions)

    def run(self) -> None:
        playing = None  # the chunk being played, to count the points it lost to latency once
        while not self._halt.is_set():
            now = time.monotonic()
            with self._lock:
                chunk = self._chunk
            if chunk is not None:
                stamp, actions = chunk
                i = due_index(stamp, self.dt, now)
                if chunk is not playing:
                    playing = chunk
                    self.dropped += min(i, len(actions))
                if i < len(actions):
                    _send(self.arm, actions, i, self.dt)
                    self.sent += 1
                else:
                    self.arm.hold()  # the chunk ran out before a new one came
            self._halt.wait(max(0.0, now + self.dt - time.monotonic()))

    def stop(self) -> None:
        self._halt.set()


def run_realtime(world: WorldProcess, arm: Arm, policy: DiffusionPolicy, denoiser, seed: int,
                 max_time: float = 12.0) -> PolicyEpisode:
    cfg = policy.cfg
    reset(world, arm, seed)
    gen = torch.Generator().manual_seed(seed)
    hist = _History(cfg.n_obs_steps)
    ep = PolicyEpisode(seed=seed, success=False, time_to_success=None)
    player = _ChunkPlayer(arm, cfg.action_dt)
    observer = _Observer(world, arm, hist, cfg.action_dt)
    t_start = time.monotonic()
    _, image, state = observe(world, arm)
    hist.push(image, state, time.monotonic())
    observer.start()
    player.start()
    last_stamp = None
    try:
        while time.monotonic() - t_start < max_time:
            if hist.stamp == last_stamp:  # no new observation since the last inference (as policy_node)
                time.sleep(0.002)
                continue
            actions, ms, stamp = _infer(policy, denoiser, hist, gen)
            last_stamp = stamp
            ep.inference_ms.append(ms)
            ep.chunks += 1
            player.submit(stamp, actions)
            if world.status()["success"]:
                ep.success, ep.time_to_success = True, time.monotonic() - t_start
                break
    finally:
        player.stop()
        observer.stop()
        player.join(2)
        observer.join(2)
    ep.dropped_points = player.dropped
    return ep
