"""Operators compared from their recorded episodes (bags + index only, so a lab's real recordings work the
same as simulated ones): success with a 95 % Wilson interval, time to completion, TCP path length,
smoothness, interventions and latency, per label (an operator, a method), on the seeds all of them ran."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .core.motion import mean_smoothness, smoothness
from .data.episodes import Episode
from .robot.kinematics import Kinematics


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a success rate (95 % for z = 1.96): sound at 0 and n successes and for
    small n, where the normal approximation is not."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def tcp_path(ep: Episode, kin: Kinematics) -> tuple[np.ndarray, np.ndarray]:
    """(times (N,), TCP positions (N, 3)) from the measured joint states."""
    return ep.joints_t, kin.fk_path(ep.joints[:, :7]) if len(ep.joints) else np.zeros((0, 3))


def tcp_speed(t: np.ndarray, p: np.ndarray, rate_hz: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """TCP speed (m/s) on a uniform grid of `rate_hz` from the start: joint states come stamped with the
    robot clock, and in simulation several can carry (almost) the same stamp, which a plain difference
    turns into absurd speeds."""
    t, p = np.asarray(t, float), np.asarray(p, float)
    if len(t) < 3 or t[-1] - t[0] < 2 / rate_hz:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(t, kind="stable")
    t, p = t[order], p[order]
    grid = np.arange(t[0], t[-1], 1.0 / rate_hz)
    pg = np.stack([np.interp(grid, t, p[:, j]) for j in range(3)], axis=1)
    return grid[1:] - t[0], np.linalg.norm(np.diff(pg, axis=0), axis=1) * rate_hz


def episode_metrics(ep: Episode, kin: Kinematics) -> dict:
    """One episode's numbers: time to completion (the simulator's success time, else the recording's
    duration; successful episodes only), TCP path length (m), smoothness of the measured joint motion."""
    t, p = tcp_path(ep, kin)
    success = bool(ep.row.get("success"))
    return {"success": success, "seed": ep.row.get("seed"),
            "time_s": (ep.success_time if ep.success_time is not None else ep.row.get("duration_s")) if success
            else None,
            "path_m": float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0,
            "smoothness": smoothness(t, ep.joints[:, :7]) if len(t) > 8 else None,
            "interventions": int(ep.row.get("interventions") or 0), "latency_ms": ep.latency_ms}


def common_seeds(rows: list[dict]) -> set | None:
    """Seeds every label ran (None when some episode has no seed: a lab's recordings without one)."""
    by_label = defaultdict(set)
    for r in rows:
        if r.get("seed") is None:
            return None
        by_label[r["label"]].add(r["seed"])
    return set.intersection(*by_label.values()) if by_label else set()


def summarise(metrics: dict[str, list[dict]]) -> list[dict]:
    """Per label: episodes, successes, success rate with its 95 % Wilson interval, median time to completion
    and TCP path length, smoothness (velocity reversals per second of motion, jerk rms), interventions per
    episode, latency p50/p95 (ms)."""
    out = []
    for label, ms in metrics.items():
        n, k = len(ms), sum(m["success"] for m in ms)
        low, high = wilson_interval(k, n)
        times = [m["time_s"] for m in ms if m["time_s"] is not None]
        smooth = mean_smoothness([m["smoothness"] for m in ms if m["smoothness"]])
        lat = np.concatenate([m["latency_ms"] for m in ms]) if ms else np.zeros(0)
        out.append({"label": label, "episodes": n, "successes": k, "success_rate": k / n if n else float("nan"),
                    "success_ci": [low, high], "time_s": float(np.median(times)) if times else float("nan"),
                    "path_m": float(np.median([m["path_m"] for m in ms])) if ms else float("nan"),
                    "reversals_per_s": smooth["zero_crossings_per_s"], "jerk_rms": smooth["jerk_rms"],
                    "interventions_per_episode": sum(m["interventions"] for m in ms) / n if n else float("nan"),
                    "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                    "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
                    "seeds": sorted(m["seed"] for m in ms if m["seed"] is not None)})
    return out


def compare_recordings(folders: list, labels: list[str] | None = None, all_seeds: bool = False):
    """The comparison of the episodes recorded in `folders` (bags + index.jsonl): (summary rows per label,
    TCP paths per label and seed for the figure, the seeds compared or None for all episodes)."""
    from .data.bags import read_index
    from .data.episodes import load_episode

    rows = [r for folder in folders for r in read_index(folder)]
    if labels:
        rows = [r for r in rows if r["label"] in labels]
    if not rows:
        raise ValueError(f"no recorded episodes in {', '.join(map(str, folders))}" +
                         (f" with labels {labels}" if labels else ""))
    seeds = None if all_seeds else common_seeds(rows)
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
    kin = Kinematics.fr3()
    metrics: dict[str, list] = {}
    paths: dict[str, dict] = {}
    for r in rows:
        ep = load_episode(r)
        metrics.setdefault(r["label"], []).append(episode_metrics(ep, kin))
        by_seed = paths.setdefault(r["label"], {})
        t, p = tcp_path(ep, kin)
        by_seed[r["seed"] if r.get("seed") is not None else len(by_seed)] = (
            t, p, r["cube"][:2] if r.get("cube") else None, bool(r["success"]))
    return summarise(metrics), paths, seeds
