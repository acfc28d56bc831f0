"""Timing rules shared by the evaluation loop and the ROS nodes (no ROS here): how a stream of action chunks
becomes commands for the arm. Why each rule is what it is, with the measurements: docs/control.md.

- `ObservationWindow`: the policy's input, the last n_obs_steps observations; `ObservationAligner` fills
  it from separate camera and joint-state streams, pairing each frame with the joint state nearest in time.
- `chunk_velocity`: the chunk's own velocity at a time (the slope between its points), streamed with each
  target as feed-forward, as the demonstrations were tracked.
- `current_index`: which point of a chunk stamped `stamp` is the target now. Point i is held from
  stamp + i*dt until point i+1 falls due, as the demonstrations were streamed (observe at t_i, send
  action i, hold it for dt); earlier points are stale and dropped (latency compensation), and no point is
  sent before its time.
- `ChunkExecutor`: the one set of rules that turns a stream of chunks into commands for the arm, used by
  controller_node and the evaluation harness alike: which chunks are refused (and counted), which point
  is due, when to hold. The arm's `Envelope` shapes each command on the real time since the last one.
- `RecedingHorizon`: which chunk of a stream to play. With commit k, a new chunk waits until the playing
  one has played its first k steps (k = n_action_steps, the default, is how the policy was trained and
  evaluated in sync mode), then the newest one takes over; k = 0 replaces the chunk at every inference.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum, StrEnum

import numpy as np

from ..core.settings import check_ranges, setting


class Source(StrEnum):
    """Whose chunks the controller plays."""
    POLICY = "policy"
    TELEOP = "teleop"


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


CONTROL_RATE_HZ = 100.0  # controller_node's control ticks a second (its control_rate_hz), as the harness plays them

# How a new chunk takes over from the one playing (the real-time harness's `stitch`, docs/control.md): at once from
# its first point still due; the same, denoised to continue the playing one (`ChunkExecutor.continuation`); or
# every chunk at once with the targets of all that cover now averaged (`ChunkRules.ensemble_chunks`).
STITCHES = ("switch", "prefix", "ensemble")
ENSEMBLE_CHUNKS = 16  # temporal ensembling's chunks when a stitch asks for it without a count (a chunk's future)


def stitch_of(rules: "ChunkRules") -> str:
    """The stitching a controller's rules make: ensemble when they average chunks, else switch."""
    return "ensemble" if rules.ensemble_chunks > 1 else "switch"

# How a controller turns a chunk into a target at any time: "hold" is how the demonstrations were streamed.
PLAYBACKS = {"hold": held_point, "interpolate": interpolate_chunk}


class RecedingHorizon:
    """Of `Chunk`s: `offer` the newest; `current(now)` is the one to play:
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
            self.take(self.waiting, now)
        return self.playing

    def take(self, chunk, now: float) -> None:
        """`chunk` takes over at `now` (from `current`; or a mirror of another process's horizon told so)."""
        if self.waiting is chunk or (self.waiting is not None and self.waiting.stamp <= chunk.stamp):
            self.waiting = None
        self.playing = chunk
        self.first_index = current_index(chunk.stamp, chunk.dt, now)
        self._until = chunk.stamp + (self.first_index + self.commit) * chunk.dt  # after `commit` of its points
        self.switches += 1

    def handover(self, arrival: float):
        """For a chunk that arrives at `arrival` with none newer after it: (the chunk playing until it takes over,
        when it takes over); None when nothing plays before it."""
        if self.playing is None:
            return None
        if arrival < self._until or self.waiting is None:  # it replaces the waiting one, or nothing waits
            return self.playing, max(arrival, self._until)
        w = self.waiting  # takes over first, and plays its commit
        return w, max(arrival, w.stamp + (current_index(w.stamp, w.dt, self._until) + self.commit) * w.dt)

    def continuation(self, play, stamp: float, dt: float, arrival: float, room: int) -> np.ndarray | None:
        """Prefix-conditioned stitching: the points a chunk stamped `stamp` (spacing `dt`) that arrives at `arrival`
        must start with to continue what the arm executes until it takes over: for each of its points up to the
        one due at the takeover (at most `room`; see below), the target of the chunk playing before it (`play`:
        a `PLAYBACKS` function) in the middle of that point's step (two chunks' grids are offset by up to a tick:
        the middle finds the point that overlaps it most). None: nothing plays before it."""
        before = self.handover(arrival)
        if before is None:
            return None
        c, takeover = before
        # through the point due half a step after the takeover: the control tick that makes it may come a little
        # after the instant, across the new chunk's next point (grids offset by a tick)
        n = max(1, min(current_index(stamp, dt, takeover + dt / 2) + 1, room))
        return np.stack([play(c.actions, c.stamp, c.dt, stamp + (i + 0.5) * dt) for i in range(n)])

    def clear(self) -> None:
        self.playing = self.waiting = None
        self._until = -math.inf


@dataclass(frozen=True)
class Chunk:
    """A planned stretch of targets: point i (joints + gripper) is due at `stamp + i * dt` (s). `origin`: when
    what it was planned from was seen (the policy's observation, a teleoperator's input; None: `stamp`), the
    start of its latency."""
    stamp: float
    actions: np.ndarray  # (n, 8)
    dt: float
    origin: float | None = None

    @property
    def planned_from(self) -> float:
        return self.stamp if self.origin is None else self.origin

    @property
    def end(self) -> float:
        """When the last point falls due."""
        return self.stamp + (len(self.actions) - 1) * self.dt


@dataclass(frozen=True)
class ChunkRules:
    """How a chunk stream is played (`ChunkExecutor`; also controller_node's parameters, by these names).
    Times in seconds of the clock the chunks are stamped in (the robot's: the simulator's in simulation)."""
    commit_steps: int = setting(8, "a chunk plays this many steps from its takeover before a newer one replaces "
                                "it (the policy's n_action_steps; 0: every new chunk at once)", 0, 1000)
    chunk_playback: str = setting("hold", "hold: each point sent once when it falls due, as the demonstrations "
                                  "were streamed; interpolate: a target every tick, linear between points",
                                  choices=("hold", "interpolate"))
    chunk_timeout_s: float = setting(0.5, "no chunk accepted for this long (s of the robot's clock): hold", 0.01, 10.0)
    chunk_max_future_s: float = setting(0.25, "a chunk stamped further ahead of now (s) is refused (another clock?)",
                                        0.0, 5.0)
    chunk_min_dt_s: float = setting(0.005, "a chunk whose points are spaced closer (s) is refused", 0.001, 1.0)
    chunk_max_dt_s: float = setting(0.2, "a chunk whose points are spaced wider (s) is refused", 0.001, 1.0)
    chunk_max_points: int = setting(512, "a chunk with more points is refused", 2, 100000)
    velocity_feedforward: bool = setting(True, "send the chunk's own velocity with each target")
    ensemble_chunks: int = setting(1, "temporal ensembling: the target is the mean of this many newest chunks' "
                                   "targets for now (those whose points still cover it); 1: the playing chunk's "
                                   "alone", 1, 64)

    def __post_init__(self):
        check_ranges(self)
        if not self.chunk_min_dt_s <= self.chunk_max_dt_s:
            raise ValueError(f"need chunk_min_dt_s <= chunk_max_dt_s, got {self.chunk_min_dt_s}, {self.chunk_max_dt_s}")


class CommandKind(str, Enum):
    POINT = "point"  # a chunk's point fell due
    CATCH_UP = "catch-up"  # the limits held the last point back: towards it again
    HOLD = "hold"  # stop where the arm can (after start, a switch, a timeout, a clock jump)


@dataclass(frozen=True)
class Command:
    """What to send to the arm this tick: for a point or catch-up, the joint target and its velocity
    feed-forward; for a hold, nothing (the arm brakes to where it can stop, `Envelope.stop_point`)."""
    kind: CommandKind
    q: np.ndarray | None  # (7,) joint target (None: hold)
    dq: np.ndarray | None  # (7,) velocity feed-forward, None: at rest
    gripper: float | None  # commanded width (m), None: unchanged
    index: int = -1  # the chunk point, -1 for a hold


class ChunkExecutor:
    """Chunks in (`offer`), one command or nothing per tick out (`tick`, then `sent` with what the arm
    really sent). Safe by construction, whatever a publisher sends:
    - refused and counted: malformed or non-finite actions, fewer than 2 or more than `chunk_max_points` points,
      a spacing outside [chunk_min_dt_s, chunk_max_dt_s], a stamp more than `chunk_max_future_s` ahead of now, a chunk
      whose last point is already past, one not newer than the newest offered, one planned before `start`;
    - the point due now is sent once (`hold` playback) or interpolated each tick; when the arm's limits held it
      back it is sent again every tick (catch-up) until reached or replaced, so a far point is approached at
      the limits instead of jumped to (the arm's `Envelope` shapes every command on the real elapsed time);
    - a hold every tick after `start` (also a switch of source) until a chunk plays, when no chunk was accepted
      for `chunk_timeout_s` of robot time (a monotonic clock: the robot's, `tick`'s `robot_t`), and when the
      chunks' clock jumps back (`use_sim_time` flipped, a bag played with --clock): then the queue is emptied
      and chunks are taken from the new clock's now on.
    Not thread-safe: the caller serialises offer/tick/sent."""

    CLOCK_JUMP_S = 1e-3  # the chunks' clock going back by more than this is a jump

    def __init__(self, rules: ChunkRules = ChunkRules()):
        self.rules = rules
        self._play = PLAYBACKS[rules.chunk_playback]
        self.counts: Counter = Counter()
        self._horizon = RecedingHorizon(rules.commit_steps)
        self._start = math.inf  # nothing plays before `start`
        self._halted = False  # stopped with a hold every tick (bac/stop)
        self._newest = -math.inf  # stamp of the newest chunk offered since the start
        self._fresh = False  # a chunk was accepted since the last tick
        self._received: float | None = None  # robot time of the first tick after the newest accepted chunk
        self._playing: Chunk | None = None
        self._recent: deque = deque(maxlen=rules.ensemble_chunks)  # chunks that took over, newest last
        self._sent_index = -1
        self._catch_up = False
        self._holding = False
        self._last_now: float | None = None
        self._first_sent: Chunk | None = None  # the chunk whose first command went out last
        self.took_over: Chunk | None = None  # set by `sent` when the command was a chunk's first: latency's end
        # set by `tick` when a chunk took over from another: the largest joint difference (rad) between its target
        # and the one the plan it replaced had for the same instant (how far apart the two plans are at the switch)
        self.switch_gap: float | None = None

    # ---- control -------------------------------------------------------------------------------------
    def start(self, now: float, commit_steps: int | None = None) -> None:
        """Play chunks planned from now on (stamped at or after `now`), holding until one plays; `commit_steps`
        for them (default the rules'): a teleoperator's chunks take over at once (0), a policy's play what it
        was trained with."""
        self._clear()
        self._horizon = RecedingHorizon(self.rules.commit_steps if commit_steps is None else commit_steps)
        self._start, self._last_now, self._halted = now, None, False

    def stop(self, hold: bool = False) -> None:
        """Play no chunk until the next `start`: send nothing (homing, a fault), or with `hold` (bac/stop) a hold
        every tick, so the arm brakes to where it can stop and stays there."""
        self._clear()
        self._start, self._last_now, self._halted = math.inf, None, hold

    def _clear(self) -> None:
        self._horizon.clear()
        self._newest, self._received, self._playing, self._fresh = -math.inf, None, None, False
        self._recent.clear()
        self._sent_index, self._catch_up, self._holding = -1, False, False

    @property
    def started(self) -> bool:
        return self._start < math.inf

    @property
    def playing(self) -> Chunk | None:
        """The chunk playing now (None before the first)."""
        return self._horizon.playing

    @property
    def horizon(self) -> RecedingHorizon:
        """Which chunk plays and which waits (read it; `offer` and `tick` change it)."""
        return self._horizon

    def continuation(self, stamp: float, dt: float, arrival: float, room: int) -> np.ndarray | None:
        """`RecedingHorizon.continuation` of this executor's chunks, with its playback."""
        return self._horizon.continuation(self._play, stamp, dt, arrival, room)

    # ---- input ---------------------------------------------------------------------------------------
    def offer(self, chunk: Chunk, now: float) -> str | None:
        """Queue `chunk`; returns None, or why it was refused (also counted as `refused_<reason>`)."""
        reason = self._refusal(chunk, now)
        if reason is not None:
            self.counts[f"refused_{reason}"] += 1
            return reason
        if self._horizon.waiting is not None:
            self.counts["superseded"] += 1  # never played: a newer one came first
        self._horizon.offer(chunk)
        self._newest, self._fresh = chunk.stamp, True
        self.counts["accepted"] += 1
        return None

    def _refusal(self, chunk: Chunk, now: float) -> str | None:
        r, a = self.rules, np.asarray(chunk.actions)
        if a.ndim != 2 or a.shape[1] != 8 or not np.all(np.isfinite(a)) or not math.isfinite(chunk.stamp):
            return "malformed"
        if not 2 <= len(a) <= r.chunk_max_points:
            return "points"
        if not (math.isfinite(chunk.dt) and r.chunk_min_dt_s <= chunk.dt <= r.chunk_max_dt_s):
            return "dt"
        if chunk.stamp > now + r.chunk_max_future_s:
            return "future"
        if chunk.end < now:  # first: a chunk wholly in the past is that, whenever it was planned
            return "expired"
        if chunk.stamp < self._start:
            return "before_start"
        if chunk.stamp <= self._newest:
            return "out_of_order"
        return None

    # ---- output --------------------------------------------------------------------------------------
    def tick(self, now: float, robot_t: float) -> Command | None:
        """The command due at `now` (the chunks' clock), or None (nothing new to send). `robot_t`: the robot's
        clock (monotonic), which times the chunk timeout."""
        self.took_over = self.switch_gap = None
        if not self.started:
            return self._hold() if self._halted else None
        if self._last_now is not None and now < self._last_now - self.CLOCK_JUMP_S:
            self.counts["clock_jumps"] += 1  # the chunks' clock went back: what was queued belongs to another
            self._clear()
            self._start = now
        self._last_now = now
        if self._fresh:
            self._received, self._fresh = robot_t, False
        chunk = self._horizon.current(now)
        if chunk is None or robot_t - self._received > self.rules.chunk_timeout_s:
            return self._hold()
        if chunk is not self._playing:
            before = self._target(now, self._playing) if self._playing is not None else None
            self._playing, self._sent_index, self._catch_up = chunk, -1, False
            self._recent.append(chunk)
            if before is not None:
                self.switch_gap = float(np.max(np.abs(self._target(now, chunk)[:7] - before[:7])))
            self.counts["points_stale"] += self._horizon.first_index  # their time passed before it arrived
        self._holding = False
        n = len(chunk.actions)
        i = min(current_index(chunk.stamp, chunk.dt, now), n - 1)
        if self.rules.chunk_playback == "hold":
            if i == self._sent_index and not self._catch_up:
                return None  # this point is out; the arm keeps it until the next falls due
            kind = CommandKind.CATCH_UP if i == self._sent_index else CommandKind.POINT
        else:
            kind = CommandKind.POINT
        target = self._target(now, chunk)
        dq = np.mean([chunk_velocity(c.actions[:, :7], c.stamp, c.dt, now) for c in self._covering(now, chunk)],
                     axis=0) if self.rules.velocity_feedforward else None
        return Command(kind, np.asarray(target[:7], float), dq, float(target[7]), i)

    def _covering(self, now: float, playing: Chunk) -> list[Chunk]:
        """The chunks whose targets make now's: the playing one, and with ensembling those before it that took
        over since (newest `ensemble_chunks`) and whose points are not over."""
        recent = list(self._recent)
        at = next((i for i, c in enumerate(recent) if c is playing), None)
        upto = recent[:at + 1] if at is not None else [playing]
        return [c for c in upto if c is playing or now <= c.end]

    def _target(self, now: float, playing: Chunk) -> np.ndarray:
        return np.mean([self._play(c.actions, c.stamp, c.dt, now) for c in self._covering(now, playing)], axis=0)

    def _hold(self) -> Command:
        if not self._holding:
            self._holding = True
            self.counts["holds"] += 1
        self.counts["hold_ticks"] += 1
        return Command(CommandKind.HOLD, None, None, None)

    def sent(self, command: Command, held_back: bool) -> None:
        """Report that the arm sent `command`; `held_back`: its limits stopped short of the target. Sets
        `took_over` to the playing chunk when this was the first point sent from it (the end of its latency)."""
        if command.kind is CommandKind.HOLD:
            return
        self.counts["points" if command.kind is CommandKind.POINT else "catch_ups"] += 1
        self._sent_index, self._catch_up = command.index, held_back
        if command.kind is CommandKind.POINT and self.playing is not self._first_sent:
            self._first_sent = self.took_over = self.playing


class ObservationWindow:
    """The last `n` observations (stamp, image (H, W, 3) uint8, state (8,)), newest last; a short history is
    padded with its oldest. The policy's input, the same for policy_node and the evaluation harness.
    Thread-safe (an observer thread pushes while the inference thread reads)."""

    def __init__(self, n: int):
        if n < 1:
            raise ValueError(f"an observation window needs n >= 1, got {n}")
        self.n = n
        self._items: deque = deque(maxlen=n)
        self._lock = threading.Lock()

    def push(self, stamp: float, image: np.ndarray, state: np.ndarray) -> bool:
        """Add an observation; False (ignored) when it is not newer than the newest."""
        with self._lock:
            if self._items and stamp <= self._items[-1][0]:
                return False
            self._items.append((stamp, image, np.asarray(state, np.float32)))
            return True

    @property
    def newest_stamp(self) -> float | None:
        with self._lock:
            return self._items[-1][0] if self._items else None

    def ready(self) -> bool:
        return self.newest_stamp is not None

    def window(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(images (n, H, W, 3), states (n, 8), newest stamp)."""
        with self._lock:
            items = list(self._items)
        if not items:
            raise RuntimeError("no observation yet")
        items = [items[0]] * (self.n - len(items)) + items
        return np.stack([i for _, i, _ in items]), np.stack([s for _, _, s in items]), items[-1][0]


class ObservationAligner:
    """Pairs each camera frame with the joint state nearest in time into an `ObservationWindow`; a pair
    whose stamps differ by more than `tolerance_s` is dropped (and counted)."""

    def __init__(self, n_obs_steps: int, tolerance_s: float = 0.02, state_buffer: int = 256):
        if tolerance_s < 0:
            raise ValueError("tolerance_s must be >= 0")
        self.tolerance = tolerance_s
        self.observations = ObservationWindow(n_obs_steps)
        self._state_t: deque = deque(maxlen=state_buffer)
        self._state_v: deque = deque(maxlen=state_buffer)
        self.dropped = 0

    def add_state(self, stamp: float, state: np.ndarray) -> None:
        if self._state_t and stamp < self._state_t[-1]:
            return  # out of order: ignore
        self._state_t.append(stamp)
        self._state_v.append(np.asarray(state, np.float32))

    def add_image(self, stamp: float, image: np.ndarray) -> bool:
        """Pair the frame with the nearest joint state; False (and counted) when none is close enough;
        False (not counted) for a repeated or older frame."""
        if not self._state_t:
            self.dropped += 1
            return False
        ts = list(self._state_t)
        i = bisect.bisect_left(ts, stamp)
        best = min((j for j in (i - 1, i) if 0 <= j < len(ts)), key=lambda j: abs(ts[j] - stamp))
        if abs(ts[best] - stamp) > self.tolerance:
            self.dropped += 1
            return False
        return self.observations.push(stamp, image, self._state_v[best])
