"""Seeded evaluation episodes as a library: `EpisodeSpec` (what every episode of a run shares) and
`EpisodeWorker`, which plays episodes on one simulator. `bac eval` and `bac schedule --closed-loop` hand them
to `sim.workers.run_tasks` (processes or Ray actors), one worker per loopback address."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path

from ..drift.guard import DriftMode
from ..policy.inference import Backend


@dataclass(frozen=True)
class EpisodeSpec:
    """The policy (loaded by each worker: `policy.diffusion.load_policy`), how it runs and the world. `params`:
    the parameter file whose controller_node section gives the chunk rules and control rate, and whose
    policy_node section the drift settings (`drift_overrides` on top). `world`: WorldConfig overrides
    ("name=value"). `drift_features`: each shadow check keeps the encoder's features (a reference being
    measured). `commit_steps`: None, the policy's n_action_steps."""
    config: str = "cpu"
    checkpoint: str | None = "auto"
    seed: int = 0
    threads: int = 0
    device: str = "cpu"
    params: str | None = None
    world: tuple[str, ...] = ()
    backend: Backend = Backend.EAGER
    fixed_noise: bool = False
    drift: DriftMode = DriftMode.OFF
    drift_overrides: dict = field(default_factory=dict)
    drift_features: bool = False
    commit_steps: int | None = None
    max_time: float = 12.0
    stitch: str | None = None  # None: the controller's, as `params` sets it

    @classmethod
    def from_args(cls, args) -> "EpisodeSpec":
        """From a command's parsed arguments: the fields it has (the others keep their defaults)."""
        given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None)
                 is not None}
        return cls(**{**given, "world": tuple(given.get("world") or ())})


def split_mode(mode: str) -> tuple[str, float | None]:
    """'realtime+35ms' -> ('realtime', 35.0); 'sync' -> ('sync', None)."""
    base, _, latency = mode.partition("+")
    return base, float(latency.removesuffix("ms")) if latency else None


def episode_modes(mode: str, latencies_ms: list[float] | None) -> list[str]:
    """The episode modes of a run: `mode` sync, realtime or both; with `latencies_ms`, each realtime one at those
    fixed latencies ('realtime+35ms')."""
    realtime = [f"realtime+{v:g}ms" for v in latencies_ms] if latencies_ms else ["realtime"]
    return {"sync": ["sync"], "realtime": realtime, "both": ["sync", *realtime]}[mode]


def policy_params(spec: EpisodeSpec) -> dict:
    """policy_node's section of the parameter file, with the drift settings the spec overrides."""
    from ..core.settings import node_parameters

    return {**node_parameters("policy_node", spec.params), **spec.drift_overrides}


def check_period_s(params: dict) -> float:
    """Robot seconds between policy_node's shadow checks (`policy_params`): drift_check_every inferences at
    rate_hz."""
    from ..core.settings import from_mapping
    from ..drift.guard import DriftSettings
    from ..policy.runner import RATE_HZ

    return from_mapping(DriftSettings, params).drift_check_every / float(params.get("rate_hz", RATE_HZ))


def make_runner(policy, schedule, spec: EpisodeSpec, params: dict):
    """One row's runner on the spec's backend: with `drift`, a cached schedule behind the drift guard (watching,
    or switching to policy_node's dense_schedule; `params`: `policy_params`). ValueError naming what is missing."""
    from ..core.settings import from_mapping
    from ..drift.guard import DriftSettings
    from ..policy.runner import PolicyRunner

    try:
        return PolicyRunner(policy, schedule, spec.backend, seed=spec.seed, fixed_noise=spec.fixed_noise,
                            drift=spec.drift, dense_schedule=params.get("dense_schedule", ""),
                            drift_settings=from_mapping(DriftSettings, params))
    except ValueError as e:
        raise ValueError(f"backend {spec.backend} / drift {spec.drift}: {e}") from None


class EpisodeWorker:
    """Episodes on one simulator (one loopback address): the policy, a runner per row, the world. `entries`:
    per row (method, S, schedule file or None for full precision). `run(task)` plays `task.seed` in `task.mode`
    (`episode_modes`) with row `task.row`'s runner and returns the episode as a dict, with the drift guard's
    checks (`drift`) and the simulator restarts it took."""

    def __init__(self, spec: EpisodeSpec, entries, policy, hostname: str):
        from ..core.settings import from_mapping, node_parameters
        from ..policy.diffusion import load_policy
        from ..policy.schedule import Schedule
        from ..robot.limits import ArmLimits
        from ..robot.streaming import CONTROL_RATE_HZ, ChunkRules
        from .episode import FreshWorld
        from .world import WorldConfig, world_overrides

        self.spec = spec
        self.policy = policy if policy is not None else load_policy(spec.config, spec.checkpoint, spec.seed,
                                                                    spec.threads, spec.device)
        cfg = self.policy.cfg
        self.schedules = [None if path is None else Schedule.load(path, cfg) for _, _, path in entries]
        params = node_parameters("controller_node", spec.params)
        self.rules = from_mapping(ChunkRules, params)
        self.control_rate_hz = float(params.get("control_rate_hz", CONTROL_RATE_HZ))
        self.runners: dict[int, object] = {}
        self.policy_params = policy_params(spec)
        self.check_period_s = check_period_s(self.policy_params)
        world = WorldConfig(hostname=hostname, image_size=cfg.encoder.image_shape[1],
                            **world_overrides(list(spec.world)))
        self.sim = FreshWorld(world, from_mapping(ArmLimits, params))

    def run(self, task) -> dict:
        from .evaluate import run_realtime, run_sync

        spec, cfg = self.spec, self.policy.cfg
        if task.row not in self.runners:
            self.runners[task.row] = make_runner(self.policy, self.schedules[task.row], spec, self.policy_params)
        runner = self.runners[task.row]
        # sync: one inference per chunk; real time: one per observation, every dt. The guard checks as far
        # apart in robot time as policy_node's (in sync at every inference, not every drift_check_every-th chunk)
        runner.pace(cfg.chunk_period_s if task.mode == "sync" else cfg.action_dt, self.check_period_s)
        if runner.guard is not None:
            runner.guard.record_features = spec.drift_features
        mode, latency_ms = split_mode(task.mode)
        if mode == "sync":
            play = functools.partial(run_sync, rules=self.rules)
        else:
            play = functools.partial(run_realtime, rules=self.rules,
                                     commit_steps=cfg.n_action_steps if spec.commit_steps is None else spec.commit_steps,
                                     latency_s=None if latency_ms is None else latency_ms / 1e3,
                                     control_rate_hz=self.control_rate_hz, stitch=spec.stitch)
        n0 = len(runner.guard.history) if runner.guard else 0
        restarts = self.sim.restarts
        ep = self.sim.run(lambda world, arm: play(world, arm, runner, task.seed, max_time=spec.max_time),
                          f"seed {task.seed}")
        checks = [dataclasses.asdict(c) for c in runner.guard.history[n0:]] if runner.guard else None
        return {**dataclasses.asdict(ep), "world_restarts": self.sim.restarts - restarts, "drift": checks}

    def close(self) -> None:
        self.sim.close()


def make_worker(spec: EpisodeSpec, entries, policy, hostname: str) -> EpisodeWorker:
    """What `sim.workers.run_tasks` calls on each worker (functools.partial over all but the hostname)."""
    return EpisodeWorker(spec, entries, policy, hostname)


def closed_loop_checks(spec: EpisodeSpec, schedule, path: str, seeds: list[int], period_s: float, policy=None,
                       workers: int = 1, hostname: str = "127.0.0.1", say=None):
    """The drift guard's view of a schedule's own sync episodes of the calibration world (its closed-loop
    reference): a `ClosedLoopChecks` over `seeds`, the guard watching at every inference (`period_s` of robot
    time apart) and keeping each check's features; `say` tells of each episode as it ends. `path`: the
    schedule's file; `policy` is reused by one worker in this process."""
    from ..policy.calibrate import ClosedLoopChecks
    from .workers import Task, run_tasks

    spec = dataclasses.replace(spec, backend=Backend.EAGER, drift=DriftMode.WATCH, drift_features=True,
                               drift_overrides={**spec.drift_overrides, "drift_check_every": 1})
    entries = [(schedule.method, schedule.num_updates, str(Path(path).resolve()))]
    make = functools.partial(make_worker, spec, entries, policy if workers <= 1 else None)
    by_seed = {}
    for task, result in run_tasks([Task("sync", 0, s) for s in seeds], make, workers, hostname):
        by_seed[task.seed] = checks, success = result["drift"], bool(result["success"])
        if say:
            say(f"seed {task.seed}: {'success' if success else 'fail'}, {len(checks)} checks")
    return ClosedLoopChecks([[c["deviation"] for c in by_seed[s][0]] for s in seeds],
                            [[c["features"] for c in by_seed[s][0]] for s in seeds],
                            [by_seed[s][1] for s in seeds], list(seeds), period_s)
