"""The guard's policy: its settings and a one-sided CUSUM per signal that turns checks into a state (ok, warn,
dense; see the package docstring)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from ..core.settings import check_ranges, setting
from .reference import SignalReference

class DriftState(StrEnum):
    """What the guard makes of its checks: in range, rising (a warning), or run the dense schedule."""
    OK = "ok"
    WARN = "warn"
    DENSE = "dense"


class DriftMode(StrEnum):
    """What the guard may do: nothing, watch (report only), or guard (switch to the dense schedule)."""
    OFF = "off"
    WATCH = "watch"
    GUARD = "guard"


SIGNALS = ("shadow", "observation")


@dataclass
class DriftSettings:
    """The guard's settings (ROS parameters of policy_node under the same names)."""
    drift_check_every: int = setting(10, "every this many inferences, one is re-run at full precision (the "
                                     "shadow check)", 1, 100000)
    drift_cusum_k: float = setting(0.5, "the CUSUMs' allowance, in reference standard deviations of ln(shadow "
                                   "deviation) and ln(observation distance): a check adds z - k", 0.0, 10.0)
    drift_false_alarm_rate: float = setting(0.01, "share of the reference's solved closed-loop episodes allowed "
                                            "an alarm, half to each signal; sets the thresholds h (fresh episodes "
                                            "alarm more often than the reference's own: docs/drift.md)", 0.001, 0.5)
    drift_threshold: float = setting(0.0, "the CUSUMs' alarm threshold h; 0: the one drift_false_alarm_rate "
                                     "gives on the schedule's reference", 0.0, 1000.0)
    drift_settle: int = setting(5, "checks in a row with z < k on the dense schedule before the fast one "
                                "returns", 1, 100000)
    drift_signals: str = setting("shadow,observation", "what the guard watches: the shadow deviation, and the "
                                 "observation distance where the schedule has its reference (a rig whose camera "
                                 "moves by design may leave it out)", choices=("shadow", "shadow,observation"))

    def __post_init__(self):
        check_ranges(self)


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


class DriftGuard:
    """Turns the checks' z into a state: ok | warn | dense, a CUSUM per signal (see module docstring)."""

    def __init__(self, settings: DriftSettings | None = None):
        self.settings = settings or DriftSettings()
        self.switches = 0  # fast -> dense transitions
        self.reset()

    def reset(self) -> None:
        """A fresh start (an evaluation episode): state ok, the CUSUMs at 0."""
        self.state = DriftState.OK
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
        if self.state == DriftState.DENSE:
            self._calm = self._calm + 1 if all(v < s.drift_cusum_k for v in measured.values()) else 0
            if self._calm >= s.drift_settle:
                self.state, self._calm = DriftState.OK, 0
                self.sums = dict.fromkeys(SIGNALS, 0.0)
            return self.state
        for k, v in measured.items():
            self.sums[k] = max(0.0, self.sums[k] + v - s.drift_cusum_k)
        over = [k for k in SIGNALS if self.sums[k] > self.thresholds[k]]
        if over:
            self.state, self._calm, self.alarm_signal = DriftState.DENSE, 0, over[0]
            self.switches += 1
            self.sums = dict.fromkeys(SIGNALS, 0.0)  # the dense schedule's checks count calm ones from here
        elif any(self.sums[k] > self.thresholds[k] / 2 for k in SIGNALS):
            self.state = DriftState.WARN
        elif all(v == 0.0 for v in self.sums.values()):
            self.state = DriftState.OK  # a warning ends only at 0: hysteresis
        return self.state
