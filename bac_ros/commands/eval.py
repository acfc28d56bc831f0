"""`bac eval`: closed-loop success per method on seeded grasp episodes (the franky-sim world, no ROS), with
speed, GFLOPs and action deviation from one bench run; table, JSON rows and a plot."""
from __future__ import annotations

import functools
import json
import statistics
import sys
from pathlib import Path

from ..core.acs import DEFAULT_TOP_N
from ..core.inference import BACKENDS
from ..core.schedule import ACS_METHODS, Schedule, schedule_dir, schedule_file_name
from ..runs import content_hash, provenance, write_json
from .common import add_output_options, add_policy_options, comma_list, load_policy, observations, output_dir



def add_parser(sub) -> None:
    e = sub.add_parser("eval", help="closed-loop success per method on seeded grasp episodes")
    add_policy_options(e)
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed-start", type=int, default=0, help="first world seed (demonstrations use 100000..)")
    e.add_argument("--methods", type=comma_list(str), default=["full", "bac"],
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
    e.add_argument("--latency-ms", type=float, default=None,
                   help="real-time mode: pause the world while the policy infers and deliver each chunk this many ms "
                        "of robot time after its observation (emulates a machine with that inference time; "
                        "default: this machine's own compute time, the world running on)")
    e.add_argument("--backend", default="eager", choices=BACKENDS,
                   help="how the policy runs: eager PyTorch, ONNX Runtime (the whole inference compiled once per "
                        "schedule, cached), or a CUDA graph (--device cuda)")
    e.add_argument("--fixed-noise", action="store_true",
                   help="every inference of an episode starts from the same noise (default: fresh noise each time)")
    e.add_argument("--world", action="append", default=[], metavar="KEY=VALUE",
                   help="change the world (repeatable): camera_pos=1.0,0.1,0.65, camera_target=..., camera_fovy=52, "
                        "cube_rgba=0.1,0.3,0.9,1 (a shifted world for the drift guard)")
    e.add_argument("--drift", choices=["off", "watch", "guard"], default="off",
                   help="cached schedules: measure the drift guard's signal (watch), or also let the guard switch to "
                        "the dense schedule (guard; policy_node's dense_schedule and drift_* in --params)")
    e.add_argument("--bench-observations", type=int, default=16)
    e.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3 (127.0.0.x)")
    e.add_argument("--merge", type=comma_list(str), default=None,
                   help="no episodes: merge the JSON rows of earlier runs (comma list) into one table and plot")
    add_output_options(e, "rows (eval.json), table (eval.md) and plot (eval.png)")
    e.set_defaults(func=run)


def write(rows: list[dict], out: Path) -> None:
    from ..report import EVAL_COLUMNS, markdown, plot_drift, plot_success_vs_speedup

    table = markdown(rows, EVAL_COLUMNS)
    print(table)
    (out / "eval.md").write_text(table + "\n")
    write_json(out / "eval.json", rows)
    print(f"wrote {out / 'eval.md'}, {out / 'eval.json'}, {plot_success_vs_speedup(rows, out / 'eval.png')}")
    if any(r.get("drift_ratio_per_episode") for r in rows):
        print(f"wrote {plot_drift(rows, out / 'drift.png')}")


def _schedules(args, cfg) -> list[tuple[str, int, Schedule | None]]:
    directory = Path(args.schedule_dir) if args.schedule_dir else schedule_dir(cfg)
    entries = []
    for method in args.methods:
        if method == "full":
            entries.append(("full", cfg.num_steps, None))
            continue
        for s in args.num_updates:
            path = directory / schedule_file_name(method, s, args.similarity, top_n=args.top_n, reuse=args.reuse)
            if not path.is_file():
                raise SystemExit(f"no schedule {path}: make it with `bac schedule --config {args.config} --data "
                                 f"<demos> --method {method} --num-updates {s} --similarity {args.similarity}` "
                                 f"and pass its folder with --schedule-dir")
            entries.append((method, s, Schedule.load(path, cfg)))
    return entries


def run(args) -> int:
    from tqdm import tqdm

    from ..core import bench
    from ..core.settings import from_mapping, node_parameters
    from ..core.streaming import ChunkRules
    from ..report import EVAL_COLUMNS, markdown
    from ..robot.limits import ArmLimits
    from ..sim.episode import FreshWorld
    from ..sim.evaluate import run_realtime, run_sync
    from ..sim.world import WorldConfig, world_overrides

    if args.merge:  # rows of parallel runs (e.g. one per loopback host) into one table and plot
        rows = [r for f in args.merge for r in json.loads(Path(f).read_text())]
        write(rows, output_dir(args, "eval", "merged"))
        return 0
    policy = load_policy(args)
    cfg = policy.cfg
    entries = _schedules(args, cfg)
    params = node_parameters("controller_node", args.params)
    limits, rules = from_mapping(ArmLimits, params), from_mapping(ChunkRules, params)
    out = output_dir(args, "eval", f"{cfg.name}_{args.mode}")
    # Speed, FLOPs and action deviation: one bench run over all schedules, on recorded observations.
    image, state = observations(policy, args.bench_observations, args.seed + 1, args.data)
    brows = bench.run(policy, [e[2] for e in entries if e[2] is not None], image, state, repeats=2,
                      seed=args.seed, with_runtime_full=False)
    by_key = {(r["method"], r["num_updates"]): r for r in brows}
    modes = ["sync", "realtime"] if args.mode == "both" else [args.mode]
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    world_kw = world_overrides(args.world)  # ValueError: one line from cli.main, exit 2
    sim = FreshWorld(WorldConfig(hostname=args.hostname, image_size=cfg.encoder.image_shape[1], **world_kw), limits)
    commit = cfg.n_action_steps if args.commit_steps is None else args.commit_steps
    origin = {"config": cfg.name, "weights": policy.weights_id, **provenance()}
    rows = []
    try:
        for mode in modes:
            play = (functools.partial(run_sync, rules=rules) if mode == "sync" else
                    functools.partial(run_realtime, commit_steps=commit, rules=rules,
                                      latency_s=None if args.latency_ms is None else args.latency_ms / 1e3))
            for method, s, sched in entries:
                runner = _runner(policy, sched, args)
                eps, restarts, drift = [], sim.restarts, []
                sim.restart()  # every method starts on a fresh world
                bar = tqdm(seeds, desc=f"{mode} {method} S={s}", unit="ep", file=sys.stderr)
                for seed in bar:
                    n0 = len(runner.guard.history) if runner.guard else 0
                    eps.append(sim.run(lambda world, arm: play(world, arm, runner, seed, max_time=args.max_time),
                                       f"seed {seed}"))
                    if runner.guard:  # the episode ran each shadow check after its chunk
                        drift.append(runner.guard.history[n0:])
                    bar.set_postfix(success=f"{sum(e.success for e in eps)}/{len(eps)}")
                rows.append(_row(mode, method, s, sched, eps, by_key[(method, s)], seeds, args, commit,
                                 sim.restarts - restarts, origin, world_kw, drift))
                _warn(rows[-1])
                print(markdown(rows[-1:], EVAL_COLUMNS).splitlines()[-1], flush=True)
    finally:
        sim.close()
    write(rows, out)
    return 0


def _runner(policy, sched, args):
    """The runner of one row on --backend: with --drift, a cached schedule behind the drift guard (watching, or
    switching to policy_node's dense_schedule, both from --params)."""
    from ..core.drift import DriftSettings
    from ..core.runner import PolicyRunner
    from ..core.settings import from_mapping, node_parameters

    params = node_parameters("policy_node", args.params)
    try:
        return PolicyRunner(policy, sched, args.backend, seed=args.seed, fixed_noise=args.fixed_noise,
                            drift=args.drift, dense_schedule=params.get("dense_schedule", ""),
                            drift_settings=from_mapping(DriftSettings, params))
    except ValueError as e:
        raise SystemExit(f"--backend {args.backend} / --drift {args.drift}: {e}") from None


def _drift_fields(drift: list[list]) -> dict:
    """Per row, over the shadow checks (`drift.Check`): the drift guard's signal (median ratio per episode and
    overall), the reuse-error ratio, the share of checks on the dense schedule and in a warned state."""
    if not drift:
        return {}
    flat = [c for ep in drift for c in ep]
    median = lambda xs: float(statistics.median(xs)) if xs else float("nan")  # noqa: E731
    return {"drift_ratio_median": median([c.ratio for c in flat]),
            "drift_ratio_per_episode": [round(median([c.ratio for c in ep]), 3) for ep in drift],
            "reuse_ratio_median": median([c.reuse for c in flat]), "drift_checks": len(flat),
            "dense_share": sum(c.dense for c in flat) / max(1, len(flat)),
            "drift_warned_share": sum(c.state != "ok" for c in flat) / max(1, len(flat))}


def _row(mode, method, s, sched, eps, b, seeds, args, commit, world_restarts, origin, world=None,
         drift=None) -> dict:
    ms = [m for e in eps for m in e.inference_ms]
    return {"mode": mode, "method": method, "num_updates": s, "episodes": len(eps),
            "success_rate": sum(e.success for e in eps) / len(eps), "speedup": b["speedup"],
            "gflops": b["gflops"], "inference_hz": 1e3 / statistics.median(ms),
            "action_mse": b["action_mse"], "inference_ms_p95": float(sorted(ms)[int(0.95 * (len(ms) - 1))]),
            "seeds": [seeds[0], seeds[-1]],
            "similarity": args.similarity if method in ACS_METHODS else "cosine",
            "top_n": args.top_n if method == "bac" else None,
            "reuse": sched.reuse if sched is not None else None,
            # per episode, in seed order: which seeds each method solves (paired comparisons)
            "succeeded": [int(e.success) for e in eps],
            "fixed_noise": args.fixed_noise, "backend": args.backend,
            "commit_steps": commit if mode == "realtime" else None,
            "latency_ms": args.latency_ms if mode == "realtime" else None,
            "dropped_points_per_episode": statistics.fmean(e.dropped_points for e in eps),
            "pause_timeouts": sum(e.pause_timeouts for e in eps),
            "velocity_stops": sum(e.velocity_stops for e in eps),
            "velocity_stops_per_episode": [e.velocity_stops for e in eps],
            "workspace_refusals_per_episode": [e.workspace_refusals for e in eps],
            "world_restarts": world_restarts,
            "late_ms_max": max((m for e in eps for m in e.late_ms), default=0.0),
            "schedule_hash": content_hash(sched.source) if sched is not None and sched.source else None,
            "params": args.params or "config/grasp.yaml", "world": world or {}, "drift": args.drift,
            **_drift_fields(drift or []), **origin}


def _warn(row: dict) -> None:
    if row["velocity_stops"]:
        print(f"note: the arm was stopped {row['velocity_stops']} time(s) for a joint moving faster than its limit",
              file=sys.stderr)
    if row["pause_timeouts"]:
        print(f"warning: {row['pause_timeouts']} inferences outlasted the world's pause limit: the world stepped on "
              "while the policy thought (not a pure sync run)", file=sys.stderr)
