"""One `bac eval` run as a library: its episodes run (paired: seed-major, every mode and row per seed) and logged
as each finishes, so an interrupted run resumes where it stopped, then a row per mode and method."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from ..sim.workers import Task, run_tasks
from .eval_rows import EPISODES_FILE, eval_row, warn
from .runs import finished_episodes


class EpisodeLog:
    """A run folder's episodes.jsonl: the run's identity on the first line (what it measures: arguments, weights,
    schedules), then one finished episode per line, flushed; `done` holds them by (mode, method, S, seed)."""

    def __init__(self, out: Path, identity: dict):
        self.path = out / EPISODES_FILE
        self.identity = json.loads(json.dumps(identity))  # as the log holds it
        self.done = finished_episodes(self.path, self.identity)
        if not self.path.is_file():
            self.path.write_text(json.dumps({"identity": self.identity}) + "\n")

    def run(self, entries: list[tuple], modes: list[str], seeds: list[int], make_worker: Callable, workers: int,
            hostname: str, ray_address: str | None) -> None:
        """Every (seed, mode, row) not yet logged, on `workers` simulators; a progress bar with each row's tally."""
        from tqdm import tqdm

        tasks = [Task(mode, i, seed) for seed in seeds for mode in modes for i in range(len(entries))]
        key = lambda t: (t.mode, entries[t.row][0], entries[t.row][1], t.seed)  # noqa: E731
        todo = [t for t in tasks if key(t) not in self.done]
        if len(todo) < len(tasks):
            print(f"resuming {self.path.parent}: {len(tasks) - len(todo)} of {len(tasks)} episodes done",
                  file=sys.stderr)
        tally: dict[str, list[bool]] = {}
        for e in self.done.values():
            tally.setdefault(e["method"] + str(e["num_updates"]), []).append(e["success"])
        bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), unit="ep", file=sys.stderr)
        with self.path.open("a") as log:
            for task, result in run_tasks(todo, make_worker, workers, hostname, ray_address):
                method, s, _ = entries[task.row]
                e = {"mode": task.mode, "method": method, "num_updates": s, **result}
                log.write(json.dumps(e) + "\n")
                log.flush()
                self.done[key(task)] = e
                tally.setdefault(method + str(s), []).append(e["success"])
                bar.update()
                bar.set_postfix_str(" ".join(f"{k} {sum(v)}/{len(v)}" for k, v in tally.items()))
        bar.close()

    def rows(self, entries: list[tuple], schedules: list, modes: list[str], seeds: list[int], bench: dict,
             run_fields: dict, commit: int, origin: dict) -> list[dict]:
        """A row per mode and method over `seeds` (every one logged), with its bench figures (`bench` by (method,
        S)); a warning printed under each row that needs one."""
        rows = []
        for mode in modes:
            for (method, s, _), sched in zip(entries, schedules):
                eps = [self.done[(mode, method, s, seed)] for seed in seeds]
                rows.append(eval_row(mode, method, s, sched, eps, bench[(method, s)], seeds, run_fields, commit,
                                     origin))
                warn(rows[-1])
        return rows
