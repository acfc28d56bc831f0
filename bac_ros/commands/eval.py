"""`bac eval`: closed-loop success per method on seeded grasp episodes (the franky-sim world, no ROS), with
speed, GFLOPs and action deviation from one bench run; table, JSON rows and a plot."""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import statistics
import sys
from pathlib import Path

from ..drift.guard import DriftMode, DriftState
from ..policy.acs import DEFAULT_TOP_N
from ..policy.inference import BACKENDS, Backend
from ..policy.schedule import ACS_METHODS, Method, Schedule, schedule_dir, schedule_file_name
from ..analysis.stats import percentiles
from ..robot.streaming import STITCHES, ChunkRules, stitch_of
from ..analysis.runs import content_hash, provenance, write_json
from .common import add_output_options, add_policy_options, comma_list, load_policy, observations, output_dir



def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="closed-loop success per method on seeded grasp episodes")
    add_policy_options(e)
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed-start", type=int, default=0, help="first world seed (demonstrations use 100000..)")
    e.add_argument("--methods", type=comma_list(Method), default=[Method.FULL, Method.BAC],
                   help="comma list of full and the schedule methods (uniform, teacache, acs-unified, acs-blockwise, "
                        "bac)")
    e.add_argument("--num-updates", type=comma_list(int), default=[7], help="S values (comma list)")
    e.add_argument("--schedule-dir", default=None,
                   help="where the schedules are (default: the shipped schedules/<model>/; `bac schedule` output)")
    e.add_argument("--mode", choices=["sync", "realtime", "both"], default="sync")
    e.add_argument("--max-time", type=float, default=12.0, help="seconds of robot time per episode")
    e.add_argument("--top-n", type=int, default=DEFAULT_TOP_N,
                   help=f"bac: the Bubbling Union's n (schedule files _n<N>; default {DEFAULT_TOP_N})")
    e.add_argument("--similarity", choices=["cosine", "l1"], default="cosine",
                   help="which calibrated ACS schedules to use (files ending _l1 for l1)")
    e.add_argument("--reuse", choices=["copy", "forecast"], default="copy",
                   help="which schedules: those whose skipped blocks copy their last output, or forecast it "
                        "(_forecast)")
    e.add_argument("--commit-steps", type=int, default=None,
                   help="real-time mode: a chunk plays this many steps before the newest takes over (0: at once; "
                        "default: the policy's n_action_steps, as sync mode and the demonstrations)")
    e.add_argument("--params", default=None,
                   help="a ROS parameter file whose controller_node section sets the chunk rules and the safety "
                        "envelope (default: the package's config/grasp.yaml)")
    e.add_argument("--latency-ms", type=comma_list(float), default=None,
                   help="real-time mode: emulate a computer whose inference takes this many ms of robot time (comma "
                        "list: a sweep, every latency on the same seeds): the world holds while the policy infers and "
                        "the chunk reaches the controller that long after the policy started (default: this "
                        "machine's own compute time, the world running on)")
    e.add_argument("--stitch", default=None, choices=STITCHES,
                   help="real-time mode: how a new chunk takes over: switch (at once, from its first point still "
                        "due, after the playing one's commit), prefix (the same, denoised to continue what the arm "
                        "will still execute of the playing chunk), ensemble (every chunk at once, the target the "
                        "mean of those covering now; temporal ensembling). Default: what --params' controller_node "
                        "section makes (config/grasp.yaml: ensemble)")
    e.add_argument("--backend", default=Backend.EAGER, type=Backend, choices=BACKENDS,
                   help="how the policy runs: eager PyTorch, ONNX Runtime (the whole inference compiled once per "
                        "schedule, cached), or a CUDA graph (--device cuda)")
    e.add_argument("--fixed-noise", action="store_true",
                   help="every inference of an episode starts from the same noise (default: fresh noise each time)")
    e.add_argument("--world", action="append", default=[], metavar="KEY=VALUE",
                   help="change the world (repeatable): camera_pos=1.0,0.1,0.65, camera_target=..., camera_fovy=52, "
                        "cube_rgba=0.1,0.3,0.9,1, table_rgba=0.3,0.3,0.3,1 (a shifted world for the drift guard)")
    e.add_argument("--drift", choices=list(DriftMode), type=DriftMode, default=DriftMode.OFF,
                   help="cached schedules: measure the drift guard's signal (watch), or also let the guard switch to "
                        "the dense schedule (guard; policy_node's dense_schedule and drift_* in --params)")
    e.add_argument("--bench-observations", type=int, default=16)
    e.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3 (127.0.0.x)")
    e.add_argument("--margin", type=float, default=0.05,
                   help="non-inferiority margin for the paired comparison with full (default 0.05: 5 points)")
    e.add_argument("--workers", type=int, default=1,
                   help="episodes in N processes, each with its own simulator on its own loopback address from "
                        "--hostname on (127.0.0.x, x+1, ...); results merged as they finish")
    e.add_argument("--ray-address", default=None,
                   help="run the --workers as Ray actors: 'local' (a Ray of its own on this machine) or a cluster's "
                        "address (ray://head:10001; bac_ros and its checkpoint on every node)")
    e.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="finish an interrupted run: its arguments and finished episodes from RUN_DIR (episodes.jsonl); "
                        "--workers, --ray-address and --hostname from this command")
    e.add_argument("--merge", type=comma_list(str), default=None,
                   help="no episodes: merge the JSON rows of earlier runs (comma list) into one table and plot")
    add_output_options(e, "rows (eval.json), table (eval.md) and plot (eval.png)")
    e.set_defaults(func=run)


def write(rows: list[dict], out: Path, margin: float = 0.05) -> None:
    from ..analysis.report import (EVAL_COLUMNS, markdown, plot_drift, plot_success_vs_latency, plot_success_vs_speedup,
                          slow_clock_note)
    from .compare import pairs_text

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
    from ..analysis.compare import pairwise
    from ..analysis.report import method_label

    out = []
    group = lambda r: r["mode"] + (f" +{r['latency_ms']:g} ms" if r.get("latency_ms") is not None else "")  # noqa: E731
    for mode in dict.fromkeys(group(r) for r in rows):
        metrics: dict[str, list[dict]] = {}
        for r in rows:
            if group(r) != mode or "succeeded" not in r:
                continue
            label = Method.FULL if r["method"] == Method.FULL else f"{method_label(r)} S={r['num_updates']}"
            metrics.setdefault(label, []).extend(
                {"seed": seed, "success": bool(ok)} for seed, ok in zip(row_seeds(r), r["succeeded"]))
        if len(metrics) > 1:
            out += [{"mode": mode, **p} for p in pairwise(metrics, Method.FULL if Method.FULL in metrics else None, margin)]
    return out


def _schedules(args, cfg) -> list[tuple[str, int, str | None]]:
    """(method, S, schedule file or None for full) per row."""
    from ..policy.diffusion import SHIPPED_CHECKPOINTS

    own = getattr(args, "checkpoint", "auto") not in (*SHIPPED_CHECKPOINTS, "none")
    if own and not args.schedule_dir and any(m != Method.FULL for m in args.methods):
        raise SystemExit(f"--checkpoint {args.checkpoint} with the shipped schedules, calibrated on the shipped weights: "
                         f"calibrate yours (`bac schedule --checkpoint {args.checkpoint} --data <demos> --method bac "
                         f"--num-updates 7 --out-dir <dir>`) and pass --schedule-dir <dir>")
    directory = Path(args.schedule_dir) if args.schedule_dir else schedule_dir(cfg)
    entries = []
    for method in args.methods:
        if method == Method.FULL:
            entries.append((Method.FULL, cfg.num_steps, None))
            continue
        for s in args.num_updates:
            path = directory / schedule_file_name(method, s, args.similarity, top_n=args.top_n, reuse=args.reuse)
            if not path.is_file():
                raise SystemExit(f"no schedule {path}: make it with `bac schedule --config {args.config} --data "
                                 f"<demos> --method {method} --num-updates {s} --similarity {args.similarity}` "
                                 f"and pass its folder with --schedule-dir")
            entries.append((method, s, str(path.resolve())))
    return entries


ARGS_FILE, EPISODES_FILE = "eval_args.json", "episodes.jsonl"
PARALLEL = ("workers", "ray_address", "hostname", "resume", "out_dir")  # how a run runs, not what it measures


def _resumed(args):
    """The interrupted run's arguments, with this command's way of running them."""
    import argparse

    run_dir = Path(args.resume)
    saved = run_dir / ARGS_FILE
    if not saved.is_file():
        raise SystemExit(f"--resume {run_dir}: no {ARGS_FILE} there (not a `bac eval` run folder)")
    kept = {k: v for k, v in json.loads(saved.read_text()).items() if k not in PARALLEL}
    if isinstance(kept.get("latency_ms"), (int, float)):  # runs before the sweep took one latency
        kept["latency_ms"] = [float(kept["latency_ms"])]
    kept.setdefault("stitch", "switch")  # runs before --stitch played every chunk that way
    return argparse.Namespace(**{**vars(args), **kept, "out_dir": str(run_dir)})


def _done(path: Path, identity: dict) -> dict[tuple, dict]:
    """Finished episodes of this run (by (mode, method, S, seed)); refuses a log of another run."""
    done = {}
    if not path.is_file():
        return done
    lines = path.read_text().splitlines()
    if lines and json.loads(lines[0]).get("identity") != identity:
        raise SystemExit(f"{path} was written by a run with other arguments, weights or schedules: "
                         "resume it with its own arguments, or start a new run folder")
    for line in lines[1:]:
        try:
            e = json.loads(line)
        except json.JSONDecodeError:  # the line being written when the run was stopped
            continue
        done[(e["mode"], e["method"], e["num_updates"], e["seed"])] = e
    return done


def run(args) -> int:
    from tqdm import tqdm

    from ..policy import bench
    from ..sim.workers import Task, run_tasks

    if args.merge:  # rows of parallel runs (e.g. one per loopback host) into one table and plot
        rows = [r for f in args.merge for r in json.loads(Path(f).read_text())]
        write(rows, output_dir(args, "eval", "merged"), args.margin)
        return 0
    if args.resume:
        args = _resumed(args)
    policy = load_policy(args)
    cfg = policy.cfg
    entries = _schedules(args, cfg)
    schedules = [None if path is None else Schedule.load(path, cfg) for _, _, path in entries]
    out = output_dir(args, "eval", f"{cfg.name}_{args.mode}")
    if getattr(args, "stitch", None) is None:  # the controller's, as --params sets it; kept concrete for a resume
        from ..core.settings import from_mapping, node_parameters

        args.stitch = stitch_of(from_mapping(ChunkRules, node_parameters("controller_node", args.params)))
    spec = {k: v for k, v in vars(args).items() if k != "func"}
    write_json(out / ARGS_FILE, spec)
    if spec.get("stitch") == "switch":  # runs from before --stitch existed resume
        spec.pop("stitch")
    identity = {"weights": policy.weights_id, "rows": [(m, s, content_hash(sc.source) if sc else None)
                                                       for (m, s, _), sc in zip(entries, schedules)],
                **{k: v for k, v in spec.items() if k not in PARALLEL + ("episodes", "seed_start", "margin",
                                                                          "bench_observations")}}
    identity = json.loads(json.dumps(identity))  # as the log holds it
    log_path = out / EPISODES_FILE
    done = _done(log_path, identity)
    if not log_path.is_file():
        log_path.write_text(json.dumps({"identity": identity}) + "\n")
    # Speed, FLOPs and action deviation: one bench run over all schedules, on recorded observations.
    image, state = observations(policy, args.bench_observations, args.seed + 1, args.data)
    brows = bench.run(policy, [s for s in schedules if s is not None], image, state, repeats=2, seed=args.seed,
                      with_runtime_full=False)
    by_key = {(r["method"], r["num_updates"]): r for r in brows}
    modes = episode_modes(args.mode, args.latency_ms)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    # seed-major: an interrupted run leaves whole pairs
    tasks = [Task(mode, i, seed) for seed in seeds for mode in modes for i in range(len(entries))]
    key = lambda t: (t.mode, entries[t.row][0], entries[t.row][1], t.seed)  # noqa: E731
    todo = [t for t in tasks if key(t) not in done]
    if done:
        print(f"resuming {out}: {len(tasks) - len(todo)} of {len(tasks)} episodes done", file=sys.stderr)
    # one worker in this process reuses the loaded policy; processes and Ray actors load their own
    make = functools.partial(make_worker, spec, entries, policy if args.workers <= 1 and not args.ray_address
                             else None)
    bar = tqdm(total=len(tasks), initial=len(tasks) - len(todo), unit="ep", file=sys.stderr)
    tally = {}
    for e in done.values():
        tally.setdefault(e["method"] + str(e["num_updates"]), []).append(e["success"])
    with log_path.open("a") as log:
        for task, result in run_tasks(todo, make, args.workers, args.hostname, args.ray_address):
            method, s, _ = entries[task.row]
            e = {"mode": task.mode, "method": method, "num_updates": s, **result}
            log.write(json.dumps(e) + "\n")
            log.flush()
            done[key(task)] = e
            tally.setdefault(method + str(s), []).append(e["success"])
            bar.update()
            bar.set_postfix_str(" ".join(f"{k} {sum(v)}/{len(v)}" for k, v in tally.items()))
    bar.close()
    origin = {"config": cfg.name, "weights": policy.weights_id, **provenance()}
    rows = []
    commit = 0 if args.stitch == "ensemble" else cfg.n_action_steps if args.commit_steps is None else args.commit_steps
    for mode in modes:
        for i, (method, s, _) in enumerate(entries):
            eps = [done[(mode, method, s, seed)] for seed in seeds]
            rows.append(_row(mode, method, s, schedules[i], eps, by_key[(method, s)], seeds, args, commit, origin))
            _warn(rows[-1])
    write(rows, out, args.margin)
    return 0


class EpisodeWorker:
    """`bac eval`'s episodes on one simulator (one loopback address): the policy, a runner per row, the world."""

    def __init__(self, spec: dict, entries, policy, hostname: str):
        import argparse

        from ..core.settings import from_mapping, node_parameters
        from ..robot.streaming import CONTROL_RATE_HZ, ChunkRules
        from ..robot.limits import ArmLimits
        from ..sim.episode import FreshWorld
        from ..sim.world import WorldConfig, world_overrides

        self.args = args = argparse.Namespace(**spec)
        self.policy = policy if policy is not None else load_policy(args)
        cfg = self.policy.cfg
        self.schedules = [None if path is None else Schedule.load(path, cfg) for _, _, path in entries]
        params = node_parameters("controller_node", args.params)
        self.rules = from_mapping(ChunkRules, params)
        self.control_rate_hz = float(params.get("control_rate_hz", CONTROL_RATE_HZ))
        self.runners: dict[int, object] = {}
        self.policy_params = _policy_params(args)
        self.check_period_s = _check_period_s(self.policy_params)
        world = WorldConfig(hostname=hostname, image_size=cfg.encoder.image_shape[1], **world_overrides(args.world))
        self.sim = FreshWorld(world, from_mapping(ArmLimits, params))

    def run(self, task) -> dict:
        from ..sim.evaluate import run_realtime, run_sync

        args, cfg = self.args, self.policy.cfg
        if task.row not in self.runners:
            self.runners[task.row] = _runner(self.policy, self.schedules[task.row], args, self.policy_params)
        runner = self.runners[task.row]
        # sync: one inference per chunk; real time: one per observation, every dt. The guard checks as far
        # apart in robot time as policy_node's (in sync at every inference, not every drift_check_every-th chunk)
        runner.pace(cfg.chunk_period_s if task.mode == "sync" else cfg.action_dt, self.check_period_s)
        if runner.guard is not None:  # a reference being measured keeps the encoder's features of each check
            runner.guard.record_features = bool(getattr(args, "drift_features", False))
        mode, latency_ms = split_mode(task.mode)
        if mode == "sync":
            play = functools.partial(run_sync, rules=self.rules)
        else:
            play = functools.partial(run_realtime, rules=self.rules,
                                     commit_steps=cfg.n_action_steps if args.commit_steps is None else args.commit_steps,
                                     latency_s=None if latency_ms is None else latency_ms / 1e3,
                                     control_rate_hz=self.control_rate_hz,
                                     stitch=args.stitch)
        n0 = len(runner.guard.history) if runner.guard else 0
        restarts = self.sim.restarts
        ep = self.sim.run(lambda world, arm: play(world, arm, runner, task.seed, max_time=args.max_time),
                          f"seed {task.seed}")
        checks = [dataclasses.asdict(c) for c in runner.guard.history[n0:]] if runner.guard else None
        return {**dataclasses.asdict(ep), "world_restarts": self.sim.restarts - restarts, "drift": checks}

    def close(self) -> None:
        self.sim.close()


def make_worker(spec: dict, entries, policy, hostname: str) -> EpisodeWorker:
    return EpisodeWorker(spec, entries, policy, hostname)


def _policy_params(args) -> dict:
    """policy_node's section of --params, with the drift settings a caller overrides (`drift_overrides`)."""
    from ..core.settings import node_parameters

    return {**node_parameters("policy_node", args.params), **getattr(args, "drift_overrides", {})}


def _check_period_s(params: dict) -> float:
    """Robot seconds between policy_node's shadow checks (`_policy_params`): drift_check_every inferences at
    rate_hz."""
    from ..drift.guard import DriftSettings
    from ..policy.runner import RATE_HZ
    from ..core.settings import from_mapping

    return from_mapping(DriftSettings, params).drift_check_every / float(params.get("rate_hz", RATE_HZ))


def episode_modes(mode: str, latencies_ms: list[float] | None) -> list[str]:
    """The episode modes of a run: sync, realtime (live), or realtime+<L>ms per emulated latency."""
    realtime = ["realtime"] if not latencies_ms else [f"realtime+{L:g}ms" for L in latencies_ms]
    return {"sync": ["sync"], "realtime": realtime, "both": ["sync", *realtime]}[mode]


def split_mode(mode: str) -> tuple[str, float | None]:
    """'realtime+35ms' -> ('realtime', 35.0); 'sync' -> ('sync', None)."""
    base, _, latency = mode.partition("+")
    return base, float(latency.removesuffix("ms")) if latency else None


def _runner(policy, sched, args, params: dict):
    """The runner of one row on --backend: with --drift, a cached schedule behind the drift guard (watching, or
    switching to policy_node's dense_schedule; `params`: policy_node's, `_policy_params`)."""
    from ..drift.guard import DriftSettings
    from ..policy.runner import PolicyRunner
    from ..core.settings import from_mapping

    try:
        return PolicyRunner(policy, sched, args.backend, seed=args.seed, fixed_noise=args.fixed_noise,
                            drift=args.drift, dense_schedule=params.get("dense_schedule", ""),
                            drift_settings=from_mapping(DriftSettings, params))
    except ValueError as e:
        raise SystemExit(f"--backend {args.backend} / --drift {args.drift}: {e}") from None


def _drift_fields(drift: list[list[dict]]) -> dict:
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


def _row(mode, method, s, sched, eps: list[dict], b, seeds, args, commit, origin) -> dict:
    """One table row from its episodes (dicts, in seed order); `mode` as `episode_modes`."""
    from ..sim.world import world_overrides

    mode, latency_ms = split_mode(mode)
    ms = [m for e in eps for m in e["inference_ms"]]
    drift = [e["drift"] for e in eps if e.get("drift") is not None]
    return {"mode": mode, "method": method, "num_updates": s, "episodes": len(eps),
            "success_rate": sum(e["success"] for e in eps) / len(eps), "speedup": b["speedup"],
            "gflops": b["gflops"], "inference_hz": 1e3 / statistics.median(ms),
            "action_mse": b["action_mse"], "inference_ms_p95": float(sorted(ms)[int(0.95 * (len(ms) - 1))]),
            "seeds": [seeds[0], seeds[-1]], "seed_list": list(seeds),
            "similarity": args.similarity if method in ACS_METHODS else "cosine",
            "top_n": args.top_n if method == Method.BAC else None,
            "reuse": sched.reuse if sched is not None else None,
            # per episode, in seed order: which seeds each method solves (paired comparisons)
            "succeeded": [int(e["success"]) for e in eps],
            "fixed_noise": args.fixed_noise, "backend": args.backend,
            "commit_steps": commit if mode == "realtime" else None,
            "latency_ms": latency_ms,
            # realtime: robot ms from observation to the first command of its chunk, and to the controller
            # (metrics_node's latency and obs_to_chunk in the graph), and the world's speed
            "obs_to_command_ms": percentiles(m for e in eps for m in e.get("latency_ms") or []),
            "obs_to_chunk_ms": percentiles(m for e in eps for m in e.get("obs_to_chunk_ms") or []),
            "sim_realtime_factor": (statistics.fmean(e["realtime_factor"] for e in eps)
                                    if mode == "realtime" and all(e.get("realtime_factor") for e in eps) else None),
            "stitch": args.stitch if mode == "realtime" else None,
            # realtime: around chunk switches (`switch_smoothness`), over the episodes
            **_smoothness_fields(eps),
            "dropped_points_per_episode": statistics.fmean(e["dropped_points"] for e in eps),
            "pause_timeouts": sum(e["pause_timeouts"] for e in eps),
            "velocity_stops": sum(e["velocity_stops"] for e in eps),
            "velocity_stops_per_episode": [e["velocity_stops"] for e in eps],
            "workspace_refusals_per_episode": [e["workspace_refusals"] for e in eps],
            "world_restarts": sum(e["world_restarts"] for e in eps),
            "late_ms_max": max((m for e in eps for m in e["late_ms"]), default=0.0),
            "schedule_hash": content_hash(sched.source) if sched is not None and sched.source else None,
            "params": args.params or "config/grasp.yaml", "world": world_overrides(args.world), "drift": args.drift,
            "workers": args.workers, "ray": bool(args.ray_address), **_drift_fields(drift), **origin}


def _smoothness_fields(eps: list[dict]) -> dict:
    """Medians over episodes of the target step at a switch (rad) and the RMS jerk around one (rad/s^3), and the
    velocity reversals per switch over all switches; None where no episode switched."""
    def median(key):
        v = [e[key] for e in eps if e.get(key) is not None]
        return statistics.median(v) if v else None

    n = sum(e.get("switches") or 0 for e in eps)
    rev = sum((e.get("switch_reversals") or 0) * (e.get("switches") or 0) for e in eps)
    return {"switch_jump_rad": median("switch_jump_rad"), "switch_jerk": median("switch_jerk"),
            "switch_reversals": rev / n if n else None, "switches_per_episode": n / len(eps)}


def _warn(row: dict) -> None:
    if row["velocity_stops"]:
        print(f"note: the arm was stopped {row['velocity_stops']} time(s) for a joint moving faster than its limit",
              file=sys.stderr)
    if row["pause_timeouts"]:
        print(f"warning: {row['pause_timeouts']} inferences outlasted the world's pause limit: the world stepped on "
              "while the policy thought (not a pure sync run)", file=sys.stderr)
