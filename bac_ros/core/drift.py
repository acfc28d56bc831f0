"""Drift guard: a precomputed schedule assumes live observations drive the cached features the way the
calibration observations did (the BAC paper's stated limitation). The guard watches that at run time.

Two signals, each divided by its value on the calibration observations (stored in the schedule's
`calibration`, so each reads ~1 on data like the calibration's):

- `shadow_deviation` (the guard's): every `drift_check_every`-th inference is re-run at full precision
  from the same initial noise, and the mean squared difference of the two denoised sequences of joint
  targets (normalised units; not the gripper's open/close) is what caching cost on this observation. It needs a deterministic sampler (DDIM)
  and costs one full inference per check, run after the cached one has been handed on.
- `reuse_error` (free, published): whenever a block recomputes, `|y_k - reused_k| / |y_k|` between its
  new output and what the cache had been adding in its place (copy or forecast), averaged over one
  inference. Measured on shifted worlds it barely moved (docs/drift.md), so it does not drive the guard.

The check is `GuardedInference`'s, over whole inferences of any backend (`core.inference`); the reuse error
is measured on the eager backend only.

Reference (`ShadowReference`): ln(shadow deviation) on the policy's own closed-loop observations of the
calibration world, run by the schedule itself (`bac schedule --reference FILE --closed-loop N`: the
robot's observations lie further from the demonstrations than the demonstrations do, so a reference from
demonstrations alone cries wolf); without one, a log-normal read off the demonstration statistics.

Policy (`DriftGuard`): a one-sided CUSUM on z = (ln deviation - mean) / sd: S <- max(0, S + z - k). S above
h/2 -> warn; above h -> dense (run the dense schedule; watch only: would); a warning ends only when S is back
at 0 (no flicker at the edge). h is set on the reference's closed-loop episodes so that at most
`drift_false_alarm_rate` of them would raise an alarm with checks as far apart in robot time as the guard's
(`GuardedInference.pace`: policy_node infers every 1/30 s, a sync evaluation once a chunk, so the same
`drift_check_every` checks eight times as often on the robot; `bac eval` spaces its checks as policy_node's in
robot time) and never below what independent standard normal z would need (`normal_threshold`: a reference
of a few dozen episodes does not show its own tail); back to the fast schedule after
`drift_settle` checks in a row with z < k on the dense schedule (against its own reference).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

from .schedule import Schedule, find_schedule
from .settings import check_ranges, setting

STATES = ("ok", "warn", "dense")
ARM_DIMS = 7  # the action's joint targets; dim 7, the gripper command, is left out of the shadow deviation
# what `shadow_deviation` measures, stored with every reference so that one measured otherwise is refused
SHADOW_STATISTIC = "arm-mse"


@dataclass
class DriftSettings:
    """The guard's settings (ROS parameters of policy_node under the same names)."""
    drift_check_every: int = setting(10, "every this many inferences, one is re-run at full precision (the "
                                     "shadow check)", 1, 100000)
    drift_cusum_k: float = setting(0.5, "the CUSUM's allowance, in reference standard deviations of ln(shadow "
                                   "deviation): a check adds z - k", 0.0, 10.0)
    drift_false_alarm_rate: float = setting(0.01, "share of the reference's solved closed-loop episodes allowed "
                                            "an alarm; sets the threshold h. Fresh episodes alarm more often than "
                                            "the reference they were not part of: 0.01 gave 2 alarms in 83 solved "
                                            "fresh episodes of the calibration world (docs/drift.md)", 0.001, 0.5)
    drift_threshold: float = setting(0.0, "the CUSUM's alarm threshold h; 0: the one drift_false_alarm_rate "
                                     "gives on the schedule's reference", 0.0, 1000.0)
    drift_settle: int = setting(5, "checks in a row with z < k on the dense schedule before the fast one "
                                "returns", 1, 100000)

    def __post_init__(self):
        check_ranges(self)


DEFAULT_THRESHOLD = 5.0  # h without closed-loop episodes (k = 0.5: ~460 in-control checks between alarms, normal z)
NORMAL_DRAWS = 20000


def cusum(z, k: float) -> np.ndarray:
    """The one-sided CUSUM S_i = max(0, S_{i-1} + z_i - k), S_0 = 0, over a sequence."""
    out, acc = np.empty(len(z)), 0.0
    for i, v in enumerate(z):
        acc = max(0.0, acc + v - k)
        out[i] = acc
    return out


@dataclass(frozen=True)
class ShadowReference:
    """What a schedule's shadow deviation looks like on data like its reference's: ln(deviation) ~ log_mean ±
    log_sd; `episodes`: ln(deviation) at every inference of each closed-loop reference episode the schedule
    solved (h is set on them: an alarm in an episode it is failing is no false alarm), empty for a reference
    from demonstrations; `period_s`: robot seconds between those inferences (0: not recorded)."""
    median: float
    log_mean: float
    log_sd: float
    source: str
    episodes: tuple = ()
    period_s: float = 0.0

    def z(self, deviation: float) -> float:
        return (math.log(max(deviation, 1e-30)) - self.log_mean) / self.log_sd

    def peaks(self, k: float, every: int) -> np.ndarray:
        """The CUSUM's peak over each reference episode as the guard would see it, a check every `every`-th
        inference (every phase of the episode: `every` sequences per episode)."""
        out = []
        for ep in self.episodes:
            z = (np.asarray(ep, float) - self.log_mean) / self.log_sd
            out += [float(cusum(z[p::every], k).max()) for p in range(min(every, len(z)))]
        return np.asarray(out)

    def stride(self, every: int, inference_period_s: float, sync_period_s: float) -> int:
        """The reference's inferences between two checks of a guard that checks every `every`-th inference,
        `inference_period_s` robot seconds apart (a reference without its period is taken to be sync episodes,
        `sync_period_s` apart)."""
        return max(1, round(every * inference_period_s / (self.period_s or sync_period_s)))

    def threshold(self, k: float, every: int, rate: float) -> float:
        """The lowest h that at most `rate` of the reference episodes' sequences exceed (an alarm is S > h),
        and at least the h that standard normal z would need in sequences as long (`normal_threshold`)."""
        peaks = np.sort(self.peaks(k, every))
        if not peaks.size:
            return DEFAULT_THRESHOLD
        allowed = math.floor(rate * peaks.size + 1e-9)
        lengths = tuple(sorted(len(ep[p::every]) for ep in self.episodes for p in range(min(every, len(ep)))))
        return max(float(peaks[peaks.size - 1 - allowed]), normal_threshold(k, lengths, rate))


@functools.lru_cache(maxsize=64)
def normal_threshold(k: float, lengths: tuple, rate: float) -> float:
    """The h that at most `rate` of sequences of independent standard normal z (what the reference's
    standardisation makes of data like its own), as long as `lengths`, exceed: the floor where the reference
    has too few episodes to show its tail (27 sync episodes of 2-4 checks each had put h at 1.0, and 6 of 50
    fresh episodes alarmed). Monte Carlo with a fixed seed, `NORMAL_DRAWS` sequences: the same h every time."""
    rng = np.random.default_rng(0)
    n = np.asarray(lengths)[rng.integers(len(lengths), size=NORMAL_DRAWS)]
    z = rng.standard_normal((NORMAL_DRAWS, int(n.max())))
    s, peak = np.zeros(NORMAL_DRAWS), np.zeros(NORMAL_DRAWS)
    for i in range(z.shape[1]):
        s = np.where(i < n, np.maximum(0.0, s + z[:, i] - k), s)
        np.maximum(peak, s, out=peak)
    return float(np.quantile(peak, 1.0 - rate))


def shadow_reference(schedule) -> ShadowReference:
    """The schedule's shadow-deviation reference: the closed-loop one if it has it, else one read off the
    demonstration statistics (median, p95: a log-normal's sd = ln(p95 / median) / 1.645); ValueError if none."""
    cal = (schedule.calibration or {}) if schedule is not None else {}
    loop = cal.get("shadow_closed_loop")
    if loop:
        _same_statistic(schedule, loop, "shadow_closed_loop")
        episodes = loop.get("episodes", ())
        solved = loop.get("episode_success") or [True] * len(episodes)
        return ShadowReference(loop["median"], loop["log_mean"], max(loop["log_sd"], 1e-3), "closed loop",
                               tuple(tuple(e) for e, ok in zip(episodes, solved) if ok),
                               loop.get("inference_period_s", 0.0))
    median = reference(schedule)
    p95 = float((cal.get("shadow_deviation") or {}).get("p95") or median)
    sd = max(math.log(max(p95, median) / median) / 1.645, 0.1)
    return ShadowReference(median, math.log(median), sd, "demonstrations")


def closed_loop_reference(deviations: list[list[float]], seeds: list[int], period_s: float,
                          success: list[bool] | None = None) -> dict:
    """`calibration.shadow_closed_loop` from the shadow deviation at every inference of closed-loop episodes,
    `period_s` robot seconds apart; `success` per episode (default: all solved)."""
    success = [True] * len(deviations) if success is None else list(success)
    if len(success) != len(deviations):
        raise ValueError("one success flag per episode")
    success = [bool(ok) for ep, ok in zip(deviations, success) if ep]
    logs = [[math.log(max(d, 1e-30)) for d in ep] for ep in deviations if ep]
    flat = np.asarray([v for ep in logs for v in ep])
    if flat.size < 2:
        raise ValueError("a closed-loop reference needs at least two shadow checks")
    return {"statistic": SHADOW_STATISTIC, "median": float(np.exp(np.median(flat))), "log_mean": float(flat.mean()),
            "log_sd": float(flat.std(ddof=1)), "checks": int(flat.size), "episodes_run": len(logs),
            "seeds": list(seeds), "inference_period_s": float(period_s), "episode_success": success,
            "episodes": [[round(v, 4) for v in ep] for ep in logs]}


def reference(schedule, key: str = "shadow_deviation") -> float:
    """The schedule's calibration value of a signal (`shadow_deviation`: the median; `reuse_error`: the
    mean); ValueError if it has none."""
    stats = ((schedule.calibration or {}).get(key) or {}) if schedule is not None else {}
    ref = stats.get("median" if key == "shadow_deviation" else "mean")
    if not ref or ref <= 0:
        raise ValueError(f"schedule {_name(schedule)} has no calibration.{key}: the drift guard needs one "
                         "(`bac schedule --reference FILE --data demos.zarr` adds it)")
    if key == "shadow_deviation":
        _same_statistic(schedule, stats, key)
    return float(ref)


def _name(schedule) -> str:
    return (schedule.source or schedule.label) if schedule is not None else "full"


def _same_statistic(schedule, stats: dict, key: str) -> None:
    if stats.get("statistic") != SHADOW_STATISTIC:
        raise ValueError(f"schedule {_name(schedule)}: calibration.{key} was measured on the whole action, gripper "
                         f"included (before {SHADOW_STATISTIC}); measure it again: `bac schedule --reference FILE "
                         "--data demos.zarr` (and `--closed-loop 20` for the closed-loop one)")


class ReuseErrorMeter:
    """Accumulates |y - reused| / |y| over the recomputes of one inference (see module docstring)."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self._sum: torch.Tensor | float = 0.0
        self.count = 0

    def add(self, computed: torch.Tensor, reused: torch.Tensor) -> None:
        d = computed - reused
        self._sum = self._sum + d.norm() / computed.norm().clamp_min(1e-12)
        self.count += 1

    @property
    def value(self) -> float:
        """Mean over this inference's recomputes; nan before any."""
        return float(self._sum) / self.count if self.count else float("nan")


class DriftGuard:
    """Turns the shadow checks into a state: ok | warn | dense (see module docstring)."""

    def __init__(self, settings: DriftSettings | None = None):
        self.settings = settings or DriftSettings()
        self.switches = 0  # fast -> dense transitions
        self.reset()

    def reset(self) -> None:
        """A fresh start (an evaluation episode): state ok, the CUSUM at 0."""
        self.state = "ok"
        self.cusum = 0.0
        self._calm = 0
        self.last_z = self.last_ratio = float("nan")
        self.threshold = float("nan")

    def observe(self, z: float, threshold: float) -> str:
        """One check's z (against the schedule that ran) -> the state from here on."""
        if not np.isfinite(z):
            return self.state
        s = self.settings
        self.last_z, self.threshold = z, threshold
        if self.state == "dense":
            self._calm = self._calm + 1 if z < s.drift_cusum_k else 0
            if self._calm >= s.drift_settle:
                self.state, self._calm, self.cusum = "ok", 0, 0.0
            return self.state
        self.cusum = max(0.0, self.cusum + z - s.drift_cusum_k)
        if self.cusum > threshold:
            self.state, self._calm = "dense", 0
            self.switches += 1
            self.cusum = 0.0  # the dense schedule's checks count calm ones from here
        elif self.cusum > threshold / 2:
            self.state = "warn"
        elif self.cusum == 0.0:
            self.state = "ok"  # a warning ends only at 0: hysteresis
        return self.state


@dataclass(frozen=True)
class Check:
    """One shadow check: which schedule ran, its shadow ratio (deviation / the reference's median) and
    reuse-error ratio, the guard's state after; the deviation, its z and the CUSUM after."""
    dense: bool
    ratio: float
    reuse: float
    state: str
    deviation: float = float("nan")
    z: float = float("nan")
    cusum: float = float("nan")


class GuardedInference:
    """A fast and a dense schedule's inference (`core.inference`, any backend) behind the drift guard: each
    inference runs the one the guard chose; every `drift_check_every`-th is re-run at full precision from
    the same noise at `settle()` (after its chunk has gone out). `dense=None` watches only: the signal and
    the state are kept, the schedule stays."""

    def __init__(self, policy, fast, full, dense=None, guard: DriftGuard | None = None,
                 inference_period_s: float | None = None, check_period_s: float | None = None):
        if policy.cfg.sampler.type != "ddim":
            raise ValueError(f"the drift guard's shadow check needs a deterministic sampler (ddim), not "
                             f"{policy.cfg.sampler.type}")
        self.fast, self.full, self.dense = fast, full, dense
        for i in (fast, dense):  # what the guard compares with: say now if a schedule lacks it
            if i is not None:
                shadow_reference(i.schedule), reference(i.schedule, "reuse_error")
        self.guard = guard or DriftGuard()
        # closed-loop references without a recorded period were sync episodes: one inference per chunk
        self._sync_period_s = policy.cfg.chunk_period_s
        self.pace(inference_period_s or self._sync_period_s, check_period_s)
        self.active = fast
        self.inferences = 0
        self.history: list[Check] = []
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
        ref = shadow_reference(self.fast.schedule)
        self.stride = ref.stride(self.every, inference_period_s, self._sync_period_s)
        self.threshold = s.drift_threshold or ref.threshold(s.drift_cusum_k, self.stride, s.drift_false_alarm_rate)

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
        ref, reuse_ref = shadow_reference(ran.schedule), reference(ran.schedule, "reuse_error")
        deviation = shadow_deviation(x, full)
        z = ref.z(deviation)
        self.guard.last_ratio = deviation / ref.median
        state_ = self.guard.observe(z, self.threshold)
        check = Check(dense, deviation / ref.median, reuse / reuse_ref, state_, deviation, z, self.guard.cusum)
        self.history.append(check)
        if self.dense is not None:
            self.active = self.dense if state_ == "dense" else self.fast
        return check


def shadow_deviation(cached: torch.Tensor, full: torch.Tensor) -> float:
    """What caching cost on one inference: the mean squared difference of the two denoised sequences of joint
    targets (normalised units). Without the gripper: its command is open or closed, and near the grasp the
    cached and full inferences close it a step apart now and then, a single check 400-1800x the median that
    says nothing about drift (measured on graph episodes of the calibration world, docs/drift.md)."""
    return float(((cached[..., :ARM_DIMS] - full[..., :ARM_DIMS]) ** 2).mean())


def guarded_inference(policy, schedule: Schedule, mode: str, dense: str = "", settings: DriftSettings | None = None,
                      backend: str = "eager", threads: int = 1, inference_period_s: float | None = None,
                      check_period_s: float | None = None) -> GuardedInference:
    """`schedule`'s inference behind the drift guard: `watch` (the dense schedule never runs) or `guard`
    (`dense`: a cached schedule's name or path, as `find_schedule` reads it), on `backend`. ValueError
    (ScheduleError included) naming what is missing."""
    from .inference import build

    if mode not in ("watch", "guard"):
        raise ValueError(f"the drift guard's mode must be watch or guard, got {mode!r}")
    dense_schedule = find_schedule(dense, policy.cfg) if mode == "guard" else None
    if mode == "guard" and dense_schedule is None:
        raise ValueError("the guard's dense_schedule must name a cached schedule (not full)")
    for s in (schedule, dense_schedule):
        if s is not None:
            shadow_reference(s)  # a schedule without references: say so before anything is built
            reference(s, "reuse_error")
    monitor = backend == "eager"
    return GuardedInference(policy, build(policy, schedule, backend, threads, monitor),
                            build(policy, None, backend, threads),
                            None if dense_schedule is None else build(policy, dense_schedule, backend, threads, monitor),
                            DriftGuard(settings), inference_period_s, check_period_s)


@torch.inference_mode()
def measure_reference(policy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                      seed: int = 0) -> list[dict]:
    """Each schedule's two signals over observations (one at a time, as deployed), against full precision
    from the same noise (run once per observation for all of them): per schedule {"shadow_deviation":
    {median, mean, p95, observations}, "reuse_error": {mean, p95, observations}}."""
    if not schedules:
        return []
    cfg = policy.cfg
    dens, full = [policy.denoiser(s, monitor=True) for s in schedules], policy.denoiser(Schedule.full(cfg))
    g = torch.Generator().manual_seed(seed)
    dev, reuse = [[] for _ in dens], [[] for _ in dens]
    for i in range(image.shape[0]):
        noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=g)
        cond = policy.encode_obs(image[i:i + 1].to(policy.device), state[i:i + 1].to(policy.device))
        gen = lambda: torch.Generator().manual_seed(seed + i)  # noqa: E731 - the same per-step noise for all
        reference_run = policy.sample(cond, full, noise.clone(), gen())
        for j, den in enumerate(dens):
            dev[j].append(shadow_deviation(policy.sample(cond, den, noise.clone(), gen()), reference_run))
            reuse[j].append(den.meter.value)
    out = []
    for d, r in zip(map(np.asarray, dev), map(np.asarray, reuse)):
        n = int(d.size)
        out.append({"shadow_deviation": {"statistic": SHADOW_STATISTIC, "median": float(np.median(d)),
                                         "mean": float(d.mean()),
                                         "p95": float(np.percentile(d, 95)), "observations": n},
                    "reuse_error": {"mean": float(r.mean()), "p95": float(np.percentile(r, 95)), "observations": n}})
    return out
