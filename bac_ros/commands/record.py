"""`bac record`: scripted-expert demonstrations on the franky-sim grasp world (zarr, `bac train --data`)."""
from __future__ import annotations

import sys
import time

from ..policy.config import PolicyConfig
from .common import add_output_options, output_dir


def add_parser(sub) -> None:
    r = sub.add_parser("record", help="record scripted-expert demonstrations on the grasp world (zarr)")
    r.add_argument("--config", default="cpu", help="policy config (image size and action rate)")
    r.add_argument("--episodes", type=int, default=100)
    r.add_argument("--seed-start", type=int, default=100000, help="first world seed (eval uses 0.. by default)")
    r.add_argument("--hostname", default="127.0.0.1", help="loopback address for the simulated FR3")
    r.add_argument("--world", action="append", default=[], metavar="KEY=VALUE",
                   help="change the world (repeatable; as `bac eval --world`): e.g. camera_pos=1.0,0.1,0.65")
    add_output_options(r, "data set (demos.zarr)")
    r.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from ..data.demos import DemoWriter
    from ..robot.kinematics import Kinematics
    from ..sim.episode import FreshWorld, run_expert
    from ..sim.world import WorldConfig, world_overrides

    world_kw = world_overrides(args.world)  # ValueError: one line from cli.main, exit 2
    cfg = PolicyConfig.load(args.config)
    size, dt = cfg.encoder.image_shape[1], cfg.action_dt
    out = output_dir(args, "record", f"expert_{args.seed_start}") / "demos.zarr"
    writer = DemoWriter(out, (size, size, 3), dt)
    kin = Kinematics.fr3()
    ok, t0 = 0, time.monotonic()
    with FreshWorld(WorldConfig(hostname=args.hostname, image_size=size, **world_kw)) as sim:
        bar = tqdm(range(args.seed_start, args.seed_start + args.episodes), desc="expert", unit="ep", file=sys.stderr)
        for seed in bar:
            r = sim.run(lambda world, arm: run_expert(world, arm, seed, dt, kin), f"seed {seed}")
            writer.add_episode(seed, r.success, [s.image for s in r.steps], [s.state for s in r.steps],
                               [s.action for s in r.steps], [s.t_sim for s in r.steps])
            ok += r.success
            bar.set_postfix(success=f"{ok}/{seed - args.seed_start + 1}")
        arm_errors = len(sim.arm.errors)
    n = args.episodes
    print(f"expert success {ok}/{n} = {ok / n:.1%} (seeds {args.seed_start}..{args.seed_start + n - 1}), "
          f"{time.monotonic() - t0:.0f} s, arm errors {arm_errors}, world restarts {sim.restarts} -> {out}")
    return 0
