"""Training loop: denoising loss, AdamW + cosine schedule, EMA weights, random-shift image augmentation.

Several processes: start it under `torchrun --nproc_per_node N` (one process per GPU, or CPU processes with
gloo). Each process draws its own batch_size / N windows, DistributedDataParallel averages the gradients,
and rank 0 alone writes the checkpoint."""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from torch.nn import functional as F

from .diffusion import DiffusionPolicy


class WindowSource(Protocol):
    def __len__(self) -> int: ...
    def batch(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 6000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 1e-3
    warmup: int = 300
    ema_decay: float = 0.999
    shift: int = 4  # random-shift augmentation, pixels
    noise_samples: int = 1  # (noise, timestep) draws per window and encoder pass (see DiffusionPolicy.loss)
    seed: int = 0
    log_every: int = 50
    time_budget_s: float = 0.0  # > 0: after 30 iterations, cut `iterations` to what fits in this time

    def __post_init__(self):
        if self.iterations < 1 or self.batch_size < 1 or self.noise_samples < 1:
            raise ValueError("iterations, batch_size and noise_samples must be >= 1")
        if not 0 <= self.ema_decay < 1:
            raise ValueError("ema_decay must be in [0, 1)")


def random_shift(image: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """(B, To, C, H, W): the same random translation by up to `pad` pixels for all steps of a sample."""
    if pad <= 0:
        return image
    b, to, c, h, w = image.shape
    padded = F.pad(image.reshape(b, to * c, h, w), (pad,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    out = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])
    return out.reshape(b, to, c, h, w)


def distributed() -> tuple[int, int, int]:
    """(rank, local rank, world size) set by torchrun; (0, 0, 1) for one process."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def to_tensors(image: np.ndarray, state: np.ndarray, action: np.ndarray):
    """(B, To, H, W, 3) uint8 -> (B, To, 3, H, W) float in [0, 1]; state/action float32."""
    img = torch.from_numpy(image).permute(0, 1, 4, 2, 3).float().div_(255.0)
    return img, torch.from_numpy(state).float(), torch.from_numpy(action).float()


def train(policy: DiffusionPolicy, source: WindowSource, cfg: TrainConfig, out_dir: str | Path,
          progress: Callable[[int, float], None] | None = None) -> dict:
    """Train in place; writes `out_dir/{model.safetensors, config.json, train_log.json, loss.png}`
    with the EMA weights. Returns the log."""
    out_dir = Path(out_dir)
    device = policy.device
    rank, _, world = distributed()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + rank)  # each process its own windows and augmentation
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    model, own_group = policy, False
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            own_group = True
        model = DistributedDataParallel(policy, device_ids=[device] if device.type == "cuda" else None)
    per_rank = max(1, cfg.batch_size // world)
    ema = copy.deepcopy(policy).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    policy.train()
    decay, no_decay = [], []
    for name, p in policy.named_parameters():
        (no_decay if p.dim() < 2 or "emb" in name or "norm" in name else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))

    total = cfg.iterations

    def lr_at(i: int) -> float:
        if i < cfg.warmup:
            return cfg.lr * (i + 1) / cfg.warmup
        frac = (i - cfg.warmup) / max(1, total - cfg.warmup)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    losses, t0, budget_cut = [], time.monotonic(), False
    n = len(source)
    i = 0
    while i < total:
        ids = rng.integers(0, n, per_rank)
        image, state, action = to_tensors(*source.batch(ids))
        image = random_shift(image, cfg.shift, gen).to(device)
        state, action = state.to(device), action.to(device)
        for g in opt.param_groups:
            g["lr"] = lr_at(i)
        loss = model(image, state, action, cfg.noise_samples)  # forward = loss: DDP's gradient hooks see it
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            d = min(cfg.ema_decay, (1 + i) / (10 + i))
            for pe, p in zip(ema.parameters(), policy.parameters()):
                pe.lerp_(p, 1 - d)
            for be, b in zip(ema.buffers(), policy.buffers()):
                be.copy_(b)
        losses.append(float(loss.detach()))
        if progress:
            progress(i, losses[-1])
        i += 1
        if cfg.time_budget_s and i == 30:
            fits = int(cfg.time_budget_s / ((time.monotonic() - t0) / i))
            if world > 1:  # every process stops at the same iteration: the slowest one's
                t = torch.tensor([fits], device=device)
                dist.all_reduce(t, op=dist.ReduceOp.MIN)
                fits = int(t)
            if fits < total:  # the cosine schedule is stretched over what fits, so it still anneals
                total, budget_cut = max(fits, 2 * cfg.warmup), True
    policy.eval()
    log = {"train": asdict(cfg), "iterations_done": len(losses), "cut_to_time_budget": budget_cut,
           "seconds": time.monotonic() - t0, "loss": losses, "processes": world,
           "final_loss_mean_100": float(np.mean(losses[-100:]))}
    if rank == 0:
        ema.weights_id = "trained"
        ema.save(out_dir)
    if world > 1:
        dist.barrier()  # the checkpoint is written before any process returns
        if own_group:
            dist.destroy_process_group()
    if rank != 0:
        return log
    (out_dir / "train_log.json").write_text(json.dumps(log))
    plot_loss(losses, out_dir / "loss.png")
    return log


def plot_loss(losses: list[float], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(losses, lw=0.4, alpha=0.4, label="batch")
    k = max(1, len(losses) // 100)
    if len(losses) >= k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(k - 1, len(losses)), smooth, lw=1.5, label=f"mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("denoising MSE")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
