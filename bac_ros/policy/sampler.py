"""The denoising update x_t -> x_{t-1} with its coefficients computed once per sampler, not once per step.

A diffusers scheduler's `step` recomputes the step's alphas, betas and variance from `alphas_cumprod`
on every call, small tensor ops that cost as much as a cached block's recomputation and do not shrink when
the blocks are skipped (docs/speed.md). `Sampler` takes the
same 0-dim coefficient tensors the scheduler would compute (by its own arithmetic, once) and applies them
with the scheduler's sequence of tensor ops, so its result is bit-identical to `scheduler.step` (tests
compare them for DDPM and DDIM, with and without the per-step noise).

Supported: what `SamplerConfig` allows (DDPM with fixed_small variance, DDIM with eta 0; epsilon or
sample prediction; clipping, no thresholding).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, DDPMScheduler
from diffusers.utils.torch_utils import randn_tensor


@dataclass(frozen=True)
class StepCoefficients:
    """One step's scalars (0-dim tensors, as the scheduler computes them)."""
    sqrt_beta_prod: torch.Tensor  # sqrt(1 - alpha_bar_t)
    sqrt_alpha_prod: torch.Tensor  # sqrt(alpha_bar_t)
    x0_coeff: torch.Tensor  # DDPM: weight of the predicted x_0 in the posterior mean; DDIM: sqrt(alpha_bar_prev)
    x_coeff: torch.Tensor  # DDPM: weight of x_t; DDIM: weight of the predicted noise (the direction to x_t)
    noise_std: torch.Tensor | None  # DDPM: std of the noise added after the mean (None at t = 0 and for DDIM)
    sqrt_alpha_prev: torch.Tensor  # sqrt(alpha_bar) of the timestep the step lands on (1 after the last)
    sqrt_beta_prev: torch.Tensor  # sqrt(1 - alpha_bar) of that timestep


class Sampler:
    """`step(k, model_output, sample, generator)` = `scheduler.step(model_output, timesteps[k], sample,
    generator=generator).prev_sample`, bit for bit."""

    def __init__(self, scheduler: DDPMScheduler | DDIMScheduler):
        cfg = scheduler.config
        if cfg.prediction_type not in ("epsilon", "sample") or cfg.thresholding:
            raise ValueError(f"Sampler supports epsilon/sample prediction without thresholding, not "
                             f"{cfg.prediction_type} (thresholding={cfg.thresholding})")
        if isinstance(scheduler, DDPMScheduler) and cfg.variance_type != "fixed_small":
            raise ValueError(f"Sampler supports DDPM's fixed_small variance, not {cfg.variance_type}")
        if scheduler.num_inference_steps is None:
            raise ValueError("set the scheduler's timesteps first")
        self.timesteps = scheduler.timesteps
        self.prediction_type = cfg.prediction_type
        self.clip = float(cfg.clip_sample_range) if cfg.clip_sample else None
        self.ddpm = isinstance(scheduler, DDPMScheduler)
        self.steps = [self._coefficients(scheduler, k) for k in range(len(self.timesteps))]

    def _coefficients(self, s, k: int) -> StepCoefficients:
        t = self.timesteps[k]
        alpha_prod_t = s.alphas_cumprod[t]
        beta_prod_t = 1 - alpha_prod_t
        if self.ddpm:
            prev_t = s.previous_timestep(t)
            alpha_prod_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.one
            current_alpha_t = alpha_prod_t / alpha_prod_prev
            current_beta_t = 1 - current_alpha_t
            return StepCoefficients(beta_prod_t ** 0.5, alpha_prod_t ** 0.5,
                                    (alpha_prod_prev ** 0.5 * current_beta_t) / beta_prod_t,
                                    current_alpha_t ** 0.5 * (1 - alpha_prod_prev) / beta_prod_t,
                                    s._get_variance(t) ** 0.5 if t > 0 else None,
                                    alpha_prod_prev ** 0.5, (1 - alpha_prod_prev) ** 0.5)
        prev_t = t - s.config.num_train_timesteps // s.num_inference_steps
        alpha_prod_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.final_alpha_cumprod
        std_dev_t = 0.0 * s._get_variance(t, prev_t) ** 0.5  # eta = 0
        return StepCoefficients(beta_prod_t ** 0.5, alpha_prod_t ** 0.5, alpha_prod_prev ** 0.5,
                                (1 - alpha_prod_prev - std_dev_t ** 2) ** 0.5, None,
                                alpha_prod_prev ** 0.5, (1 - alpha_prod_prev) ** 0.5)

    def hold(self, k: int, sample: torch.Tensor, known: torch.Tensor, noise: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
        """Inpainting (hard conditioning): where `mask` is 1, `sample` replaced by the clean `known` noised to the
        level step `k` lands on (k = -1: the level the loop starts at) with the fixed `noise`; elsewhere kept.
        After the last step the level is clean, so the result equals `known` there. A zero mask returns
        `sample` bit for bit."""
        a, b = self.hold_level(k)
        return mask * (a * known + b * noise) + (1 - mask) * sample

    def hold_level(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sqrt(alpha_bar), sqrt(1 - alpha_bar)) of the level step `k` lands on (k = -1: the loop's start)."""
        if k < 0:
            return self.steps[0].sqrt_alpha_prod, self.steps[0].sqrt_beta_prod
        return self.steps[k].sqrt_alpha_prev, self.steps[k].sqrt_beta_prev

    def draws(self, k: int) -> bool:
        """Whether step `k` adds noise (DDPM, t > 0): it then draws it from the generator, in step order."""
        return self.steps[k].noise_std is not None

    def step(self, k: int, model_output: torch.Tensor, sample: torch.Tensor,
             generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """x_{t-1} from x_t. `noise`: DDPM's step noise given (drawn ahead, e.g. for a captured graph)
        instead of drawn from `generator` here."""
        c = self.steps[k]
        if self.prediction_type == "epsilon":
            x0, eps = (sample - c.sqrt_beta_prod * model_output) / c.sqrt_alpha_prod, model_output
        else:  # DDIM's noise estimate comes from the unclipped x_0
            x0 = model_output
            eps = None if self.ddpm else (sample - c.sqrt_alpha_prod * x0) / c.sqrt_beta_prod
        if self.clip is not None:
            x0 = x0.clamp(-self.clip, self.clip)
        if not self.ddpm:
            return c.x0_coeff * x0 + c.x_coeff * eps
        prev = c.x0_coeff * x0 + c.x_coeff * sample
        if c.noise_std is not None:
            if noise is None:
                noise = randn_tensor(model_output.shape, generator=generator, device=model_output.device,
                                     dtype=model_output.dtype)
            prev = prev + c.noise_std * noise
        return prev
