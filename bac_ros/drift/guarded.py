"""`GuardedInference`: a schedule's inference with the drift guard's checks run beside it (see the package
docstring)."""
from __future__ import annotations

from dataclasses import dataclass

from .guard import DriftGuard, DriftState, guard_thresholds
from .reference import (SignalReference, observation_features, observation_reference, reference, shadow_deviation,
                        shadow_reference)

@dataclass(frozen=True)
class Check:
    """One check: which schedule ran, its shadow ratio (deviation / the reference's median) and reuse-error
    ratio, the guard's state after; the deviation, its z and the CUSUM after; the observation distance, its z
    and CUSUM (nan without an observation reference); the signal that raised an alarm here ("" if none);
    the encoder's features when recorded (`GuardedInference.record_features`: a reference being measured)."""
    dense: bool
    ratio: float
    reuse: float
    state: str
    deviation: float = float("nan")
    z: float = float("nan")
    cusum: float = float("nan")
    distance: float = float("nan")
    observation_z: float = float("nan")
    observation_cusum: float = float("nan")
    alarm: str = ""
    features: tuple | None = None


@dataclass(frozen=True)
class DriftStatus:
    """The guard at a glance (what policy_node reports on /diagnostics)."""
    state: DriftState
    schedule: str  # the schedule running now
    checks: int  # shadow checks so far
    switches: int  # fast -> dense transitions so far
    alarm_signal: str  # the signal whose CUSUM raised the last alarm ("" before any)
    shadow_cusum: float
    shadow_threshold: float
    shadow_z: float  # the last check's
    shadow_ratio: float  # the last check's deviation / its reference median
    observation_cusum: float
    observation_threshold: float
    observation_z: float
    reuse_ratio: float  # the last check's reuse error / its reference (nan off eager)


class GuardedInference:
    """A fast and a dense schedule's inference (`policy.inference`, any backend) behind the drift guard: each
    inference runs the one the guard chose; every `drift_check_every`-th is re-run at full precision from
    the same noise at `settle()` (after its chunk has gone out). `dense=None` watches only: the signal and
    the state are kept, the schedule stays. `keep_checks`: how many of the last checks `history` keeps (None:
    all, for an evaluation's record)."""

    def __init__(self, policy, fast, full, dense=None, guard: DriftGuard | None = None,
                 inference_period_s: float | None = None, check_period_s: float | None = None,
                 keep_checks: int | None = None):
        if policy.cfg.sampler.type != "ddim":
            raise ValueError(f"the drift guard's shadow check needs a deterministic sampler (ddim), not "
                             f"{policy.cfg.sampler.type}")
        self.policy, self.fast, self.full, self.dense = policy, fast, full, dense
        self._cache: dict[int, tuple] = {}  # id(schedule) -> (schedule, its references)
        for i in (fast, dense):  # what the guard compares with: say now if a schedule lacks it
            if i is not None:
                self._references(i.schedule)
        self.guard = guard or DriftGuard()
        # the world's observations, whichever schedule runs: the fast schedule's reference
        self.observed = (observation_reference(fast.schedule)
                         if "observation" in self.guard.settings.drift_signals else None)
        self.record_features = False
        # closed-loop references without a recorded period were sync episodes: one inference per chunk
        self._sync_period_s = policy.cfg.chunk_period_s
        self.pace(inference_period_s or self._sync_period_s, check_period_s)
        self.active = fast
        self.inferences = 0
        self.history: list[Check] = []
        self.checks, self.keep_checks = 0, keep_checks
        self._pending = None

    def pace(self, inference_period_s: float, check_period_s: float | None = None) -> None:
        """The robot seconds between inferences (policy_node: 1 / rate_hz; sync evaluation: one chunk) and,
        optionally, between checks (default: every `drift_check_every`-th inference; `bac eval` passes
        policy_node's, drift_check_every / rate_hz, so that a sync evaluation checks as often in robot time
        as the robot does). h is set on the reference episodes replayed at the checks' spacing in robot time,
        so that the false-alarm rate holds per episode however often the guard checks."""
        s = self.guard.settings
        self.every = (s.drift_check_every if check_period_s is None
                      else max(1, round(check_period_s / inference_period_s)))
        self.threshold, self.observation_threshold, self.stride = guard_thresholds(
            s, self._references(self.fast.schedule)[0], self.observed.signal if self.observed is not None else None,
            self.every, inference_period_s, self._sync_period_s)

    def _references(self, schedule) -> tuple[SignalReference, float]:
        """The schedule's shadow-deviation reference and reuse-error reference, read once (not at every check)."""
        key = id(schedule)
        if key not in self._cache:
            self._cache[key] = (schedule, (shadow_reference(schedule), reference(schedule, "reuse_error")))
        return self._cache[key][1]

    def reset(self) -> None:
        """A new episode (evaluation): the guard at ok on the fast schedule; the history stays."""
        self.guard.reset()
        self.active, self._pending = self.fast, None

    def replace(self, fast, full, dense=None) -> None:
        """The same schedules on another backend (a compiled build finished): the guard's state goes on."""
        was_dense = self.active is self.dense and self.dense is not None
        self.fast, self.full, self.dense = fast, full, dense
        self.active = dense if was_dense and dense is not None else fast

    @property
    def schedule(self):
        return self.active.schedule

    @property
    def label(self) -> str:
        return self.active.label

    @property
    def backend(self) -> str:
        return self.active.backend

    def __call__(self, image, state, noise):
        self.inferences += 1
        x, a = self.active(image, state, noise)
        if self.inferences % self.every == 1 % self.every:
            self._pending = (self.active, self.active is self.dense, image, state, noise, x, self.active.reuse_error)
        return x, a

    def discard(self) -> None:
        """Drop the pending shadow check unrun: the guard does not see that inference."""
        self._pending = None

    def settle(self) -> Check | None:
        """Run the pending shadow check (if the last inference was one), feed the guard, and pick the inference
        for the next one."""
        if self._pending is None:
            return None
        ran, dense, image, state, noise, x, reuse = self._pending
        self._pending = None
        full, _ = self.full(image, state, noise)
        ref, reuse_ref = self._references(ran.schedule)
        deviation = shadow_deviation(x, full)
        z = ref.z(deviation)
        features = (observation_features(self.policy, image, state)
                    if self.observed is not None or self.record_features else None)
        distance = self.observed.distance(features) if self.observed is not None else float("nan")
        obs_z = self.observed.signal.z(distance) if self.observed is not None else float("nan")
        self.guard.last_ratio = deviation / ref.median
        before = self.guard.switches
        state_ = self.guard.observe(z, self.threshold, obs_z, self.observation_threshold)
        g = self.guard
        check = Check(dense, deviation / ref.median, reuse / reuse_ref, state_, deviation, z, g.cusum, distance,
                      obs_z, g.sums["observation"], g.alarm_signal if g.switches > before else "",
                      tuple(round(float(v), 5) for v in features) if self.record_features else None)
        self.history.append(check)
        self.checks += 1
        if self.keep_checks is not None:
            del self.history[:-self.keep_checks]
        if self.dense is not None:
            self.active = self.dense if state_ == DriftState.DENSE else self.fast
        return check

    def status(self) -> DriftStatus:
        g = self.guard
        return DriftStatus(g.state, self.label, self.checks, g.switches, g.alarm_signal, g.cusum, self.threshold,
                           g.last_z, g.last_ratio, g.sums["observation"], self.observation_threshold,
                           g.last["observation"], self.history[-1].reuse if self.history else float("nan"))
