"""`bac dataset`: recorded episodes (bags + index) -> the training zarr `bac train --data` reads, one row per
`dt` of robot time (`data.episodes.to_steps`); optionally the person's corrections only, or a LeRobot
dataset."""
from __future__ import annotations

import sys

from ..policy.config import PolicyConfig
from .common import add_output_options, comma_list, output_dir


def add_parser(sub) -> None:
    d = sub.add_parser("dataset", help="turn recorded episodes into a training data set (zarr, or LeRobot's format)")
    d.add_argument("episodes", nargs="+", help="folder(s) with recorded bags and their index.jsonl")
    d.add_argument("--config", default="cpu", help="policy config: its image size and action rate (dt)")
    d.add_argument("--labels", type=comma_list(str), default=["teleop"],
                   help="episodes with these labels (comma list; default: teleop)")
    d.add_argument("--all", action="store_true", help="failed episodes too (default: successful ones)")
    d.add_argument("--include-incomplete", action="store_true",
                   help="episodes whose recording was cut short too (a killed recorder, a full disk; index.jsonl "
                        "marks them incomplete), with --all or --corrections: they have no verdict")
    d.add_argument("--image-roi", type=comma_list(int), default=None, metavar="X,Y,W,H",
                   help="crop each camera frame to this (px) before the resize, as policy_node's image_roi "
                        "(default: the whole frame)")
    d.add_argument("--corrections", action="store_true",
                   help="only the person's corrections (rows after a take-over from the policy), each run of them "
                        "an episode, for a DAgger round; failed episodes' corrections too")
    d.add_argument("--context", type=int, default=None,
                   help="with --corrections: rows before each correction kept as observation history, not trained "
                        "on (default: the config's n_obs_steps - 1)")
    d.add_argument("--lerobot", action="store_true",
                   help="write a LeRobot dataset (v3.0: parquet, images inside) instead of the zarr")
    add_output_options(d, "data set (demos.zarr, or the LeRobot dataset's folders)")
    d.set_defaults(func=run)


def run(args) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..core.images import check_roi
    from ..data.bags import complete_rows, read_index
    from ..data.demos import DemoWriter
    from ..data.episodes import corrections, load_episode, to_steps

    cfg = PolicyConfig.load(args.config)
    size, dt = cfg.encoder.image_shape[1], cfg.action_dt
    keep_failed = args.all or args.corrections
    rows = complete_rows([r for folder in args.episodes for r in read_index(folder) if r["label"] in args.labels],
                         "bac dataset", args.include_incomplete)
    rows = [r for r in rows if keep_failed or r["success"]]
    if not rows:
        raise SystemExit(f"no {'' if keep_failed else 'successful '}episodes labelled {args.labels} in "
                         f"{', '.join(args.episodes)}")
    context = cfg.n_obs_steps - 1 if args.context is None else args.context
    out = output_dir(args, "dataset", "_".join(args.labels) + ("_corrections" if args.corrections else ""))
    if args.lerobot:
        from ..data.lerobot import LeRobotWriter

        writer = LeRobotWriter(out, (size, size, 3), dt, task="grasp the cube and lift it")
    else:
        out = out / "demos.zarr"
        writer = DemoWriter(out, (size, size, 3), dt)
    check_roi(args.image_roi, "--image-roi")
    episodes = steps = repeated = 0
    for r in tqdm(rows, desc="episodes", unit="ep", file=sys.stderr):
        s = to_steps(load_episode(r, images=True), size, dt, args.image_roi)
        parts = corrections(s, context) if args.corrections else [(s, np.ones(len(s), bool))] if len(s) else []
        for part, train in parts:
            writer.add_episode(r.get("seed") if r.get("seed") is not None else -1, r["success"], part.images,
                               part.states, part.actions, part.times, part.source, part.intervention, train)
            episodes += 1
            steps += int(train.sum())
        repeated += s.repeated_frames
    if not episodes:
        raise SystemExit("no rows to write: " + ("no correction (take-over from the policy) in these episodes"
                                                 if args.corrections else "the episodes hold no commanded ticks"))
    if hasattr(writer, "close"):
        writer.close()
    print(f"{len(rows)} recorded episodes -> {episodes} episodes, {steps} training rows at dt {dt:.4f} s "
          f"({repeated} ticks whose camera frame repeated the previous one) -> {out}")
    return 0
