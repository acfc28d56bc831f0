"""Operators compared from their recorded episodes (bags + index only, so a lab's real recordings work the
same as simulated ones), like with like:

- success with its 95 % Wilson interval; each label against a reference label (the first, or the one
  named) with the exact paired test on the seeds both ran (McNemar), or Fisher's exact test when the
  episodes carry no seeds (a real arm), the difference's interval and a non-inferiority verdict (`analysis.stats`);
- time to success as a survival measure: failures censored where they ended (Kaplan-Meier): median time
  and the share succeeded within T;
- TCP path length and smoothness on successful episodes (and, apart, on all), from traces resampled onto a
  uniform grid (`analysis.motion.resample`), so bunched stamps cannot create speeds;
- latency the same for every source: the observation (policy) or input (teleop) a chunk came from -> the
  first command it produced (bac/first_command);
- interventions per episode and the share of steps a person drove after taking over.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .motion import mean_smoothness, resample, smoothness
from .stats import compare_paired, compare_unpaired, kaplan_meier, wilson_interval
from ..data.episodes import Episode
from ..robot.kinematics import Kinematics

TRACE_HZ = 50.0  # resampling rate of measured traces (the controller publishes joint states at 100 Hz)

__all__ = ["wilson_interval", "episode_metrics", "summarise", "pairwise", "compare_recordings", "tcp_speed"]


def tcp_path(ep: Episode, kin: Kinematics) -> tuple[np.ndarray, np.ndarray]:
    """(times (N,) from the episode's first sample, TCP positions (N, 3)) from the measured joints, resampled."""
    t, q = resample(ep.joints_t, ep.joints[:, :7], TRACE_HZ) if len(ep.joints) else (np.zeros(0), np.zeros((0, 7)))
    return (t - t[0] if len(t) else t), (kin.fk_path(q) if len(q) else np.zeros((0, 3)))


def tcp_speed(t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TCP speed (m/s) between consecutive points of a resampled path: (midpoint times, speeds)."""
    t, p = np.asarray(t, float), np.asarray(p, float)
    if len(t) < 3:
        return np.zeros(0), np.zeros(0)
    return (t[1:] + t[:-1]) / 2, np.linalg.norm(np.diff(p, axis=0), axis=1) / np.diff(t)


def intervention_share(ep: Episode) -> float:
    """Share of the episode's time a person drove after taking over from the policy."""
    if not ep.switches or not len(ep.joints_t):
        return 0.0
    t = np.linspace(ep.joints_t.min(), ep.joints_t.max(), 200)
    return float(ep.source_at(t)[1].mean())


def episode_metrics(ep: Episode, kin: Kinematics) -> dict:
    """One episode's numbers: its time (to success; else when it ended, censored), TCP path length (m) and
    smoothness of the measured joint motion (resampled), latencies, interventions."""
    t, p = tcp_path(ep, kin)
    success = bool(ep.row.get("success"))
    duration = ep.row.get("duration_s")
    time_s = ep.success_time if success and ep.success_time is not None else duration
    return {"success": success, "seed": ep.row.get("seed"), "time_s": time_s,
            "path_m": float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) if len(p) > 1 else 0.0,
            "smoothness": smoothness(ep.joints_t, ep.joints[:, :7]) if len(ep.joints_t) > 8 else None,
            "interventions": int(ep.row.get("interventions") or len(ep.interventions_t)),
            "intervention_share": intervention_share(ep), "latency_ms": ep.latency_ms,
            "clock_rate": ep.row.get("clock_rate")}


def common_seeds(rows: list[dict]) -> set | None:
    """Seeds every label ran (None when some episode has no seed: a lab's recordings without one)."""
    by_label = defaultdict(set)
    for r in rows:
        if r.get("seed") is None:
            return None
        by_label[r["label"]].add(r["seed"])
    return set.intersection(*by_label.values()) if by_label else set()


def _median(values) -> float:
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else float("nan")


def summarise(metrics: dict[str, list[dict]], within_s: float = 8.0) -> list[dict]:
    """Per label: episodes, successes, success rate with its 95 % Wilson interval; time to success (Kaplan-
    Meier median, share within `within_s`); TCP path length and smoothness on successes and on all;
    interventions per episode and share of steps; latency p50/p95 (ms); the median clock rate (robot s per wall
    s, None where the recordings do not say)."""
    out = []
    for label, ms in metrics.items():
        n, k = len(ms), sum(m["success"] for m in ms)
        low, high = wilson_interval(k, n)
        timed = [m for m in ms if m["time_s"] is not None]
        km = kaplan_meier([m["time_s"] for m in timed], [m["success"] for m in timed]) if timed else None
        ok = [m for m in ms if m["success"]]
        smooth_ok = mean_smoothness([m["smoothness"] for m in ok if m["smoothness"]])
        smooth_all = mean_smoothness([m["smoothness"] for m in ms if m["smoothness"]])
        lat = np.concatenate([m["latency_ms"] for m in ms]) if ms else np.zeros(0)
        out.append({"label": label, "episodes": n, "successes": k, "success_rate": k / n if n else float("nan"),
                    "success_ci": [low, high], "time_s": km.median if km else float("nan"),
                    "within_s": within_s, "success_within": km.at(within_s) if km else float("nan"),
                    "survival": {"t": km.times.tolist(), "success": km.success_by.tolist()} if km else None,
                    "path_m": _median(m["path_m"] for m in ok), "path_m_all": _median(m["path_m"] for m in ms),
                    "reversals_per_s": smooth_ok["zero_crossings_per_s"], "jerk_rms": smooth_ok["jerk_rms"],
                    "jerk_rms_all": smooth_all["jerk_rms"],
                    "interventions_per_episode": sum(m["interventions"] for m in ms) / n if n else float("nan"),
                    "intervention_share": float(np.mean([m["intervention_share"] for m in ms])) if ms else 0.0,
                    "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
                    "latency_ms_p95": float(np.percentile(lat, 95)) if len(lat) else float("nan"),
                    "clock_rate": _median(m.get("clock_rate") for m in ms) if any(m.get("clock_rate") for m in ms)
                    else None,
                    "seeds": sorted(m["seed"] for m in ms if m["seed"] is not None)})
    return out


def pairwise(metrics: dict[str, list[dict]], reference: str | None = None, margin: float = 0.05) -> list[dict]:
    """Every other label against `reference` (default: the first): paired on the seeds both ran when every
    episode has a seed (one episode per seed and label: the first), unpaired otherwise."""
    labels = list(metrics)
    if not labels:
        return []
    reference = reference or labels[0]
    if reference not in metrics:
        raise ValueError(f"reference label {reference!r} is not among {labels}")
    a = metrics[reference]
    out = []
    for label in labels:
        if label == reference:
            continue
        b = metrics[label]
        if all(m["seed"] is not None for m in a + b):
            by_a = {m["seed"]: m["success"] for m in reversed(a)}
            by_b = {m["seed"]: m["success"] for m in reversed(b)}
            seeds = sorted(by_a.keys() & by_b.keys())
            if seeds:
                out.append(compare_paired(reference, label, [by_a[s] for s in seeds], [by_b[s] for s in seeds],
                                          margin).as_dict())
                continue
        out.append(compare_unpaired(reference, label, sum(m["success"] for m in a), len(a),
                                    sum(m["success"] for m in b), len(b), margin).as_dict())
    return out


def compare_recordings(folders: list, labels: list[str] | None = None, all_seeds: bool = False):
    """The episodes recorded in `folders` (bags + index.jsonl): (metrics per label, TCP paths per label and
    seed for the figure, the seeds compared or None for all episodes)."""
    from ..data.bags import complete_rows, read_index
    from ..data.episodes import load_episode

    rows = complete_rows([r for folder in folders for r in read_index(folder)], "bac compare")
    if labels:
        rows = [r for r in rows if r["label"] in labels]
    if not rows:
        raise ValueError(f"no recorded episodes in {', '.join(map(str, folders))}" +
                         (f" with labels {labels}" if labels else ""))
    seeds = None if all_seeds else common_seeds(rows)
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
    order = labels or list(dict.fromkeys(r["label"] for r in rows))
    kin = Kinematics.fr3()
    metrics: dict[str, list] = {label: [] for label in order if any(r["label"] == label for r in rows)}
    paths: dict[str, dict] = {}
    for r in rows:
        ep = load_episode(r)
        metrics[r["label"]].append(episode_metrics(ep, kin))
        by_seed = paths.setdefault(r["label"], {})
        t, p = tcp_path(ep, kin)
        t0 = ep.joints_t.min() if len(ep.joints_t) else 0.0
        taken = [p[min(len(p) - 1, int(round((s - t0) * TRACE_HZ)))] for s in ep.interventions_t if len(p)]
        by_seed[r["seed"] if r.get("seed") is not None else len(by_seed)] = (
            t, p, r["cube"][:2] if r.get("cube") else None, bool(r["success"]), np.array(taken).reshape(-1, 3))
    return metrics, paths, seeds
