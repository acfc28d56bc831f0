"""The drift guard's references: what each signal (the shadow deviation, the observation distance) reads on
data like the calibration's, stored in a schedule's `calibration` and read back from it, and the CUSUM
thresholds they give (see the package docstring)."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch

ARM_DIMS = 7  # the action's joint targets; dim 7, the gripper command, is left out of the shadow deviation


# what `shadow_deviation` measures, stored with every reference so that one measured otherwise is refused
SHADOW_STATISTIC = "arm-mse"

OBSERVATION_STATISTIC = "encoder-mahalanobis"

OBSERVATION_FOLDS = 5  # the reference's own distances are scored on episodes left out of the fit (5 folds)

OBSERVATION_SHRINK = 1e-3  # correlation shrunk this far toward the identity: invertible on few episodes

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


def shadow_deviation(cached: torch.Tensor, full: torch.Tensor) -> float:
    """What caching cost on one inference: the mean squared difference of the two denoised sequences of joint
    targets (normalised units). Without the gripper: its command is open or closed, and the two inferences
    closing it a step apart near the grasp would be a check far off the median that says nothing about drift
    (docs/drift.md)."""
    return float(((cached[..., :ARM_DIMS] - full[..., :ARM_DIMS]) ** 2).mean())
