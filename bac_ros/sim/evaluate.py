"""Closed-loop policy episodes on the grasp world, in two modes.

sync:      observe -> infer (the arm holds still meanwhile) -> execute the n_action_steps actions at dt.
           Pure policy quality: slow inference costs wall time, not success.
realtime:  inference runs back to back while an executor thread plays the newest chunk on the wall
           clock; points whose time has passed (stamp + i*dt < now) are dropped, as on a real arm.
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
from ..core.streaming import due_index
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
    """The last n_obs_steps observations (image (3, H, W) float, state (8,))."""

    def __init__(self, n: int):
        self.images: deque = deque(maxlen=n)
        self.states: deque = deque(maxlen=n)
        self.stamp = 0.0

    def push(self, image: np.ndarray, state: np.ndarray, stamp: float) -> None:
        if not self.images:  # pad a fresh episode with its first observation
            for _ in range(self.images.maxlen - 1):
                self.images.append(image)
                self.states.append(state)
        self.images.append(image)
        self.states.append(state)
        self.stamp = stamp

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        img = torch.from_numpy(np.stack(self.images)).permute(0, 3, 1, 2).unsqueeze(0)  # uint8
        return img, torch.from_numpy(np.stack(self.states)).float().unsqueeze(0)


def _infer(policy: DiffusionPolicy, denoiser, hist: _History, generator: torch.Generator):
    img, st = hist.tensors()
    t0 = time.perf_counter()
    traj = policy.predict(img, st, denoiser, generator=generator)
    ms = (time.perf_counter() - t0) * 1e3
    return policy.executable(traj)[0].numpy(), ms


def _send(arm: Arm, action: np.ndarray, dt: float) -> None:
    arm.command(action[:7], dt=dt)
    arm.gripper_command(float(action[7]))


def run_sync(world: WorldProcess, arm: Arm, policy: DiffusionPolicy, denoiser, seed: int,
             max_time: float = 12.0) -> PolicyEpisode:
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
        actions, ms = _infer(policy, denoiser, hist, gen)
        ep.inference_ms.append(ms)
        ep.chunks += 1
        next_tick = time.monotonic()
        for i, a in enumerate(actions):
            _send(arm, a, dt)
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
                    _send(self.arm, actions[i], self.dt)
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
    t_start = time.monotonic()
    _, image, state = observe(world, arm)
    hist.push(image, state, time.monotonic())
    player.start()
    try:
        while time.monotonic() - t_start < max_time:
            stamp = hist.stamp
            actions, ms = _infer(policy, denoiser, hist, gen)
            ep.inference_ms.append(ms)
            ep.chunks += 1
            player.submit(stamp, actions)
            _, image, state = observe(world, arm)
            hist.push(image, state, time.monotonic())
            if world.status()["success"]:
                ep.success, ep.time_to_success = True, time.monotonic() - t_start
                break
    finally:
        player.stop()
        player.join(2)
    ep.dropped_points = player.dropped
    return ep
