"""`bac` command line: schedule | bench | record | train | eval | demo | report."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .core.acs import DEFAULT_TOP_N
from .core.config import PACKAGE_ROOT, ConfigError, PolicyConfig
from .core.schedule import METHODS, Schedule, ScheduleError

SCHEDULE_DIR = PACKAGE_ROOT / "schedules"
ACS_METHODS = ("acs-unified", "acs-blockwise", "bac")  # calibrated by the ACS dynamic program


def _csv(kind):
    def parse(text: str):
        return [kind(x) for x in text.split(",") if x.strip()]
    return parse


def _load_policy(args):
    import torch

    from .core.policy import DiffusionPolicy, resolve_checkpoint

    cfg = PolicyConfig.load(args.config)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if args.threads:
        torch.set_num_threads(args.threads)
    return DiffusionPolicy.build(cfg, resolve_checkpoint(cfg, args.checkpoint), seed=args.seed)


def _observations(policy, n: int, seed: int, data: str | None = None):
    """`n` observation windows: random windows of recorded demonstrations when `data` is given (real
    features), else random images and states of the right shapes (for untrained models)."""
    from .core.policy import synthetic_observations

    if not data:
        return synthetic_observations(policy.cfg, n, seed)
    import numpy as np

    from .core.train import to_tensors
    from .sim.dataset import Demos, WindowSampler

    sampler = WindowSampler(Demos(data), policy.cfg.horizon, policy.cfg.n_obs_steps)
    ids = np.random.default_rng(seed).choice(len(sampler), size=min(n, len(sampler)), replace=False)
    image, state, _ = to_tensors(*sampler.batch(ids))
    return image, state


def plot_update_map(schedule: Schedule, path: Path) -> Path:
    """PNG of the per-block update steps: rows = blocks in forward order, columns = steps."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ids = list(schedule.blocks)
    grid = schedule.update_mask(ids).T.astype(float)
    bua = set((schedule.bua or {}).get("blocks", []))
    fig, ax = plt.subplots(figsize=(max(4, schedule.num_steps * 0.12 + 2), len(ids) * 0.22 + 1.2))
    ax.imshow(grid, aspect="auto", cmap="Greys", vmin=0, vmax=1.4, interpolation="nearest")
    ax.set_yticks(np.arange(len(ids)), [f"{b} *" if b in bua else b for b in ids], fontsize=7)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("denoising step (0 = noisiest)")
    ax.set_title(f"{schedule.label}: {int(grid.sum())} block updates of {grid.size} "
                 f"(* = bubbling-union block)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def cmd_schedule(args) -> int:
    from tqdm import tqdm

    from .core import calibrate

    policy = _load_policy(args)
    cfg = policy.cfg
    methods, sizes = args.method, args.num_updates or [None]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method(s) {bad}; choose from {list(METHODS)}")
    if args.out and len(methods) * len(sizes) != 1:
        raise SystemExit("--out names one file: give one method and one --num-updates, or use --out-dir")
    image, state = _observations(policy, args.observations, args.seed, args.data)
    stats = None
    if any(m in ("acs-unified", "acs-blockwise", "bac") for m in methods):
        with tqdm(total=image.shape[0], desc="calibrating", unit="obs", file=sys.stderr) as bar:
            stats = calibrate.collect(policy, image, state, seed=args.seed, progress=bar.update)
    if args.out and len(args.top_n) != 1 and "bac" in methods:
        raise SystemExit("--out names one file: give one --top-n, or use --out-dir")
    for method, s, top_n in [(m, s, n) for m in methods for s in sizes
                             for n in (args.top_n if m == "bac" else [DEFAULT_TOP_N])]:
        if method != "full" and s is None:
            raise SystemExit(f"method '{method}' needs --num-updates")
        sched = calibrate.make_schedule(policy, method, s, stats, top_n=top_n, force_last=args.force_last,
                                        image=image[: args.teacache_observations],
                                        state=state[: args.teacache_observations], seed=args.seed,
                                        similarity=args.similarity)
        out = Path(args.out) if args.out else _schedule_file(cfg, method, sched.num_updates, Path(args.out_dir),
                                                              args.similarity, args.force_last, top_n)
        sched.save(out)
        extra = ""
        if not sched.is_dynamic:
            extra = f", map {plot_update_map(sched, out.with_suffix('.png'))}"
        print(f"{sched.label}: mean updates per block {sched.mean_updates():.2f} of {cfg.num_steps} -> {out}{extra}")
    return 0


def _schedules_for(cfg: PolicyConfig, paths: list[str] | None) -> list[Schedule]:
    if paths:
        return [Schedule.load(p, cfg) for p in paths]
    found = []
    for p in sorted(SCHEDULE_DIR.glob("*.json")):
        try:
            found.append(Schedule.load(p, cfg))
        except ScheduleError:
            continue  # made for another model
    if not found:
        raise SystemExit(f"no schedule in {SCHEDULE_DIR} fits config '{cfg.name}': make one with `bac schedule`")
    return found


def cmd_bench(args) -> int:
    from tqdm import tqdm

    from .core import bench

    policy = _load_policy(args)
    cfg = policy.cfg
    schedules = _schedules_for(cfg, args.schedule)
    image, state = _observations(policy, args.observations, args.seed + 1, args.data)  # not the calibration set
    print(f"config {cfg.name} ({cfg.n_layer} layers, n_emb {cfg.n_emb}, {cfg.sampler.type} K={cfg.num_steps}), "
          f"weights {policy.weights_id}, {args.observations} observations x {args.repeats} repeats, "
          f"torch threads {__import__('torch').get_num_threads()}")
    total = args.observations * args.repeats
    with tqdm(total=total, desc="bench", unit="obs", file=sys.stderr) as bar:
        rows = bench.run(policy, schedules, image, state, repeats=args.repeats, seed=args.seed,
                         progress=bar.update)
    print(bench.format_table(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps([{k: r[k] for k in (*bench.ROW_KEYS, "variant", "mean_updates", "hz")}
                                               for r in rows], indent=1))
        print(f"wrote {args.json}")
    if args.profile:
        print()
        print(bench.profile(policy, schedules, image, state))
    return 0


def cmd_record(args) -> int:
    import time

    from tqdm import tqdm

    from .sim.arm import Arm
    from .sim.dataset import DemoWriter
    from .sim.episode import run_expert
    from .sim.kinematics import FR3Kinematics
    from .sim.world import WorldConfig, WorldProcess

    cfg = PolicyConfig.load(args.config)
    size = cfg.encoder.image_shape[1]
    dt = cfg.action_dt
    kin = FR3Kinematics()
    writer = DemoWriter(args.out, (size, size, 3), dt)
    ok = 0
    t0 = time.monotonic()
    with WorldProcess(WorldConfig(hostname=args.hostname, image_size=size)) as world, Arm(args.hostname) as arm:
        bar = tqdm(range(args.seed_start, args.seed_start + args.episodes), desc="expert", unit="ep", file=sys.stderr)
        for seed in bar:
            r = run_expert(world, arm, seed, dt, kin)
            writer.add_episode(seed, r.success, [s.image for s in r.steps], [s.state for s in r.steps],
                               [s.action for s in r.steps], [s.t_sim for s in r.steps])
            ok += r.success
            bar.set_postfix(success=f"{ok}/{seed - args.seed_start + 1}")
        arm_errors = len(arm.errors)
    n = args.episodes
    print(f"expert success {ok}/{n} = {ok / n:.1%} (seeds {args.seed_start}..{args.seed_start + n - 1}), "
          f"{time.monotonic() - t0:.0f} s, arm errors {arm_errors} -> {args.out}")
    return 0


def cmd_train(args) -> int:
    import torch
    from tqdm import tqdm

    from .core.policy import DiffusionPolicy
    from .core.train import TrainConfig, train
    from .sim.dataset import Demos, WindowSampler

    cfg = PolicyConfig.load(args.config)
    torch.set_num_threads(args.threads or 2)
    demos = Demos(args.data)
    if demos.num_episodes == 0:
        raise SystemExit(f"{args.data}: no successful episodes to train on")
    tcfg = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       time_budget_s=args.time_budget * 60,
                       **({"shift": args.shift} if args.shift is not None else {}),
                       **({"noise_samples": args.noise_samples} if args.noise_samples is not None else {}))
    torch.manual_seed(args.seed)
    windows = WindowSampler(demos, cfg.horizon, cfg.n_obs_steps)
    if args.init:  # fine-tune: the checkpoint's weights and normalisers (warm start across n_obs_steps)
        policy, fresh = DiffusionPolicy.warm_start(args.init, cfg)
        if fresh:
            print(f"warm start from {args.init}: freshly initialised {', '.join(fresh)}")
    else:
        policy = DiffusionPolicy(cfg)
        policy.fit_normalizers(demos.state, *windows.states_and_actions())
    print(f"training {cfg.name} on {demos.num_episodes}/{demos.total_episodes} successful episodes "
          f"({len(demos)} steps), {tcfg.iterations} iterations x batch {tcfg.batch_size}, "
          f"{sum(p.numel() for p in policy.parameters()) / 1e6:.2f} M parameters")
    with tqdm(total=tcfg.iterations, desc="train", unit="it", file=sys.stderr) as bar:
        def progress(i, loss):
            bar.update(1)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
        log = train(policy, windows, tcfg, args.out, progress)
    note = " (iterations cut to fit the time budget)" if log["cut_to_time_budget"] else ""
    print(f"{log['iterations_done']} iterations in {log['seconds'] / 60:.1f} min{note}; final loss "
          f"{log['final_loss_mean_100']:.4f}; EMA checkpoint -> {args.out}")
    return 0


def _schedule_file(cfg: PolicyConfig, method: str, s: int, directory: Path, similarity: str = "cosine",
                   force_last: bool = False, top_n: int = DEFAULT_TOP_N) -> Path:
    """Where `bac schedule` writes a schedule and `bac eval` looks for it."""
    suffix = "_last" if force_last and method != "full" else ""
    if similarity != "cosine" and method in ACS_METHODS:
        suffix += f"_{similarity}"
    if method == "bac" and top_n != DEFAULT_TOP_N:
        suffix += f"_n{top_n}"
    return directory / f"{cfg.name}_{method}_s{s}{suffix}.json"


def _write_eval(rows: list[dict], out_dir: str, stem: str, json_path: str | None) -> None:
    from .sim.report import markdown_table, plot_success_vs_speedup

    table = markdown_table(rows)
    print(table)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text(table + "\n")
    plot = plot_success_vs_speedup(rows, out / f"{stem}.png")
    if json_path:
        Path(json_path).write_text(json.dumps(rows, indent=1))
    (out / f"{stem}.json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out / (stem + '.md')}, {out / (stem + '.json')}, {plot}")


class _FreshWorld:
    """A grasp world and its arm client, restartable: a world that cannot reset its arm any more is
    replaced (counted in the rows as world_restarts)."""

    def __init__(self, cfg, controller_params: dict):
        self.cfg, self.world, self.arm, self.restarts = cfg, None, None, 0
        self.params = controller_params

    def restart(self, count: bool = False) -> None:
        from .sim.arm import Arm, ArmLimits
        from .sim.world import WorldProcess

        self.close()
        self.world = WorldProcess(self.cfg).start()
        # the controller's safety envelope (config/grasp.yaml): evaluated as the robot would run
        self.arm = Arm(self.cfg.hostname, ArmLimits.from_params(self.params)).start()
        self.restarts += count

    def close(self) -> None:
        if self.arm is not None:
            self.arm.stop()
        if self.world is not None:
            self.world.stop()
        self.world = self.arm = None


def cmd_eval(args) -> int:
    import functools
    import statistics

    from tqdm import tqdm

    from .core import bench
    from .sim.evaluate import run_realtime, run_sync
    from .sim.report import markdown_table
    from .sim.world import WorldConfig

    if args.merge:  # rows of parallel runs (e.g. one per loopback host) into one table and plot
        rows = [r for f in args.merge for r in json.loads(Path(f).read_text())]
        _write_eval(rows, args.out_dir, args.name, args.json)
        return 0
    policy = _load_policy(args)
    cfg = policy.cfg
    entries: list[tuple[str, int, Schedule | None]] = []
    for method in args.methods:
        if method == "full":
            entries.append(("full", cfg.num_steps, None))
            continue
        for s in args.num_updates:
            path = _schedule_file(cfg, method, s, Path(args.schedule_dir), args.similarity, top_n=args.top_n)
            if not path.is_file():
                raise SystemExit(f"no schedule {path}: make it with `bac schedule --config {args.config} "
                                 f"--checkpoint {args.checkpoint} --data <demos> --method {method} --num-updates {s}"
                                 f" --similarity {args.similarity}`")
            entries.append((method, s, Schedule.load(path, cfg)))
    # Speed, FLOPs and action deviation: one bench run over all schedules, on recorded observations.
    image, state = _observations(policy, args.bench_observations, args.seed + 1, args.data)
    brows = bench.run(policy, [e[2] for e in entries if e[2] is not None], image, state, repeats=2,
                      seed=args.seed, with_runtime_full=False)
    by_key = {(r["method"], r["num_updates"]): r for r in brows}
    modes = ["sync", "realtime"] if args.mode == "both" else [args.mode]
    rows = []
    seeds = list(range(args.seed_start, args.seed_start + args.episodes))
    wcfg = WorldConfig(hostname=args.hostname, image_size=cfg.encoder.image_shape[1])
    from .core.streaming import ChunkRules
    from .sim.arm import load_controller_params

    params = load_controller_params(Path(args.params) if args.params else None)
    rules = ChunkRules.from_params(params)
    sim = _FreshWorld(wcfg, params)
    commit = cfg.n_action_steps if args.commit_steps is None else args.commit_steps
    try:
        for mode in modes:
            run = (functools.partial(run_sync, fixed_noise=args.fixed_noise, rules=rules) if mode == "sync" else
                   functools.partial(run_realtime, commit_steps=commit, fixed_noise=args.fixed_noise, rules=rules,
                                     latency_s=None if args.latency_ms is None else args.latency_ms / 1e3))
            for method, s, sched in entries:
                den = policy.denoiser(sched)
                eps = []
                restarts = sim.restarts
                sim.restart()  # every method starts on a fresh world
                bar = tqdm(seeds, desc=f"{mode} {method} S={s}", unit="ep", file=sys.stderr)
                for seed in bar:
                    try:
                        eps.append(run(sim.world, sim.arm, policy, den, seed, max_time=args.max_time))
                    except RuntimeError as e:  # the world could not be reset: a fresh one, the same seed again
                        print(f"\nseed {seed}: {e}; restarting the world", file=sys.stderr)
                        sim.restart(count=True)
                        eps.append(run(sim.world, sim.arm, policy, den, seed, max_time=args.max_time))
                    bar.set_postfix(success=f"{sum(e.success for e in eps)}/{len(eps)}")
                b = by_key[(method, s)]
                ms = [m for e in eps for m in e.inference_ms]
                rows.append({"mode": mode, "method": method, "num_updates": s, "episodes": len(eps),
                             "success_rate": sum(e.success for e in eps) / len(eps), "speedup": b["speedup"],
                             "gflops": b["gflops"], "inference_hz": 1e3 / statistics.median(ms),
                             "action_mse": b["action_mse"], "inference_ms_p95": float(sorted(ms)[int(0.95 * (len(ms) - 1))]),
                             "seeds": [seeds[0], seeds[-1]],
                             "similarity": args.similarity if method in ACS_METHODS else "cosine",
                             "top_n": args.top_n if method == "bac" else None,
                             # per episode, in seed order: which seeds each method solves (paired comparisons)
                             "succeeded": [int(e.success) for e in eps],
                             "fixed_noise": args.fixed_noise, "commit_steps": commit if mode == "realtime" else None,
                             "latency_ms": args.latency_ms if mode == "realtime" else None,
                             "dropped_points_per_episode": statistics.fmean(e.dropped_points for e in eps),
                             "pause_timeouts": sum(e.pause_timeouts for e in eps),
                             "velocity_stops": sum(e.velocity_stops for e in eps),
                             "velocity_stops_per_episode": [e.velocity_stops for e in eps],
                             "workspace_refusals_per_episode": [e.workspace_refusals for e in eps],
                             "world_restarts": sim.restarts - restarts,
                             "late_ms_max": max((m for e in eps for m in e.late_ms), default=0.0)})
                if rows[-1]["velocity_stops"]:
                    print(f"note: the arm was stopped {rows[-1]['velocity_stops']} time(s) for a joint moving faster "
                          "than its limit", file=sys.stderr)
                if rows[-1]["pause_timeouts"]:
                    print(f"warning: {rows[-1]['pause_timeouts']} inferences outlasted the world's pause limit: "
                          "the world stepped on while the policy thought (not a pure sync run)", file=sys.stderr)
                print(markdown_table(rows[-1:]).splitlines()[-1], flush=True)
    finally:
        sim.close()
    _write_eval(rows, args.out_dir, args.name, args.json)
    return 0


def cmd_demo(args) -> int:
    from .nodes import demo

    methods = ([("bac", args.schedule)] + ([("full", "full")] if not args.no_full else [])
               + ([(demo.EXPERT, demo.EXPERT)] if not args.no_expert else []))
    print(f"demo: {args.episodes} episode(s) per method on the franky-sim grasp world, over ROS 2; "
          f"logs in {args.log_dir}", flush=True)
    rows = demo.run(args.episodes, methods, Path(args.log_dir), seed_start=args.seed_start, hostname=args.hostname)
    print(demo.format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_report(args) -> int:
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    d = Path(args.log_dir)
    if not (d / "control.csv").is_file() or not (d / "latency.csv").is_file():
        raise SystemExit(f"{d}: no control.csv / latency.csv (run the metrics node or `bac demo` first)")
    with (d / "control.csv").open() as f:
        control = np.array([(float(r["time"]), float(r["control_hz"])) for r in csv.DictReader(f)]).reshape(-1, 2)
    with (d / "latency.csv").open() as f:
        lat = np.array([(float(r["obs_to_chunk_ms"]), float(r["obs_to_command_ms"])) for r in csv.DictReader(f)])
    lat = lat.reshape(-1, 2)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    if len(control):
        axes[0].plot(control[:, 0] - control[0, 0], control[:, 1], lw=1)
    axes[0].set(title="control frequency", xlabel="time (s)", ylabel="commands / s")
    for ax, col, title in ((axes[1], 0, "observation -> chunk published"), (axes[2], 1, "observation -> first command")):
        v = lat[:, col][np.isfinite(lat[:, col])] if len(lat) else np.array([])
        if len(v):
            ax.hist(v, bins=40)
            ax.axvline(np.median(v), color="k", ls="--", lw=1, label=f"median {np.median(v):.1f} ms")
            ax.legend()
        ax.set(title=title, xlabel="latency (ms)", ylabel="chunks")
    fig.tight_layout()
    out = Path(args.out or d / "report.png")
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bac", description="Block-wise Adaptive Caching for a DP-T grasp policy.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--config", default="cpu", help="policy config: a name in config/ (cpu, paper) or a path")
        sp.add_argument("--checkpoint", default="auto",
                        help="checkpoint directory (model.safetensors + config.json); 'auto' (default): the one "
                             "shipped for this config if any; 'none': untrained weights from --seed")
        sp.add_argument("--seed", type=int, default=0)
        sp.add_argument("--threads", type=int, default=0, help="torch threads (default: the config's)")
        sp.add_argument("--data", help="demonstrations (zarr; several: comma-separated) to draw observations "
                        "from (default: synthetic)")

    s = sub.add_parser("schedule", help="calibrate and write caching schedules (JSON + update-map PNG)")
    common(s)
    s.add_argument("--method", type=_csv(str), default=["bac"], help=f"comma list of {', '.join(METHODS)}")
    s.add_argument("--num-updates", type=_csv(int), help="S: updates per block (comma list)")
    s.add_argument("--top-n", type=_csv(int), default=[DEFAULT_TOP_N],
                   help="bubbling-union blocks (bac; comma list: one schedule each, files suffixed _n<N>)")
    s.add_argument("--force-last", action="store_true", help="every block also updates at the final step")
    s.add_argument("--similarity", choices=["cosine", "l1"], default="cosine",
                   help="what the ACS dynamic program maximises: cosine (the paper's) or 1 - relative L1 error")
    s.add_argument("--observations", type=int, default=64, help="calibration observations")
    s.add_argument("--teacache-observations", type=int, default=8, help="observations for the threshold search")
    s.add_argument("--out", help="output file (one schedule)")
    s.add_argument("--out-dir", default=str(SCHEDULE_DIR), help="output folder (file names from config/method/S)")
    s.set_defaults(func=cmd_schedule)

    b = sub.add_parser("bench", help="time full precision and schedules in one run; print the table")
    common(b)
    b.add_argument("--schedule", nargs="+", help="schedule files (default: every file in schedules/ for this model)")
    b.add_argument("--observations", type=int, default=8)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--json", help="write the rows as JSON")
    b.add_argument("--profile", action="store_true", help="also split the time into fixed work and blocks")
    b.set_defaults(func=cmd_bench)
    r = sub.add_parser("record", help="record scripted-expert demonstrations on the grasp world (zarr)")
    r.add_argument("--config", default="cpu", help="policy config (image size and action rate)")
    r.add_argument("--episodes", type=int, default=100)
    r.add_argument("--seed-start", type=int, default=100000, help="first world seed (eval uses 0.. by default)")
    r.add_argument("--out", default="data/grasp_demos.zarr")
    r.add_argument("--hostname", default="127.0.0.1", help="loopback address for the simulated FR3")
    r.set_defaults(func=cmd_record)

    t = sub.add_parser("train", help="train the policy on recorded demonstrations")
    t.add_argument("--config", default="cpu")
    t.add_argument("--data", default="data/grasp_demos.zarr", help="zarr data set(s), comma-separated")
    t.add_argument("--noise-samples", type=int, default=None,
                   help="(noise, timestep) draws per window and image-encoder pass (default: TrainConfig's)")
    t.add_argument("--out", default="runs/cpu")
    t.add_argument("--iterations", type=int, default=6000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--shift", type=int, default=None,
                   help="random-shift augmentation, pixels (default: TrainConfig's)")
    t.add_argument("--init", default=None, help="start from this checkpoint directory (fine-tune; tensors whose shape changed start fresh)")
    t.add_argument("--threads", type=int, default=0, help="torch threads (default 2)")
    t.add_argument("--time-budget", type=float, default=0,
                   help="minutes: fewer iterations (measured after 30) if --iterations would take longer")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("eval", help="closed-loop success per method on seeded grasp episodes")
    common(e)
    e.add_argument("--episodes", type=int, default=50)
    e.add_argument("--seed-start", type=int, default=0, help="first world seed (demos use 100000..)")
    e.add_argument("--methods", type=_csv(str), default=["full", "uniform", "teacache", "acs-unified",
                                                         "acs-blockwise", "bac"])
    e.add_argument("--num-updates", type=_csv(int), default=[5], help="S values (comma list)")
    e.add_argument("--schedule-dir", default=str(SCHEDULE_DIR))
    e.add_argument("--mode", choices=["sync", "realtime", "both"], default="sync")
    e.add_argument("--max-time", type=float, default=12.0, help="seconds of robot time per episode")
    e.add_argument("--top-n", type=int, default=DEFAULT_TOP_N,
                   help=f"bac: the Bubbling Union's n (schedule files _n<N>; default {DEFAULT_TOP_N})")
    e.add_argument("--similarity", choices=["cosine", "l1"], default="cosine",
                   help="which calibrated ACS schedules to use (files ending _l1 for l1)")
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
    e.add_argument("--fixed-noise", action="store_true",
                   help="every inference of an episode starts from the same noise (default: fresh noise each time)")
    e.add_argument("--bench-observations", type=int, default=16)
    e.add_argument("--hostname", default="127.0.0.1")
    e.add_argument("--json", help="also write the rows here")
    e.add_argument("--out-dir", default="results")
    e.add_argument("--name", default="eval", help="file stem of the markdown / JSON / PNG results")
    e.add_argument("--merge", type=_csv(str), default=None,
                   help="no episodes: merge the JSON rows of earlier runs (comma list) into one table and plot")
    e.set_defaults(func=cmd_eval)

    d = sub.add_parser("demo", help="the ROS 2 graph on the franky-sim world: episodes, control Hz, latency")
    d.add_argument("--episodes", type=int, default=3)
    d.add_argument("--schedule", default="grasp_dpt_cpu_bac_s7", help="policy_node's schedule for the bac run")
    d.add_argument("--no-full", action="store_true", help="skip the full-precision run")
    d.add_argument("--no-expert", action="store_true",
                   help="skip the scripted expert's run (the reference for the smoothness columns)")
    d.add_argument("--seed-start", type=int, default=0)
    d.add_argument("--log-dir", default="runs/demo")
    d.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3")
    d.add_argument("--json", help="write the rows as JSON")
    d.set_defaults(func=cmd_demo)

    rp = sub.add_parser("report", help="plot a metrics log directory (control Hz, latency histograms) as PNG")
    rp.add_argument("log_dir")
    rp.add_argument("--out", help="PNG path (default: <log_dir>/report.png)")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, ScheduleError, FileNotFoundError, ValueError) as e:
        print(f"bac {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
