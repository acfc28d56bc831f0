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

- `observation distance` (the guard's second signal, nearly free): at the same checks, the squared Mahalanobis
  distance of the observation encoder's output (image features and normalised joint state: what the denoiser
  is conditioned on) from the closed-loop reference's observations. It says the robot sees what calibration
  never showed (a moved camera, another cube) before the cache's error grows.

The check is `GuardedInference`'s, over whole inferences of any backend (`core.inference`); the reuse error
is measured on the eager backend only.

Reference (`SignalReference`): ln(shadow deviation) on the policy's own closed-loop observations of the
calibration world, run by the schedule itself (`bac schedule --reference FILE --closed-loop N`: the
robot's observations lie further from the demonstrations than the demonstrations do, so a reference from
demonstrations alone cries wolf); without one, a log-normal read off the demonstration statistics. The
observations of those episodes give the observation distance's reference (`observation_reference`): their
mean and whitening, and ln(distance) of each check scored by episode folds (a distance from statistics fitted
on the same observations is too small by what they overfit).

Policy (`DriftGuard`): a one-sided CUSUM per signal on z = (ln value - mean) / sd: S <- max(0, S + z - k). Either
S above its h/2 -> warn; above its h -> dense (run the dense schedule; watch only: would); a warning ends only when S is back
at 0 (no flicker at the edge). h is set on the reference's closed-loop episodes so that at most
`drift_false_alarm_rate` of them would raise an alarm with checks as far apart in robot time as the guard's
(`GuardedInference.pace`: policy_node infers every 1/30 s, a sync evaluation once a chunk, so the same
`drift_check_every` checks eight times as often on the robot; `bac eval` spaces its checks as policy_node's in
robot time) and never below what independent standard normal z would need (`normal_threshold`: a reference
of a few dozen episodes does not show its own tail); with both signals each h takes half the rate. Back to the
fast schedule after `drift_settle` checks in a row with both z < k on the dense schedule (the shadow deviation
against the dense schedule's own reference, the observations against the fast one's: the world's).
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
OBSERVATION_STATISTIC = "encoder-mahalanobis"
OBSERVATION_FOLDS = 5  # the reference's own distances are scored on episodes left out of the fit (5 folds)
OBSERVATION_SHRINK = 1e-3  # correlation shrunk this far toward the identity: invertible on few episodes
SIGNALS = ("shadow", "observation")


@dataclass
class DriftSettings:
    """The guard's settings (ROS parameters of policy_node under the same names)."""
    drift_check_every: int = setting(10, "every this many inferences, one is re-run at full precision (the "
                                     "shadow check)", 1, 100000)
    drift_cusum_k: float = setting(0.5, "the CUSUMs' allowance, in reference standard deviations of ln(shadow "
                                   "deviation) and ln(observation distance): a check adds z - k", 0.0, 10.0)
    drift_false_alarm_rate: float = setting(0.01, "share of the reference's solved closed-loop episodes allowed "
                                            "an alarm, half to each signal; sets the thresholds h. Fresh episodes "
                                            "alarm more often than the reference they were not part of: 0.01 gave "
                                            "4 alarms in 84 solved fresh episodes of the calibration world "
                                            "(docs/drift.md)", 0.001, 0.5)
    drift_threshold: float = setting(0.0, "the CUSUMs' alarm threshold h; 0: the one drift_false_alarm_rate "
                                     "gives on the schedule's reference", 0.0, 1000.0)
    drift_settle: int = setting(5, "checks in a row with z < k on the dense schedule before the fast one "
                                "returns", 1, 100000)
    drift_signals: str = setting("shadow,observation", "what the guard watches: the shadow deviation, and the "
                                 "observation distance where the schedule has its reference (a rig whose camera "
                                 "moves by design may leave it out)", choices=("shadow", "shadow,observation"))

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
class SignalReference:
    """What one of the guard's signals looks like on data like its reference's: ln(value) ~ log_mean ± log_sd;
    `episodes`: ln(value) at every inference of each closed-loop reference episode the schedule solved (h is
    set on them: an alarm in an episode it is failing is no false alarm), empty for a reference from
    demonstrations; `period_s`: robot seconds between those inferences (0: not recorded)."""
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


def shadow_reference(schedule) -> SignalReference:
    """The schedule's shadow-deviation reference: the closed-loop one if it has it, else one read off the
    demonstration statistics (median, p95: a log-normal's sd = ln(p95 / median) / 1.645); ValueError if none."""
    cal = (schedule.calibration or {}) if schedule is not None else {}
    loop = cal.get("shadow_closed_loop")
    if loop:
        _same_statistic(schedule, loop, "shadow_closed_loop")
        return _closed_loop_signal(loop)
    median = reference(schedule)
    p95 = float((cal.get("shadow_deviation") or {}).get("p95") or median)
    sd = max(math.log(max(p95, median) / median) / 1.645, 0.1)
    return SignalReference(median, math.log(median), sd, "demonstrations")


def _closed_loop_signal(loop: dict) -> SignalReference:
    """A signal's reference from its closed-loop section (`closed_loop_reference`, `observation_closed_loop`):
    h is read off the episodes the schedule solved."""
    episodes = loop.get("episodes", ())
    solved = loop.get("episode_success") or [True] * len(episodes)
    return SignalReference(loop["median"], loop["log_mean"], max(loop["log_sd"], 1e-3), "closed loop",
                           tuple(tuple(e) for e, ok in zip(episodes, solved) if ok), loop.get("inference_period_s", 0.0))


def guard_thresholds(settings: DriftSettings, shadow: SignalReference, observed: SignalReference | None, every: int,
                     inference_period_s: float, sync_period_s: float) -> tuple[float, float, int]:
    """(the shadow deviation's h, the observation distance's h (inf without its reference), the shadow
    reference's inferences between checks) for a guard that checks every `every`-th inference,
    `inference_period_s` robot seconds apart: each h read off its reference at the checks' spacing, at half
    the false-alarm rate when both signals watch; `drift_threshold`, if set, for both."""
    s = settings
    rate = s.drift_false_alarm_rate / (2 if observed is not None else 1)
    stride = shadow.stride(every, inference_period_s, sync_period_s)
    h = s.drift_threshold or shadow.threshold(s.drift_cusum_k, stride, rate)
    h_observed = math.inf if observed is None else s.drift_threshold or observed.threshold(
        s.drift_cusum_k, observed.stride(every, inference_period_s, sync_period_s), rate)
    return h, h_observed, stride


def closed_loop_reference(deviations: list[list[float]], seeds: list[int], period_s: float,
                          success: list[bool] | None = None) -> dict:
    """`calibration.shadow_closed_loop` from the shadow deviation at every inference of closed-loop episodes,
    `period_s` robot seconds apart; `success` per episode (default: all solved)."""
    success = _success(deviations, success)
    logs = [[math.log(max(d, 1e-30)) for d in ep] for ep in deviations if ep]
    return {"statistic": SHADOW_STATISTIC, **_log_stats(logs, "shadow checks"), "episodes_run": len(logs),
            "seeds": list(seeds), "inference_period_s": float(period_s), "episode_success": success}


def _success(episodes: list, success: list[bool] | None) -> list[bool]:
    success = [True] * len(episodes) if success is None else list(success)
    if len(success) != len(episodes):
        raise ValueError("one success flag per episode")
    return [bool(ok) for ep, ok in zip(episodes, success) if len(ep)]


def _log_stats(logs: list[list[float]], what: str) -> dict:
    """A reference's fields from ln(value) per check per episode: median (of the values), log_mean, log_sd,
    checks, episodes (rounded)."""
    flat = np.asarray([v for ep in logs for v in ep])
    if flat.size < 2:
        raise ValueError(f"a closed-loop reference needs at least two {what}")
    return {"median": float(np.exp(np.median(flat))), "log_mean": float(flat.mean()),
            "log_sd": float(flat.std(ddof=1)), "checks": int(flat.size),
            "episodes": [[round(float(v), 4) for v in ep] for ep in logs]}


def observation_features(policy, image: torch.Tensor, state: torch.Tensor) -> np.ndarray:
    """What the denoiser is conditioned on, flat: the observation encoder's output for one observation (image
    features and normalised joint state of each observed step)."""
    with torch.inference_mode():
        return policy.encode_obs(image.to(policy.device), state.to(policy.device)).reshape(-1).double().cpu().numpy()


def _fit_whitening(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, W) with |W (f - mean)|^2 the squared Mahalanobis distance under the features' covariance, its
    correlation shrunk by `OBSERVATION_SHRINK` toward the identity (invertible, whatever each feature's scale)."""
    mean, sd = features.mean(0), features.std(0, ddof=1) + 1e-9
    corr = np.atleast_2d(np.corrcoef(((features - mean) / sd).T)) if features.shape[1] > 1 else np.ones((1, 1))
    corr = (1 - OBSERVATION_SHRINK) * np.nan_to_num(corr) + OBSERVATION_SHRINK * np.eye(len(corr))
    return mean, np.linalg.cholesky(np.linalg.inv(corr)).T / sd


def _distances(features: np.ndarray, mean: np.ndarray, whitening: np.ndarray) -> np.ndarray:
    return (((np.atleast_2d(features) - mean) @ whitening.T) ** 2).sum(1)


def observation_closed_loop(features: list[list[list[float]]], seeds: list[int], period_s: float,
                            success: list[bool] | None = None) -> dict:
    """`calibration.observation_closed_loop` from the encoder's features at every check of closed-loop episodes
    (`observation_features`): their mean and whitening, and ln(squared Mahalanobis distance) of each check,
    scored against a fit on the other folds' episodes (`OBSERVATION_FOLDS`): what fresh episodes will show."""
    success = _success(features, success)
    eps = [np.asarray(ep, float) for ep in features if len(ep)]
    if len(eps) < 2:
        raise ValueError("the observation reference needs at least two episodes (one to score on the other)")
    folds = min(OBSERVATION_FOLDS, len(eps))
    logs = []
    for i, ep in enumerate(eps):
        mean, w = _fit_whitening(np.concatenate([e for j, e in enumerate(eps) if j % folds != i % folds]))
        logs.append(np.log(np.maximum(_distances(ep, mean, w), 1e-30)).tolist())
    mean, w = _fit_whitening(np.concatenate(eps))
    return {"statistic": OBSERVATION_STATISTIC, **_log_stats(logs, "checks"), "episodes_run": len(eps),
            "seeds": list(seeds), "inference_period_s": float(period_s), "episode_success": success,
            "folds": folds, "shrink": OBSERVATION_SHRINK, "mean": _significant(mean),
            "whitening": [_significant(row) for row in w]}


def _significant(values) -> list[float]:
    return [float(f"{v:.6g}") for v in values]  # a schedule file of readable size; distances move < 1e-5


@dataclass(frozen=True)
class ObservationReference:
    """The observation distance's reference (`observation_closed_loop`): `distance(features)` and the ln
    distances' `signal`."""
    mean: np.ndarray
    whitening: np.ndarray
    signal: SignalReference

    def distance(self, features: np.ndarray) -> float:
        if features.shape != self.mean.shape:
            raise ValueError(f"observation features of size {features.size}, the reference has {self.mean.size}: "
                             "measured with another observation encoder")
        return float(_distances(features, self.mean, self.whitening)[0])


def observation_reference(schedule) -> ObservationReference | None:
    """The schedule's observation-distance reference, or None (measured before it existed: the guard watches
    the shadow deviation only)."""
    loop = ((schedule.calibration or {}).get("observation_closed_loop") if schedule is not None else None)
    if not loop:
        return None
    if loop.get("statistic") != OBSERVATION_STATISTIC:
        raise ValueError(f"schedule {_name(schedule)}: calibration.observation_closed_loop was measured on "
                         f"{loop.get('statistic')!r}, not {OBSERVATION_STATISTIC}")
    return ObservationReference(np.asarray(loop["mean"], float), np.asarray(loop["whitening"], float),
                                _closed_loop_signal(loop))


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


class DriftGuard:
    """Turns the checks' z into a state: ok | warn | dense, a CUSUM per signal (see module docstring)."""

    def __init__(self, settings: DriftSettings | None = None):
        self.settings = settings or DriftSettings()
        self.switches = 0  # fast -> dense transitions
        self.reset()

    def reset(self) -> None:
        """A fresh start (an evaluation episode): state ok, the CUSUMs at 0."""
        self.state = "ok"
        self.sums = dict.fromkeys(SIGNALS, 0.0)
        self._calm = 0
        self.last = dict.fromkeys(SIGNALS, float("nan"))
        self.last_ratio = float("nan")
        self.thresholds = dict.fromkeys(SIGNALS, float("nan"))
        self.alarm_signal = ""  # the signal whose CUSUM raised the last alarm

    @property
    def cusum(self) -> float:
        return self.sums["shadow"]

    @property
    def threshold(self) -> float:
        return self.thresholds["shadow"]

    @property
    def last_z(self) -> float:
        return self.last["shadow"]

    def observe(self, z: float, threshold: float, observation_z: float = float("nan"),
                observation_threshold: float = float("inf")) -> str:
        """One check's z of each signal (the shadow deviation against the schedule that ran; nan: not measured)
        and their thresholds -> the state from here on."""
        zs = {"shadow": z, "observation": observation_z}
        measured = {k: v for k, v in zs.items() if np.isfinite(v)}
        if not measured:
            return self.state
        s = self.settings
        self.last.update(zs)
        self.thresholds.update(shadow=threshold, observation=observation_threshold)
        if self.state == "dense":
            self._calm = self._calm + 1 if all(v < s.drift_cusum_k for v in measured.values()) else 0
            if self._calm >= s.drift_settle:
                self.state, self._calm = "ok", 0
                self.sums = dict.fromkeys(SIGNALS, 0.0)
            return self.state
        for k, v in measured.items():
            self.sums[k] = max(0.0, self.sums[k] + v - s.drift_cusum_k)
        over = [k for k in SIGNALS if self.sums[k] > self.thresholds[k]]
        if over:
            self.state, self._calm, self.alarm_signal = "dense", 0, over[0]
            self.switches += 1
            self.sums = dict.fromkeys(SIGNALS, 0.0)  # the dense schedule's checks count calm ones from here
        elif any(self.sums[k] > self.thresholds[k] / 2 for k in SIGNALS):
            self.state = "warn"
        elif all(v == 0.0 for v in self.sums.values()):
            self.state = "ok"  # a warning ends only at 0: hysteresis
        return self.state


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
def shadow_checks(policy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                  seed: int = 0) -> tuple[list[list[float]], list[list[float]]]:
    """The guard's two signals at each observation (one at a time, as deployed): per schedule, the shadow
    deviation against full precision from the same noise (run once per observation for all of them) and the
    reuse error."""
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
    return dev, reuse


def measure_reference(policy, schedules: list[Schedule], image: torch.Tensor, state: torch.Tensor,
                      seed: int = 0) -> list[dict]:
    """Each schedule's two signals over observations (`shadow_checks`): per schedule {"shadow_deviation":
    {median, mean, p95, observations}, "reuse_error": {mean, p95, observations}}."""
    if not schedules:
        return []
    dev, reuse = shadow_checks(policy, schedules, image, state, seed)
    out = []
    for d, r in zip(map(np.asarray, dev), map(np.asarray, reuse)):
        n = int(d.size)
        out.append({"shadow_deviation": {"statistic": SHADOW_STATISTIC, "median": float(np.median(d)),
                                         "mean": float(d.mean()),
                                         "p95": float(np.percentile(d, 95)), "observations": n},
                    "reuse_error": {"mean": float(r.mean()), "p95": float(np.percentile(r, 95)), "observations": n}})
    return out
