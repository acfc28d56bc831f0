"""Drift guard: a precomputed schedule assumes live observations drive the cached features the way the
calibration observations did (the BAC paper's stated limitation). The guard watches that at run time.

Signal (free: both tensors are at hand): whenever a block recomputes, how far its new output lies from
what the cache had been adding in its place (the copy, or the forecast), relative to the new output:
`|y_k - reused_k| / |y_k|`, averaged over every recompute of one inference (`reuse_error`). Divided by
the same quantity measured on the calibration observations (stored in the schedule as
`calibration.reuse_error`), it reads 1 on data like the calibration's and rises when the features move
faster than the schedule expected.

Policy (`DriftGuard`): the median ratio over the last `window` inferences at or above `drift_warn_ratio`
-> warn; at or above `drift_switch_ratio` -> run the dense schedule; back to the fast one after
`settle` inferences in a row whose dense ratio stays under `drift_warn_ratio`.
"""
from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from .settings import check_ranges, setting

STATES = ("ok", "warn", "dense")


@dataclass
class DriftSettings:
    """The guard's thresholds (ROS parameters of policy_node under the same names)."""
    drift_warn_ratio: float = setting(2.0, "reuse error / its calibration value at which the guard warns",
                                      1.0, 100.0)
    drift_switch_ratio: float = setting(3.0, "ratio at which the guard runs the dense schedule", 1.0, 100.0)
    drift_window: int = setting(5, "inferences the median ratio is taken over", 1, 1000)
    drift_settle: int = setting(30, "inferences in a row under the warn ratio before the fast schedule returns",
                                1, 100000)

    def __post_init__(self):
        check_ranges(self)
        if self.drift_switch_ratio < self.drift_warn_ratio:
            raise ValueError(f"drift_switch_ratio ({self.drift_switch_ratio}) must be >= drift_warn_ratio "
                             f"({self.drift_warn_ratio})")


def reference(schedule) -> float:
    """The schedule's calibration reuse error (mean over calibration inferences); ValueError if it has none."""
    ref = ((schedule.calibration or {}).get("reuse_error") or {}).get("mean") if schedule is not None else None
    if not ref or ref <= 0:
        name = schedule.source or schedule.label if schedule is not None else "full"
        raise ValueError(f"schedule {name} has no calibration.reuse_error: the drift guard needs one "
                         "(`bac schedule --reference FILE --data demos.zarr` adds it)")
    return float(ref)


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
    """Turns per-inference ratios into a state: ok | warn | dense (see module docstring)."""

    def __init__(self, settings: DriftSettings | None = None):
        self.settings = settings or DriftSettings()
        self.state = "ok"
        self._ratios: deque = deque(maxlen=self.settings.drift_window)
        self._calm = 0
        self.switches = 0  # fast -> dense transitions
        self.last_ratio = float("nan")

    @property
    def ratio(self) -> float:
        """Median of the last `drift_window` ratios (nan before any)."""
        return statistics.median(self._ratios) if self._ratios else float("nan")

    def observe(self, ratio: float) -> str:
        """One inference's reuse error / its schedule's reference -> the state for the next inference."""
        if not np.isfinite(ratio):
            return self.state
        s = self.settings
        self.last_ratio = ratio
        self._ratios.append(ratio)
        if self.state == "dense":
            self._calm = self._calm + 1 if ratio < s.drift_warn_ratio else 0
            if self._calm >= s.drift_settle:
                self.state, self._calm = "ok", 0
                self._ratios.clear()  # the fast schedule's ratios start afresh
            return self.state
        if len(self._ratios) < s.drift_window:
            return self.state
        m = self.ratio
        if m >= s.drift_switch_ratio:
            self.state, self._calm = "dense", 0
            self.switches += 1
            self._ratios.clear()  # the dense schedule's own ratios from here on
        else:
            self.state = "warn" if m >= s.drift_warn_ratio else "ok"
        return self.state


class GuardedDenoiser:
    """A fast and a dense cached runtime behind one denoiser interface: each inference runs on the one the
    guard chose after the previous inference. Both measure their reuse error (built with `monitor=True`);
    `dense=None` watches only (the signal and the guard's state are kept, the schedule never changes)."""

    def __init__(self, fast, dense=None, guard: DriftGuard | None = None):
        for den in (fast, dense):
            if den is not None and getattr(den, "meter", None) is None:
                raise ValueError("the guarded runtimes must be built with monitor=True")
        self.fast, self.dense = fast, dense
        self.refs = {id(fast): reference(fast.schedule)}
        if dense is not None:
            self.refs[id(dense)] = reference(dense.schedule)
        self.guard = guard or DriftGuard()
        self.active = fast
        self.method = fast.method
        self.hoist = True
        self.history: list[tuple[bool, float, str]] = []  # per inference: ran dense?, ratio, guard state after

    @property
    def schedule(self):
        return self.active.schedule

    @property
    def updates(self) -> int:
        return self.active.updates

    def begin(self, cond: torch.Tensor) -> None:
        self.settle()
        self.active.begin(cond)

    def step(self, k: int, sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return self.active.step(k, sample, timestep)

    def settle(self) -> None:
        """Feed the finished inference's ratio to the guard and pick the runtime for the next one (called by
        `begin`; call it after a run's last inference to count that one too)."""
        meter = self.active.meter
        if not meter.count:
            return
        ratio = meter.value / self.refs[id(self.active)]
        state = self.guard.observe(ratio)
        self.history.append((self.active is self.dense, ratio, state))
        meter.reset()
        if self.dense is not None:
            self.active = self.dense if state == "dense" else self.fast


@torch.inference_mode()
def measure_reuse_error(policy, schedule, image: torch.Tensor, state: torch.Tensor, seed: int = 0) -> dict:
    """The schedule's reuse error over observations (one at a time, as deployed): mean, p95, count."""
    cfg = policy.cfg
    den = policy.denoiser(schedule, monitor=True)
    g = torch.Generator().manual_seed(seed)
    errors = []
    for i in range(image.shape[0]):
        noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=g)
        den.meter.reset()
        policy.predict(image[i:i + 1], state[i:i + 1], den, noise, torch.Generator().manual_seed(seed + i))
        errors.append(den.meter.value)
    e = np.asarray(errors)
    return {"mean": float(e.mean()), "p95": float(np.percentile(e, 95)), "observations": int(e.size)}
