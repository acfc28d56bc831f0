"""`bac eval`'s results: a row per method and mode from its episodes, the paired comparisons between rows, and
the table, JSON and plots written from them."""
from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from ..drift.guard import DriftState
from ..policy.schedule import ACS_METHODS, Method
from ..sim.episode_worker import split_mode
from .runs import content_hash, saved_arguments, write_json
from .stats import percentiles


ARGS_FILE, EPISODES_FILE = "eval_args.json", "episodes.jsonl"  # a run folder's arguments and its episode log
PARALLEL = ("workers", "ray_address", "hostname", "resume", "out_dir")  # how a run runs, not what it measures


def resumed_arguments(run_dir: Path) -> dict:
    """An interrupted run's arguments (what it measures, not how it ran), for `--resume`; FileNotFoundError in a
    folder that is not an eval run's."""
    kept = saved_arguments(run_dir, ARGS_FILE, PARALLEL)
    if isinstance(kept.get("latency_ms"), (int, float)):  # runs before the sweep took one latency
        kept["latency_ms"] = [float(kept["latency_ms"])]
    kept.setdefault("stitch", "switch")  # runs before --stitch played every chunk that way
    return {**kept, "out_dir": str(run_dir)}


def write_eval(rows: list[dict], out: Path, margin: float = 0.05) -> None:
    """Print the table (rows, pairs, a slow-clock note) and write eval.md, eval.json, pairs.json and the plots."""
    from .render import pairs_text
    from .render import (EVAL_COLUMNS, markdown, plot_drift, plot_success_vs_latency, plot_success_vs_speedup,
                         slow_clock_note)

    pairs = paired(rows, margin)
    live = [r for r in rows if r["mode"] == "realtime" and r.get("latency_ms") is None]
    note = slow_clock_note([{**r, "label": f"{r['method']} S={r['num_updates']}"} for r in live], "label",
                           "sim_realtime_factor")
    table = markdown(rows, EVAL_COLUMNS) + pairs_text(pairs) + (f"\n\n{note}" if note else "")
    print(table)
    (out / "eval.md").write_text(table + "\n")
    write_json(out / "eval.json", rows)
    if pairs:
        write_json(out / "pairs.json", pairs)
    print(f"wrote {out / 'eval.md'}, {out / 'eval.json'}, {plot_success_vs_speedup(rows, out / 'eval.png')}")
    if len({r.get("latency_ms") for r in rows if r.get("latency_ms") is not None}) > 1:
        print(f"wrote {plot_success_vs_latency(rows, out / 'latency.png')}")
    if any(r.get("drift_ratio_per_episode") for r in rows):
        print(f"wrote {plot_drift(rows, out / 'drift.png')}")


def row_seeds(row: dict) -> list[int]:
    """The seeds of a row's episodes, in the order of its `succeeded` list (older rows: a seed range)."""
    if "seed_list" in row:
        return list(row["seed_list"])
    first, last = row["seeds"]
    return list(range(first, last + 1))


def paired(rows: list[dict], margin: float = 0.05) -> list[dict]:
    """Per mode, every method against full precision (else the first row) on the seeds both ran: the 2x2
    table, the exact McNemar test, the difference with its interval and the verdict at `margin`. Rows of the
    same method from runs on different seeds (parallel hosts, `--merge`) are joined first."""
    from .recordings import pairwise
    from .render import row_label

    out = []
    group = lambda r: r["mode"] + (f" +{r['latency_ms']:g} ms" if r.get("latency_ms") is not None else "")  # noqa: E731
    for mode in dict.fromkeys(group(r) for r in rows):
        metrics: dict[str, list[dict]] = {}
        for r in rows:
            if group(r) != mode or "succeeded" not in r:
                continue
            label = Method.FULL if r["method"] == Method.FULL else row_label(r)
            metrics.setdefault(label, []).extend(
                {"seed": seed, "success": bool(ok)} for seed, ok in zip(row_seeds(r), r["succeeded"]))
        if len(metrics) > 1:
            reference = Method.FULL if Method.FULL in metrics else None
            out += [{"mode": mode, **p} for p in pairwise(metrics, reference, margin)]
    return out


def drift_fields(drift: list[list[dict]]) -> dict:
    """Per row, over the shadow checks (`drift.Check` as dicts): the drift guard's signal (median ratio per
    episode and overall), the reuse-error ratio, the share of checks on the dense schedule and in a warned
    state."""
    if not drift:
        return {}
    flat = [c for ep in drift for c in ep]
    median = lambda xs: float(statistics.median(xs)) if xs else float("nan")  # noqa: E731
    return {"drift_ratio_median": median([c["ratio"] for c in flat]),
            "drift_ratio_per_episode": [round(median([c["ratio"] for c in ep]), 3) for ep in drift],
            "reuse_ratio_median": median([c["reuse"] for c in flat]), "drift_checks": len(flat),
            "dense_share": sum(c["dense"] for c in flat) / max(1, len(flat)),
            "drift_warned_share": sum(c["state"] != DriftState.OK for c in flat) / max(1, len(flat)),
            # the guard restarts each episode: an alarm is an episode whose checks reached dense
            "drift_alarm_episodes": sum(any(c["state"] == DriftState.DENSE for c in ep) for ep in drift),
            "drift_first_alarm_check": [next((i + 1 for i, c in enumerate(ep) if c["state"] == DriftState.DENSE), None)
                                        for ep in drift],
            # which CUSUM raised each episode's first alarm (shadow | observation; None: no alarm)
            "drift_first_alarm_signal": [next((c.get("alarm") for c in ep if c.get("alarm")), None) for ep in drift],
            "drift_observation_z_median": median([c["observation_z"] for c in flat
                                                  if math.isfinite(c.get("observation_z", math.nan))]),
            "drift_checks_per_episode": [len(ep) for ep in drift]}


def eval_row(mode: str, method: str, s: int, sched, eps: list[dict], bench: dict, seeds: list[int], run: dict,
             commit: int, origin: dict) -> dict:
    """One table row from its episodes (dicts, in seed order): `mode` as `sim.episode_worker.episode_modes`,
    `bench` the schedule's bench row (speed-up, GFLOPs, action deviation), `run` what every row of the run shares
    (similarity, top_n, fixed_noise, backend, stitch, params, world, drift, workers, ray), `commit` the commit
    steps realtime episodes used, `origin` the config, weights and provenance."""
    mode, latency_ms = split_mode(mode)
    ms = [m for e in eps for m in e["inference_ms"]]
    drift = [e["drift"] for e in eps if e.get("drift") is not None]
    return {"mode": mode, "method": method, "num_updates": s, "episodes": len(eps),
            "success_rate": sum(e["success"] for e in eps) / len(eps), "speedup": bench["speedup"],
            "gflops": bench["gflops"], "inference_hz": 1e3 / statistics.median(ms),
            "action_mse": bench["action_mse"], "inference_ms_p95": float(sorted(ms)[int(0.95 * (len(ms) - 1))]),
            "seeds": [seeds[0], seeds[-1]], "seed_list": list(seeds),
            "similarity": run["similarity"] if method in ACS_METHODS else "cosine",
            "top_n": run["top_n"] if method == Method.BAC else None,
            "reuse": sched.reuse if sched is not None else None,
            # per episode, in seed order: which seeds each method solves (paired comparisons)
            "succeeded": [int(e["success"]) for e in eps],
            "fixed_noise": run["fixed_noise"], "backend": run["backend"],
            "commit_steps": commit if mode == "realtime" else None,
            "latency_ms": latency_ms,
            # realtime: robot ms from observation to the first command of its chunk, and to the controller
            # (metrics_node's latency and obs_to_chunk in the graph), and the world's speed
            "obs_to_command_ms": percentiles(m for e in eps for m in e.get("latency_ms") or []),
            "obs_to_chunk_ms": percentiles(m for e in eps for m in e.get("obs_to_chunk_ms") or []),
            "sim_realtime_factor": (statistics.fmean(e["realtime_factor"] for e in eps)
                                    if mode == "realtime" and all(e.get("realtime_factor") for e in eps) else None),
            "stitch": run["stitch"] if mode == "realtime" else None,
            # realtime: around chunk switches (`switch_smoothness`), over the episodes
            **smoothness_fields(eps),
            "dropped_points_per_episode": statistics.fmean(e["dropped_points"] for e in eps),
            "pause_timeouts": sum(e["pause_timeouts"] for e in eps),
            "velocity_stops": sum(e["velocity_stops"] for e in eps),
            "velocity_stops_per_episode": [e["velocity_stops"] for e in eps],
            "workspace_refusals_per_episode": [e["workspace_refusals"] for e in eps],
            "world_restarts": sum(e["world_restarts"] for e in eps),
            "late_ms_max": max((m for e in eps for m in e["late_ms"]), default=0.0),
            "schedule_hash": content_hash(sched.source) if sched is not None and sched.source else None,
            "params": run["params"] or "config/grasp.yaml", "world": run["world"], "drift": run["drift"],
            "workers": run["workers"], "ray": run["ray"], **drift_fields(drift), **origin}


def smoothness_fields(eps: list[dict]) -> dict:
    """Medians over episodes of the target step at a switch (rad) and the RMS jerk around one (rad/s^3), and the
    velocity reversals per switch over all switches; None where no episode switched."""
    def median(key):
        v = [e[key] for e in eps if e.get(key) is not None]
        return statistics.median(v) if v else None

    n = sum(e.get("switches") or 0 for e in eps)
    rev = sum((e.get("switch_reversals") or 0) * (e.get("switches") or 0) for e in eps)
    return {"switch_jump_rad": median("switch_jump_rad"), "switch_jerk": median("switch_jerk"),
            "switch_reversals": rev / n if n else None, "switches_per_episode": n / len(eps)}


def warn(row: dict) -> None:
    """What a row's episodes say about the run itself (velocity stops; a sync run that was not), on stderr."""
    if row["velocity_stops"]:
        print(f"note: the arm was stopped {row['velocity_stops']} time(s) for a joint moving faster than its limit",
              file=sys.stderr)
    if row["pause_timeouts"]:
        print(f"warning: {row['pause_timeouts']} inferences outlasted the world's pause limit: the world stepped on "
              "while the policy thought (not a pure sync run)", file=sys.stderr)


def place_at_latency(rows: list[dict], latencies: dict[str, dict[str, float]]) -> list[dict]:
    """Each method's success at the latency a computer measures for it, read off the fixed-latency rows by linear
    interpolation between the two swept latencies around it. `latencies`: per method (`row_label`), per computer,
    ms. One dict per (method, computer): label, computer, latency_ms, success_rate (None outside the sweep) and
    between (the swept latencies it lies between)."""
    from .render import row_label

    out = []
    for label, computers in latencies.items():
        pts = sorted((r["latency_ms"], r["success_rate"]) for r in rows
                     if r.get("latency_ms") is not None and row_label(r) == label)
        for computer, ms in computers.items():
            rate, between = None, None
            for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
                if x0 <= ms <= x1:
                    rate, between = y0 + (y1 - y0) * (ms - x0) / (x1 - x0) if x1 > x0 else y0, (x0, x1)
                    break
            if rate is None and pts and ms == pts[0][0]:
                rate, between = pts[0][1], (pts[0][0], pts[0][0])
            out.append({"label": label, "computer": computer, "latency_ms": ms, "success_rate": rate,
                        "between": between})
    return out
