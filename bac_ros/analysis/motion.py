"""Smoothness of a measured joint trajectory (no ROS here): the numbers that show stop-and-go or jitter.

`smoothness(t, q)` resamples joint positions onto a uniform grid (`resample`: the median of each cell, so
bunched stamps cannot make speeds), differentiates, and reports per second
of motion (time when any joint moves faster than `moving_speed`):
- `zero_crossings_per_s`: sign reversals of joint velocities, summed over joints. A reversal counts only
  when the velocity passes from beyond +deadband to beyond -deadband (or back), so sensor noise around
  zero during a still phase is not counted;
- `jerk_rms`: root mean square of the joints' jerk (rad/s^3) during motion, after a short moving average
  on the velocity (finite differences amplify noise by 1/dt per order).
The absolute values depend on the sampling; compare sources measured the same way (policy vs expert).
"""
from __future__ import annotations

import numpy as np


def resample(t: np.ndarray, x: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """A measured trace on a uniform grid of `rate_hz`: each grid cell holds the median of the samples
    stamped in it, cells without one are interpolated from their neighbours. Bunched stamps (several
    samples with almost the same stamp, as a simulator's slow clock gives them) therefore cannot produce
    speeds: a plain interpolation through them turned jitter into 30-55 m/s. -> (grid times, (n, d) values)."""
    t, x = np.asarray(t, float), np.asarray(x, float)
    x2 = x.reshape(len(x), -1)
    if len(t) < 2 or t.max() - t.min() < 2.0 / rate_hz:
        return np.zeros(0), np.zeros((0, x2.shape[1]))
    cell = np.floor((t - t.min()) * rate_hz + 0.5).astype(int)  # cells centred on the grid points
    n = cell.max() + 1
    grid = t.min() + np.arange(n) / rate_hz
    order = np.argsort(cell, kind="stable")
    cell_sorted = cell[order]
    bounds = np.flatnonzero(np.diff(np.r_[-1, cell_sorted, n]))
    filled = cell_sorted[bounds[:-1]]
    med = np.stack([np.median(x2[order[a:b]], axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    out = np.stack([np.interp(grid, grid[filled], med[:, j]) for j in range(x2.shape[1])], axis=1)
    return grid, out


def _sign_reversals(v: np.ndarray, deadband: float) -> int:
    """Reversals of one joint's velocity with hysteresis: values within ±deadband keep the last sign."""
    signs = np.where(v > deadband, 1, np.where(v < -deadband, -1, 0))
    signs = signs[signs != 0]
    return int(np.count_nonzero(signs[1:] != signs[:-1])) if signs.size else 0


def smoothness(t: np.ndarray, q: np.ndarray, rate_hz: float = 100.0, deadband: float = 0.02,
               moving_speed: float = 0.02, smooth_s: float = 0.05) -> dict[str, float]:
    t = np.asarray(t, float)
    q = np.asarray(q, float)
    if q.ndim != 2 or len(t) != len(q):
        raise ValueError(f"need times (N,) and positions (N, joints), got {t.shape} and {q.shape}")
    if len(t) < 8 or t[-1] - t[0] < 8 / rate_hz:
        return {"motion_s": 0.0, "zero_crossings_per_s": float("nan"), "jerk_rms": float("nan")}
    dt = 1.0 / rate_hz
    _, qg = resample(t, q, rate_hz)
    v = np.diff(qg, axis=0) / dt
    width = max(1, int(round(smooth_s / dt)))
    if width > 1:
        kernel = np.ones(width) / width
        v = np.stack([np.convolve(v[:, j], kernel, mode="same") for j in range(v.shape[1])], axis=1)
    moving = np.abs(v).max(axis=1) > moving_speed
    motion_s = float(moving.sum() * dt)
    if motion_s <= 0:
        return {"motion_s": 0.0, "zero_crossings_per_s": 0.0, "jerk_rms": 0.0}
    crossings = sum(_sign_reversals(v[moving, j], deadband) for j in range(v.shape[1]))
    jerk = np.diff(v, n=2, axis=0) / dt**2
    jm = jerk[moving[1:-1]]
    return {"motion_s": motion_s, "zero_crossings_per_s": crossings / motion_s,
            "jerk_rms": float(np.sqrt((jm**2).mean())) if jm.size else 0.0}


def mean_smoothness(parts: list[dict[str, float]]) -> dict[str, float]:
    """Episodes pooled, weighted by their seconds of motion."""
    total = sum(p["motion_s"] for p in parts)
    if total <= 0:
        return {"motion_s": 0.0, "zero_crossings_per_s": float("nan"), "jerk_rms": float("nan")}
    zc = sum(p["zero_crossings_per_s"] * p["motion_s"] for p in parts if p["motion_s"] > 0) / total
    jr = np.sqrt(sum(p["jerk_rms"] ** 2 * p["motion_s"] for p in parts if p["motion_s"] > 0) / total)
    return {"motion_s": total, "zero_crossings_per_s": float(zc), "jerk_rms": float(jr)}
