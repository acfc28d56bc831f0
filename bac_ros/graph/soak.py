"""`bac soak`: the recording graph for hours, as a lab runs it. The `bac demo` graph on franky-sim with every node
started once (policy_node, teleop_node and the scripted operator stay up throughout), episodes alternating between
the operator teleoperating and the policy, each homed, reset and recorded. Sampled between episodes: each process's
resident memory and CPU time, policy_node's inference Hz, the controller's counters, the episodes' disk use, the
machine's CPU time by kind (/proc/stat: what the hypervisor took shows as steal); the control rate comes from
metrics_node's CSV. The report (`Soak.report`) is per window of `window_min` minutes, so a
leak shows as a slope; `verdicts` holds it to issue 38's bounds."""
from __future__ import annotations

import csv
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..robot.streaming import Source
from .demo import CONTROLLER, POLICY, TELEOP, Demo, MethodEpisodes, _in_windows

RSS_GROWTH, RATE_CHANGE = 0.10, 0.10  # the bounds: memory from the first window's end on, rates first vs last
DRIVER = "soak (this process)"  # the process that calls the services, streams nothing and samples


@dataclass
class Sample:
    """The graph between two episodes."""
    wall_s: float  # since the soak began
    graph_s: float  # the graph's clock (the simulator's)
    rss_mb: dict  # process -> resident memory (MB)
    cpu_s: dict  # process -> CPU seconds so far
    inference_hz: float  # policy_node's, as it reports it (its recent median, wall clock)
    counters: dict  # the controller's counters
    disk_mb: float  # the episodes folder
    episodes: int  # requested so far
    inference_cpu_ms: float = float("nan")  # policy_node's recent median on its inference thread's CPU clock
    machine_s: dict | None = None  # the machine's CPU seconds by kind, all cores: busy, idle, steal


def machine_cpu_s() -> dict:
    """The machine's CPU seconds so far, all cores (/proc/stat): `busy`, `idle` (iowait included) and `steal`, the
    time the hypervisor gave this machine's cores to someone else."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    tick = os.sysconf("SC_CLK_TCK")
    return {"busy": (user + nice + system + irq + softirq) / tick, "idle": (idle + iowait) / tick,
            "steal": steal / tick}


def resident_mb(pid: int) -> float | None:
    """VmRSS of a process (MB); None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6 if path.is_dir() else 0.0


class Soak:
    """`minutes` of alternating teleop and policy episodes (`schedule`) on one graph, sampled between episodes,
    at most once a minute (a tenth of a window)."""

    def __init__(self, out: Path, minutes: float, schedule: str | None = None, hostname: str = "127.0.0.1",
                 window_min: float = 10.0):
        self.out, self.minutes, self.schedule = Path(out), minutes, schedule
        self.sample_s, self.window_min = min(60.0, 6.0 * window_min), window_min
        self.demo = Demo(self.out, hostname=hostname)
        self.samples: list[Sample] = []
        self.requested = 0
        self.successes = {Source.TELEOP: [], Source.POLICY: []}  # per who drove
        self.errors: list[str] = []  # episodes that could not be run (homing, a stalled world), with why
        self.episode_windows: list[tuple[float, float]] = []  # (start, end) of each episode, graph clock

    def run(self) -> None:
        """Start the graph (not timed), then episodes until `minutes` have passed."""
        d = self.demo
        try:
            d.start()
            d.start_node("policy_node", {"schedule": self.schedule} if self.schedule else {})
            d.start_node("teleop_node", {})
            d.start_node("operator_node", {"mode": "drive"})
            d.wait_for_policy("soak")
            t0 = time.monotonic()
            self._sample(t0)
            while time.monotonic() - t0 < 60.0 * self.minutes:
                label, method = (Source.TELEOP, TELEOP) if self.requested % 2 == 0 else (Source.POLICY, Source.POLICY)
                d.graph.set_param("/recorder_node", "label", label)
                done = MethodEpisodes()
                self.requested += 1
                try:
                    d.episode(label, method, done)
                except (RuntimeError, TimeoutError) as e:  # reported, and the soak goes on: a lab's graph would
                    self.errors.append(f"episode {self.requested} ({label}): {e}")
                    print(f"  {self.errors[-1]}", flush=True)
                    d.graph.call_set_bool("bac/record/stop", False, must_succeed=False)
                    if len(self.errors) >= 3 and all(f"episode {self.requested - k} " in self.errors[-1 - k]
                                                     for k in range(3)):
                        raise RuntimeError("three episodes in a row could not be run: " + "; ".join(self.errors[-3:]))
                self.successes[label] += done.successes
                self.episode_windows += done.windows
                if time.monotonic() - t0 - self.samples[-1].wall_s >= self.sample_s:
                    self._sample(t0)
            if time.monotonic() - t0 - self.samples[-1].wall_s > 1.0:
                self._sample(t0)
        finally:
            d.stop()

    def _sample(self, t0: float) -> None:
        g, procs = self.demo.graph, self.demo.procs
        rss = {name: resident_mb(p.pid) for name, p in procs.procs.items()}
        rss[DRIVER] = resident_mb(os.getpid())
        cpu = {DRIVER if "this process" in k else k: v for k, v in procs.cpu_seconds().items()}
        self.samples.append(Sample(time.monotonic() - t0, g.now(), rss, cpu,
                                   float(g.diagnostics.get(POLICY, {}).get("inference_hz", "nan")),
                                   g.counters(CONTROLLER), folder_mb(self.demo.episodes_dir), self.requested,
                                   float(g.diagnostics.get(POLICY, {}).get("inference_cpu_ms_p50", "nan")),
                                   machine_cpu_s()))

    # ---- the report ------------------------------------------------------------------------------------
    def windows(self) -> list[dict]:
        """Per `window_min` of wall time (the last one kept when it spans a third of that or more): resident memory
        at its start, CPU % of a core, inference Hz (median of the samples; on the wall clock, and on the inference
        thread's CPU clock, which waiting for a core does not move), the machine's CPU busy and taken by the
        hypervisor (steal) in % of all cores, the controller's commands per wall second, the world's speed (graph s
        per wall s), control Hz (median of metrics_node's seconds inside episodes, on the graph's clock), chunks
        refused and held, episodes requested, disk written."""
        control = _control_rate(self.out / "control.csv")
        w = 60.0 * self.window_min
        rows, edges = [], np.arange(0.0, self.samples[-1].wall_s + 1e-9, w)
        for start in edges:
            inside = [s for s in self.samples if start <= s.wall_s <= start + w]
            if len(inside) < 2:
                continue
            a, b = inside[0], inside[-1]
            span = b.wall_s - a.wall_s
            if span < w / 3:
                continue
            hz = [h for t, h in control if a.graph_s <= t - 1.0 and t <= b.graph_s
                  and _in_windows(t, self.episode_windows) and _in_windows(t - 1.0, self.episode_windows)]
            refused = sum(v - a.counters.get(k, 0) for k, v in b.counters.items() if "refused" in k)
            rows.append({"minute": round(start / 60.0, 1), "rss_mb": {k: _round(v) for k, v in a.rss_mb.items()},
                         "cpu_percent": {k: round(100 * (b.cpu_s[k] - a.cpu_s[k]) / span, 1)
                                         for k in b.cpu_s.keys() & a.cpu_s.keys()},
                         "inference_hz": _median([s.inference_hz for s in inside]),
                         "inference_hz_cpu": _median([1e3 / s.inference_cpu_ms for s in inside
                                                           if s.inference_cpu_ms > 0]),
                         "busy_percent": _share(a.machine_s, b.machine_s, "busy"),
                         "steal_percent": _share(a.machine_s, b.machine_s, "steal"),
                         # the controller's own rate (wall clock), and the graph's clock against the wall: a
                         # simulated world runs below real time, so control Hz on its clock follows its speed
                         "commands_per_s": round((b.counters.get("commands", 0) - a.counters.get("commands", 0))
                                                 / span, 1),
                         "world_speed": round((b.graph_s - a.graph_s) / span, 3),
                         "control_hz": _median(hz), "chunks_refused": refused,
                         "holds": b.counters.get("chunks_holds", 0) - a.counters.get("chunks_holds", 0),
                         "episodes": b.episodes - a.episodes, "disk_mb": round(b.disk_mb - a.disk_mb, 1)})
        return rows

    def report(self) -> dict:
        from ..data.bags import read_index, read_partial

        rows = read_index(self.demo.episodes_dir) if (self.demo.episodes_dir / "index.jsonl").is_file() else []
        unreadable = []
        for r in rows:  # every episode through an independent reader (mcap's stream reader), message by message
            n = sum(1 for f in Path(r["bag_path"]).glob("*.mcap") for _ in read_partial(f))
            if n != r["messages"]:
                unreadable.append((r["bag"], n, r["messages"]))
        last = self.samples[-1]
        hours = last.wall_s / 3600.0
        return {"minutes": round(last.wall_s / 60.0, 1), "window_min": self.window_min,
                "episodes_requested": self.requested,
                "episodes_indexed": len(rows), "episodes_incomplete": sum(bool(r.get("incomplete")) for r in rows),
                "episodes_unreadable": unreadable,
                "success": {k: f"{sum(v)}/{len(v)}" for k, v in self.successes.items()}, "errors": self.errors,
                "disk_mb_per_hour": round(last.disk_mb / hours, 1) if hours > 0 else None,
                "free_disk_gb": round(shutil.disk_usage(self.out).free / 1e9, 1),
                "windows": self.windows(), "samples": [asdict(s) for s in self.samples]}


def verdicts(report: dict) -> list[tuple[str, bool]]:
    """Issue 38's bounds on a soak: (what, held). Memory is held from the end of the first window (imports,
    caches and the compiled backend have settled by then) to the last sample; rates first window vs last."""
    windows, samples = report["windows"], report["samples"]
    if not windows:
        return [("a full report window (the soak was too short)", False)]
    base = next((s for s in samples if s["wall_s"] >= 60.0 * report["window_min"]), samples[0])
    out = []
    for name, mb in base["rss_mb"].items():
        end = samples[-1]["rss_mb"].get(name)
        if mb and end:
            out.append((f"{name}: resident memory {mb:.0f} -> {end:.0f} MB from minute {base['wall_s'] / 60:.0f} "
                        f"(at most +{RSS_GROWTH:.0%})", end <= mb * (1 + RSS_GROWTH)))
    first, last = windows[0], windows[-1]
    for key, what in (("inference_hz", "policy inference Hz (wall clock)"),
                      ("inference_hz_cpu", "policy inference Hz (its thread's CPU clock)"),
                      ("commands_per_s", "control rate (the controller's commands per wall second)")):
        a, b = first.get(key, float("nan")), last.get(key, float("nan"))
        out.append((f"{what}: first window {a:.1f}, last {b:.1f} (within {RATE_CHANGE:.0%})",
                    bool(np.isfinite(a) and np.isfinite(b) and abs(b - a) <= RATE_CHANGE * a)))
    out.append((f"episodes: {report['episodes_requested']} requested, {report['episodes_indexed']} indexed, "
                f"{len(report['episodes_unreadable'])} unreadable by mcap's reader",
                report["episodes_indexed"] == report["episodes_requested"] and not report["episodes_unreadable"]))
    return out


def _control_rate(path: Path) -> list[tuple[float, float]]:
    if not path.is_file():
        return []
    with path.open() as f:
        return [(float(r["time"]), float(r["control_hz"])) for r in csv.DictReader(f)]


def _share(a: dict | None, b: dict | None, kind: str) -> float:
    """% of the machine's CPU time between two samples that was `kind`."""
    if not a or not b:
        return float("nan")
    total = sum(b[k] - a[k] for k in ("busy", "idle", "steal"))
    return round(100.0 * (b[kind] - a[kind]) / total, 1) if total > 0 else float("nan")


def _median(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return round(float(np.median(v)), 2) if v else float("nan")


def _round(v):
    return None if v is None else round(v, 1)
