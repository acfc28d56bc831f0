"""DiffusionPolicy: normalise -> encode observations -> sample with a diffusers scheduler -> ActionChunk."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler
from torch import nn
from torch.nn import functional as F

from .caching import CachedDenoiser, PlainDenoiser, TeaCacheDenoiser
from .config import PolicyConfig
from .encoders import ObservationEncoder
from .model import TransformerForDiffusion
from .sampler import Sampler
from .schedule import Schedule


@dataclass
class ActionChunk:
    """Actions to execute from `stamp` on, one every `dt` seconds: (n, action_dim) absolute joint targets
    (rad) + gripper command (m)."""
    actions: np.ndarray
    dt: float
    stamp: float = 0.0  # time of the newest observation used, in the caller's clock
    inference_s: float = 0.0
    updates: int = 0  # block recomputations spent on this chunk

    def __post_init__(self):
        if self.actions.ndim != 2:
            raise ValueError(f"actions must be (n, action_dim), got {self.actions.shape}")


class RangeNormalizer(nn.Module):
    """Per-dimension affine map of [min, max] to [-1, 1]; dimensions with a tiny range are only centred."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("low", -torch.ones(dim))
        self.register_buffer("high", torch.ones(dim))

    def fit(self, data: np.ndarray | torch.Tensor) -> "RangeNormalizer":
        data = torch.as_tensor(data, dtype=torch.float32).reshape(-1, self.low.numel())
        self.low.copy_(data.min(0).values)
        self.high.copy_(data.max(0).values)
        return self

    def _scale(self) -> tuple[torch.Tensor, torch.Tensor]:
        span = (self.high - self.low).clamp_min(1e-4)
        return 2.0 / span, (self.high + self.low) / 2.0

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        s, c = self._scale()
        return (x - c) * s

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        s, c = self._scale()
        return x / s + c


def make_scheduler(cfg: PolicyConfig):
    sc = cfg.sampler
    kwargs = dict(num_train_timesteps=sc.num_train_timesteps, beta_schedule=sc.beta_schedule,
                  prediction_type=sc.prediction_type, clip_sample=sc.clip_sample)
    if sc.type == "ddpm":
        sched = DDPMScheduler(variance_type="fixed_small", **kwargs)
    else:
        sched = DDIMScheduler(set_alpha_to_one=True, steps_offset=0, **kwargs)
    sched.set_timesteps(sc.num_inference_steps)
    return sched


class DiffusionPolicy(nn.Module):
    def __init__(self, cfg: PolicyConfig):
        super().__init__()
        self.cfg = cfg
        self.obs_encoder = ObservationEncoder(cfg.encoder)
        self.model = TransformerForDiffusion(cfg)
        self.action_norm = RangeNormalizer(cfg.action_dim)
        self.state_norm = RangeNormalizer(cfg.encoder.state_dim)
        self.scheduler = make_scheduler(cfg)  # training's noising; its step, precomputed, is `sampler`
        self.sampler = Sampler(self.scheduler)
        self.weights_id = "init"
        self.eval()

    @property
    def device(self) -> torch.device:
        """Where the weights are (`policy.to("cuda")`); inputs are moved there, outputs of `act` come back."""
        return self.action_norm.low.device

    # ---- runtimes ------------------------------------------------------------------------------
    def denoiser(self, schedule: Schedule | None = None, hoist: bool = True, monitor: bool = False):
        """The runtime for a schedule: None -> the plain model; teacache -> TeaCacheDenoiser; `monitor`: a
        static schedule's runtime also measures its reuse error (the drift guard's second signal)."""
        if schedule is None:
            return PlainDenoiser(self.model)
        schedule.validate(self.cfg)
        schedule.check_weights(self.weights_id)
        if monitor and schedule.is_dynamic:
            raise ValueError("the drift guard's signal needs a static schedule")
        if schedule.is_dynamic:
            return TeaCacheDenoiser(self.model, schedule.teacache["threshold"], self.scheduler.timesteps)
        return CachedDenoiser(self.model, schedule, self.scheduler.timesteps, hoist=hoist, monitor=monitor)

    # ---- inference -----------------------------------------------------------------------------
    def encode_obs(self, image: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """image (B, To, 3, H, W) float in [0, 1] or uint8; state (B, To, state_dim) raw -> (B, To, F)."""
        if image.dtype == torch.uint8:
            image = image.float() / 255.0
        state = self.state_norm.normalize(state)
        if not self.cfg.state_history:
            state = torch.cat([torch.zeros_like(state[:, :-1]), state[:, -1:]], dim=1)
        return self.obs_encoder(image, state)

    def check_obs(self, image: torch.Tensor, state: torch.Tensor) -> None:
        c, to = self.cfg, self.cfg.n_obs_steps
        if image.dim() != 5 or tuple(image.shape[1:]) != (to, *c.encoder.image_shape):
            raise ValueError(f"image must be (B, {to}, {', '.join(map(str, c.encoder.image_shape))}), "
                             f"got {tuple(image.shape)}")
        if state.dim() != 3 or tuple(state.shape[1:]) != (to, c.encoder.state_dim):
            raise ValueError(f"state must be (B, {to}, {c.encoder.state_dim}), got {tuple(state.shape)}")
        if not torch.isfinite(state).all():
            raise ValueError("state contains NaN or inf")

    @torch.inference_mode()
    def sample(self, cond: torch.Tensor, denoiser=None, noise: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Denoise from `noise` (B, horizon, action_dim); returns normalised actions."""
        denoiser = denoiser or PlainDenoiser(self.model)
        b = cond.shape[0]
        x = noise if noise is not None else torch.randn(b, self.cfg.horizon, self.cfg.action_dim,
                                                        generator=generator)
        x = x.to(cond.device)  # drawn on the CPU: the same noise for a seed whatever the device
        denoiser.begin(cond)
        return self.denoise_steps(denoiser, x, generator)

    def denoise_steps(self, denoiser, x: torch.Tensor, generator: torch.Generator | None = None,
                      step_noise: torch.Tensor | None = None,
                      hold: Callable[[int, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The denoising loop every inference runs (after `denoiser.begin`): at each step the denoiser's
        prediction and the sampler's update (DDPM's step noise `step_noise[k]` where given, else drawn from
        `generator`), then `hold(k, x)` (inpainting) where given."""
        for k, t in enumerate(self.sampler.timesteps):
            x = self.sampler.step(k, denoiser.step(k, x, t), x, generator,
                                  None if step_noise is None else step_noise[k])
            if hold is not None:
                x = hold(k, x)
        return x

    def to_model_actions(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Absolute actions (B, H, A) -> what the model predicts (offsets for the relative dims)."""
        k = self.cfg.relative_action_dims
        if k == 0:
            return action
        return torch.cat([action[..., :k] - state[:, -1:, :k], action[..., k:]], dim=-1)

    def from_model_actions(self, action: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        k = self.cfg.relative_action_dims
        if k == 0:
            return action
        return torch.cat([action[..., :k] + state[:, -1:, :k].to(action.dtype), action[..., k:]], dim=-1)

    def fit_normalizers(self, state: np.ndarray, window_states: np.ndarray, window_actions: np.ndarray) -> None:
        """state (N, S) all states; the training windows' states (M, To, S) and actions (M, H, A)."""
        self.state_norm.fit(state)
        self.action_norm.fit(self.to_model_actions(torch.as_tensor(window_actions, dtype=torch.float32),
                                                   torch.as_tensor(window_states, dtype=torch.float32)))

    @torch.inference_mode()
    def predict(self, image: torch.Tensor, state: torch.Tensor, denoiser=None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Raw observations -> unnormalised action trajectory (B, horizon, action_dim)."""
        self.check_obs(image, state)
        image, state = image.to(self.device), state.to(self.device)
        cond = self.encode_obs(image, state)
        return self.from_model_actions(self.action_norm.unnormalize(self.sample(cond, denoiser, noise, generator)),
                                       state)

    def executable(self, trajectory: torch.Tensor, lookahead: int = 0) -> torch.Tensor:
        """The part of a predicted trajectory that lies in the future: actions from the current step on;
        `lookahead` more points past the executed ones where the horizon has them (for their velocity)."""
        start = self.cfg.n_obs_steps - 1
        return trajectory[..., start:start + self.cfg.n_action_steps + lookahead, :]

    def future(self, trajectory: torch.Tensor) -> torch.Tensor:
        """Every predicted point from the current step on: the n_action_steps to execute and the rest of
        the horizon. A controller whose chunk arrives late plays n_action_steps points from the first one
        still due, so latency shifts the executed window into the prediction instead of shortening it."""
        return trajectory[..., self.cfg.n_obs_steps - 1:, :]

    # ---- training ------------------------------------------------------------------------------
    def loss(self, image: torch.Tensor, state: torch.Tensor, action: torch.Tensor,
             noise_samples: int = 1) -> torch.Tensor:
        """Denoising loss on a batch: action (B, horizon, action_dim) raw. `noise_samples` > 1 draws that
        many (noise, timestep) pairs per window from one encoding of its observation: the image encoder
        is most of a training step's cost, the denoiser's part is cheap."""
        if noise_samples < 1:
            raise ValueError(f"noise_samples must be >= 1, got {noise_samples}")
        cond = self.encode_obs(image, state)
        target = self.action_norm.normalize(self.to_model_actions(action, state))
        if noise_samples > 1:
            cond = cond.repeat_interleave(noise_samples, dim=0)
            target = target.repeat_interleave(noise_samples, dim=0)
        noise = torch.randn_like(target)
        t = torch.randint(0, self.cfg.sampler.num_train_timesteps, (target.shape[0],), device=target.device)
        noisy = self.scheduler.add_noise(target, noise, t)
        pred = self.model(noisy, t, cond)
        return F.mse_loss(pred, noise if self.cfg.sampler.prediction_type == "epsilon" else target)

    def forward(self, image: torch.Tensor, state: torch.Tensor, action: torch.Tensor,
                noise_samples: int = 1) -> torch.Tensor:
        """The training loss (what DistributedDataParallel wraps)."""
        return self.loss(image, state, action, noise_samples)

    # ---- checkpoints ---------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """`model.safetensors` + `config.json` in `directory`."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / "model.safetensors"))
        (directory / "config.json").write_text(json.dumps({"policy": self.cfg.to_dict()}, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path, cfg: PolicyConfig | None = None) -> "DiffusionPolicy":
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = directory / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"no checkpoint at {weights}")
        saved = PolicyConfig.load(directory / "config.json")
        if cfg is not None and cfg.weights_hash != saved.weights_hash:
            raise ValueError(f"checkpoint {directory} is for config {saved.name} (weights {saved.weights_hash}), "
                             f"not {cfg.name} ({cfg.weights_hash})")
        policy = cls(cfg or saved)
        try:
            policy.load_state_dict(load_file(str(weights)))
        except Exception as e:  # noqa: BLE001 - safetensors and torch raise several types for a bad file
            raise CheckpointError(f"{weights}: not a usable checkpoint for config {(cfg or saved).name} "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        policy.weights_id = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        return policy.eval()

    @classmethod
    def warm_start(cls, directory: str | Path, cfg: PolicyConfig) -> tuple["DiffusionPolicy", list[str]]:
        """A policy for `cfg` starting from another config's checkpoint: every tensor of the same shape is
        copied; the condition position embedding keeps the time token and the newest n_obs_steps tokens
        (for a change of n_obs_steps). Returns (policy, names of the tensors left freshly initialised)."""
        from safetensors.torch import load_file

        saved = load_file(str(Path(directory) / "model.safetensors"))
        policy = cls(cfg)
        own = policy.state_dict()
        fresh = []
        for name, value in own.items():
            old = saved.get(name)
            if old is not None and name.endswith("cond_pos_emb") and old.shape[1] > value.shape[1]:
                old = torch.cat([old[:, :1], old[:, old.shape[1] - (value.shape[1] - 1):]], dim=1)
            if old is not None and old.shape == value.shape:
                own[name] = old
            else:
                fresh.append(name)
        policy.load_state_dict(own)
        return policy, fresh

    @classmethod
    def build(cls, cfg: PolicyConfig, checkpoint: str | Path | None = None, seed: int = 0) -> "DiffusionPolicy":
        """From a checkpoint, or freshly initialised from `seed` (untrained, for benchmarks)."""
        if checkpoint:
            return cls.load(checkpoint, cfg)
        torch.manual_seed(seed)
        policy = cls(cfg)
        policy.weights_id = f"init-seed-{seed}"
        return policy


CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded (truncated, corrupt, or for another architecture)."""


SHIPPED_CHECKPOINTS = (None, "", "auto", "shipped")  # names of the checkpoint shipped for a config


def resolve_checkpoint(cfg: PolicyConfig, checkpoint: str | None) -> str | None:
    """'auto' (or 'shipped', naming it on purpose) -> the checkpoint shipped for this config
    (bac_ros/checkpoints/<name>, trained in the simulated grasp world); ValueError naming the config when none is
    shipped (untrained weights never reach an arm by default). 'none' -> untrained (explicitly); anything else is
    a checkpoint directory."""
    if checkpoint == "none":
        return None
    if checkpoint in SHIPPED_CHECKPOINTS:
        shipped = CHECKPOINT_DIR / cfg.weights_name
        if not (shipped / "model.safetensors").is_file():
            raise ValueError(f"no checkpoint is shipped for config {cfg.name!r} (weights {cfg.weights_name!r}): name "
                             "a checkpoint folder, or 'none' for untrained weights (benchmarks only, never an arm)")
        return str(shipped)
    return checkpoint


def resolve_device(name: str) -> torch.device:
    """'cpu' | 'cuda' | 'cuda:N' -> torch.device; ValueError (one line) where it is not there."""
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"{name!r} is not a device ({e})") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{name!r}: cpu or cuda[:N]")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{name}: this torch build or machine has no CUDA device (torch {torch.__version__})")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def load_policy(config: str = "cpu", checkpoint: str | None = "auto", seed: int = 0, threads: int = 0,
                device: str = "cpu") -> DiffusionPolicy:
    """A policy as the commands and the evaluation workers load it: `config` (a name in config/ or a YAML path),
    its `checkpoint` ('auto': the shipped one; 'none': untrained weights from `seed`), torch threads (0: the
    config's), on `device` (ValueError where it is not there)."""
    cfg = PolicyConfig.load(config)
    if threads or cfg.num_threads:
        torch.set_num_threads(threads or cfg.num_threads)
    policy = DiffusionPolicy.build(cfg, resolve_checkpoint(cfg, checkpoint), seed=seed)
    return policy.to(resolve_device(device))


def synthetic_observations(cfg: PolicyConfig, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images and joint states of the right shapes, for benchmarks of untrained models."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, cfg.n_obs_steps, *cfg.encoder.image_shape, generator=g)
    state = torch.rand(n, cfg.n_obs_steps, cfg.encoder.state_dim, generator=g) * 2 - 1
    return image, state
