"""Episodes on several workers (processes, Ray actors): every task runs once, a dead worker loses only its
task, the task runs again on a fresh address, a task that keeps failing stops the run."""
import functools
import os
import time
from pathlib import Path

import pytest

from bac_ros.sim.workers import Task, WorkerFailed, hostnames, run_tasks


class Recorder:
    """Stands in for an episode worker: echoes the task and its host; dies (the whole process) or raises on
    the seeds named, once per marker file."""

    def __init__(self, hostname: str, marks: str = "", die_on=(), raise_on=(), seconds: float = 0.0):
        self.hostname, self.marks, self.die_on, self.raise_on = hostname, Path(marks), die_on, raise_on
        self.seconds = seconds

    def run(self, task: Task) -> dict:
        time.sleep(self.seconds)  # an episode takes a while: both workers get some
        mark = self.marks / f"{task.seed}"
        if task.seed in self.die_on and not mark.exists():
            mark.touch()
            os._exit(3)
        if task.seed in self.raise_on:
            raise RuntimeError(f"seed {task.seed} broke its world")
        return {"seed": task.seed, "row": task.row, "host": self.hostname, "pid": os.getpid()}

    def close(self) -> None:
        pass


def recorder(hostname, **kw):
    return Recorder(hostname, **kw)


TASKS = [Task("sync", row, seed) for seed in range(6) for row in range(2)]


def test_hostnames_count_up_and_wrap_inside_loopback():
    hosts = hostnames("127.0.0.253")
    assert [next(hosts) for _ in range(4)] == ["127.0.0.253", "127.0.0.254", "127.0.0.2", "127.0.0.3"]


def test_one_worker_runs_in_this_process():
    results = list(run_tasks(TASKS, recorder, workers=1, first_host="127.0.0.9"))
    assert [t for t, _ in results] == TASKS
    assert {r["pid"] for _, r in results} == {os.getpid()} and {r["host"] for _, r in results} == {"127.0.0.9"}


def test_two_processes_run_every_task_once_on_two_addresses():
    make = functools.partial(recorder, seconds=0.5)
    results = list(run_tasks(TASKS, make, workers=2, first_host="127.0.0.20"))
    assert sorted((t.seed, t.row) for t, _ in results) == sorted((t.seed, t.row) for t in TASKS)
    assert all((r["seed"], r["row"]) == (t.seed, t.row) for t, r in results)
    assert {r["host"] for _, r in results} == {"127.0.0.20", "127.0.0.21"}
    assert os.getpid() not in {r["pid"] for _, r in results}


def test_a_dead_worker_loses_only_its_task_which_runs_again_at_a_new_address(tmp_path):
    make = functools.partial(recorder, marks=str(tmp_path), die_on=(2, 4), seconds=0.2)
    results = list(run_tasks(TASKS, make, workers=2, first_host="127.0.0.30"))
    assert sorted((t.seed, t.row) for t, _ in results) == sorted((t.seed, t.row) for t in TASKS)  # once each
    hosts = {r["host"] for _, r in results}
    assert {"127.0.0.32", "127.0.0.33"} & hosts  # replacements started on fresh addresses
    assert len({r["pid"] for _, r in results}) >= 3


def test_a_task_that_keeps_failing_stops_the_run_after_its_retries(capsys):
    make = functools.partial(recorder, raise_on=(3,))
    got = []
    with pytest.raises(WorkerFailed, match="seed 3"):
        for task, _ in run_tasks(TASKS, make, workers=2, first_host="127.0.0.40", retries=1):
            got.append(task.seed)
    assert 0 in got and 3 not in got
    err = capsys.readouterr().err
    (gave_up,) = [line.split(":")[0] for line in err.splitlines() if line.endswith("giving up")]
    assert err.count(f"{gave_up}: RuntimeError") == 2  # the first run and one retry

    with pytest.raises(WorkerFailed):  # the same rule in this process
        list(run_tasks(TASKS, make, workers=1, retries=0))


@pytest.mark.slow
def test_ray_actors_run_every_task_and_replace_a_dead_one(tmp_path):
    pytest.importorskip("ray")
    make = functools.partial(recorder, marks=str(tmp_path), die_on=(1,), seconds=0.2)
    results = list(run_tasks(TASKS, make, workers=2, first_host="127.0.0.50", ray_address="local"))
    assert sorted((t.seed, t.row) for t, _ in results) == sorted((t.seed, t.row) for t in TASKS)
    assert os.getpid() not in {r["pid"] for _, r in results}
    assert {r["host"] for _, r in results} - {"127.0.0.50", "127.0.0.51"}  # the dead actor's task moved
