"""Episodes on several simulators at once, for `bac eval --workers N` and `--ray-address`.

Each worker owns one franky-sim on its own loopback address (libfranka's ports 1337/1338 are fixed, so two
simulators need two addresses) and runs one episode per task; results come back as they finish. A worker
that dies (a crashed simulator, a killed process, a lost Ray node) loses only the episode it held: that
episode runs again on a new worker at a fresh address (its old simulator may still hold the old one).

- `run_tasks(tasks, make_worker, ...)` -> an iterator of (task, result) in completion order.
- `make_worker(hostname)` builds an object with `run(task) -> result` and `close()`; it must be picklable
  (a module-level function or a `functools.partial` of one) for processes and Ray actors.
- workers=1 without Ray runs in this process: no spawn, the same code path a test can step through.
"""
from __future__ import annotations

import collections
import multiprocessing as mp
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import wait

RETRIES = 2  # runs of one task after the first, whether its worker died or its episode raised


@dataclass(frozen=True)
class Task:
    """One episode: a row of the run (method and S, by index), a mode and a seed."""
    mode: str
    row: int
    seed: int


class WorkerFailed(RuntimeError):
    """A task failed on every try; results already yielded stand (written incrementally, resumable)."""


def hostnames(first: str) -> Iterator[str]:
    """127.0.0.x, 127.0.0.x+1, ... (x+ wraps within 2..254): one loopback address per simulator."""
    base = first.rsplit(".", 1)
    start = int(base[1])
    for i in range(253):
        yield f"{base[0]}.{2 + (start - 2 + i) % 253}"
    raise WorkerFailed("no loopback address left for another simulator")


def run_tasks(tasks: Iterable[Task], make_worker: Callable, workers: int = 1, first_host: str = "127.0.0.1",
              ray_address: str | None = None, retries: int = RETRIES) -> Iterator[tuple[Task, object]]:
    """Run every task once (retrying failures up to `retries` times); yield (task, result) as each finishes."""
    hosts = hostnames(first_host)
    if ray_address:
        yield from _ray(list(tasks), make_worker, max(1, workers), hosts, ray_address, retries)
    elif workers <= 1:
        yield from _in_process(list(tasks), make_worker, hosts, retries)
    else:
        yield from _processes(list(tasks), make_worker, workers, hosts, retries)


def _retry(task: Task, attempts: collections.Counter, retries: int, why: str) -> None:
    attempts[task] += 1
    print(f"\n{task.mode} row {task.row} seed {task.seed}: {why}; "
          + ("running it again" if attempts[task] <= retries else "giving up"), file=sys.stderr, flush=True)
    if attempts[task] > retries:
        raise WorkerFailed(f"seed {task.seed} (row {task.row}, {task.mode}) failed {attempts[task]} times: {why}")


def _in_process(tasks, make_worker, hosts, retries):
    attempts: collections.Counter = collections.Counter()
    worker = make_worker(next(hosts))
    try:
        queue = collections.deque(tasks)
        while queue:
            task = queue.popleft()
            try:
                result = worker.run(task)
            except RuntimeError as e:  # the episode broke its world more often than FreshWorld retries
                _retry(task, attempts, retries, str(e))
                queue.appendleft(task)
                continue
            yield task, result
    finally:
        worker.close()


class Reply(StrEnum):
    """What a worker process tells the parent over its pipe."""
    READY = "ready"
    DONE = "done"  # a task's result
    FAILED = "failed"  # a task raised: it runs again, a bounded number of times
    INIT_FAILED = "init-failed"  # the worker could not be built: another starts



def _serve(make_worker, hostname: str, conn) -> None:
    """A worker process: build the worker, then run tasks from the pipe until None."""
    try:
        worker = make_worker(hostname)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which starts another
        conn.send((Reply.INIT_FAILED, None, f"{type(e).__name__}: {e}"))
        return
    conn.send((Reply.READY, None, None))
    try:
        while (task := conn.recv()) is not None:
            try:
                conn.send((Reply.DONE, task, worker.run(task)))
            except Exception as e:  # noqa: BLE001
                conn.send((Reply.FAILED, task, f"{type(e).__name__}: {e}"))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the parent went away: stop after this episode
        pass
    finally:
        worker.close()


class _Slot:
    """One worker process, its pipe and the task it holds."""

    def __init__(self, ctx, make_worker, hostname: str):
        self.conn, child = ctx.Pipe()
        # not daemonic: the worker starts its simulator as a child process of its own
        self.proc = ctx.Process(target=_serve, args=(make_worker, hostname, child), name=f"eval-{hostname}")
        self.proc.start()
        child.close()
        self.hostname, self.task, self.ready = hostname, None, False

    def stop(self, timeout: float = 20.0) -> None:
        try:
            self.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def _processes(tasks, make_worker, n, hosts, retries):
    ctx = mp.get_context("spawn")
    queue, attempts = collections.deque(tasks), collections.Counter()
    slots = [_Slot(ctx, make_worker, next(hosts)) for _ in range(min(n, len(queue)))]
    births = len(slots)
    try:
        while queue or any(s.task is not None for s in slots):
            for s in slots:
                if s.ready and s.task is None and queue:
                    s.task = queue.popleft()
                    s.conn.send(s.task)
            ready = wait([s.conn for s in slots] + [s.proc.sentinel for s in slots])
            for i, s in enumerate(list(slots)):
                message = None
                if s.conn in ready:
                    try:
                        message = s.conn.recv()
                    except (EOFError, OSError):
                        message = None
                if message is not None:
                    kind, task, payload = message
                    if kind == Reply.READY:
                        s.ready = True
                    elif kind == Reply.DONE:
                        s.task = None
                        yield task, payload
                    elif kind == Reply.FAILED:
                        s.task = None
                        _retry(task, attempts, retries, payload)
                        queue.appendleft(task)
                    else:  # init-failed: a new worker on the next address, a bounded number of times
                        print(f"\nworker on {s.hostname} did not start: {payload}", file=sys.stderr, flush=True)
                        s.proc.join(5)
                        births += 1
                        if births > n + 2 * retries + len(attempts):
                            raise WorkerFailed(f"workers do not start: {payload}")
                        slots[i] = _Slot(ctx, make_worker, next(hosts))
                    continue
                if s.proc.sentinel in ready or (s.conn in ready and not s.proc.is_alive()):
                    s.proc.join(1)
                    if s.task is not None:
                        _retry(s.task, attempts, retries, f"worker on {s.hostname} died (exit code {s.proc.exitcode})")
                        queue.appendleft(s.task)
                    births += 1
                    if births > n + 2 * retries + len(attempts) + 1:
                        raise WorkerFailed("workers keep dying")
                    slots[i] = _Slot(ctx, make_worker, next(hosts))
    finally:
        for s in slots:
            s.stop()


class _RayWorker:
    """The same worker as a Ray actor (one simulator per actor, on the actor's machine)."""

    def __init__(self, make_worker, hostname: str):
        self.worker = make_worker(hostname)

    def run(self, task: Task):
        return self.worker.run(task)

    def close(self) -> None:
        self.worker.close()


def _ray(tasks, make_worker, n, hosts, address, retries):
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    started_here = not ray.is_initialized()
    if started_here:  # "local": a Ray of our own on this machine; else an address such as ray://head:10001
        local = address == "local"
        # a local Ray's workers import what this process imports, as spawned processes do
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}} if local else None
        ray.init(address=None if local else address, include_dashboard=False, logging_level="ERROR",
                 runtime_env=env)
    actor_class = ray.remote(num_cpus=1, max_restarts=0)(_RayWorker)
    queue, attempts = collections.deque(tasks), collections.Counter()
    actors = [actor_class.remote(make_worker, next(hosts)) for _ in range(min(n, len(queue)))]
    running: dict = {}  # object ref -> (actor index, task)
    births = len(actors)
    try:
        while queue or running:
            busy = {i for i, _ in running.values()}
            for i, actor in enumerate(actors):
                if i not in busy and queue:
                    task = queue.popleft()
                    running[actor.run.remote(task)] = (i, task)
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            i, task = running.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError as e:  # the actor (its process or its node) is gone
                _retry(task, attempts, retries, f"Ray worker died ({type(e).__name__})")
                queue.appendleft(task)
                births += 1
                if births > n + 2 * retries + len(attempts) + 1:
                    raise WorkerFailed("Ray workers keep dying") from e
                actors[i] = actor_class.remote(make_worker, next(hosts))
                continue
            except RayTaskError as e:
                _retry(task, attempts, retries, str(e.cause if hasattr(e, "cause") else e).splitlines()[-1])
                queue.appendleft(task)
                continue
            yield task, result
    finally:
        for actor in actors:
            try:
                ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead actor has nothing to close
                pass
            ray.kill(actor)
        if started_here:
            ray.shutdown()
