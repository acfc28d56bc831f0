"""Policy configuration: dataclasses validated on construction, loaded from `config/<name>.yaml`."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..core.paths import CONFIG_DIR

class ConfigError(ValueError):
    """A configuration value is missing or out of range; the message names the field."""


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config field '{name}': {msg}")


@dataclass(frozen=True)
class SamplerConfig:
    type: str = "ddim"  # ddpm | ddim
    num_train_timesteps: int = 100
    num_inference_steps: int = 16
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "epsilon"
    clip_sample: bool = True

    def __post_init__(self):
        _check(self.type in ("ddpm", "ddim"), "sampler.type", f"'{self.type}' is not ddpm or ddim")
        _check(self.num_train_timesteps >= 1, "sampler.num_train_timesteps", "must be >= 1")
        _check(1 <= self.num_inference_steps <= self.num_train_timesteps,
               "sampler.num_inference_steps", "must be in 1..num_train_timesteps")
        _check(self.prediction_type in ("epsilon", "sample"), "sampler.prediction_type",
               f"'{self.prediction_type}' is not epsilon or sample")


@dataclass(frozen=True)
class EncoderConfig:
    """Small ResNet-style image encoder (GroupNorm) + joint-state projection."""
    image_shape: tuple[int, int, int] = (3, 96, 96)
    channels: tuple[int, ...] = (32, 64, 128)
    blocks_per_stage: int = 1
    groups: int = 8
    image_feature_dim: int = 64
    state_dim: int = 8  # fr3_joint1..7 + gripper width

    def __post_init__(self):
        object.__setattr__(self, "image_shape", tuple(self.image_shape))
        object.__setattr__(self, "channels", tuple(self.channels))
        _check(len(self.image_shape) == 3 and self.image_shape[0] == 3, "encoder.image_shape",
               "must be (3, H, W)")
        _check(all(c % self.groups == 0 for c in self.channels), "encoder.channels",
               f"every channel count must be divisible by groups={self.groups}")
        _check(self.state_dim >= 1 and self.image_feature_dim >= 1, "encoder", "dims must be >= 1")

    @property
    def feature_dim(self) -> int:
        return self.image_feature_dim + self.state_dim


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PolicyConfig:
    name: str
    n_layer: int = 8
    n_head: int = 4
    n_emb: int = 256
    horizon: int = 16
    n_obs_steps: int = 2
    n_action_steps: int = 8
    action_dim: int = 8  # 7 absolute joint targets + gripper command
    # the model predicts the first k action dims as offsets from the same dims of the newest observed state
    # (joint targets relative to where the arm is: a range ~10x narrower than absolute joint angles, so the
    # same normalised error is ~10x finer in radians); the policy's output stays absolute
    relative_action_dims: int = 0
    # False: only the newest observation step carries the joint state (older steps' states are zeroed).
    # Two joint states give the arm's velocity, and a policy trained on smooth demonstrations then learns
    # to continue the current motion rather than to look where the cube is (the "copycat" shortcut).
    state_history: bool = True
    p_drop_emb: float = 0.0
    p_drop_attn: float = 0.3
    causal_attn: bool = True
    action_dt: float = 1.0 / 30.0  # seconds between consecutive actions of a chunk
    num_threads: int = 0  # torch intra-op threads for inference; 0 keeps torch's default
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    # the shipped checkpoint this config samples from ('' = its own name): another sampler for the same
    # weights (e.g. the paper's 100 DDPM steps on the cpu policy) is a config of its own, with its schedules
    weights: str = ""

    def __post_init__(self):
        if isinstance(self.sampler, dict):
            object.__setattr__(self, "sampler", SamplerConfig(**self.sampler))
        if isinstance(self.encoder, dict):
            object.__setattr__(self, "encoder", EncoderConfig(**self.encoder))
        _check(bool(self.name), "name", "must be non-empty")
        _check(self.n_layer >= 1, "n_layer", "must be >= 1")
        _check(self.n_head >= 1 and self.n_emb % self.n_head == 0, "n_head",
               f"n_emb={self.n_emb} must be divisible by n_head={self.n_head}")
        _check(self.horizon >= 1, "horizon", "must be >= 1")
        _check(self.n_obs_steps >= 1, "n_obs_steps", "must be >= 1")
        _check(1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1, "n_action_steps",
               "must be in 1..horizon-n_obs_steps+1")
        _check(0.0 <= self.p_drop_attn < 1.0 and 0.0 <= self.p_drop_emb < 1.0, "p_drop",
               "dropout must be in [0, 1)")
        _check(self.action_dt > 0, "action_dt", "must be > 0")
        _check(0 <= self.relative_action_dims <= min(self.action_dim, self.encoder.state_dim),
               "relative_action_dims", "must be in 0..min(action_dim, encoder.state_dim)")

    @property
    def block_ids(self) -> list[str]:
        return [f"L{i}.{kind}" for i in range(self.n_layer) for kind in ("sa", "ca", "ffn")]

    @property
    def chunk_period_s(self) -> float:
        """Robot seconds a chunk's n_action_steps take to play: the time between inferences in sync mode."""
        return self.n_action_steps * self.action_dt

    @property
    def num_steps(self) -> int:
        return self.sampler.num_inference_steps

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def _model_fields(self) -> dict:
        """Every field but the names and the runtime settings."""
        d = self.to_dict()
        for k in ("name", "num_threads", "action_dt", "weights"):
            d.pop(k)
        return d

    @property
    def config_hash(self) -> str:
        """Hash of everything a schedule depends on: architecture and sampler (not the names)."""
        return _digest(self._model_fields())

    @property
    def weights_hash(self) -> str:
        """Hash of everything trained weights depend on: the architecture and the training noise schedule,
        not how inference samples (sampler type, number of steps, clipping)."""
        d = self._model_fields()
        d["sampler"] = {k: d["sampler"][k] for k in ("num_train_timesteps", "beta_schedule", "prediction_type")}
        return _digest(d)

    @property
    def weights_name(self) -> str:
        return self.weights or self.name

    @classmethod
    def from_dict(cls, d: dict) -> "PolicyConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown config field(s): {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def load(cls, name_or_path: str | Path) -> "PolicyConfig":
        """`cpu` / `paper` (a file in config/) or a path to a YAML/JSON file."""
        path = Path(name_or_path)
        if not path.suffix:
            path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            avail = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
            raise ConfigError(f"no policy config '{name_or_path}' (looked for {path}; in config/: {avail})")
        try:
            data = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
        except (yaml.YAMLError, ValueError) as e:
            raise ConfigError(f"{path}: not valid {'YAML' if path.suffix != '.json' else 'JSON'} ({e})") from None
        if not isinstance(data, dict) or "policy" not in data:
            raise ConfigError(f"{path}: expected a mapping with a 'policy' section")
        return cls.from_dict(data["policy"])
