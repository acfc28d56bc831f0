"""`bac demo`: the ROS 2 graph on the franky-sim world (the launch file's nodes and parameter file): the
scripted operator teleoperating, the policy with BAC and at full precision, on the same seeds; every episode
recorded; success, control Hz, inference Hz, latency, smoothness, then the comparison from the recordings."""
from __future__ import annotations

from ..analysis.runs import provenance, write_json
from .common import add_output_options, comma_list, output_dir

METHODS = ("teleop", "bac", "full", "shared", "expert")


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="the ROS 2 graph on the franky-sim world: teleop vs BAC vs full, recorded")
    d.add_argument("--episodes", type=int, default=5, help="episodes per method, on the same seeds")
    d.add_argument("--methods", type=comma_list(str), default=["teleop", "bac", "full"],
                   help=f"comma list of {', '.join(METHODS)}: teleop = the scripted operator teleoperating; bac = "
                        "policy_node with --schedule; full = without caching; shared = bac with the scripted "
                        "operator taking over when the arm strays (interventions); expert = the scripted expert's "
                        "plan streamed as chunks (the smoothness reference)")
    d.add_argument("--schedule", default=None,
                   help="policy_node's schedule for the bac run (default: the one config/grasp.yaml names)")
    d.add_argument("--checkpoint", default=None,
                   help="policy_node's checkpoint folder (default: config/grasp.yaml's, the shipped policy)")
    d.add_argument("--seed-start", type=int, default=0)
    d.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3")
    add_output_options(d, "node logs, metrics CSVs, recorded episodes, rows (demo.json) and the comparison")
    d.set_defaults(func=run)


def methods(names: list[str], schedule: str) -> list[tuple[str, str]]:
    """(label, what demo.run starts) for each method name."""
    from ..graph import demo

    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise ValueError(f"--methods: {unknown or 'none given'}; choose from {', '.join(METHODS)}")
    what = {"teleop": demo.TELEOP, "bac": schedule, "full": "full", "shared": demo.SHARED, "expert": demo.EXPERT}
    return [(m, what[m]) for m in names]


def run(args) -> int:
    from ..core.settings import node_parameters
    from ..graph import demo
    from . import compare

    schedule = args.schedule or node_parameters("policy_node")["schedule"]
    todo = methods(args.methods, schedule)
    overrides = {"policy_node": {"checkpoint": args.checkpoint}} if args.checkpoint else {}
    out = output_dir(args, "demo", "graph")
    print(f"demo: {args.episodes} episode(s) per method on the franky-sim grasp world, over ROS 2; logs in {out}",
          flush=True)
    rows = demo.run(args.episodes, todo, out, seed_start=args.seed_start, hostname=args.hostname,
                    overrides=overrides, shared_schedule=args.schedule)
    origin = provenance()
    for r in rows:
        r.update(origin)
    print(demo.format_rows(rows))
    print(f"wrote {write_json(out / 'demo.json', rows)}")
    print()
    compare.write([out / "episodes"], out)
    return 0
