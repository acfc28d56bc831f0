"""`bac dataset`: recorded episodes (bags + index) -> the training zarr `bac train --data` reads."""
from __future__ import annotations

import sys

from ..core.config import PolicyConfig
from .common import add_output_options, comma_list, output_dir


def add_parser(sub) -> None:
    d = sub.add_parser("dataset", help="turn recorded teleop episodes into a training data set (zarr)")
    d.add_argument("episodes", nargs="+", help="folder(s) with recorded bags and their index.jsonl")
    d.add_argument("--config", default="cpu", help="policy config: its image size and action rate")
    d.add_argument("--labels", type=comma_list(str), default=["teleop"],
                   help="episodes with these labels (comma list; default: teleop)")
    d.add_argument("--all", action="store_true", help="failed episodes too (default: successful ones)")
    add_output_options(d, "data set (demos.zarr)")
    d.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..data.bags import read_index
    from ..data.demos import DemoWriter
    from ..data.episodes import load_episode, to_steps

    cfg = PolicyConfig.load(args.config)
    size = cfg.encoder.image_shape[1]
    rows = [r for folder in args.episodes for r in read_index(folder)
            if r["label"] in args.labels and (args.all or r["success"])]
    if not rows:
        raise SystemExit(f"no {'' if args.all else 'successful '}episodes labelled {args.labels} in "
                         f"{', '.join(args.episodes)}")
    out = output_dir(args, "dataset", "_".join(args.labels)) / "demos.zarr"
    writer = DemoWriter(out, (size, size, 3), cfg.action_dt)
    steps = 0
    for r in tqdm(rows, desc="episodes", unit="ep", file=sys.stderr):
        images, states, actions, times = to_steps(load_episode(r, images=True), size)
        writer.add_episode(r.get("seed") if r.get("seed") is not None else -1, r["success"], images, states,
                           actions, times)
        steps += len(actions)
    print(f"{len(rows)} episodes, {steps} steps -> {out}")
    return 0
