"""How much of a speedup the precomputed update (policy/sampler.py) gives, in one run: each method timed with
diffusers' `scheduler.step` and with `Sampler.step` on the same observations and noise, alternating.

    python docs/results/lossless_point/probe_sampler.py --config cpu_ddpm100 --schedule FILE... [--observations 16]
"""
import argparse
import statistics
import time

import torch

from bac_ros.commands.common import observations
from bac_ros.policy.config import PolicyConfig
from bac_ros.policy.diffusion import DiffusionPolicy, resolve_checkpoint
from bac_ros.policy.schedule import Schedule


class DiffusersStep:
    """`Sampler`'s interface around the scheduler's own step (the update as it was before)."""

    def __init__(self, scheduler):
        self.scheduler, self.timesteps = scheduler, scheduler.timesteps

    def step(self, k, model_output, sample, generator=None):
        return self.scheduler.step(model_output, self.timesteps[k], sample, generator=generator).prev_sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="cpu_ddpm100")
    ap.add_argument("--data", default="runs/data/cal/demos.zarr")
    ap.add_argument("--observations", type=int, default=16)
    ap.add_argument("--schedule", nargs="*", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = PolicyConfig.load(args.config)
    policy = DiffusionPolicy.build(cfg, resolve_checkpoint(cfg, "auto"))
    image, state = observations(policy, args.observations, 1, args.data)
    samplers = {"diffusers step": DiffusersStep(policy.scheduler), "Sampler": policy.sampler}
    methods = [("full", None)] + [(p, Schedule.load(p, cfg)) for p in args.schedule]
    times = {(m, s): [] for m, _ in methods for s in samplers}
    outs = {}
    for i in range(image.shape[0]):
        for m, sched in methods:
            den = policy.denoiser(sched)
            for s, sampler in samplers.items():
                policy.sampler = sampler
                t0 = time.perf_counter()
                noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=torch.Generator().manual_seed(i))
                a = policy.predict(image[i:i + 1], state[i:i + 1], den, noise, torch.Generator().manual_seed(i))
                times[(m, s)].append(time.perf_counter() - t0)
                outs.setdefault((m, i), []).append(a)
    policy.sampler = samplers["Sampler"]
    same = all(torch.equal(*v) for v in outs.values())
    full = {s: statistics.median(times[("full", s)]) for s in samplers}
    print(f"{cfg.name}: {image.shape[0]} observations, both updates bit-identical: {same}")
    print("| method | ms (diffusers step) | speedup | ms (Sampler) | speedup |")
    print("|---|---|---|---|---|")
    for m, _ in methods:
        ms = {s: statistics.median(times[(m, s)]) for s in samplers}
        print(f"| {m} | {ms['diffusers step'] * 1e3:.1f} | {full['diffusers step'] / ms['diffusers step']:.2f}x "
              f"| {ms['Sampler'] * 1e3:.1f} | {full['Sampler'] / ms['Sampler']:.2f}x |")


if __name__ == "__main__":
    main()
