"""The whole inference for one schedule as one static function, and the backends that run it.

A schedule is fixed before the robot moves: at each of the K denoising steps the set of blocks to recompute
is static. The observation encoder, the K steps with their block sets and the sampler's updates are therefore
one static graph per schedule (`ScheduledInference`), from (image, joint state, initial noise, DDPM's step
noise drawn ahead, the points the plan is held to) to (the denoised sample, the future actions). Backends run it:
- `eager`: PyTorch op by op, the caching runtime (`CachedDenoiser`) itself: the reference;
- `onnx`: the same function in fewer graph nodes (`lean.LeanInference`), exported once (`torch.onnx`, dynamo,
  its optimiser on) and run by ONNX Runtime with `threads` intra-op threads (one by default, so the simulator
  and the controller keep the other cores); `CUDAExecutionProvider` where onnxruntime-gpu is installed;
- `cuda-graph`: the eager graph captured once as a CUDA graph over static input buffers and replayed (GPU).
Built artifacts are cached (`cache_dir()`) under a key of everything they depend on: the weights' bytes, the
schedule's content, the backend and device, the versions of torch / onnx / onnxruntime, and the source of the
modules whose arithmetic they freeze. Any change gives a new key and a new build, never a stale artifact; a
fresh build is checked against eager before it is used or kept.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import torch

from .caching import CachedDenoiser
from .lean import LeanInference
from .schedule import Schedule

class Backend(StrEnum):
    """How an inference runs: torch op by op, the whole inference in ONNX Runtime, or a CUDA graph."""
    EAGER = "eager"
    ONNX = "onnx"
    CUDA_GRAPH = "cuda-graph"


BACKENDS = tuple(Backend)
FORMAT = 2  # of the exported graph: bump when ScheduledInference's inputs or outputs change
FROZEN_SOURCES = ("model.py", "encoders.py", "caching.py", "sampler.py", "diffusion.py", "inference.py", "lean.py")
VERIFY_MSE = 1e-8  # a fresh artifact's future actions against eager, on random inputs (mean squared, rad)


def cache_dir() -> Path:
    """Where built artifacts are kept: $BAC_CACHE_DIR, else ~/.cache/bac_ros/compiled."""
    return Path(os.environ.get("BAC_CACHE_DIR") or Path.home() / ".cache" / "bac_ros" / "compiled")


@dataclass(frozen=True)
class Prefix:
    """Points the plan is held to (inpainted at every denoising step, `Sampler.hold`): what the arm will still
    execute of the previous chunk before the new one takes over, so that the new one continues it."""
    actions: torch.Tensor  # (1, horizon, action_dim) absolute joint targets (rad) + gripper (m), over the horizon
    mask: torch.Tensor  # (1, horizon, 1): 1 where held, 0 where free

    @classmethod
    def free(cls, cfg) -> "Prefix":
        """Nothing held (the plan of an unconstrained inference, bit for bit)."""
        return cls(torch.zeros(1, cfg.horizon, cfg.action_dim), torch.zeros(1, cfg.horizon, 1))

    @classmethod
    def future(cls, cfg, points) -> "Prefix":
        """The first len(points) points of the future (from the observation's step on, as `select_action`
        returns them), (p, action_dim), held."""
        points = torch.as_tensor(points, dtype=torch.float32)
        start, room = cfg.n_obs_steps - 1, cfg.horizon - cfg.n_obs_steps + 1
        if points.ndim != 2 or points.shape[1] != cfg.action_dim or len(points) > room:
            raise ValueError(f"a prefix is (p <= {room}, {cfg.action_dim}) points, got {tuple(points.shape)}")
        out = cls.free(cfg)
        out.actions[0, start:start + len(points)] = points
        out.mask[0, start:start + len(points)] = 1.0
        return out


@dataclass(frozen=True)
class Noise:
    """What one inference starts from, drawn on the CPU (so a seed means the same noise on any device), and the
    points it is held to (None: none)."""
    initial: torch.Tensor  # (1, horizon, action_dim)
    steps: torch.Tensor  # (K, 1, horizon, action_dim): DDPM's per-step noise; zeros where a step draws none
    prefix: Prefix | None = None

    def inputs(self, cfg) -> tuple[torch.Tensor, ...]:
        """(initial, steps, prefix actions, prefix mask): the graph's noise inputs."""
        prefix = self.prefix or Prefix.free(cfg)
        return self.initial, self.steps, prefix.actions, prefix.mask


def draw_noise(policy, generator: torch.Generator | None) -> Noise:
    """The initial noise and DDPM's step noise, in the order the eager sampler draws them from `generator`."""
    cfg = policy.cfg
    initial = torch.randn(1, cfg.horizon, cfg.action_dim, generator=generator)
    return Noise(initial, step_noise(policy, generator))


def step_noise(policy, generator: torch.Generator | None) -> torch.Tensor:
    """DDPM's per-step noise (K, 1, H, A) as its sampler draws it from `generator`, step by step; zeros where a
    step draws none (all of DDIM's)."""
    from diffusers.utils.torch_utils import randn_tensor

    cfg = policy.cfg
    shape = (1, cfg.horizon, cfg.action_dim)
    steps = torch.zeros(cfg.num_steps, *shape)
    for k in range(cfg.num_steps):
        if policy.sampler.draws(k):
            steps[k] = randn_tensor(shape, generator=generator, device=torch.device("cpu"), dtype=torch.float32)
    return steps


class ScheduledInference(torch.nn.Module):
    """(image (1, To, 3, H, W) float in [0, 1], state (1, To, S), noise (1, H, A), step noise (K, 1, H, A),
    prefix (1, H, A) absolute and its mask (1, H, 1), see `Prefix`) ->
    (denoised sample (1, H, A), normalised; future actions (1, H - To + 1, A), absolute), for one schedule (None:
    full precision, through the same hoisted runtime). The loop over steps is Python over a static plan, so an
    export or a capture records it unrolled."""

    def __init__(self, policy, schedule: Schedule | None, monitor: bool = False):
        super().__init__()
        self.policy = policy
        self.schedule = schedule if schedule is not None else Schedule.full(policy.cfg)
        if self.schedule.is_dynamic:
            raise ValueError("a dynamic schedule (teacache) has no static graph: run it eager")
        self.denoiser = CachedDenoiser(policy.model, self.schedule, policy.sampler.timesteps, monitor=monitor)

    def forward(self, image: torch.Tensor, state: torch.Tensor, noise: torch.Tensor, step_noise: torch.Tensor,
                prefix: torch.Tensor, prefix_mask: torch.Tensor):
        return denoise(self.policy, self.denoiser, image, state, noise, step_noise, prefix, prefix_mask)


def denoise(policy, denoiser, image, state, noise, step_noise, prefix, prefix_mask):
    """The inference loop (`ScheduledInference`'s inputs and outputs) on any denoiser runtime: encode, then at
    each step the denoiser's prediction, the sampler's update and the held points inpainted."""
    p, sampler = policy, policy.sampler
    denoiser.begin(p.encode_obs(image, state))
    known = p.action_norm.normalize(p.to_model_actions(prefix, state))
    x = p.denoise_steps(denoiser, sampler.hold(-1, noise, known, noise, prefix_mask), step_noise=step_noise,
                        hold=lambda k, y: sampler.hold(k, y, known, noise, prefix_mask))
    return x, p.future(p.from_model_actions(p.action_norm.unnormalize(x), state))


class Inference:
    """A backend's runner of one schedule: `(image, state, noise) -> (sample, future actions)`, CPU tensors in
    and out (image float (1, To, 3, H, W) in [0, 1]). `reuse_error`: the drift guard's second signal for the
    last inference (eager with `monitor` only; nan elsewhere)."""

    backend = Backend.EAGER

    def __init__(self, policy, schedule: Schedule | None):
        self.policy, self.schedule = policy, schedule
        self.method = schedule.method if schedule is not None else "full"

    @property
    def label(self) -> str:
        return self.schedule.label if self.schedule is not None else "full"

    @property
    def reuse_error(self) -> float:
        return float("nan")

    def __call__(self, image: torch.Tensor, state: torch.Tensor, noise: Noise) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class EagerInference(Inference):
    def __init__(self, policy, schedule: Schedule | None, monitor: bool = False):
        super().__init__(policy, schedule)
        self.module = ScheduledInference(policy, schedule, monitor)

    @property
    def reuse_error(self) -> float:
        meter = self.module.denoiser.meter
        return meter.value if meter is not None else float("nan")

    @torch.inference_mode()
    def __call__(self, image, state, noise):
        dev = self.policy.device
        x, a = self.module(image.to(dev), state.to(dev), *(t.to(dev) for t in noise.inputs(self.policy.cfg)))
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
        return x.cpu(), a.cpu()


def _versions() -> dict:
    out = {"torch": torch.__version__}
    for name in ("onnx", "onnxruntime", "onnxscript"):
        try:
            out[name] = __import__(name).__version__
        except ImportError:
            out[name] = None
    return out


def artifact_key(policy, schedule: Schedule | None, backend: str, device: str) -> str:
    """A hash of everything a built artifact depends on (see the module docstring)."""
    h = hashlib.sha256()
    for v in policy.state_dict().values():
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    sched = schedule if schedule is not None else Schedule.full(policy.cfg)
    here = Path(__file__).parent
    source = hashlib.sha256(b"".join((here / f).read_bytes() for f in FROZEN_SOURCES)).hexdigest()
    meta = {"format": FORMAT, "backend": backend, "device": device, "config": policy.cfg.config_hash,
            "weights": h.hexdigest(), "schedule": {"method": sched.method, "blocks": sched.blocks,
                                                    "reuse": sched.reuse, "num_steps": sched.num_steps},
            "versions": _versions(), "source": source}
    return hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()


def example_inputs(policy, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, Noise]:
    """Random inputs of the right shapes (the export's trace and a fresh artifact's check), with three points
    held, so the check covers the inpainting too."""
    cfg = policy.cfg
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, cfg.n_obs_steps, *cfg.encoder.image_shape, generator=g)
    state = torch.rand(1, cfg.n_obs_steps, cfg.encoder.state_dim, generator=g) * 2 - 1
    noise = draw_noise(policy, g)
    held = state[0, -1:, :cfg.action_dim] + 0.05 * torch.randn(3, cfg.action_dim, generator=g)
    return image, state, dataclasses.replace(noise, prefix=Prefix.future(cfg, held))


class OnnxInference(Inference):
    """The schedule's graph in ONNX Runtime. `threads`: intra-op threads (1 leaves the other cores to the
    simulator and the controller)."""

    backend = Backend.ONNX
    NAMES = (["image", "state", "noise", "step_noise", "prefix", "prefix_mask"], ["sample", "actions"])

    def __init__(self, policy, schedule: Schedule | None, threads: int = 1, cache: Path | None = None):
        super().__init__(policy, schedule)
        import onnxruntime as ort

        self.path = onnx_artifact(policy, schedule, cache)
        self.built_s = None if self.path.is_file() else self._build()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        cuda = policy.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(str(self.path), opts, providers=providers)

    def _build(self) -> float:
        """Export `LeanInference` on the CPU, check it against eager (`ScheduledInference`), then keep (atomically:
        a half-written file is never used)."""
        t0 = time.monotonic()
        device = self.policy.device
        self.policy.to("cpu")
        try:
            module = LeanInference(self.policy, self.schedule).eval()
            image, state, noise = example_inputs(self.policy)
            args = (image, state, *noise.inputs(self.policy.cfg))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp.onnx")
            with torch.inference_mode(False), torch.no_grad():
                program = torch.onnx.export(module, args, dynamo=True, optimize=True, input_names=self.NAMES[0],
                                            output_names=self.NAMES[1], external_data=False, verbose=False)
            program.save(str(tmp))
            with torch.inference_mode():
                want = ScheduledInference(self.policy, self.schedule)(*args)[1]
        finally:
            self.policy.to(device)
        import onnxruntime as ort

        got = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"]).run(
            None, {n: a.numpy() for n, a in zip(self.NAMES[0], args)})[1]
        mse = float(((torch.from_numpy(got) - want) ** 2).mean())
        if not mse <= VERIFY_MSE:
            tmp.unlink(missing_ok=True)
            raise RuntimeError(f"the exported {self.method} graph deviates from eager (action MSE {mse:.2e} > "
                               f"{VERIFY_MSE:g}): not used")
        tmp.replace(self.path)
        return time.monotonic() - t0

    def __call__(self, image, state, noise):
        feeds = dict(zip(self.NAMES[0], (t.numpy() for t in (image, state, *noise.inputs(self.policy.cfg)))))
        x, a = self.session.run(None, feeds)
        return torch.from_numpy(x), torch.from_numpy(a)


class CudaGraphInference(Inference):
    """The eager graph captured once on the GPU (static input buffers) and replayed: one launch for the whole
    inference instead of hundreds of kernels issued from Python."""

    backend = "cuda-graph"

    def __init__(self, policy, schedule: Schedule | None, warmup: int = 3):
        super().__init__(policy, schedule)
        if policy.device.type != "cuda":
            raise ValueError("the cuda-graph backend needs the policy on a CUDA device (--device cuda)")
        t0 = time.monotonic()
        self.module = ScheduledInference(policy, schedule)
        image, state, noise = example_inputs(policy)
        dev = policy.device
        self.inputs = [t.to(dev).clone() for t in (image, state, *noise.inputs(policy.cfg))]
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(warmup):
                self.module(*self.inputs)
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.outputs = self.module(*self.inputs)
        torch.cuda.synchronize(dev)
        self.built_s = time.monotonic() - t0

    def __call__(self, image, state, noise):
        with torch.inference_mode():
            for buf, src in zip(self.inputs, (image, state, *noise.inputs(self.policy.cfg))):
                buf.copy_(src, non_blocking=True)
            self.graph.replay()
            x, a = (t.cpu() for t in self.outputs)  # the copy back waits for the replay
        return x, a


def _onnx(policy, schedule: Schedule | None, threads: int, monitor: bool) -> Inference:
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise ValueError(f"backend onnx needs onnxruntime ({e})") from None
    return OnnxInference(policy, schedule, threads)


BUILDERS = {Backend.EAGER: lambda policy, schedule, threads, monitor: EagerInference(policy, schedule, monitor),
            Backend.ONNX: _onnx,
            Backend.CUDA_GRAPH: lambda policy, schedule, threads, monitor: CudaGraphInference(policy, schedule)}


def onnx_artifact(policy, schedule: Schedule | None, cache: Path | None = None) -> Path:
    """Where the ONNX backend of `schedule` (None: full) on these weights is kept once built."""
    method = schedule.method if schedule is not None else "full"
    key = artifact_key(policy, schedule, Backend.ONNX, str(policy.device))
    return (cache or cache_dir()) / f"{policy.cfg.name}-{method}-{key[:24]}.onnx"


def build(policy, schedule: Schedule | None, backend: Backend = Backend.EAGER, threads: int = 1,
          monitor: bool = False) -> Inference:
    """The runner of `schedule` on `backend` (ValueError for an unknown one, or one this machine lacks).
    `monitor`: eager only, measure the reuse error."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return BUILDERS[Backend(backend)](policy, schedule, threads, monitor)
