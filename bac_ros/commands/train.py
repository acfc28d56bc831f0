"""`bac train`: train the policy on demonstrations (zarr from `bac record` or `bac dataset`)."""
from __future__ import annotations

import sys

from ..policy.config import PolicyConfig
from .common import add_output_options, output_dir


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train the policy on demonstrations (a checkpoint folder)")
    t.add_argument("--config", default="cpu")
    t.add_argument("--data", required=True, help="zarr data set(s), comma-separated")
    t.add_argument("--noise-samples", type=int, default=None,
                   help="(noise, timestep) draws per window and image-encoder pass (default: TrainConfig's)")
    t.add_argument("--iterations", type=int, default=6000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--shift", type=int, default=None, help="random-shift augmentation, pixels (default: TrainConfig's)")
    t.add_argument("--device", default="cpu",
                   help="cpu (default) or cuda[:N]; under torchrun, cuda means each process's LOCAL_RANK device")
    t.add_argument("--init", default=None,
                   help="start from this checkpoint directory (fine-tune; tensors whose shape changed start fresh)")
    t.add_argument("--keep-normalizers", action="store_true",
                   help="with --init: keep the checkpoint's normalisers (e.g. a fine-tune on a few corrections); "
                        "default: fit them on the data trained on")
    t.add_argument("--threads", type=int, default=0, help="torch threads (default 2)")
    t.add_argument("--time-budget", type=float, default=0,
                   help="minutes: fewer iterations (measured after 30) if --iterations would take longer")
    add_output_options(t, "checkpoint (model.safetensors, config.json, train_log.json, loss.png)")
    t.set_defaults(func=run)


def check_data(demos, cfg: PolicyConfig, name: str) -> None:
    """SystemExit unless the data set was recorded at the config's action rate and image size: rows one
    `dt` apart are the time base the policy learns."""
    if abs(demos.dt - cfg.action_dt) > 1e-4 * cfg.action_dt:
        raise SystemExit(f"{name}: rows {demos.dt:.6f} s apart, but config {cfg.name} acts every {cfg.action_dt:.6f} s "
                         "(make the data set with this config: bac dataset --config ...)")
    size = tuple(demos.image.shape[1:3])
    if size != tuple(cfg.encoder.image_shape[1:]):
        raise SystemExit(f"{name}: images of {size[0]}x{size[1]} px, but config {cfg.name} takes "
                         f"{cfg.encoder.image_shape[1]}x{cfg.encoder.image_shape[2]}")


def run(args) -> int:
    import torch
    from tqdm import tqdm

    from ..policy.diffusion import DiffusionPolicy, resolve_device
    from ..policy.train import TrainConfig, distributed, train
    from ..data.demos import Demos, WindowSampler

    rank, local_rank, world = distributed()
    try:
        device = resolve_device(f"cuda:{local_rank}" if args.device == "cuda" and world > 1 else args.device)
    except ValueError as e:
        raise SystemExit(f"--device: {e}") from None
    cfg = PolicyConfig.load(args.config)
    torch.set_num_threads(args.threads or 2)
    demos = Demos(args.data)
    if demos.num_episodes == 0:
        raise SystemExit(f"{args.data}: no successful episodes (or corrections) to train on")
    check_data(demos, cfg, args.data)
    if args.keep_normalizers and not args.init:
        raise SystemExit("--keep-normalizers keeps a checkpoint's normalisers: it needs --init")
    if world > 1 and not args.out_dir:
        raise SystemExit("under torchrun, name the checkpoint folder with --out-dir (every process must agree)")
    out = output_dir(args, "train", cfg.name)
    tcfg = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                       time_budget_s=args.time_budget * 60,
                       **({"shift": args.shift} if args.shift is not None else {}),
                       **({"noise_samples": args.noise_samples} if args.noise_samples is not None else {}))
    torch.manual_seed(args.seed)
    windows = WindowSampler(demos, cfg.horizon, cfg.n_obs_steps)
    if args.init:  # fine-tune: the checkpoint's weights (warm start across n_obs_steps)
        policy, fresh = DiffusionPolicy.warm_start(args.init, cfg)
        if fresh:
            print(f"warm start from {args.init}: freshly initialised {', '.join(fresh)}")
    else:
        policy = DiffusionPolicy(cfg)
    if not args.keep_normalizers:
        policy.fit_normalizers(demos.state, *windows.states_and_actions())
    policy.to(device)
    print(f"[rank {rank}/{world}, {device}] " if world > 1 else "", end="")
    print(f"training {cfg.name} on {demos.num_episodes}/{demos.total_episodes} episodes (successful, or a person's corrections) "
          f"({len(windows)} of {len(demos)} rows start windows), {tcfg.iterations} iterations x batch {tcfg.batch_size}, "
          f"{sum(p.numel() for p in policy.parameters()) / 1e6:.2f} M parameters")
    with tqdm(total=tcfg.iterations, desc="train", unit="it", file=sys.stderr, disable=rank != 0) as bar:
        def progress(i, loss):
            bar.update(1)
            if i % 20 == 0:
                bar.set_postfix(loss=f"{loss:.4f}")
        log = train(policy, windows, tcfg, out, progress)
    if rank != 0:
        return 0
    note = " (iterations cut to fit the time budget)" if log["cut_to_time_budget"] else ""
    print(f"{log['iterations_done']} iterations in {log['seconds'] / 60:.1f} min{note}; final loss "
          f"{log['final_loss_mean_100']:.4f}; EMA checkpoint -> {out}")
    return 0
