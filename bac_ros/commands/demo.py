"""`bac demo`: the ROS 2 graph on the franky-sim world (the launch file's nodes and parameter file): the
scripted operator teleoperating, the policy with BAC and at full precision, on the same seeds; every episode
recorded; success, control Hz, inference Hz, latency, smoothness, then the comparison from the recordings."""
from __future__ import annotations

from ..runs import provenance, write_json
from .common import add_output_options, output_dir


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="the ROS 2 graph on the franky-sim world: teleop vs BAC vs full, recorded")
    d.add_argument("--episodes", type=int, default=3)
    d.add_argument("--schedule", default=None,
                   help="policy_node's schedule for the bac run (default: the one config/grasp.yaml names)")
    d.add_argument("--no-teleop", action="store_true", help="skip the scripted operator's teleoperated run")
    d.add_argument("--no-full", action="store_true", help="skip the full-precision run")
    d.add_argument("--shared", action="store_true",
                   help="also the policy with the scripted operator ready to take over (interventions)")
    d.add_argument("--expert", action="store_true",
                   help="also the scripted expert's plan streamed as chunks (the smoothness reference)")
    d.add_argument("--seed-start", type=int, default=0)
    d.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3")
    add_output_options(d, "node logs, metrics CSVs, recorded episodes, rows (demo.json) and the comparison")
    d.set_defaults(func=run)


def methods(args, schedule: str) -> list[tuple[str, str]]:
    from ..graph import demo

    return ([("teleop", demo.TELEOP)] if not args.no_teleop else []) + [("bac", schedule)] \
        + ([("full", "full")] if not args.no_full else []) + ([("shared", demo.SHARED)] if args.shared else []) \
        + ([("expert", demo.EXPERT)] if args.expert else [])


def run(args) -> int:
    from ..core.settings import node_parameters
    from ..graph import demo
    from . import compare

    schedule = args.schedule or node_parameters("policy_node")["schedule"]
    out = output_dir(args, "demo", "graph")
    print(f"demo: {args.episodes} episode(s) per method on the franky-sim grasp world, over ROS 2; logs in {out}",
          flush=True)
    rows = demo.run(args.episodes, methods(args, schedule), out, seed_start=args.seed_start, hostname=args.hostname)
    origin = provenance()
    for r in rows:
        r.update(origin)
    print(demo.format_rows(rows))
    print(f"wrote {write_json(out / 'demo.json', rows)}")
    print()
    compare.write([out / "episodes"], out)
    return 0
