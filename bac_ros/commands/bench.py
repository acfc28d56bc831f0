"""`bac bench`: full precision and schedules timed in one run, on the same observations and noise."""
from __future__ import annotations

import sys

from ..policy.schedule import Schedule, ScheduleError, schedule_dir
from ..analysis.runs import content_hash, provenance, write_json
from .common import add_output_options, add_policy_options, comma_list, load_policy, observations, output_dir


def add_parser(sub) -> None:
    b = sub.add_parser("bench", help="time full precision and schedules in one run; print the table")
    add_policy_options(b)
    b.add_argument("--schedule", nargs="+", help="schedule files (default: the config's shipped schedules)")
    b.add_argument("--observations", type=int, default=8)
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument("--profile", action="store_true", help="also split the time into fixed work and blocks")
    b.add_argument("--backend", type=comma_list(str), default=None,
                   help="comma list of eager, onnx, cuda-graph: full precision and the static schedules on each, "
                        "one row per backend (its speedup against full on the same backend, its action MSE against "
                        "eager); compiled graphs are built once and cached (default: the eager table only)")
    add_output_options(b, "rows (rows.json, table.md)")
    b.set_defaults(func=run)


def shipped_schedules(cfg) -> list[Schedule]:
    """Every schedule shipped for the config's model (schedules/<model>/)."""
    found = []
    for p in sorted(schedule_dir(cfg).glob("*.json")):
        try:
            found.append(Schedule.load(p, cfg))
        except ScheduleError:
            continue  # made for another sampler of the same model name
    if not found:
        raise SystemExit(f"no schedule in {schedule_dir(cfg)} fits config '{cfg.name}': name files with --schedule "
                         "or make them with `bac schedule`")
    return found


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from ..policy import bench
    from ..analysis.render import BENCH_COLUMNS, markdown

    policy = load_policy(args)
    cfg = policy.cfg
    schedules = [Schedule.load(p, cfg) for p in args.schedule] if args.schedule else shipped_schedules(cfg)
    image, state = observations(policy, args.observations, args.seed + 1, args.data)  # not the calibration set
    print(f"config {cfg.name} ({cfg.n_layer} layers, n_emb {cfg.n_emb}, {cfg.sampler.type} K={cfg.num_steps}), "
          f"weights {policy.weights_id}, {args.observations} observations x {args.repeats} repeats, "
          f"torch threads {torch.get_num_threads()}")
    with tqdm(total=args.observations * args.repeats, desc="bench", unit="obs", file=sys.stderr) as bar:
        rows = bench.run(policy, schedules, image, state, repeats=args.repeats, seed=args.seed,
                         progress=bar.update)
    origin = {"config": cfg.name, "weights": policy.weights_id, **provenance()}
    for r in rows:
        r.update(origin, schedule_hash=content_hash(r["schedule_file"]))
    table = markdown(rows, BENCH_COLUMNS)
    print(table)
    out = output_dir(args, "bench", cfg.name)
    write_json(out / "rows.json", rows)
    (out / "table.md").write_text(table + "\n")
    print(f"wrote {out / 'rows.json'}, {out / 'table.md'}")
    if args.backend:
        from ..policy.inference import BACKENDS, Backend
        from ..analysis.render import BACKEND_COLUMNS

        unknown = [b for b in args.backend if b not in BACKENDS]
        if unknown:
            raise SystemExit(f"--backend: {unknown}; choose from {', '.join(BACKENDS)}")
        threads = args.threads or cfg.num_threads or 1
        print(f"\nbackends {', '.join(args.backend)} ({threads} intra-op thread(s); compiled graphs are built once "
              "and cached)", flush=True)
        with tqdm(total=args.observations * args.repeats, desc="backends", unit="obs", file=sys.stderr) as bar:
            brows = bench.run_backends(policy, schedules, image, state, [Backend(b) for b in args.backend], args.repeats, args.seed,
                                       threads, bar.update)
        for r in brows:
            r.update(origin, schedule_hash=content_hash(r["schedule_file"]))
        btable = markdown(brows, BACKEND_COLUMNS)
        print(btable)
        write_json(out / "backends.json", brows)
        (out / "backends.md").write_text(btable + "\n")
        print(f"wrote {out / 'backends.json'}, {out / 'backends.md'}")
    if args.profile:
        print()
        print(bench.profile(policy, schedules, image, state))
    return 0
