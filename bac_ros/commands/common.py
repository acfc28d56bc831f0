"""What several commands share: the policy options, loading the policy, observations to measure on, and
where a command's output goes (`runs/<command>/<date>_<name>/` unless told)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..analysis.runs import run_dir


def comma_list(kind):
    """argparse type: 'a,b,c' -> [kind(a), kind(b), kind(c)]."""
    def parse(text: str):
        return [kind(x) for x in text.split(",") if x.strip()]
    parse.__name__ = getattr(kind, "__name__", "value")  # argparse's message: "invalid Method value: 'x'"
    return parse


def add_policy_options(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--config", default="cpu", help="policy config: a name in config/ (cpu, cpu_ddpm100, paper) or a "
                    "YAML path")
    sp.add_argument("--checkpoint", default="auto",
                    help="checkpoint directory (model.safetensors + config.json); 'auto' (default): the one shipped "
                         "for this config if any; 'none': untrained weights from --seed")
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--threads", type=int, default=0, help="torch threads (default: the config's)")
    sp.add_argument("--device", default="cpu", help="where the policy runs: cpu (default) or cuda[:N]")
    sp.add_argument("--data", help="demonstrations (zarr; several: comma-separated) to draw observations from "
                    "(default: synthetic)")


def add_output_options(sp: argparse.ArgumentParser, what: str) -> None:
    sp.add_argument("--out-dir", default=None, help=f"folder for the {what} (default: runs/<command>/<date>_<name>/)")
    sp.add_argument("--name", default=None, help="short name of this run (folder and file names)")


def output_dir(args, command: str, default_name: str) -> Path:
    """`--out-dir` if given (created), else a fresh `runs/<command>/<date>_<name>/`."""
    if args.out_dir:
        path = Path(args.out_dir)
        path.mkdir(parents=True, exist_ok=True)
        return path
    return run_dir(command, args.name or default_name)


def load_policy(args):
    """`policy.diffusion.load_policy` with the options `add_policy_options` declares (ValueError: `bac` prints it)."""
    from ..policy.diffusion import load_policy as load

    return load(args.config, args.checkpoint, args.seed, args.threads, getattr(args, "device", "cpu"))


def observations(policy, n: int, seed: int, data: str | None = None):
    """`n` observation windows: random windows of recorded demonstrations when `data` is given (real
    features), else random images and states of the right shapes (for untrained models)."""
    from ..policy.diffusion import synthetic_observations

    if not data:
        return synthetic_observations(policy.cfg, n, seed)
    import numpy as np

    from ..policy.train import to_tensors
    from ..data.demos import Demos, WindowSampler

    sampler = WindowSampler(Demos(data), policy.cfg.horizon, policy.cfg.n_obs_steps)
    ids = np.random.default_rng(seed).choice(len(sampler), size=min(n, len(sampler)), replace=False)
    image, state, _ = to_tensors(*sampler.batch(ids))
    return image, state
