"""`bac schedule`: calibrate caching schedules (JSON, with an update-map PNG for static ones)."""
from __future__ import annotations

import sys
from pathlib import Path

from ..drift.reference import SHADOW_STATISTIC
from ..policy.acs import DEFAULT_TOP_N
from ..policy.schedule import ACS_METHODS, METHODS, Method, schedule_file_name
from ..robot.streaming import Source
from .common import add_output_options, add_policy_options, comma_list, load_policy, observations, output_dir


REFERENCE_OBS = 32  # observations the drift guard's reference is measured on


def add_parser(sub) -> None:
    s = sub.add_parser("schedule", help="calibrate and write caching schedules (JSON + update-map PNG)")
    add_policy_options(s)
    s.add_argument("--method", type=comma_list(Method), default=[Method.BAC], help=f"comma list of {', '.join(METHODS)}")
    s.add_argument("--num-updates", type=comma_list(int), help="S: updates per block (comma list)")
    s.add_argument("--top-n", type=comma_list(int), default=[DEFAULT_TOP_N],
                   help="bubbling-union blocks (bac; comma list: one schedule each, files suffixed _n<N>)")
    s.add_argument("--force-last", action="store_true", help="every block also updates at the final step")
    s.add_argument("--similarity", choices=["cosine", "l1"], default="cosine",
                   help="what the ACS dynamic program maximises: cosine (the paper's) or 1 - relative L1 error")
    s.add_argument("--reuse", choices=["copy", "forecast"], default="copy",
                   help="what a skipped block adds: its last output (copy, the paper's) or that extrapolated from its "
                        "last two (forecast: per-block ACS then scores the forecast, not the copy); files end _forecast")
    s.add_argument("--observations", type=int, default=64, help="calibration observations")
    s.add_argument("--teacache-observations", type=int, default=8, help="observations for the threshold search")
    s.add_argument("--out", help="output file (one schedule)")
    s.add_argument("--reference", nargs="+", metavar="FILE",
                   help="instead of calibrating: measure these schedules' drift-guard references (shadow deviation, "
                        "reuse error) on the observations and write them into each file")
    s.add_argument("--closed-loop", type=int, default=0, metavar="EPISODES",
                   help="with --reference: also the guard's closed-loop reference, on this many sync episodes of the "
                        "calibration world run by each schedule itself (a shadow check at every inference)")
    s.add_argument("--closed-loop-seed-start", type=int, default=400000,
                   help="first world seed of those episodes (apart from evaluation 0.., demonstrations 100000..)")
    s.add_argument("--max-time", type=float, default=10.0, help="closed loop: seconds of robot time per episode")
    s.add_argument("--workers", type=int, default=1, help="closed loop: episodes in this many processes")
    s.add_argument("--hostname", default="127.0.0.1", help="closed loop: the first simulator's loopback address")
    s.add_argument("--params", default=None, help="closed loop: the parameter file (default config/grasp.yaml)")
    s.add_argument("--closed-loop-bags", metavar="FOLDER",
                   help="with --reference: the closed-loop reference from recorded episodes of the policy playing "
                        "(recorder_node's bags and index.jsonl, e.g. on your arm) instead of simulated ones: a shadow "
                        "check at the observation of every chunk it published")
    s.add_argument("--image-roi", type=comma_list(int), default=None, metavar="X,Y,W,H",
                   help="with --closed-loop-bags: the crop policy_node ran with (its image_roi)")
    add_output_options(s, "schedules (to ship one: copy it into schedules/<model>/)")
    s.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..analysis.render import plot_update_map
    from ..policy import calibrate
    from ..policy.calibrate import measure_reference

    if args.reference:
        return add_reference(args)
    methods, sizes = args.method, args.num_updates or [None]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    if args.out and (len(methods) * len(sizes) != 1 or (len(args.top_n) != 1 and "bac" in methods)):
        raise SystemExit("--out names one file: give one method, one --num-updates and one --top-n, or use --out-dir")
    policy = load_policy(args)
    cfg = policy.cfg
    image, state = observations(policy, args.observations, args.seed, args.data)
    stats = None
    if any(m in ACS_METHODS for m in methods):
        with tqdm(total=image.shape[0], desc="calibrating", unit="obs", file=sys.stderr) as bar:
            stats = calibrate.collect(policy, image, state, seed=args.seed, progress=bar.update,
                                      gram=args.reuse == "forecast")
    out_dir = None if args.out else output_dir(args, "schedule", cfg.name)
    made = []
    for method, s, top_n in [(m, s, n) for m in methods for s in sizes
                             for n in (args.top_n if m == Method.BAC else [DEFAULT_TOP_N])]:
        if method != Method.FULL and s is None:
            raise SystemExit(f"method '{method}' needs --num-updates")
        sched = calibrate.make_schedule(policy, method, s, stats, top_n=top_n, force_last=args.force_last,
                                        image=image[: args.teacache_observations],
                                        state=state[: args.teacache_observations], seed=args.seed,
                                        similarity=args.similarity, reuse=args.reuse)
        made.append((sched, Path(args.out) if args.out else out_dir / schedule_file_name(
            method, sched.num_updates, args.similarity, args.force_last, top_n, sched.reuse)))
    # the drift guard's references, for every calibrated static schedule at once (one full run per observation)
    referenced = [s for s, _ in made if s.calibration is not None and not s.is_dynamic]
    for sched, ref in zip(referenced, measure_reference(policy, referenced, image[:REFERENCE_OBS],
                                                        state[:REFERENCE_OBS], args.seed)):
        sched.calibration.update(ref)
    for sched, out in made:
        sched.save(out)
        extra = "" if sched.is_dynamic else f", map {plot_update_map(sched, out.with_suffix('.png'))}"
        print(f"{sched.label}: mean updates per block {sched.mean_updates():.2f} of {cfg.num_steps} -> {out}{extra}")
    return 0


def add_reference(args) -> int:
    """`--reference FILE...`: each schedule's drift references (calibration.shadow_deviation, .reuse_error)
    measured and written back in place; with --closed-loop or --closed-loop-bags its closed-loop reference too."""
    from ..policy.calibrate import drop_stale_closed_loop, measure_reference
    from ..policy.schedule import Schedule

    policy = load_policy(args)
    schedules = [Schedule.load(path, policy.cfg) for path in args.reference]
    for path, sched in zip(args.reference, schedules):
        if sched.is_dynamic or sched.method == Method.FULL:
            raise SystemExit(f"{path}: the drift guard's reference is for cached static schedules, not {sched.method}")
    looped = args.closed_loop > 0 or bool(args.closed_loop_bags)
    for path, sched in zip(args.reference, schedules):
        # a current one is replaced only once measured again below (a failed run loses nothing)
        if drop_stale_closed_loop(sched):
            sched.save(path)
            if not looped:
                print(f"{path}: its closed-loop reference was measured on another statistic and is dropped; "
                      "measure it again with --closed-loop 20", file=sys.stderr)
    if not looped or any(not (s.calibration or {}).get("reuse_error")
                         or (s.calibration.get("shadow_deviation") or {}).get("statistic") != SHADOW_STATISTIC
                         for s in schedules):
        image, state = observations(policy, min(args.observations, REFERENCE_OBS), args.seed, args.data)
        for path, sched, ref in zip(args.reference, schedules, measure_reference(policy, schedules, image, state,
                                                                                 args.seed)):
            sched.calibration = {**(sched.calibration or {}), **ref}
            sched.save(path)
            dev, reuse = ref["shadow_deviation"], ref["reuse_error"]
            print(f"{sched.label}: shadow deviation median {dev['median']:.3e} (p95 {dev['p95']:.3e}), reuse error "
                  f"mean {reuse['mean']:.4f} over {dev['observations']} observations -> {path}")
    for path, sched in zip(args.reference, schedules) if looped else ():
        closed_loop(args, policy, path, sched)
    return 0


def closed_loop(args, policy, path: str, sched) -> None:
    """The closed-loop reference of one schedule, written into its file: from `args.closed_loop` sync episodes of
    the calibration world run by the schedule, or from `--closed-loop-bags` (recorded episodes of the policy
    playing, cropped as `--image-roi`); the CUSUM thresholds it gives at the parameter file's settings printed."""
    from ..core.images import check_roi
    from ..core.settings import node_parameters
    from ..data.bags import complete_rows, read_index
    from ..policy.calibrate import add_closed_loop_reference, recorded_checks
    from ..sim.episode_worker import EpisodeSpec, closed_loop_checks

    say = lambda line: print(f"  {sched.label} {line}", file=sys.stderr, flush=True)  # noqa: E731
    if args.closed_loop_bags:
        check_roi(args.image_roi, "--image-roi")
        folder, source = Path(args.closed_loop_bags), f"recorded episodes in {args.closed_loop_bags}"
        rows = [r for r in complete_rows(read_index(folder), "bac schedule") if r.get("source") == Source.POLICY]
        if len(rows) < 2:
            raise SystemExit(f"{folder}: {len(rows)} recorded episode(s) of the policy playing; the reference needs "
                             "two or more (record them with recorder_node while policy_node plays)")
        got = recorded_checks(policy, sched, rows, args.image_roi, args.seed, say)
        if len(got.deviations) < 2:
            raise SystemExit(f"{folder}: fewer than two episodes with the observations of their chunks")
    else:
        source, seeds = "", list(range(args.closed_loop_seed_start, args.closed_loop_seed_start + args.closed_loop))
        spec = EpisodeSpec(args.config, args.checkpoint, args.seed, args.threads, args.device, args.params,
                           max_time=args.max_time)
        got = closed_loop_checks(spec, sched, path, seeds, policy.cfg.chunk_period_s, policy, args.workers,
                                 args.hostname, say)  # sync episodes: a check per chunk period
    demo_median = (sched.calibration or {}).get("shadow_deviation", {}).get("median")
    loop, seen, h, every_s = add_closed_loop_reference(sched, got, node_parameters("policy_node", args.params),
                                                       source)
    sched.save(path)
    vs = f" ({loop['median'] / demo_median:.2f}x the demonstrations')" if demo_median else ""
    print(f"{sched.label}: closed-loop shadow deviation median {loop['median']:.3e}{vs}, ln sd {loop['log_sd']:.2f}, "
          f"{loop['checks']} checks in {len(got.names)} episodes ({sum(got.solved)} successful); observation "
          f"distance ln sd {seen['log_sd']:.2f} (scored on {seen['folds']} folds of episodes); CUSUM thresholds at "
          f"the settings of {args.params or 'config/grasp.yaml'} (a check every {every_s:.2f} s of robot time, on "
          f"the successful episodes): shadow {h[0]:.2f}, observation "
          f"{f'{h[1]:.2f}' if h[1] != float('inf') else 'off (drift_signals)'} -> {path}")
