"""`bac demo`: the ROS 2 graph on the franky-sim world (the launch file's nodes and parameter file): BAC,
full precision and the scripted expert on the same seeds; success, control Hz, inference Hz, latency,
smoothness."""
from __future__ import annotations

from ..runs import provenance, write_json
from .common import add_output_options, output_dir


def add_parser(sub) -> None:
    d = sub.add_parser("demo", help="the ROS 2 graph on the franky-sim world: episodes, control Hz, latency")
    d.add_argument("--episodes", type=int, default=3)
    d.add_argument("--schedule", default=None,
                   help="policy_node's schedule for the bac run (default: the one config/grasp.yaml names)")
    d.add_argument("--no-full", action="store_true", help="skip the full-precision run")
    d.add_argument("--no-expert", action="store_true",
                   help="skip the scripted expert's run (the reference for the smoothness columns)")
    d.add_argument("--seed-start", type=int, default=0)
    d.add_argument("--hostname", default="127.0.0.1", help="loopback address of the simulated FR3")
    add_output_options(d, "node logs, metrics CSVs and rows (demo.json)")
    d.set_defaults(func=run)


def run(args) -> int:
    from ..core.settings import node_parameters
    from ..graph import demo

    schedule = args.schedule or node_parameters("policy_node")["schedule"]
    methods = ([("bac", schedule)] + ([("full", "full")] if not args.no_full else [])
               + ([(demo.EXPERT, demo.EXPERT)] if not args.no_expert else []))
    out = output_dir(args, "demo", "graph")
    print(f"demo: {args.episodes} episode(s) per method on the franky-sim grasp world, over ROS 2; logs in {out}",
          flush=True)
    rows = demo.run(args.episodes, methods, out, seed_start=args.seed_start, hostname=args.hostname)
    origin = provenance()
    for r in rows:
        r.update(origin)
    print(demo.format_rows(rows))
    print(f"wrote {write_json(out / 'demo.json', rows)}")
    return 0
