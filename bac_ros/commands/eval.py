"""`bac eval`: closed-loop success per method on seeded grasp episodes (the franky-sim world, no ROS), with
speed, GFLOPs and action deviation from one bench run; table, JSON rows and a plot."""
from __future__ import annotations

import argparse
import functools
import json
from pathlib import Path

from ..analysis.eval_rows import ARGS_FILE, PARALLEL, resumed_arguments, write_eval
from ..analysis.eval_run import EpisodeLog
from ..analysis.runs import content_hash, provenance, write_json
from ..drift.guard import DriftMode
from ..policy.acs import DEFAULT_TOP_N
from ..policy.inference import BACKENDS, Backend
from ..policy.schedule import Method, Schedule, ScheduleError, schedule_dir, schedule_files
from ..robot.streaming import STITCHES, ChunkRules, stitch_of
from ..sim.episode_worker import EpisodeSpec, episode_modes, make_worker
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


def _schedules(args, cfg) -> list[tuple[str, int, str | None]]:
    """(method, S, schedule file or None for full) per row."""
    from ..policy.diffusion import SHIPPED_CHECKPOINTS

    own = getattr(args, "checkpoint", "auto") not in (*SHIPPED_CHECKPOINTS, "none")
    if own and not args.schedule_dir and any(m != Method.FULL for m in args.methods):
        raise SystemExit(f"--checkpoint {args.checkpoint} with the shipped schedules, calibrated on the shipped weights: "
                         f"calibrate yours (`bac schedule --checkpoint {args.checkpoint} --data <demos> --method bac "
                         f"--num-updates 7 --out-dir <dir>`) and pass --schedule-dir <dir>")
    directory = Path(args.schedule_dir) if args.schedule_dir else schedule_dir(cfg)
    try:
        return schedule_files(args.methods, args.num_updates, directory, cfg, args.similarity, args.top_n, args.reuse)
    except ScheduleError as e:
        raise SystemExit(f"{e}: make it with `bac schedule --config {args.config} --data <demos> --method ... "
                         f"--num-updates ... --similarity {args.similarity}` and pass its folder with --schedule-dir") \
            from None


def run(args) -> int:
    from ..policy import bench
    from ..sim.world import world_overrides

    if args.merge:  # rows of parallel runs (e.g. one per loopback host) into one table and plot
        rows = [r for f in args.merge for r in json.loads(Path(f).read_text())]
        write_eval(rows, output_dir(args, "eval", "merged"), args.margin)
        return 0
    if args.resume:
        try:
            args = argparse.Namespace(**{**vars(args), **resumed_arguments(Path(args.resume))})
        except FileNotFoundError as e:
            raise SystemExit(f"--resume: {e} (not a `bac eval` run folder)") from None
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
    log = EpisodeLog(out, identity)
    # Speed, FLOPs and action deviation: one bench run over all schedules, on recorded observations.
    image, state = observations(policy, args.bench_observations, args.seed + 1, args.data)
    brows = bench.run(policy, [s for s in schedules if s is not None], image, state, repeats=2, seed=args.seed,
                      with_runtime_full=False)
    modes = episode_modes(args.mode, args.latency_ms)
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    # one worker in this process reuses the loaded policy; processes and Ray actors load their own
    make = functools.partial(make_worker, EpisodeSpec.from_args(args), entries,
                             policy if args.workers <= 1 and not args.ray_address else None)
    log.run(entries, modes, seeds, make, args.workers, args.hostname, args.ray_address)
    commit = 0 if args.stitch == "ensemble" else cfg.n_action_steps if args.commit_steps is None else args.commit_steps
    run_fields = {"similarity": args.similarity, "top_n": args.top_n, "fixed_noise": args.fixed_noise,
                  "backend": args.backend, "stitch": args.stitch, "params": args.params,
                  "world": world_overrides(args.world), "drift": args.drift, "workers": args.workers,
                  "ray": bool(args.ray_address)}
    rows = log.rows(entries, schedules, modes, seeds, {(r["method"], r["num_updates"]): r for r in brows},
                    run_fields, commit, {"config": cfg.name, "weights": policy.weights_id, **provenance()})
    write_eval(rows, out, args.margin)
    return 0
