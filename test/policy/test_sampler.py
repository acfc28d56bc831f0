import pytest
import torch

from bac_ros.policy.diffusion import DiffusionPolicy, make_scheduler, synthetic_observations
from bac_ros.policy.sampler import Sampler

from support import tiny_config

SAMPLERS = [dict(type="ddpm", num_train_timesteps=100, num_inference_steps=100),
            dict(type="ddpm", num_train_timesteps=100, num_inference_steps=10),
            dict(type="ddim", num_train_timesteps=100, num_inference_steps=20),
            dict(type="ddim", num_train_timesteps=50, num_inference_steps=7, clip_sample=False)]


@pytest.mark.parametrize("prediction", ["epsilon", "sample"])
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_step_is_the_schedulers_bit_for_bit(sampler, prediction):
    """The precomputed update and diffusers' step on the same inputs, step by step, including the
    per-step noise DDPM draws from the generator."""
    cfg = tiny_config(sampler=dict(sampler, prediction_type=prediction))
    scheduler, fast = make_scheduler(cfg), Sampler(make_scheduler(cfg))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, cfg.horizon, cfg.action_dim, generator=g) * 2  # some x_0 estimates fall outside the clip
    x_ref = x.clone()
    ga, gb = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for k, t in enumerate(scheduler.timesteps):
        out = torch.randn(x.shape, generator=g)
        x_ref = scheduler.step(out, t, x_ref, generator=ga).prev_sample
        x = fast.step(k, out, x, gb)
        assert torch.equal(x, x_ref), f"step {k} (t={int(t)})"
    assert torch.isfinite(x).all() and x.abs().max() > 0


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_policy_sample_matches_the_diffusers_loop(sampler):
    cfg = tiny_config(sampler=dict(type=sampler, num_train_timesteps=50, num_inference_steps=10))
    policy = DiffusionPolicy.build(cfg, seed=4)
    img, st = synthetic_observations(cfg, 1, seed=5)
    noise = torch.randn(1, cfg.horizon, cfg.action_dim, generator=torch.Generator().manual_seed(6))
    got = policy.sample(policy.encode_obs(img, st), noise=noise.clone(), generator=torch.Generator().manual_seed(8))
    with torch.inference_mode():
        x, g, cond = noise.clone(), torch.Generator().manual_seed(8), policy.encode_obs(img, st)
        for t in policy.scheduler.timesteps:
            x = policy.scheduler.step(policy.model(x, t, cond), t, x, generator=g).prev_sample
    assert torch.equal(got, x)


def test_unsupported_scheduler_settings_are_refused():
    cfg = tiny_config()
    s = make_scheduler(cfg)
    s.register_to_config(thresholding=True)
    with pytest.raises(ValueError, match="thresholding"):
        Sampler(s)
