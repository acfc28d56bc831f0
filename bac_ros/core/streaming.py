"""Timing rules shared by the evaluation loop and the ROS nodes (no ROS here).

- `ObservationAligner`: pairs each camera frame with the joint state nearest in time; a pair whose
  stamps differ by more than a tolerance is dropped (and counted); keeps the last n_obs_steps pairs.
- `chunk_velocity`: the chunk's own velocity at a time (the slope between its points), streamed with each
  target as feed-forward: the demonstrations were tracked with the plan's velocity, and without it the
  joints lag by different amounts, which bends the path the policy sees (measured: the arm ran 13 cm past
  the cube on a training seed without it, stopped within 2 cm with it).
- `current_index`: which point of a chunk stamped `stamp` is the target now. Point i is held from
  stamp + i*dt until point i+1 falls due, as the demonstrations were streamed (observe at t_i, send
  action i, hold it for dt); earlier points are stale and dropped (latency compensation). Sending point i
  as soon as point i-1's time had passed (what an earlier version did) runs the arm one step ahead of
  the plan: measured on seed 0 with zero latency (the world paused during inference), the arm reached
  the cube 1.5 cm off and missed, where sync mode grasped it.
- `RecedingHorizon`: which chunk of a stream to play. With commit k, a new chunk waits until the playing
  one has played its first k steps (k = n_action_steps is how the policy was trained and evaluated in
  sync mode), then the newest one takes over; k = 0 replaces the chunk at every inference. Measured in
  real-time mode with points sent on time (full precision, ~21 Hz, seeds 0-15): k = 8 won 14/16, k = 0
  9/16, so the policy's n_action_steps is the default. (Earlier measurements that favoured k = 0 were
  taken while points went out one step early.)
"""
from __future__ import annotations

import bisect
import math
from collections import deque

import numpy as np


def current_index(stamp: float, dt: float, now: float) -> int:
    """Index of the point whose turn it is at `now`: the last i with stamp + i*dt <= now (0 before the
    chunk starts). Points before it are stale."""
    if dt <= 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    return max(0, math.floor((now - stamp) / dt + 1e-9))


def held_point(actions: np.ndarray, stamp: float, dt: float, now: float) -> np.ndarray:
    """The chunk's target at time `now` when each point is held for its step (`current_index`); after the
    chunk its last point."""
    return actions[min(current_index(stamp, dt, now), len(actions) - 1)]


def interpolate_chunk(actions: np.ndarray, stamp: float, dt: float, now: float) -> np.ndarray:
    """The chunk's target at time `now`: linear between the points around it; before the chunk its first
    point, after it the last point. Only the future part of a chunk is ever interpolated."""
    s = (now - stamp) / dt
    if s <= 0:
        return actions[0]
    k = int(math.floor(s))
    if k >= len(actions) - 1:
        return actions[-1]
    frac = s - k
    return actions[k] * (1 - frac) + actions[k + 1] * frac


def chunk_velocity(actions: np.ndarray, stamp: float, dt: float, now: float) -> np.ndarray:
    """d(target)/dt of the chunk at `now`: the slope of the segment `interpolate_chunk` is on; zero before
    the chunk's first point and after its last (the chunk ends at rest)."""
    s = (now - stamp) / dt
    k = int(math.floor(s + 1e-9))  # the segment `current_index` is on
    if s < 0 or k >= len(actions) - 1:
        return np.zeros_like(actions[0])
    return (actions[k + 1] - actions[k]) / dt


# How a controller turns a chunk into a target at any time: "hold" is how the demonstrations were streamed.
PLAYBACKS = {"hold": held_point, "interpolate": interpolate_chunk}


class RecedingHorizon:
    """Chunks are (stamp, actions, dt, ...) tuples. `offer` the newest; `current(now)` is the one to play:
    the playing chunk for commit*dt after it took over, then the newest offered. commit=0: every new chunk
    at once. Counting from the takeover, not from the chunk's stamp, matters under latency: a chunk that
    arrives L late would otherwise be replaced after commit*dt - L, by one that has waited and aged."""

    def __init__(self, commit: int):
        if commit < 0:
            raise ValueError(f"commit must be >= 0 steps, got {commit}")
        self.commit = commit
        self.playing = None
        self.waiting = None
        self.first_index = 0  # the playing chunk's point that was due when it took over
        self._until = -math.inf
        self.switches = 0

    def offer(self, chunk: tuple) -> None:
        self.waiting = chunk  # a newer chunk replaces one still waiting

    def current(self, now: float):
        if self.waiting is not None and (self.playing is None or now >= self._until - 1e-9):
            self.playing, self.waiting = self.waiting, None
            stamp, _, dt = self.playing[:3]
            self.first_index = current_index(stamp, dt, now)
            self._until = stamp + (self.first_index + self.commit) * dt  # after `commit` of its points
            self.switches += 1
        return self.playing

    def clear(self) -> None:
        self.playing = self.waiting = None
        self._until = -math.inf


class ObservationAligner:
    def __init__(self, n_obs_steps: int, tolerance_s: float = 0.02, state_buffer: int = 256):
        if n_obs_steps < 1 or tolerance_s < 0:
            raise ValueError("n_obs_steps must be >= 1 and tolerance_s >= 0")
        self.n, self.tolerance = n_obs_steps, tolerance_s
        self._state_t: deque = deque(maxlen=state_buffer)
        self._state_v: deque = deque(maxlen=state_buffer)
        self._images: deque = deque(maxlen=n_obs_steps)
        self._states: deque = deque(maxlen=n_obs_steps)
        self._stamps: deque = deque(maxlen=n_obs_steps)
        self.dropped = 0

    def add_state(self, stamp: float, state: np.ndarray) -> None:
        if self._state_t and stamp < self._state_t[-1]:
            return  # out of order: ignore
        self._state_t.append(stamp)
        self._state_v.append(np.asarray(state, np.float32))

    def add_image(self, stamp: float, image: np.ndarray) -> bool:
        """Pair the frame with the nearest joint state; False (and counted) when none is close enough."""
        if not self._state_t:
            self.dropped += 1
            return False
        ts = list(self._state_t)
        i = bisect.bisect_left(ts, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(ts)), key=lambda j: abs(ts[j] - stamp))
        if abs(ts[best] - stamp) > self.tolerance:
            self.dropped += 1
            return False
        if self._stamps and stamp <= self._stamps[-1]:
            return False  # a repeated or older frame
        self._images.append(image)
        self._states.append(self._state_v[best])
        self._stamps.append(stamp)
        return True

    @property
    def newest_stamp(self) -> float | None:
        return self._stamps[-1] if self._stamps else None

    def ready(self) -> bool:
        return len(self._stamps) >= 1

    def window(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(images (n, H, W, 3), states (n, 8), newest stamp); a short history is padded with its oldest pair."""
        if not self._stamps:
            raise RuntimeError("no aligned observation yet")
        pad = self.n - len(self._stamps)
        images = [self._images[0]] * pad + list(self._images)
        states = [self._states[0]] * pad + list(self._states)
        return np.stack(images), np.stack(states), self._stamps[-1]
